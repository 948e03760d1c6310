//! Devzat over SSH (no plugin token), against the test server: what the real Devzat cannot
//! be made to show on demand (a squatter on the name, narrow terminals, timestamps before every
//! line, another gateway's hop trace). Bursts under the real anti-spam are in `real_devzat.rs`.

mod support;

use std::time::Duration;

use patchbay_sdk::Kind;
use patchbay_sshchat_testserver::format::visible;
use patchbay_sshchat_testserver::{Options, TestServer};
use support::{WAIT, delivery, heard, over_ssh, relay, shown_ending, start, start_up, text};

#[tokio::test]
async fn mirrors_two_rooms_skipping_history_and_own_echo() {
    let server = TestServer::start(Options::devzat()).await.expect("server");
    // History from before the bridge joined must not be relayed.
    server.say("#main", "old", "ancient history");
    // Someone already uses the bridge's name: it must answer the name prompt.
    let squatter = server.connect_user("bridge").await.expect("squatter");
    let alice = server.connect_user("alice").await.expect("alice");

    let mut bridge = start(&over_ssh(
        &server,
        "bridge",
        "rooms = [\"#main\", \"#dev\"]\n",
    ));
    assert!(
        bridge.wait_up(Duration::from_secs(30)).await,
        "both rooms up"
    );
    let names: Vec<String> = server.users().into_iter().map(|(_, n)| n).collect();
    assert!(names.contains(&"bridge1".to_string()), "{names:?}");

    alice.say("hi **there** :tada:").await.expect("say");
    let event = bridge
        .recorder
        .wait_for(WAIT, |e| {
            e.author.name == "alice" && matches!(e.kind, Kind::Message { .. })
        })
        .await
        .expect("alice's message");
    assert_eq!(event.room, "#main");
    assert_eq!(text(&event), "hi there 🎉");

    // Relayed into #dev: a #dev user sees it, under the bot's name.
    let dave = server.connect_user("dave").await.expect("dave");
    dave.say("cd #dev").await.expect("cd");
    relay(&bridge, "#dev", "[irc] bob", "hello dev").await;
    let seen = shown_ending(&dave, "[irc] bob: hello dev").await;
    assert!(seen.starts_with("bridge"), "{seen}");
    // dave's message in #dev arrives as a #dev event.
    dave.say("from dev").await.expect("say");
    let event = heard(&bridge.recorder, "from dev", "dev message").await;
    assert_eq!(event.room, "#dev");

    // A relayed command word is neutralised.
    relay(&bridge, "#main", "", "cd #elsewhere").await;
    alice
        .wait_line(WAIT, |l| l.contains("cd #elsewhere"))
        .await
        .expect("shown");

    tokio::time::sleep(Duration::from_millis(500)).await;
    let events = bridge.recorder.events();
    assert!(
        events.iter().all(|e| text(e) != "ancient history"),
        "history skipped"
    );
    assert!(
        events.iter().all(|e| !e.author.name.starts_with("bridge")),
        "own lines (echo, cd, joins) never emitted: {events:?}"
    );
    assert!(
        events.iter().all(|e| !text(e).contains("hello dev")),
        "own relays never emitted"
    );
    let bridge_cmds: Vec<_> = server
        .commands()
        .into_iter()
        .filter(|(who, line)| who.starts_with("bridge") && line != "cd #dev")
        .collect();
    assert!(bridge_cmds.is_empty(), "{bridge_cmds:?}");
    squatter.close().await;
    alice.close().await;
    dave.close().await;
    bridge.stop(WAIT).await.expect("stop");
}

#[tokio::test]
async fn wrapped_lines_timestamps_and_dms_on_a_narrow_terminal() {
    let mut opts = Options::devzat();
    // A timestamp line before every message, as after a minute of silence.
    opts.timestamp_after = Duration::ZERO;
    let server = TestServer::start(opts).await.expect("server");
    let bridge = start_up(&over_ssh(&server, "bridge", "pty_width = 80\n"), WAIT).await;
    let alice = server.connect_user("alice").await.expect("alice");
    let long: Vec<String> = (0..40).map(|i| format!("word{i}")).collect();
    let long = long.join(" ");
    alice.say(&long).await.expect("say");
    let event = bridge
        .recorder
        .wait_for(WAIT, |e| text(e).starts_with("word0"))
        .await
        .expect("long message");
    assert!(text(&event).contains('\n'), "it was wrapped at 80 columns");
    assert_eq!(text(&event).replace('\n', " "), long, "reassembled whole");
    // With a timestamp drawn over the typed echo before the server's copy (as after a minute
    // of silence), the copy still confirms the line: the delivery is answered at once.
    let started = std::time::Instant::now();
    relay(&bridge, "#main", "[irc] bob", "after the silence").await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "confirmed without waiting for a timeout: {:?}",
        started.elapsed()
    );
    alice.say("=bridge a secret").await.expect("dm");
    alice.say("after the dm").await.expect("say");
    heard(&bridge.recorder, "after the dm", "next message").await;
    let events = bridge.recorder.events();
    assert!(
        events.iter().all(|e| !text(e).contains("secret")),
        "DMs are not relayed"
    );
    assert!(
        events
            .iter()
            .all(|e| !text(e).contains(":") || text(e).contains("word")),
        "no timestamp emitted: {events:?}"
    );
    alice.close().await;
    bridge.stop(WAIT).await.expect("stop");
}

#[tokio::test]
async fn long_relays_on_a_narrow_terminal_never_echo_back_as_fake_messages() {
    let server = TestServer::start(Options::devzat()).await.expect("server");
    let bridge = start_up(&over_ssh(&server, "bridge", "pty_width = 80\n"), WAIT).await;
    // Text whose echo, wrapped at 80 columns after `bridge: [irc] bob: ` (19 columns), would
    // start its second row with `mallory: gotcha`: a fake message from mallory.
    let fakes: Vec<String> = (0..12).map(|i| format!("fake{i}")).collect();
    let text = format!("{} mallory: gotcha {}", "a".repeat(60), fakes.join(" "));
    relay(&bridge, "#main", "[irc] bob", text.trim()).await;
    let complete = server
        .wait_until(WAIT, |s| {
            let words: Vec<String> = s
                .transcript()
                .iter()
                .filter(|r| r.from == "bridge")
                .flat_map(|r| {
                    visible(&r.text)
                        .split_whitespace()
                        .map(str::to_owned)
                        .collect::<Vec<_>>()
                })
                .collect();
            words.contains(&"gotcha".to_owned())
                && (0..12).all(|i| words.contains(&format!("fake{i}")))
        })
        .await;
    assert!(complete, "{:?}", server.transcript());
    assert!(
        server
            .transcript()
            .iter()
            .filter(|r| r.from == "bridge")
            .all(|r| r.text.len() <= 80),
        "each typed line fits the terminal row"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        bridge.recorder.events().is_empty(),
        "nothing of the bot's own typing came back: {:?}",
        bridge.recorder.events()
    );
    bridge.stop(WAIT).await.expect("stop");
}

#[tokio::test]
async fn another_gateways_hop_trace_is_restored_and_its_marks_removed() {
    let server = TestServer::start(Options::devzat()).await.expect("server");
    let mut sender = start(&over_ssh(&server, "relay-a", ""));
    let mut reader = start(&over_ssh(&server, "relay-b", ""));
    assert!(sender.wait_up(WAIT).await && reader.wait_up(WAIT).await);
    let mut relayed = delivery("#main", "[irc] bob", "hop along");
    let hop = patchbay_sdk::Hop {
        gateway: "gw-a".into(),
        route: "bridge".into(),
    };
    relayed.event.hops.push(hop.clone());
    sender.deliver(relayed).await.expect("delivered");
    let event = reader
        .recorder
        .wait_for(WAIT, |e| text(e).contains("hop along"))
        .await
        .expect("the other bot's relay");
    assert_eq!(event.author.name, "relay-a");
    assert_eq!(
        text(&event),
        "[irc] bob: hop along",
        "no invisible marks left"
    );
    assert_eq!(event.hops, vec![hop]);
    sender.stop(WAIT).await.expect("stop");
    reader.stop(WAIT).await.expect("stop");
}
