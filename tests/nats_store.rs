//! The JetStream store behind the `Store` seam, against a real nats-server: what the gateway
//! relies on from it, without the binary around it.

mod support;

use std::time::Duration;

use patchbay::router::RoomKey;
use patchbay::store::{Accepted, JetStreamStore, NewDelivery, NewEvent, Store};
use patchbay_sdk::{Author, Event, Inbound, RichText};
use support::eventually;
use support::nats::NatsServer;

async fn store(nats: &NatsServer, prefix: &str) -> JetStreamStore {
    let options = patchbay_nats::BusOptions {
        servers: vec![nats.url()],
        prefix: prefix.to_owned(),
        name: "store test".to_owned(),
        lease: Duration::from_secs(5),
        retention: Duration::from_secs(3600),
        ..Default::default()
    };
    let bus = patchbay_nats::Bus::connect(&options)
        .await
        .expect("connect to nats-server");
    JetStreamStore::new(bus)
}

fn message(room: &str, remote_id: &str, text: &str, to: &RoomKey) -> NewEvent {
    let mut inbound = Inbound::message(room, Author::named("alice"), RichText::plain(text));
    inbound.remote_id = Some(remote_id.to_owned());
    NewEvent {
        event: Event::from_inbound("irc.a", inbound),
        deliveries: vec![NewDelivery {
            room: to.clone(),
            route: "r".to_owned(),
            not_before: None,
        }],
    }
}

fn texts(pending: &[patchbay::store::Pending]) -> Vec<String> {
    pending
        .iter()
        .filter_map(|p| p.event.kind.body().map(RichText::to_plain))
        .collect()
}

#[tokio::test]
async fn a_run_is_recorded_in_order_once_with_duplicates_answered_as_such() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nats = NatsServer::start(dir.path());
    let store = store(&nats, "run").await;
    let dest = RoomKey::new("irc.b", "#y");

    let first = store
        .accept_many(vec![message("#x", "m0", "line 0", &dest)])
        .await
        .expect("accept");
    assert_eq!(first, [Accepted::Recorded]);

    // A run: one already recorded, 30 new, and one of the new twice.
    let mut run = vec![message("#x", "m0", "line 0 again", &dest)];
    run.extend((1..=30).map(|i| message("#x", &format!("m{i}"), &format!("line {i}"), &dest)));
    run.push(message("#x", "m5", "line 5 again", &dest));
    let answers = store.accept_many(run).await.expect("accept run");
    assert_eq!(answers.len(), 32);
    assert_eq!(answers[0], Accepted::Duplicate);
    assert!(answers[1..31].iter().all(|a| *a == Accepted::Recorded));
    assert_eq!(answers[31], Accepted::Duplicate);

    let mut outbox = store.open_room(&dest).await.expect("open room");
    let mut got = Vec::new();
    while got.len() < 31 {
        let batch = tokio::time::timeout(Duration::from_secs(10), outbox.next(64))
            .await
            .expect("deliveries within 10 s")
            .expect("next");
        got.extend(batch);
    }
    let expected: Vec<String> = (0..=30).map(|i| format!("line {i}")).collect();
    assert_eq!(texts(&got), expected);

    // Each origin id resolves to its event, and the room's newest is the run's last new one.
    let origin = RoomKey::new("irc.a", "#x");
    for (i, pending) in got.iter().enumerate() {
        let id = store
            .resolve(&origin, &format!("m{i}"))
            .await
            .expect("resolve");
        assert_eq!(id, Some(pending.event.id), "m{i}");
    }
    let last = store
        .last_origin(&origin)
        .await
        .expect("last")
        .expect("seen");
    assert_eq!(last.remote_id.as_deref(), Some("m30"));
    assert_eq!(
        store.room_depths().await.expect("depths").get(&dest),
        Some(&31)
    );
}

/// nats-server 2.15 allows 1,000 consumers per stream unless the stream says otherwise, and
/// creating thousands at once times its API out: a gateway with more destination rooms than
/// that must still deliver into every one. `PATCHBAY_TEST_ROOMS` raises the count (10,000 by
/// hand), and the test prints how long each step took.
#[tokio::test]
async fn more_rooms_than_a_stream_s_default_consumer_limit_all_get_their_deliveries() {
    let rooms: usize = std::env::var("PATCHBAY_TEST_ROOMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_200);
    let dir = tempfile::tempdir().expect("tempdir");
    let nats = NatsServer::start(dir.path());
    let store = std::sync::Arc::new(store(&nats, "many").await);
    let room = |i: usize| RoomKey::new("irc.b", format!("#r{i}"));
    // Every lane opens its room first, with nothing waiting (as at an account's start).
    let started = std::time::Instant::now();
    let mut lanes = Vec::new();
    for i in 0..rooms {
        let outbox = store.open_room(&room(i)).await.expect("open room");
        lanes.push(tokio::spawn(async move {
            let mut outbox = outbox;
            let got = tokio::time::timeout(Duration::from_secs(300), outbox.next(8))
                .await
                .expect("a delivery within 300 s")
                .expect("next");
            outbox.complete(&got[0], None).await.expect("complete");
            got.iter()
                .filter_map(|p| p.event.kind.body().map(RichText::to_plain))
                .collect::<Vec<_>>()
        }));
    }
    let opened = started.elapsed();
    let run: Vec<NewEvent> = (0..rooms)
        .map(|i| message("#x", &format!("m{i}"), &format!("to {i}"), &room(i)))
        .collect();
    for chunk in run.chunks(100) {
        store.accept_many(chunk.to_vec()).await.expect("accept");
    }
    let accepted = started.elapsed();
    for (i, lane) in lanes.into_iter().enumerate() {
        let texts = lane.await.expect("lane");
        assert_eq!(texts, [format!("to {i}")], "room {i}");
    }
    println!(
        "{rooms} rooms: opened in {opened:?}, accepted after {accepted:?}, all delivered after {:?}",
        started.elapsed()
    );
    // The last acknowledgement of each room may still be on its way (a lane sends it and
    // goes on): the outbox empties once the server has them all.
    let emptied = "the outbox to empty after every delivery was completed";
    eventually(emptied, Duration::from_secs(30), || async {
        store.room_depths().await.expect("depths").is_empty()
    })
    .await;
}

/// What one instance's account announced it speaks as reaches every instance: a line by that
/// name, seen by an account on another instance on the same network, is the gateway's own.
#[tokio::test]
async fn names_announced_on_one_instance_keep_their_lines_out_on_another() {
    use patchbay::intake::Intake;
    use patchbay::metrics::Metrics;
    use patchbay::router::{Direction, Route, Router, Settings};
    use patchbay_sdk::Emit;
    use std::sync::Arc;

    let dir = tempfile::tempdir().expect("tempdir");
    let nats = NatsServer::start(dir.path());
    let route = Route {
        name: "mirror".to_owned(),
        members: vec![
            (RoomKey::new("ssh.dev", "#dev"), Direction::InOut),
            (RoomKey::new("irc.b", "#y"), Direction::InOut),
        ],
        settings: vec![Settings::default(); 2],
    };
    let intake = |store: Arc<JetStreamStore>| {
        Intake::new(
            store,
            Arc::new(Router::new("gw", vec![route.clone()])),
            Arc::new(Metrics::default()),
            tokio_util::sync::CancellationToken::new(),
        )
    };
    let first = intake(Arc::new(store(&nats, "names").await));
    let second = intake(Arc::new(store(&nats, "names").await));
    second.hear_other_instances().await.expect("hear");

    // The plugin account on the first instance relays as "bridge" on the Devzat server.
    first.announce(
        "devzat.main",
        "devzat@127.0.0.1:2222",
        vec!["bridge".to_owned()],
    );
    // The SSH account on the second instance, on the same server, sees "bridge" speak.
    second.announce(
        "ssh.dev",
        "devzat@127.0.0.1:2222",
        vec!["bridge-ssh".to_owned()],
    );
    let line =
        |text: &str| Inbound::message("#dev", Author::named("bridge"), RichText::plain(text));
    // Until the announcement has crossed, the line is relayed (and counted below).
    let crossed = "the announcement to reach the other instance";
    eventually(crossed, Duration::from_secs(10), || async {
        let relayed = second.emit("ssh.dev", line("cd #dev")).await.expect("emit");
        relayed.is_none()
    })
    .await;
    // From then on, every such line stays out, and other people's lines still go.
    assert_eq!(
        second.emit("ssh.dev", line("cd ..")).await.expect("emit"),
        None
    );
    let alice = Inbound::message("#dev", Author::named("alice"), RichText::plain("hi"));
    assert!(second.emit("ssh.dev", alice).await.expect("emit").is_some());
}

/// A room's newest-event mark, where a new holder's catch-up starts: the accepting instance
/// reads its own at once; it is written behind, and another instance (the next holder) reads
/// it once written; a later accept moves it, a duplicate does not; closing writes what is left.
#[tokio::test]
async fn the_newest_event_mark_is_read_at_once_here_and_soon_elsewhere() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nats = NatsServer::start(dir.path());
    let here = store(&nats, "marks").await;
    let elsewhere = store(&nats, "marks").await;
    let origin = RoomKey::new("irc.a", "#x");
    let to = RoomKey::new("irc.b", "#y");
    let mark = |seen: Option<patchbay_sdk::Seen>| seen.and_then(|s| s.remote_id);
    let answers = here
        .accept_many(vec![
            message("#x", "m1", "one", &to),
            message("#x", "m2", "two", &to),
        ])
        .await
        .expect("accept");
    assert_eq!(answers, [Accepted::Recorded, Accepted::Recorded]);
    let read = here.last_origin(&origin).await.expect("read here");
    assert_eq!(mark(read).as_deref(), Some("m2"));
    let reached = "the mark to reach the other instance";
    eventually(reached, Duration::from_secs(10), || async {
        let read = elsewhere
            .last_origin(&origin)
            .await
            .expect("read elsewhere");
        mark(read).as_deref() == Some("m2")
    })
    .await;
    let answers = here
        .accept_many(vec![message("#x", "m1", "one again", &to)])
        .await
        .expect("accept");
    assert_eq!(answers, [Accepted::Duplicate]);
    let answers = here
        .accept_many(vec![message("#x", "m3", "three", &to)])
        .await
        .expect("accept");
    assert_eq!(answers, [Accepted::Recorded]);
    here.close().await;
    let read = elsewhere
        .last_origin(&origin)
        .await
        .expect("read elsewhere");
    assert_eq!(
        mark(read).as_deref(),
        Some("m3"),
        "closing writes the last mark"
    );
}
