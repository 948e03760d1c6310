//! Devzat through its gRPC plugin API, against the real Devzat (`../shared/peers/devzat`).

mod support;

use std::time::Duration;

use patchbay_sdk::{DeliveryError, Kind};
use support::real::Devzat;
use support::{WAIT, delivery, heard, relay, shown_ending, start, start_up, text};

const LONG: Duration = Duration::from_secs(60);

#[tokio::test]
async fn relays_both_ways_under_native_names_without_echo_or_commands() {
    let Some(server) = Devzat::start(true).await else {
        return;
    };
    let bridge = start_up(&server.plugin_config(&server.token), LONG).await;
    let alice = server.user("alice").await;
    bridge
        .recorder
        .wait_for(WAIT, |e| e.author.name == "alice" && e.kind == Kind::Join)
        .await
        .expect("her join, as a join");
    alice.say("hello **world**").await.expect("say");
    let event = bridge
        .recorder
        .wait_for(WAIT, |e| {
            e.author.name == "alice" && matches!(e.kind, Kind::Message { .. })
        })
        .await
        .expect("alice's message");
    assert_eq!(event.room, "#main");
    assert_eq!(text(&event), "hello world");

    relay(&bridge, "#main", "[irc] bob", "hi from irc").await;
    shown_ending(&alice, "[irc] bob: hi from irc").await;
    // A relayed command word is shown, not run (`shrug` would show as the shrug).
    relay(&bridge, "#main", "[irc] bob", "shrug").await;
    shown_ending(&alice, "[irc] bob: shrug").await;
    alice.say("last").await.expect("say");
    heard(&bridge.recorder, "last", "alice's last line").await;
    let events = bridge.recorder.events();
    assert!(
        events
            .iter()
            .all(|e| !e.author.name.contains("bob") && !text(e).contains("hi from irc")),
        "own messages never emitted: {events:?}"
    );
    // The hop trace marks the relayed lines as ours, so the names they go under are not
    // announced: a real user called `[irc] bob` elsewhere on the server stays a user.
    let announced = bridge.recorder.announced();
    assert!(
        !announced
            .iter()
            .any(|(_, _, names)| names.contains(&"[irc] bob".to_owned())),
        "relay names are not announced with the hop trace on: {announced:?}"
    );
    alice.close().await;
    bridge.stop(WAIT).await.expect("stop");
}

#[tokio::test]
async fn unknown_room_is_permanent_and_wrong_token_is_a_clear_error() {
    let Some(server) = Devzat::start(true).await else {
        return;
    };
    let bridge = start_up(&server.plugin_config(&server.token), LONG).await;
    let err = bridge
        .deliver(delivery("#nowhere", "x", "hello"))
        .await
        .expect_err("no such room");
    assert!(
        matches!(&err, DeliveryError::Permanent { reason } if reason.contains("Room does not exist")),
        "{err:?}"
    );
    bridge.stop(WAIT).await.expect("stop");

    let wrong = start(&server.plugin_config("dvz@wrong"));
    let result = tokio::time::timeout(WAIT, wrong.task)
        .await
        .expect("stops by itself")
        .expect("task");
    let err = result.expect_err("a wrong token is fatal");
    let said = err.to_string();
    assert!(said.contains("refused the plugin token"), "{said}");
    assert!(said.contains("Invalid authorization header"), "{said}");
}

#[tokio::test]
async fn reconnects_after_a_server_restart_and_resumes() {
    let Some(mut server) = Devzat::start(false).await else {
        return;
    };
    let mut bridge = start_up(&server.plugin_config(&server.token), LONG).await;
    server.kill().await;
    bridge
        .state
        .wait_for(|s| *s != patchbay_sdk::ConnectorState::Up)
        .await
        .expect("the listener noticed");
    server.restart().await;
    assert!(bridge.wait_up(LONG).await, "{:?}", *bridge.state.borrow());
    let carol = server.user("carol").await;
    carol.say("after the restart").await.expect("say");
    heard(&bridge.recorder, "after the restart", "events flow again").await;
    bridge
        .deliver(delivery("#main", "[irc] dan", "still here"))
        .await
        .expect("delivered after the restart");
    shown_ending(&carol, "[irc] dan: still here").await;
    carol.close().await;
    bridge.stop(WAIT).await.expect("stop");
}

#[tokio::test]
async fn room_moves_are_joins_and_parts_of_their_rooms() {
    let Some(server) = Devzat::start(true).await else {
        return;
    };
    let bridge = start_up(&server.plugin_config(&server.token), LONG).await;
    let ann = server.user("ann").await;
    ann.say("cd #dev").await.expect("cd");
    bridge
        .recorder
        .wait_for(WAIT, |e| {
            e.room == "#dev" && e.author.name == "ann" && e.kind == Kind::Join
        })
        .await
        .unwrap_or_else(|| panic!("ann joined #dev: {:?}", bridge.recorder.events()));
    bridge
        .recorder
        .wait_for(WAIT, |e| {
            e.room == "#main" && e.author.name == "ann" && matches!(e.kind, Kind::Part { .. })
        })
        .await
        .unwrap_or_else(|| panic!("ann left #main: {:?}", bridge.recorder.events()));
    ann.say("hello dev").await.expect("say");
    let event = heard(&bridge.recorder, "hello dev", "her message in #dev").await;
    assert_eq!(event.room, "#dev");
    let events = bridge.recorder.events();
    assert!(
        events.iter().all(|e| !text(e).starts_with("cd ")),
        "her `cd #dev` is not chat: {events:?}"
    );
    ann.close().await;
    bridge.stop(WAIT).await.expect("stop");
}
