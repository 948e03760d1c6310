use patchbay_sdk::{Author, Event, Inbound, RichText, Timestamp};

use super::*;

pub(super) fn open() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("store.db")).expect("open");
    (dir, store)
}

pub(super) fn event(account: &str, room: &str, remote_id: Option<&str>, text: &str) -> Event {
    let mut inbound = Inbound::message(room, Author::named("alice"), RichText::plain(text));
    inbound.remote_id = remote_id.map(str::to_owned);
    Event::from_inbound(account, inbound)
}

pub(super) fn to(room: &RoomKey) -> NewDelivery {
    NewDelivery {
        room: room.clone(),
        route: "r".into(),
        not_before: None,
    }
}

#[tokio::test]
async fn accepted_deliveries_wait_in_order_until_completed() {
    let (_dir, store) = open();
    let dest = RoomKey::new("irc.b", "#y");
    for text in ["one", "two", "three"] {
        let accepted = store
            .accept(event("irc.a", "#x", None, text), vec![to(&dest)])
            .await
            .expect("accept");
        assert_eq!(accepted, Accepted::Recorded);
    }
    let pending = store.pending(&dest, 0, 10).await.expect("pending");
    let texts: Vec<String> = pending
        .iter()
        .filter_map(|p| p.event.kind.body().map(RichText::to_plain))
        .collect();
    assert_eq!(texts, ["one", "two", "three"]);
    store
        .complete(&pending[0], Some("remote-1".into()))
        .await
        .expect("complete");
    store.close().await;

    // After a restart the completed delivery is gone and the mapping resolves.
    let store = SqliteStore::open(&_dir.path().join("store.db")).expect("reopen");
    let left = store.pending(&dest, 0, 10).await.expect("pending");
    assert_eq!(left.len(), 2);
    assert_eq!(
        store.resolve(&dest, "remote-1").await.expect("resolve"),
        Some(pending[0].event.id)
    );
    assert_eq!(
        store
            .native_id(pending[0].event.id, &dest)
            .await
            .expect("native"),
        Some("remote-1".into())
    );
    assert_eq!(store.rooms_with_pending().await.expect("rooms"), vec![dest]);
}

#[tokio::test]
async fn a_known_origin_id_is_a_duplicate_and_writes_nothing() {
    let (_dir, store) = open();
    let dest = RoomKey::new("irc.b", "#y");
    let first = store
        .accept(event("irc.a", "#x", Some("m1"), "hi"), vec![to(&dest)])
        .await
        .expect("accept");
    let again = store
        .accept(event("irc.a", "#x", Some("m1"), "hi"), vec![to(&dest)])
        .await
        .expect("accept");
    assert_eq!((first, again), (Accepted::Recorded, Accepted::Duplicate));
    assert_eq!(store.stats().await.expect("stats").pending, 1);

    // Our own delivery coming back from the destination network is a duplicate too.
    let pending = store.pending(&dest, 0, 10).await.expect("pending");
    store
        .complete(&pending[0], Some("echo-1".into()))
        .await
        .expect("complete");
    let echo = store
        .accept(event("irc.b", "#y", Some("echo-1"), "hi"), vec![])
        .await
        .expect("accept");
    assert_eq!(echo, Accepted::Duplicate);
}

#[tokio::test]
async fn dead_letters_leave_the_outbox() {
    let (_dir, store) = open();
    let dest = RoomKey::new("irc.b", "#y");
    store
        .accept(event("irc.a", "#x", None, "hi"), vec![to(&dest)])
        .await
        .expect("accept");
    let pending = store.pending(&dest, 0, 10).await.expect("pending");
    store
        .dead_letter(&pending[0], "no such channel")
        .await
        .expect("dead letter");
    let stats = store.stats().await.expect("stats");
    assert_eq!((stats.pending, stats.dead_letters), (0, 1));
}

#[tokio::test]
async fn pruning_keeps_events_still_waiting_for_delivery() {
    let (_dir, store) = open();
    let dest = RoomKey::new("irc.b", "#y");
    store
        .accept(event("irc.a", "#x", Some("w"), "waiting"), vec![to(&dest)])
        .await
        .expect("accept");
    store
        .accept(event("irc.a", "#x", Some("d"), "done"), vec![])
        .await
        .expect("accept");
    let pruned = store
        .prune(Timestamp(Timestamp::now().0 + 1000))
        .await
        .expect("prune");
    assert_eq!(pruned, 1);
    assert_eq!(store.pending(&dest, 0, 10).await.expect("pending").len(), 1);
}

#[tokio::test]
async fn a_run_is_recorded_in_order_in_fewer_commits_than_events() {
    let (_dir, store) = open();
    let dest = RoomKey::new("irc.b", "#y");
    let before = store.stats().await.expect("stats").commits;
    let run: Vec<NewEvent> = (0..50)
        .map(|i| NewEvent {
            event: event("irc.a", "#x", Some(&format!("m{i}")), &format!("line {i}")),
            deliveries: vec![to(&dest)],
        })
        .chain(std::iter::once(NewEvent {
            // The same network message twice in one run (a replayed history).
            event: event("irc.a", "#x", Some("m7"), "line 7 again"),
            deliveries: vec![to(&dest)],
        }))
        .collect();
    let answers = store.accept_many(run).await.expect("accept run");
    assert_eq!(answers.len(), 51);
    assert!(answers[..50].iter().all(|a| *a == Accepted::Recorded));
    assert_eq!(answers[50], Accepted::Duplicate);
    let commits = store.stats().await.expect("stats").commits - before;
    assert!(commits < 10, "a run of 51 took {commits} commits");

    let pending = store.pending(&dest, 0, 100).await.expect("pending");
    let texts: Vec<String> = pending
        .iter()
        .filter_map(|p| p.event.kind.body().map(RichText::to_plain))
        .collect();
    let expected: Vec<String> = (0..50).map(|i| format!("line {i}")).collect();
    assert_eq!(texts, expected);
}

/// The writer runs a batch without a savepoint per accept and runs it again with them when
/// one fails: the failing accept (an event id taken already) is refused, the others of its run
/// are recorded, in order.
#[tokio::test]
async fn a_failing_accept_is_refused_alone_and_the_rest_of_its_run_is_recorded() {
    let (_dir, store) = open();
    let dest = RoomKey::new("irc.b", "#y");
    let taken = event("irc.a", "#x", None, "two");
    let mut again = event("irc.a", "#x", None, "two again");
    again.id = taken.id;
    let run: Vec<NewEvent> = [
        event("irc.a", "#x", Some("m1"), "one"),
        taken,
        event("irc.a", "#x", None, "three"),
        again,
        event("irc.a", "#x", Some("m4"), "four"),
    ]
    .into_iter()
    .map(|event| NewEvent {
        event,
        deliveries: vec![to(&dest)],
    })
    .collect();
    let refused = store.accept_many(run).await;
    assert!(refused.is_err(), "the run's failing accept is reported");
    let pending = store.pending(&dest, 0, 100).await.expect("pending");
    let texts: Vec<String> = pending
        .iter()
        .filter_map(|p| p.event.kind.body().map(RichText::to_plain))
        .collect();
    assert_eq!(texts, ["one", "two", "three", "four"]);
}

/// A room's newest accepted event is where its catch-up starts, across a restart; a duplicate
/// does not move it.
#[tokio::test]
async fn the_newest_event_of_each_room_is_its_mark() {
    let (dir, store) = open();
    let dest = RoomKey::new("irc.b", "#y");
    let run = [("#x", "x1"), ("#z", "z1"), ("#x", "x2"), ("#x", "x1")]
        .into_iter()
        .map(|(room, remote)| NewEvent {
            event: event("irc.a", room, Some(remote), remote),
            deliveries: vec![to(&dest)],
        })
        .collect();
    let answers = store.accept_many(run).await.expect("accept");
    assert_eq!(answers[3], Accepted::Duplicate);
    store.close().await;
    let store = SqliteStore::open(&dir.path().join("store.db")).expect("reopen");
    let mark = |room: &'static str| {
        let store = store.clone();
        async move {
            let seen = store.last_origin(&RoomKey::new("irc.a", room)).await;
            seen.expect("last_origin").and_then(|seen| seen.remote_id)
        }
    };
    assert_eq!(mark("#x").await.as_deref(), Some("x2"));
    assert_eq!(mark("#z").await.as_deref(), Some("z1"));
    assert_eq!(mark("#none").await, None);
}
