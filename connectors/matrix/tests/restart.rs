//! Synapse crashes mid-stream (SIGKILL) and comes back: nothing said is lost or doubled, and
//! deliveries meanwhile are retryable. This binary has a Synapse of its own, since it kills it.
#![recursion_limit = "256"]

mod support;

use matrix_sdk::ruma::events::room::message::RoomMessageEventContent;
use patchbay_sdk::{ConnectorState, DeliveryError};
use support::{Synapse, bot_room, message, within};

#[tokio::test(flavor = "multi_thread")]
async fn a_homeserver_crash_loses_and_doubles_nothing() {
    let synapse = tokio::task::block_in_place(Synapse::start);
    let (alice, _bot_id, room_id, alias, _dir, mut bot) = bot_room(&synapse, "").await;

    let room = alice.room(&room_id);
    room.send(RoomMessageEventContent::text_plain("one"))
        .await
        .expect("send");
    let first = bot.next_matching("'one'", |e| !e.is_echo).await;
    assert_eq!(first.kind.body().expect("body").to_plain(), "one");

    // Accepted by the server, then the server dies before the bot necessarily saw it.
    room.send(RoomMessageEventContent::text_plain("two"))
        .await
        .expect("send");
    tokio::task::block_in_place(|| synapse.stop());
    within("the connector to notice", async {
        loop {
            if matches!(*bot.state.borrow_and_update(), ConnectorState::Down { .. }) {
                return;
            }
            bot.state.changed().await.expect("state");
        }
    })
    .await;
    let early = within(
        "a delivery while the server is down",
        bot.connector.deliver(message(&alias, "bob", "queued")),
    )
    .await;
    assert!(
        matches!(early, Err(DeliveryError::Retryable { .. })),
        "{early:?}"
    );

    tokio::task::block_in_place(|| synapse.resume());
    bot.wait_up_after_outage().await;
    room.send(RoomMessageEventContent::text_plain("three"))
        .await
        .expect("send after the restart");
    for expected in ["two", "three"] {
        let event = bot.next_matching(expected, |e| !e.is_echo).await;
        assert_eq!(event.kind.body().expect("body").to_plain(), expected);
    }
    // The retried delivery goes through once the server is back.
    let id = within(
        "the retried delivery",
        bot.connector.deliver(message(&alias, "bob", "queued")),
    )
    .await
    .expect("delivered")
    .remote_id
    .expect("remote id");
    alice
        .wait_event(&room_id, "the retried delivery", id.as_str())
        .await;
    // Nothing more from alice arrives twice: the next non-echo event is a new one.
    room.send(RoomMessageEventContent::text_plain("four"))
        .await
        .expect("send");
    let next = bot.next_matching("'four'", |e| !e.is_echo).await;
    assert_eq!(next.kind.body().expect("body").to_plain(), "four");
    bot.stop().await;
    tokio::task::block_in_place(|| synapse.stop());
}
