//! The embedded store's dead letters: listed with their reason, retried back into the
//! outbox (reaching an open room's lane without a database read), discarded.

use patchbay_sdk::{RichText, Timestamp};

use super::tests::{event, open, to};
use super::*;

#[tokio::test]
async fn a_dead_letter_is_listed_retried_into_its_open_room_and_discarded() {
    let (_dir, store) = open();
    let dest = RoomKey::new("webhook.b", "chat");
    for text in ["one", "two"] {
        store
            .accept(event("irc.a", "#x", None, text), vec![to(&dest)])
            .await
            .expect("accept");
    }
    let mut room = store.open_room(&dest).await.expect("open room");
    let pending = room.next(10).await.expect("next");
    assert_eq!(pending.len(), 2);
    for p in &pending {
        room.dead_letter(p, "answered 410 Gone")
            .await
            .expect("dead");
    }
    assert!(store.room_backlogs().await.expect("backlogs").is_empty());

    let dead = store.dead_letters(10).await.expect("list");
    let texts: Vec<String> = dead
        .iter()
        .filter_map(|d| d.event.kind.body().map(RichText::to_plain))
        .collect();
    assert_eq!(texts, ["one", "two"]);
    assert!(
        dead.iter()
            .all(|d| d.reason == "answered 410 Gone" && d.room == dest)
    );
    assert!(dead[0].failed_at.0 <= Timestamp::now().0);

    // Retried: back in the outbox, and handed to the open room's lane from memory.
    assert!(store.retry_dead_letter(dead[0].id).await.expect("retry"));
    let again = tokio::time::timeout(std::time::Duration::from_secs(5), room.next(10))
        .await
        .expect("the retried delivery reaches the lane")
        .expect("next");
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].event.id, dead[0].event.id);
    let backlogs = store.room_backlogs().await.expect("backlogs");
    assert_eq!(backlogs.len(), 1);
    assert_eq!((backlogs[0].depth, backlogs[0].oldest.is_some()), (1, true));

    assert!(
        store
            .discard_dead_letter(dead[1].id)
            .await
            .expect("discard")
    );
    assert!(
        !store
            .discard_dead_letter(dead[1].id)
            .await
            .expect("discard")
    );
    assert!(
        !store
            .retry_dead_letter(dead[0].id)
            .await
            .expect("retry gone")
    );
    let stats = store.stats().await.expect("stats");
    assert_eq!((stats.pending, stats.dead_letters), (1, 0));
}

#[tokio::test]
async fn a_dead_letter_whose_event_was_pruned_is_retried_from_its_own_copy() {
    let (_dir, store) = open();
    let dest = RoomKey::new("webhook.b", "chat");
    store
        .accept(event("irc.a", "#x", None, "old"), vec![to(&dest)])
        .await
        .expect("accept");
    let pending = store.pending(&dest, 0, 10).await.expect("pending");
    store
        .dead_letter(&pending[0], "refused")
        .await
        .expect("dead");
    let pruned = store
        .prune(Timestamp(Timestamp::now().0 + 1000))
        .await
        .expect("prune");
    assert_eq!(pruned, 1);
    let id = store.dead_letters(10).await.expect("list")[0].id;
    assert!(store.retry_dead_letter(id).await.expect("retry"));
    let back = store.pending(&dest, 0, 10).await.expect("pending");
    let text = back[0].event.kind.body().map(RichText::to_plain);
    assert_eq!(text.as_deref(), Some("old"));
}
