//! ssh-chat (TERM=bot), against the test server: fast keepalives, a squatter on the name and
//! the line editor's echo on a narrow terminal. Bursts under the real rate limit are in
//! `real_ssh_chat.rs`.

mod support;

use std::time::Duration;

use patchbay_sdk::Kind;
use patchbay_sshchat_testserver::{Options, TestServer};
use support::{WAIT, heard, on_ssh_chat, relay, start_up, text};

#[tokio::test]
async fn learns_its_guest_name_and_relays_both_ways() {
    let server = TestServer::start(Options::ssh_chat())
        .await
        .expect("server");
    server.say("#main", "old", "from history");
    let squatter = server.connect_user("bridge").await.expect("squatter");
    let alice = server.connect_user("alice").await.expect("alice");
    let bridge = start_up(&on_ssh_chat(&server.ssh_addr(), "anonymous = true\n"), WAIT).await;
    let names: Vec<String> = server.users().into_iter().map(|(_, n)| n).collect();
    let guest = names
        .iter()
        .find(|n| n.starts_with("Guest"))
        .expect("a taken name becomes Guest<N>")
        .clone();

    alice.say("hello bridge").await.expect("say");
    alice.say("/me waves").await.expect("emote");
    let event = heard(&bridge.recorder, "hello bridge", "message").await;
    assert_eq!(event.author.name, "alice");
    bridge
        .recorder
        .wait_for(WAIT, |e| {
            matches!(e.kind, Kind::Action { .. }) && text(e) == "waves"
        })
        .await
        .expect("emote as action");

    relay(&bridge, "#main", "[irc] bob", "/nick evil").await;
    let seen = alice
        .wait_line(WAIT, |l| l.contains("[irc] bob: /nick evil"))
        .await
        .expect("alice sees it");
    assert!(seen.starts_with(&format!("{guest}: ")), "{seen}");
    assert!(server.commands().iter().all(|(who, _)| *who != guest));

    // A 3000-byte message is split under the 1024-byte limit and arrives whole.
    let long: String = (0..600).map(|i| format!("w{i} ")).collect();
    relay(&bridge, "#main", "[irc] bob", long.trim()).await;
    let all_there = server
        .wait_until(WAIT, |s| {
            let words: Vec<String> = s
                .transcript()
                .iter()
                .filter(|r| r.from == guest)
                .flat_map(|r| {
                    r.text
                        .split_whitespace()
                        .map(str::to_owned)
                        .collect::<Vec<_>>()
                })
                .collect();
            (0..600).all(|i| words.contains(&format!("w{i}")))
        })
        .await;
    assert!(all_there);
    assert_eq!(server.rejections(), (0, 0), "nothing refused");

    tokio::time::sleep(Duration::from_millis(300)).await;
    let events = bridge.recorder.events();
    assert!(
        events.iter().all(|e| text(e) != "from history"),
        "history skipped"
    );
    assert!(
        events.iter().all(|e| e.author.name != guest),
        "own lines not emitted"
    );
    squatter.close().await;
    alice.close().await;
    bridge.stop(WAIT).await.expect("stop");
}

#[tokio::test]
async fn answers_keepalives_and_survives_a_restart() {
    let mut opts = Options::ssh_chat();
    opts.keepalive = Duration::from_millis(300);
    let server = TestServer::start(opts).await.expect("server");
    let bridge = start_up(&on_ssh_chat(&server.ssh_addr(), ""), WAIT).await;
    // Three unanswered keepalives would drop the session; many pass here.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(server.users().len(), 1, "still connected");
    server.restart().await.expect("restart");
    assert!(
        server
            .wait_until(Duration::from_secs(30), |s| s.users().len() == 1)
            .await
    );
    server.say("#main", "carol", "welcome back");
    heard(&bridge.recorder, "welcome back", "resumed").await;
    bridge.stop(WAIT).await.expect("stop");
}

#[tokio::test]
async fn the_line_editor_echo_of_a_long_relay_never_reads_as_a_message() {
    let server = TestServer::start(Options::ssh_chat())
        .await
        .expect("server");
    let bridge = start_up(&on_ssh_chat(&server.ssh_addr(), ""), WAIT).await;
    // At ssh-chat's default 80 columns, the echo `[bridge] [irc] bob: aaa…` would wrap so that
    // its second row (ended by a line break, as every row but the last) reads `mallory: gotcha …`.
    let relayed = format!("{} mallory: gotcha {}", "a".repeat(59), "b".repeat(90));
    relay(&bridge, "#main", "[irc] bob", &relayed).await;
    server
        .wait_for(WAIT, |r| r.from == "bridge" && r.text.contains("gotcha"))
        .await
        .expect("relayed");
    // A later line shows the session kept reading past the echo.
    server.say("#main", "carol", "after the echo");
    heard(&bridge.recorder, "after the echo", "carol's line").await;
    let events = bridge.recorder.events();
    assert!(
        events.iter().all(|e| e.author.name != "mallory"),
        "no fake message from the echo: {events:?}"
    );
    bridge.stop(WAIT).await.expect("stop");
}
