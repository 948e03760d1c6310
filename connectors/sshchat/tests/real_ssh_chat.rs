//! Against the real ssh-chat (`../shared/peers/ssh-chat`, 3 messages per 3 s per user):
//! bursts arrive whole and in order, and a delivery is answered `Ok` only once shown.

mod support;

use std::time::Duration;

use support::real::SshChat;
use support::{
    WAIT, burst_whole_and_in_order, heard, on_ssh_chat, relay, shown_ending, shutdown_mid_burst,
    start_up,
};

const LONG: Duration = Duration::from_secs(90);

/// How long the bridge may take to log in and enter the room: generous, because the tests of
/// this file run at once, each with its own ssh-chat, on a machine that may be busy.
const UP: std::time::Duration = std::time::Duration::from_secs(60);

#[tokio::test]
async fn relays_both_ways_and_never_emits_its_own_lines() {
    let Some(server) = SshChat::start().await else {
        return;
    };
    let alice = server.user("alice").await;
    let bridge = start_up(&on_ssh_chat(&server.ssh_addr(), ""), UP).await;
    alice.say("hello bridge").await.expect("say");
    let event = heard(&bridge.recorder, "hello bridge", "alice's line").await;
    assert_eq!(event.author.name, "alice");
    relay(&bridge, "#main", "[irc] bob", "hi from irc").await;
    shown_ending(&alice, "bridge: [irc] bob: hi from irc").await;
    alice.say("after").await.expect("say");
    heard(&bridge.recorder, "after", "alice's second line").await;
    let events = bridge.recorder.events();
    assert!(
        events.iter().all(|e| e.author.name != "bridge"),
        "{events:?}"
    );
    let announced = bridge.recorder.announced();
    assert_eq!(
        announced
            .last()
            .map(|(_, n, names)| (n.clone(), names.clone())),
        Some((
            format!("ssh-chat@{}", server.ssh_addr()),
            vec!["bridge".to_owned()]
        ))
    );
    alice.close().await;
    bridge.stop(WAIT).await.expect("stop");
}

#[tokio::test]
async fn a_burst_arrives_whole_and_in_order_under_the_rate_limit() {
    let Some(server) = SshChat::start().await else {
        return;
    };
    let watcher = server.user("watcher").await;
    let bridge = start_up(&on_ssh_chat(&server.ssh_addr(), ""), UP).await;
    burst_whole_and_in_order(&bridge, &watcher, 150).await;
    watcher.close().await;
    bridge.stop(WAIT).await.expect("stop");
}

#[tokio::test]
async fn a_shutdown_mid_burst_answers_ok_for_exactly_the_lines_shown() {
    let Some(server) = SshChat::start().await else {
        return;
    };
    let watcher = server.user("watcher").await;
    let bridge = start_up(&on_ssh_chat(&server.ssh_addr(), ""), UP).await;
    shutdown_mid_burst(bridge, &watcher, (200, 200, 12), "bridge left", LONG).await;
    watcher.close().await;
}

/// Someone already goes by the bridge's name: ssh-chat names the bot `Guest<N>` and keeps
/// showing the name asked for in its prompt. The bot's lines are still confirmed (by the echo
/// under the prompt's name), and the squatter's lines are relayed, never taken for the bot's.
#[tokio::test]
async fn a_taken_name_neither_stalls_the_bot_nor_silences_the_squatter() {
    let Some(server) = SshChat::start().await else {
        return;
    };
    let squatter = server.user("bridge").await;
    squatter
        .wait_line(WAIT, |l| l.contains("bridge joined"))
        .await
        .unwrap_or_else(|| panic!("the squatter joined: {:?}", squatter.lines()));
    let bridge = start_up(&on_ssh_chat(&server.ssh_addr(), ""), UP).await;
    let started = std::time::Instant::now();
    relay(&bridge, "#main", "[irc] bob", "from a guest").await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "confirmed at once: {:?}",
        started.elapsed()
    );
    let seen = shown_ending(&squatter, "[irc] bob: from a guest").await;
    assert!(seen.starts_with("Guest"), "{seen}");
    squatter.say("squatting").await.expect("say");
    let event = heard(
        &bridge.recorder,
        "squatting",
        "the squatter's line is relayed",
    )
    .await;
    assert_eq!(event.author.name, "bridge");
    squatter.close().await;
    bridge.stop(WAIT).await.expect("stop");
}
