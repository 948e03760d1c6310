//! Synapse crashes mid-stream (SIGKILL) and comes back: nothing said is lost or doubled, and
//! deliveries meanwhile are retryable. This binary has a Synapse of its own, since it kills it.
#![recursion_limit = "256"]

mod support;

use patchbay_sdk::{ConnectorState, DeliveryError};
use support::{Synapse, bot_room, message, within};

#[tokio::test(flavor = "multi_thread")]
async fn a_homeserver_crash_loses_and_doubles_nothing() {
    let synapse = tokio::task::block_in_place(Synapse::start);
    let (alice, _bot_id, room_id, alias, _dir, mut bot) = bot_room(&synapse, "").await;

    alice.say(&room_id, "one").await;
    assert_eq!(bot.next_said("'one'").await, "one");

    // Accepted by the server, then the server dies before the bot necessarily saw it.
    alice.say(&room_id, "two").await;
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
    alice.say(&room_id, "three").await;
    for expected in ["two", "three"] {
        assert_eq!(bot.next_said(expected).await, expected);
    }
    // The retried delivery goes through once the server is back.
    let id = bot.deliver_sent(message(&alias, "bob", "queued")).await;
    alice
        .wait_event(&room_id, "the retried delivery", id.as_str())
        .await;
    // Nothing more from alice arrives twice: the next non-echo event is a new one.
    alice.say(&room_id, "four").await;
    assert_eq!(bot.next_said("'four'").await, "four");
    bot.stop().await;
    tokio::task::block_in_place(|| synapse.stop());
}
