//! Ghosts against a real Synapse: renames, joins and parts, hostile names, avatars, and the
//! relations between Matrix users and ghosts (replies, reactions).

mod support;

use matrix_sdk::ruma::OwnedEventId;
use patchbay_sdk::{Author, Delivery, Kind, MessageRef};
use support::appservice::{Bridge, fixture, setup};
use support::{is_member, relayed, text};

async fn deliver(bridge: &Bridge, delivery: Delivery) -> Option<String> {
    bridge.running.deliver(delivery).await.remote_id
}

/// What `nick` did on IRC (`irc.libera`) in `room`, delivered to the bridge.
async fn from_irc(bridge: &Bridge, room: &str, nick: &str, kind: Kind) -> Option<String> {
    deliver(
        bridge,
        relayed("irc.libera", room, Author::named(nick), kind),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_parts_and_nick_changes_move_and_rename_the_ghost() {
    let slot = &fixture().slots[0];
    let (alice, bridge, room_id) = setup(slot).await;
    let room = room_id.to_string();
    let erin = format!("@{}irc_libera_erin:localhost", slot.prefix);

    from_irc(&bridge, &room, "erin", Kind::Join).await;
    let joined = alice
        .wait_joined(&room_id, "erin's ghost to join", &erin)
        .await;
    assert_eq!(joined["content"]["displayname"], "[irc] erin");

    // IRC names the old nick as the author of a nick change.
    let rename = Kind::Nick {
        old: "erin".into(),
        new: "erin_away".into(),
    };
    from_irc(&bridge, &room, "erin", rename).await;
    let renamed = alice
        .wait_for(&room_id, "the ghost's new name", |e| {
            is_member(e, &erin, "join") && e["content"]["displayname"] == "[irc] erin_away"
        })
        .await;
    assert_eq!(renamed["sender"], erin.as_str());

    // The new nick speaks as the same ghost.
    from_irc(&bridge, &room, "erin_away", text("brb")).await;
    let message = alice
        .wait_for(&room_id, "the renamed author's line", |e| {
            e["type"] == "m.room.message" && e["content"]["body"] == "brb"
        })
        .await;
    assert_eq!(message["sender"], erin.as_str());

    let part = Kind::Part {
        reason: Some("bye".into()),
    };
    from_irc(&bridge, &room, "erin_away", part).await;
    alice
        .wait_for(&room_id, "erin's ghost to leave", |e| {
            is_member(e, &erin, "leave")
        })
        .await;
    bridge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_name_becomes_a_valid_ghost_and_relations_work_both_ways() {
    let slot = &fixture().slots[1];
    let (alice, bridge, room_id) = setup(slot).await;
    let room = room_id.to_string();
    let hostile = format!("Évil Nick: @admin:localhost {}", "ß".repeat(300));
    let sent = from_irc(&bridge, &room, &hostile, text("hi there"))
        .await
        .expect("an event id");
    let message = alice
        .wait_for(&room_id, "the hostile author's line", |e| {
            e["type"] == "m.room.message" && e["content"]["body"] == "hi there"
        })
        .await;
    let ghost = message["sender"].as_str().expect("sender").to_owned();
    assert!(
        ghost.starts_with(&format!("@{}irc_libera_=c3=89vil", slot.prefix)),
        "{ghost}"
    );
    assert!(ghost.len() <= 255, "{}", ghost.len());

    // Alice replies to the ghost's message and reacts to it: both reach the gateway with
    // the ghost's event as their target.
    let target = OwnedEventId::try_from(sent.as_str()).expect("event id");
    let reply_id = alice.reply(&room_id, &target, "welcome").await;
    alice.react(&room_id, &target, "👋").await;
    let mut running = bridge.running;
    let inbound = running
        .next_matching("alice's reply", |e| {
            e.author.id == alice.id && matches!(e.kind, Kind::Message { .. })
        })
        .await;
    assert_eq!(inbound.reply_to, Some(MessageRef::Native(sent.clone())));
    let reaction = running
        .next_matching("alice's reaction", |e| {
            matches!(e.kind, Kind::Reaction { .. })
        })
        .await;
    assert!(matches!(
        &reaction.kind,
        Kind::Reaction { target, emoji } if *target == MessageRef::Native(sent.clone()) && emoji == "👋"
    ));

    // The ghost reacts to Alice's reply.
    let react = Kind::Reaction {
        target: MessageRef::Native(reply_id.to_string()),
        emoji: "👍".into(),
    };
    let reaction = relayed("irc.libera", &room, Author::named(hostile), react);
    running.deliver(reaction.clone()).await;
    let annotation = alice
        .wait_for(&room_id, "the ghost's reaction", |e| {
            e["type"] == "m.reaction" && e["sender"] == ghost.as_str()
        })
        .await;
    assert_eq!(
        annotation["content"]["m.relates_to"]["event_id"],
        reply_id.as_str()
    );
    // The same reaction again is refused by the homeserver (a duplicate annotation): the
    // ghost says it in words instead.
    let mut again = reaction;
    again.event.id = patchbay_sdk::EventId::new();
    running.deliver(again).await;
    let notice = alice
        .wait_for(&room_id, "the reaction said in words", |e| {
            e["sender"] == ghost.as_str() && e["content"]["msgtype"] == "m.notice"
        })
        .await;
    let body = notice["content"]["body"].as_str().unwrap_or_default();
    assert!(body.contains("reacted 👍"), "{body:?}");
    running.stop().await;
}

/// A one-file HTTP server for an avatar; returns its URL.
async fn serve_avatar() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let app = axum::Router::new().route(
        "/avatar.png",
        axum::routing::get(|| async {
            (
                [(axum::http::header::CONTENT_TYPE, "image/png")],
                vec![0x89u8, b'P', b'N', b'G', 13, 10, 26, 10, 0, 0, 0, 0],
            )
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://127.0.0.1:{port}/avatar.png")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_author_appears_with_their_avatar() {
    let slot = &fixture().slots[2];
    let (alice, bridge, room_id) = setup(slot).await;
    let room = room_id.to_string();
    let author = Author {
        id: "ci".into(),
        name: "CI".into(),
        avatar: Some(serve_avatar().await),
        is_bot: true,
        is_system: false,
    };
    deliver(
        &bridge,
        relayed("webhook.builds", &room, author, text("build passed")),
    )
    .await;
    let ghost = format!("@{}webhook_builds_ci:localhost", slot.prefix);
    let joined = alice
        .wait_joined(&room_id, "the webhook ghost to join", &ghost)
        .await;
    assert_eq!(joined["content"]["displayname"], "[webhook] CI");
    let avatar = joined["content"]["avatar_url"].as_str().unwrap_or_default();
    assert!(avatar.starts_with("mxc://localhost/"), "{joined}");
    alice
        .wait_for(&room_id, "the webhook line", |e| {
            e["sender"] == ghost.as_str() && e["content"]["body"] == "build passed"
        })
        .await;
    bridge.stop().await;
}
