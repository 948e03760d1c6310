//! Bot mode against a real Synapse: relaying both ways, relations, restarts, invites.
#![recursion_limit = "256"]

mod support;

use matrix_sdk::ruma::events::room::message::{ReplacementMetadata, RoomMessageEventContent};
use matrix_sdk::ruma::{OwnedEventId, OwnedUserId};
use patchbay_sdk::{Author, Delivered, Delivery, DeliveryError, Kind, MessageRef, RichText};
use serde_json::Value;
use support::synapse::json_of;
use support::{
    Running, User, bot_room, bot_table, relayed, start, start_bot, synapse, text, unique,
};

fn delivery(room: &str, kind: Kind, reply_to: Option<MessageRef>) -> Delivery {
    let mut delivery = relayed("irc.libera", room, Author::named("bob"), kind);
    delivery.event.reply_to = reply_to;
    delivery
}

fn body_of(event: &Value) -> &str {
    event["content"]["body"].as_str().unwrap_or_default()
}

/// The login the bot keeps in its data directory, as written.
fn saved_session(dir: &tempfile::TempDir) -> String {
    std::fs::read_to_string(dir.path().join("session.json")).expect("session")
}

/// The login the bot keeps in its data directory.
fn session_of(dir: &tempfile::TempDir) -> Value {
    serde_json::from_str(&saved_session(dir)).expect("json")
}

async fn deliver(bot: &Running, delivery: Delivery) -> OwnedEventId {
    let id = bot.deliver_sent(delivery).await;
    OwnedEventId::try_from(id).expect("event id")
}

#[tokio::test(flavor = "multi_thread")]
async fn relays_text_emote_and_notice_both_ways() {
    let (alice, bot_id, room_id, alias, _dir, mut bot) = bot_room(synapse(), "").await;

    // Matrix -> gateway, formatting parsed.
    let sent = alice
        .send(
            &room_id,
            RoomMessageEventContent::text_html("hello **world**", "hello <strong>world</strong>"),
        )
        .await;
    let inbound = bot.next_matching("alice's message", |e| !e.is_echo).await;
    assert_eq!(inbound.room, alias);
    assert_eq!(inbound.remote_id.as_deref(), Some(sent.as_str()));
    assert_eq!(inbound.author.id, alice.id);
    let body = inbound.kind.body().expect("a body");
    assert_eq!(body.to_plain(), "hello world");
    assert!(body.spans()[1].style.bold);

    alice
        .send(&room_id, RoomMessageEventContent::emote_plain("waves"))
        .await;
    let inbound = bot.next_matching("the emote", |e| !e.is_echo).await;
    assert!(matches!(&inbound.kind, Kind::Action { body } if body.to_plain() == "waves"));
    alice
        .send(&room_id, RoomMessageEventContent::notice_plain("build ok"))
        .await;
    let inbound = bot.next_matching("the notice", |e| !e.is_echo).await;
    assert!(matches!(&inbound.kind, Kind::Notice { body } if body.to_plain() == "build ok"));

    // Gateway -> Matrix: nick bold in the formatted body, plain prefix in the body.
    let id = deliver(&bot, delivery(&alias, text("hi <there>"), None)).await;
    let event = alice
        .wait_event(&room_id, "the relayed message", id.as_str())
        .await;
    assert_eq!(event["sender"], bot_id.as_str());
    assert_eq!(body_of(&event), "[irc] bob: hi <there>");
    assert_eq!(
        event["content"]["formatted_body"],
        "<strong>[irc] bob</strong>: hi &lt;there&gt;"
    );
    // Its own message comes back marked as an echo.
    let echo = bot
        .next_matching("the echo", |e| e.remote_id.as_deref() == Some(id.as_str()))
        .await;
    assert!(echo.is_echo);

    let id = deliver(
        &bot,
        delivery(
            &alias,
            Kind::Action {
                body: RichText::plain("waves back"),
            },
            None,
        ),
    )
    .await;
    let event = alice
        .wait_event(&room_id, "the relayed emote", id.as_str())
        .await;
    assert_eq!(event["content"]["msgtype"], "m.emote");
    assert_eq!(body_of(&event), "[irc] bob waves back");

    // A text over Matrix's event size limit arrives whole, in parts.
    let long: String = (0..4000)
        .map(|n| format!("line {n:04} of a long paste\n"))
        .collect();
    let id = deliver(&bot, delivery(&alias, text(&long), None)).await;
    let first = alice
        .wait_event(&room_id, "the first part", id.as_str())
        .await;
    let mut received = body_of(&first).to_owned();
    while !received.contains("line 3999") {
        let part = alice
            .wait_for(&room_id, "the next part", |e| {
                e["sender"] == bot_id.as_str()
            })
            .await;
        received.push('\n');
        received.push_str(body_of(&part));
    }
    assert_eq!(received, format!("[irc] bob: {}", long.trim_end()));
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn edits_redactions_replies_and_reactions_both_ways() {
    let (alice, _bot_id, room_id, alias, _dir, mut bot) = bot_room(synapse(), "").await;

    // Matrix -> gateway.
    let original = alice.say(&room_id, "tpyo").await;
    bot.next_matching("the original", |e| !e.is_echo).await;
    alice
        .send(
            &room_id,
            RoomMessageEventContent::text_plain("typo")
                .make_replacement(ReplacementMetadata::new(original.clone(), None)),
        )
        .await;
    let edit = bot.next_matching("the edit", |e| !e.is_echo).await;
    match edit.kind {
        Kind::Edit { target, body } => {
            assert_eq!(target, MessageRef::Native(original.to_string()));
            assert_eq!(body.to_plain(), "typo");
        }
        other => panic!("not an edit: {other:?}"),
    }
    alice.reply(&room_id, &original, "an answer").await;
    let reply = bot.next_matching("the reply", |e| !e.is_echo).await;
    assert_eq!(
        reply.reply_to,
        Some(MessageRef::Native(original.to_string()))
    );
    alice.react(&room_id, &original, "👍").await;
    let reaction = bot.next_matching("the reaction", |e| !e.is_echo).await;
    assert_eq!(
        reaction.kind,
        Kind::Reaction {
            target: MessageRef::Native(original.to_string()),
            emoji: "👍".into()
        }
    );
    alice
        .room(&room_id)
        .redact(&original, None, None)
        .await
        .expect("redact");
    let delete = bot.next_matching("the redaction", |e| !e.is_echo).await;
    assert_eq!(
        delete.kind,
        Kind::Delete {
            target: MessageRef::Native(original.to_string())
        }
    );

    // Gateway -> Matrix.
    let relayed = deliver(&bot, delivery(&alias, text("first"), None)).await;
    let target = MessageRef::Native(relayed.to_string());
    let edit = deliver(
        &bot,
        delivery(
            &alias,
            Kind::Edit {
                target: target.clone(),
                body: RichText::plain("first, fixed"),
            },
            None,
        ),
    )
    .await;
    let event = alice
        .wait_event(&room_id, "the relayed edit", edit.as_str())
        .await;
    assert_eq!(event["content"]["m.relates_to"]["rel_type"], "m.replace");
    assert_eq!(
        event["content"]["m.relates_to"]["event_id"],
        relayed.as_str()
    );
    assert_eq!(
        event["content"]["m.new_content"]["body"],
        "[irc] bob: first, fixed"
    );

    let answer = deliver(&bot, delivery(&alias, text("answer"), Some(target.clone()))).await;
    let event = alice
        .wait_event(&room_id, "the relayed reply", answer.as_str())
        .await;
    assert_eq!(
        event["content"]["m.relates_to"]["m.in_reply_to"]["event_id"],
        relayed.as_str()
    );

    let party = Kind::Reaction {
        target: target.clone(),
        emoji: "🎉".into(),
    };
    let reaction = deliver(&bot, delivery(&alias, party.clone(), None)).await;
    let event = alice
        .wait_event(&room_id, "the relayed reaction", reaction.as_str())
        .await;
    assert_eq!(event["content"]["m.relates_to"]["key"], "🎉");
    // The same reaction again is refused by the homeserver (a duplicate annotation): it is
    // said in words instead.
    let again = deliver(&bot, delivery(&alias, party, None)).await;
    let event = alice
        .wait_event(&room_id, "the reaction said in words", again.as_str())
        .await;
    assert_eq!(event["content"]["msgtype"], "m.notice");
    assert!(
        body_of(&event).ends_with("reacted 🎉"),
        "{:?}",
        body_of(&event)
    );

    let deleted = bot
        .deliver(delivery(&alias, Kind::Delete { target }, None))
        .await;
    assert_eq!(deleted, Delivered::default());
    alice
        .wait_for(&room_id, "the relayed redaction", |e| {
            e["type"] == "m.room.redaction"
                && (e["redacts"] == relayed.as_str() || e["content"]["redacts"] == relayed.as_str())
        })
        .await;
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_relays_what_was_said_meanwhile_exactly_once_on_the_same_device() {
    let (alice, bot_id, room_id, alias, dir, mut bot) = bot_room(synapse(), "").await;
    alice.say(&room_id, "before").await;
    bot.next_matching("'before'", |e| !e.is_echo).await;
    let session = saved_session(&dir);
    bot.stop().await;

    // Deliveries while down are retryable, not lost.
    let down = start_bot(synapse(), &bot_id, &alias, dir.path(), "");
    let early = down
        .connector
        .deliver(delivery(&alias, text("x"), None))
        .await;
    assert!(
        matches!(early, Err(DeliveryError::Retryable { .. })),
        "{early:?}"
    );
    down.stop().await;

    for n in 1..=3 {
        alice.say(&room_id, format!("while down {n}")).await;
    }
    let mut bot = start_bot(synapse(), &bot_id, &alias, dir.path(), "");
    bot.wait_up().await;
    for n in 1..=3 {
        let said = bot.next_said("a message said while down").await;
        assert_eq!(said, format!("while down {n}"));
    }
    // Nothing is relayed twice: the next event is the one sent now.
    alice.say(&room_id, "after").await;
    assert_eq!(bot.next_said("'after'").await, "after");

    // Same device as before the restart: no new login.
    assert_eq!(saved_session(&dir), session);
    let session: Value = serde_json::from_str(&session).expect("json");
    let devices = matrix_sdk::reqwest::Client::new()
        .get(format!("{}/_matrix/client/v3/devices", synapse().url()))
        .bearer_auth(session["access_token"].as_str().expect("token"))
        .send()
        .await;
    let devices = json_of(devices, "devices").await;
    // (Registration through the admin API made one device of its own, never named.)
    let ours: Vec<&Value> = devices["devices"]
        .as_array()
        .expect("devices")
        .iter()
        .filter(|d| d["display_name"] == "patchbay")
        .collect();
    assert_eq!(ours.len(), 1, "{devices}");
    assert_eq!(ours[0]["device_id"], session["device_id"]);
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn invites_are_accepted_only_from_configured_users() {
    let synapse = synapse();
    let alice = User::register(synapse, &unique("alice")).await;
    let mallory = User::register(synapse, &unique("mallory")).await;
    let bot_id = synapse.register(&unique("bot"), "password").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let extra = format!("invite_from = [\"{}\"]", alice.id);
    let mut bot = start(&bot_table(synapse, &bot_id, &[], &extra), dir.path());
    bot.wait_up().await;

    let untrusted = mallory.create_room(None, &[&bot_id], false).await;
    let trusted = alice.create_room(None, &[&bot_id], false).await;
    alice
        .wait_joined(&trusted, "the bot to accept alice's invite", &bot_id)
        .await;
    // Rooms joined by invite are named by their id.
    alice.say(&trusted, "hi bot").await;
    let inbound = bot.next_matching("alice's message", |e| !e.is_echo).await;
    assert_eq!(inbound.room, trusted.as_str());
    // Mallory's invite was seen before alice's (same sync or earlier) and left alone.
    let members = mallory
        .room(&untrusted)
        .members(matrix_sdk::RoomMemberships::JOIN)
        .await
        .expect("members");
    assert!(members.iter().all(|m| m.user_id().as_str() != bot_id));
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_downtime_is_relayed_in_full_and_in_order() {
    let (alice, bot_id, room_id, alias, dir, bot) = bot_room(synapse(), "").await;
    bot.stop().await;
    // More than one sync timeline holds (100): the rest comes from the room's history.
    const COUNT: usize = 130;
    for n in 0..COUNT {
        alice.say(&room_id, format!("backlog {n}")).await;
    }
    let mut bot = start_bot(synapse(), &bot_id, &alias, dir.path(), "");
    for n in 0..COUNT {
        let said = bot.next_said("a backlog message").await;
        assert_eq!(said, format!("backlog {n}"));
    }
    // A sync's events of one room reach the gateway as one run (one commit), not one by one.
    let calls = bot.emit_calls();
    assert!(calls < COUNT / 10, "{calls} hand-overs for {COUNT} events");
    alice.say(&room_id, "live").await;
    assert_eq!(bot.next_said("'live'").await, "live");
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_access_token_logs_in_on_its_own_device() {
    let synapse = synapse();
    let alice = User::register(synapse, &unique("alice")).await;
    let bot_name = unique("bot");
    let bot_id = synapse.register(&bot_name, "password").await;
    let login = serde_json::json!({
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": bot_name},
        "password": "password",
        "initial_device_display_name": "token device",
    });
    let response = matrix_sdk::reqwest::Client::new()
        .post(format!("{}/_matrix/client/v3/login", synapse.url()))
        .header("content-type", "application/json")
        .body(login.to_string())
        .send()
        .await;
    let login = json_of(response, "login").await;
    let token = login["access_token"].as_str().expect("token");
    let alias_name = unique("room");
    let room_id = alice.create_room(Some(&alias_name), &[], false).await;
    let alias = format!("#{alias_name}:localhost");
    let dir = tempfile::tempdir().expect("tempdir");
    let table = format!(
        "homeserver = \"{}\"\nuser = \"{bot_id}\"\naccess_token = \"{token}\"\nrooms = [\"{alias}\"]\n",
        synapse.url()
    );
    let mut bot = start(&table, dir.path());
    bot.wait_up().await;
    alice
        .wait_joined(&room_id, "the bot to join", &bot_id)
        .await;
    alice.say(&room_id, "token").await;
    assert_eq!(bot.next_said("alice's message").await, "token");
    assert_eq!(session_of(&dir)["device_id"], login["device_id"]);
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_session_logs_in_again_without_losing_messages() {
    let (alice, _bot_id, room_id, _alias, dir, mut bot) = bot_room(synapse(), "").await;
    let before = session_of(&dir);
    // Log the bot's device out behind its back.
    let status = matrix_sdk::reqwest::Client::new()
        .post(format!("{}/_matrix/client/v3/logout", synapse().url()))
        .bearer_auth(before["access_token"].as_str().expect("token"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .expect("logout")
        .status();
    assert!(status.is_success(), "{status}");
    alice.say(&room_id, "after the logout").await;
    let said = bot.next_said("the message after the logout").await;
    assert_eq!(said, "after the logout");
    assert_ne!(session_of(&dir)["device_id"], before["device_id"]);
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kicked_bot_joins_its_configured_room_again() {
    let (alice, bot_id, room_id, _alias, _dir, mut bot) = bot_room(synapse(), "").await;
    let bot_user = OwnedUserId::try_from(bot_id.as_str()).expect("user id");
    alice
        .room(&room_id)
        .kick_user(&bot_user, Some("testing"))
        .await
        .expect("kick");
    alice
        .wait_joined(&room_id, "the bot to join again", &bot_id)
        .await;
    alice.say(&room_id, "welcome back").await;
    let inbound = bot
        .next_matching("the message after the rejoin", |e| {
            !e.is_echo && matches!(e.kind, Kind::Message { .. })
        })
        .await;
    assert_eq!(
        inbound.kind.body().expect("body").to_plain(),
        "welcome back"
    );
    bot.stop().await;
}
