//! Synapse crashes mid-stream (SIGKILL) and comes back: nothing said is lost or doubled, and
//! deliveries meanwhile are retryable. This binary has a Synapse of its own, since it kills it.
#![recursion_limit = "256"]

mod support;

use matrix_sdk::ruma::events::room::message::RoomMessageEventContent;
use patchbay_sdk::{
    Author, ConnectorState, Delivery, DeliveryError, Event, Inbound, Kind, RichText,
};
use support::{Synapse, User, bot_table, start, unique, within};

fn delivery(room: &str, text: &str) -> Delivery {
    let mut event = Inbound::message("#rust", Author::named("bob"), RichText::plain(""));
    event.kind = Kind::Message {
        body: RichText::plain(text),
        attachments: Vec::new(),
    };
    Delivery {
        room: room.to_owned(),
        event: Event::from_inbound("irc.libera", event),
        nick: "bob".into(),
        route: "main".into(),
        quote: None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_homeserver_crash_loses_and_doubles_nothing() {
    let synapse = tokio::task::block_in_place(Synapse::start);
    let alice = User::register(&synapse, &unique("alice")).await;
    let bot_id = synapse.register(&unique("bot"), "password").await;
    let alias_name = unique("room");
    let room_id = alice.create_room(Some(&alias_name), &[], false).await;
    let alias = format!("#{alias_name}:localhost");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut bot = start(
        &bot_table(&synapse, &bot_id, std::slice::from_ref(&alias), ""),
        dir.path(),
    );
    bot.wait_up().await;
    alice
        .wait_for(&room_id, "the bot to join", |e| {
            e["type"] == "m.room.member" && e["state_key"] == bot_id.as_str()
        })
        .await;

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
        bot.connector.deliver(delivery(&alias, "queued")),
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
        bot.connector.deliver(delivery(&alias, "queued")),
    )
    .await
    .expect("delivered")
    .remote_id
    .expect("remote id");
    alice
        .wait_for(&room_id, "the retried delivery", |e| {
            e["event_id"] == id.as_str()
        })
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
