//! Appservice mode against a real Synapse that loaded the bridges' registration files: ghosts
//! for remote authors, the transactions API (authorised, idempotent), restarts.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};

use matrix_sdk::ruma::events::room::message::RoomMessageEventContent;
use patchbay_sdk::{Delivery, Inbound, Kind, MessageRef, RichText};
use serde_json::{Value, json};
use support::appservice::{Bridge, Slot, fixture, setup, setup_refusing, start_bridge};
use support::synapse::PUSH_TIMEOUT;
use support::{TIMEOUT, message};

fn ghost(slot: &Slot, nick_localpart: &str) -> String {
    format!("@{}irc_libera_{nick_localpart}:localhost", slot.prefix)
}

async fn deliver(bridge: &Bridge, delivery: Delivery) -> String {
    bridge.running.deliver_sent(delivery).await
}

fn is_message_from(event: &Value, sender: &str, body: &str) -> bool {
    event["type"] == "m.room.message"
        && event["sender"] == sender
        && event["content"]["body"] == body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_author_appears_as_their_own_ghost_with_their_name() {
    let slot = &fixture().slots[0];
    let (alice, bridge, room_id) = setup(slot).await;
    let room = room_id.to_string();
    let bob = ghost(slot, "_bob");

    let first = deliver(&bridge, message(&room, "Bob", "hello from irc")).await;
    let joined = alice
        .wait_joined(&room_id, "bob's ghost to join", &bob)
        .await;
    assert_eq!(joined["content"]["displayname"], "[irc] Bob");
    let seen = alice
        .wait_for(&room_id, "bob's message", |e| {
            is_message_from(e, &bob, "hello from irc")
        })
        .await;
    assert_eq!(seen["event_id"], first.as_str());

    // An edit comes from the same ghost, as a replacement.
    let mut edit = message(&room, "Bob", "");
    edit.event.kind = Kind::Edit {
        target: MessageRef::Native(first.clone()),
        body: RichText::plain("hello from IRC"),
    };
    deliver(&bridge, edit).await;
    let replaced = alice
        .wait_for(&room_id, "the edit", |e| {
            e["sender"] == bob.as_str() && e["content"]["m.relates_to"]["rel_type"] == "m.replace"
        })
        .await;
    assert_eq!(
        replaced["content"]["m.new_content"]["body"],
        "hello from IRC"
    );
    assert_eq!(
        replaced["content"]["m.relates_to"]["event_id"],
        first.as_str()
    );

    // Another author naming Bob mentions Bob's ghost.
    let carol = ghost(slot, "carol");
    deliver(&bridge, message(&room, "carol", "Bob: are you there?")).await;
    let mention = alice
        .wait_for(&room_id, "carol's mention", |e| {
            e["type"] == "m.room.message" && e["sender"] == carol.as_str()
        })
        .await;
    let html = mention["content"]["formatted_body"]
        .as_str()
        .unwrap_or_default();
    assert!(
        html.contains(&format!("https://matrix.to/#/{bob}")),
        "{html}"
    );
    assert_eq!(
        mention["content"]["m.mentions"]["user_ids"],
        json!([bob.as_str()])
    );

    // A Matrix pill of the ghost reaches the other side as the plain nick.
    let mut running = bridge.running;
    alice
        .room(&room_id)
        .send(RoomMessageEventContent::text_html(
            "[irc] Bob: thanks",
            format!("<a href=\"https://matrix.to/#/{bob}\">[irc] Bob</a>: thanks"),
        ))
        .await
        .expect("send");
    let inbound = running
        .next_matching("alice's reply", |e| e.author.id == alice.id)
        .await;
    match &inbound.kind {
        Kind::Message { body, .. } => assert_eq!(body.to_plain(), "Bob: thanks"),
        other => panic!("not a message: {other:?}"),
    }
    assert_eq!(inbound.room, room);

    // A deletion is a redaction by the ghost.
    let mut delete = message(&room, "Bob", "");
    delete.event.kind = Kind::Delete {
        target: MessageRef::Native(first.clone()),
    };
    running.deliver(delete).await;
    let redaction = alice
        .wait_for(&room_id, "the redaction", |e| {
            e["type"] == "m.room.redaction"
        })
        .await;
    assert_eq!(redaction["sender"], bob.as_str());
    running.stop().await;
}

/// PUT a transaction of one message to the bridge; returns the status.
async fn put_transaction(slot: &Slot, txn: &str, token: Option<&str>, query: &str) -> u16 {
    put_messages(slot, txn, token, query, &["once"]).await
}

/// PUT a transaction of a message per text to the bridge (event ids `$<text>-<txn>`);
/// returns the status.
async fn put_messages(
    slot: &Slot,
    txn: &str,
    token: Option<&str>,
    query: &str,
    texts: &[&str],
) -> u16 {
    let http = matrix_sdk::reqwest::Client::new();
    let events: Vec<Value> = texts
        .iter()
        .map(|text| {
            json!({
                "type": "m.room.message", "room_id": "!nowhere:localhost", "sender": "@zed:localhost",
                "event_id": format!("${text}-{txn}"), "origin_server_ts": 1,
                "content": {"msgtype": "m.text", "body": text}
            })
        })
        .collect();
    let body = json!({ "events": events });
    let mut request = http
        .put(format!("{}/transactions/{txn}{query}", slot.api()))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request
        .send()
        .await
        .expect("the bridge answers")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_are_authorised_and_relayed_once() {
    let fx = fixture();
    let slot = &fx.slots[1];
    let mut bridge = start_bridge(slot, &fx.synapse, "");
    bridge.running.wait_up().await;
    let tokens = slot.tokens();
    let hs_token = tokens["hs_token"].as_str().expect("hs_token").to_owned();
    let as_token = tokens["as_token"].as_str().expect("as_token").to_owned();

    // Synapse loaded the registration: it pings the bridge with the hs_token on our asking.
    let ping = matrix_sdk::reqwest::Client::new()
        .post(format!(
            "{}/_matrix/client/v1/appservice/{}/ping",
            fx.synapse.url(),
            slot.id
        ))
        .bearer_auth(&as_token)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .expect("ping");
    let status = ping.status().as_u16();
    let answer = ping.text().await.unwrap_or_default();
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains("duration_ms"), "{answer}");

    assert_eq!(put_transaction(slot, "t1", Some("wrong"), "").await, 403);
    assert_eq!(put_transaction(slot, "t1", None, "").await, 401);
    assert!(bridge.running.try_next().is_none(), "nothing relayed");

    assert_eq!(put_transaction(slot, "t1", Some(&hs_token), "").await, 200);
    let once = bridge.running.try_next().expect("relayed");
    assert_eq!(once.remote_id.as_deref(), Some("$once-t1"));
    // Repeated (with the legacy query token): acknowledged, not relayed again.
    let query = format!("?access_token={hs_token}");
    assert_eq!(put_transaction(slot, "t1", None, &query).await, 200);
    assert!(bridge.running.try_next().is_none(), "relayed twice");

    // The done ids outlive a restart.
    bridge.stop().await;
    let mut bridge = start_bridge(slot, &fx.synapse, "");
    bridge.running.wait_up().await;
    assert_eq!(put_transaction(slot, "t1", Some(&hs_token), "").await, 200);
    assert!(
        bridge.running.try_next().is_none(),
        "relayed after a restart"
    );
    assert_eq!(put_transaction(slot, "t2", Some(&hs_token), "").await, 200);
    assert!(bridge.running.try_next().is_some(), "a new one is relayed");

    // A transaction of several events is handed to the gateway in one call (one commit), in
    // order.
    let calls = bridge.running.emit_calls();
    let texts = ["one", "two", "three"];
    assert_eq!(
        put_messages(slot, "t3", Some(&hs_token), "", &texts).await,
        200
    );
    let relayed: Vec<String> = std::iter::from_fn(|| bridge.running.try_next())
        .map(|e| text_of(&e))
        .collect();
    assert_eq!(relayed, texts);
    assert_eq!(
        bridge.running.emit_calls(),
        calls + 1,
        "one call for the run"
    );
    bridge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_the_same_ghost() {
    let fx = fixture();
    let slot = &fx.slots[2];
    let (alice, bridge, room_id) = setup(slot).await;
    let room = room_id.to_string();
    let dave = ghost(slot, "dave");
    deliver(&bridge, message(&room, "dave", "before the restart")).await;
    alice
        .wait_for(&room_id, "dave's first message", |e| {
            is_message_from(e, &dave, "before the restart")
        })
        .await;
    let ghosts_before = std::fs::read(slot.data_dir.join("ghosts.json")).expect("ghost table");

    bridge.stop().await;
    let mut bridge = start_bridge(
        slot,
        &fx.synapse,
        &format!("invite_from = [\"{}\"]", alice.id),
    );
    bridge.running.wait_up().await;
    deliver(&bridge, message(&room, "dave", "after the restart")).await;
    let member_events = AtomicUsize::new(0);
    alice
        .wait_for(&room_id, "dave's second message", |e| {
            if e["type"] == "m.room.member" && e["state_key"] == dave.as_str() {
                member_events.fetch_add(1, Ordering::SeqCst);
            }
            is_message_from(e, &dave, "after the restart")
        })
        .await;
    assert_eq!(
        member_events.load(Ordering::SeqCst),
        0,
        "the ghost joined again"
    );
    let ghosts_after = std::fs::read(slot.data_dir.join("ghosts.json")).expect("ghost table");
    assert_eq!(ghosts_before, ghosts_after);

    // Matrix to the bridge still works after the restart, once.
    alice
        .room(&room_id)
        .send(RoomMessageEventContent::text_plain("welcome back"))
        .await
        .expect("send");
    let inbound = bridge
        .running
        .next_matching("alice's message", |e| e.author.id == alice.id)
        .await;
    assert!(
        matches!(&inbound.kind, Kind::Message { body, .. } if body.to_plain() == "welcome back")
    );
    bridge.stop().await;
}

fn text_of(inbound: &Inbound) -> String {
    inbound
        .kind
        .body()
        .map(RichText::to_plain)
        .unwrap_or_default()
}

/// The texts of the events the bridge emits, in order, up to and with `marker`. Synapse may
/// be waiting out a push the stopped bridge read and never answered, hence the longer wait.
async fn texts_until(bridge: &mut Bridge, slot: &Slot, marker: &str, what: &str) -> Vec<String> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + TIMEOUT + PUSH_TIMEOUT;
    while !seen.iter().any(|t| t == marker) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let Some(inbound) = bridge.running.next_matching_within(left, |_| true).await else {
            panic!(
                "timed out waiting for {what}; seen {seen:?}; {}",
                fixture().synapse.appservice_log(&slot.id)
            );
        };
        seen.push(text_of(&inbound));
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_refused_by_the_gateway_or_pushed_while_it_is_down_are_relayed_once() {
    let fx = fixture();
    let slot = &fx.slots[3];
    let (alice, mut bridge, room_id) = setup_refusing(slot, Some("refused once")).await;
    let alice_room = alice.room(&room_id);
    let say = |text: &str| RoomMessageEventContent::text_plain(text);

    // The gateway refuses the event: the transaction gets a 500 and Synapse sends it again.
    alice_room.send(say("refused once")).await.expect("send");
    alice_room.send(say("marker 1")).await.expect("send");
    let seen = texts_until(
        &mut bridge,
        slot,
        "marker 1",
        "the refused event and the marker",
    )
    .await;
    assert_eq!(seen, ["refused once", "marker 1"]);
    bridge.stop().await;

    // The bridge is down while Alice talks: Synapse holds the transactions and delivers them
    // to the restarted bridge, each event once, in order.
    for n in 0..5 {
        alice_room
            .send(say(&format!("while down {n}")))
            .await
            .expect("send");
    }
    let trust = format!("invite_from = [\"{}\"]", alice.id);
    let mut bridge = start_bridge(slot, &fx.synapse, &trust);
    bridge.running.wait_up().await;
    alice_room.send(say("marker 2")).await.expect("send");
    let seen = texts_until(&mut bridge, slot, "marker 2", "the events said while down").await;
    let expected: Vec<String> = (0..5)
        .map(|n| format!("while down {n}"))
        .chain(["marker 2".to_owned()])
        .collect();
    assert_eq!(seen, expected);
    bridge.stop().await;
}
