//! The connector against ergo: catch-up that pages `CHATHISTORY` to the present, history
//! replays without server bookkeeping, deliveries that wait for the join, and echoes matched
//! by label.

mod support;

use std::time::Duration;

use patchbay_sdk::{Kind, RichText};
use support::*;

macro_rules! require_ergo {
    () => {
        if !ergo_available() {
            return;
        }
    };
}

fn config(port: u16, channel: &str, extra: &str) -> String {
    format!(
        "server = \"127.0.0.1\"\nport = {port}\nnick = \"pb\"\nchannels = [\"{channel}\"]\n\
         reconnect_min_secs = 0.3\nreconnect_max_secs = 2\nflood_control = false\n{extra}"
    )
}

#[tokio::test]
async fn catch_up_after_a_restart_pages_to_the_present_exactly_once_in_order() {
    require_ergo!();
    // 100 messages per CHATHISTORY request, as ergo's default config advertises it.
    let server = Ergo::start(100).await;
    let data = tempdir();
    let mut alice = TestClient::connect(server.port, "alice").await;
    alice.join("#pages").await;
    let mut carol = TestClient::connect(server.port, "carol").await;
    carol.join("#pages").await;
    let mut bridge = start_connector(&config(server.port, "#pages", ""), data.path());
    bridge.wait_up().await;
    alice.expect_join("pb", "#pages").await;
    alice.send("PRIVMSG #pages :before").await;
    assert_eq!(bridge.events.wait_texts("#pages", 1).await, vec!["before"]);
    bridge.stop().await;

    // 320 lines while the bridge is away: four pages of history.
    const DOWN: usize = 320;
    for i in 0..DOWN {
        alice.send(&format!("PRIVMSG #pages :down {i}")).await;
    }
    carol
        .expect_privmsg("#pages", &format!("down {}", DOWN - 1))
        .await;

    // Alice keeps talking (a line every 5 ms) while the bridge comes back and catches up.
    const LIVE: usize = 200;
    let mut bridge = start_connector(&config(server.port, "#pages", ""), data.path());
    let talker = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(5));
        for i in 0..LIVE {
            tick.tick().await;
            alice.send(&format!("PRIVMSG #pages :live {i}")).await;
        }
        alice.send("PRIVMSG #pages :end").await;
        alice
    });
    bridge.wait_up().await;
    let _alice = talker.await.expect("talker");
    let mut expected: Vec<String> = (0..DOWN).map(|i| format!("down {i}")).collect();
    expected.extend((0..LIVE).map(|i| format!("live {i}")));
    expected.push("end".into());
    let texts = bridge.events.wait_texts("#pages", expected.len()).await;
    let first_difference = texts.iter().zip(&expected).position(|(a, b)| a != b);
    assert_eq!(
        (texts.len(), first_difference),
        (expected.len(), None),
        "lines relayed after the restart: {texts:?}"
    );
    bridge.stop().await;
}

#[tokio::test]
async fn a_restart_relays_no_histserv_lines_and_only_others_joins_and_quits() {
    require_ergo!();
    let server = Ergo::start(100).await;
    let data = tempdir();
    let mut alice = TestClient::connect(server.port, "alice").await;
    alice.join("#book").await;
    let mut bridge = start_connector(&config(server.port, "#book", ""), data.path());
    bridge.wait_up().await;
    alice.expect_join("pb", "#book").await;
    alice.send("PRIVMSG #book :first").await;
    assert_eq!(bridge.events.wait_texts("#book", 1).await, vec!["first"]);
    bridge.stop().await;

    // While the bridge is away, carol comes, speaks and quits.
    let mut carol = TestClient::connect(server.port, "carol").await;
    carol.join("#book").await;
    carol.send("PRIVMSG #book :hi from carol").await;
    alice.expect_privmsg("#book", "hi from carol").await;
    carol.send("QUIT :gone").await;
    alice
        .expect("carol's quit", |cmd, _, p| {
            cmd == "QUIT" && p.source.as_ref().is_some_and(|s| s.nick == "carol")
        })
        .await;

    let mut bridge = start_connector(&config(server.port, "#book", ""), data.path());
    bridge.wait_up().await;
    alice.expect_join("pb", "#book").await;
    alice.send("PRIVMSG #book :after").await;
    assert_eq!(
        bridge.events.wait_texts("#book", 2).await,
        vec!["hi from carol", "after"]
    );
    let events = bridge.events.all();
    for e in &events {
        assert!(
            !e.author.name.eq_ignore_ascii_case("HistServ"),
            "a HistServ line was relayed: {e:?}"
        );
        if let Some(body) = e.kind.body() {
            let text = body.to_plain();
            assert!(
                !text.contains("joined the channel") && !text.contains(" quit"),
                "bookkeeping relayed as chat: {e:?}"
            );
        }
        assert!(
            !(e.author.name == "pb" && matches!(e.kind, Kind::Join | Kind::Part { .. })),
            "our own join or quit was relayed: {e:?}"
        );
    }
    // Carol's comings and goings come as what they are (routes relay them only if asked), in
    // the order they happened.
    let carol: Vec<&Kind> = events
        .iter()
        .filter(|e| e.author.name == "carol")
        .map(|e| &e.kind)
        .collect();
    assert!(
        matches!(
            carol.as_slice(),
            [Kind::Join, Kind::Message { .. }, Kind::Part { reason: Some(r) }] if r.contains("gone")
        ),
        "carol's events: {carol:?}"
    );
    bridge.stop().await;
}

#[tokio::test]
async fn deliveries_made_before_the_join_completes_wait_for_it() {
    require_ergo!();
    let server = Ergo::start(100).await;
    let data = tempdir();
    let mut alice = TestClient::connect(server.port, "alice").await;
    alice.join("#soon").await;
    alice.join("#later").await;
    let mut bridge = start_connector(&config(server.port, "#soon", ""), data.path());
    // Up comes at registration, when the JOIN of #soon has only just been sent; #later is not
    // configured at all and is joined for the delivery.
    bridge.wait_up().await;
    for (room, text) in [("#soon", "early bird"), ("#later", "joined on demand")] {
        let result = bridge
            .connector
            .deliver(delivery(room, "bob", RichText::plain(text)))
            .await;
        assert!(
            result.is_ok(),
            "the first try to {room} answered {result:?}"
        );
        alice.expect_privmsg(room, text).await;
    }
    bridge.stop().await;
}

#[tokio::test]
async fn echoes_are_matched_by_label_when_the_server_rewrites_the_text() {
    require_ergo!();
    let server = Ergo::start(100).await;
    // Everything ergo sends the bridge has "colour" turned into "color".
    let rewriter = Rewriter::new(server.port, "colour", "color").await;
    let data = tempdir();
    let mut alice = TestClient::connect_with_caps(server.port, "alice", &["message-tags"]).await;
    alice.join("#label").await;
    // Text matching alone would wait the whole minute for an echo that never matches.
    let mut bridge = start_connector(
        &config(rewriter.port, "#label", "echo_timeout_secs = 60"),
        data.path(),
    );
    bridge.wait_up().await;
    alice.expect_join("pb", "#label").await;
    let delivered = tokio::time::timeout(
        TIMEOUT,
        bridge.connector.deliver(delivery(
            "#label",
            "bob",
            RichText::plain("the colour of money"),
        )),
    )
    .await
    .expect("the delivery is answered by its labeled echo, not the echo timeout")
    .expect("delivered");
    let seen = alice
        .expect("bob's line", |cmd, params, _| {
            cmd == "PRIVMSG" && params.get(1).is_some_and(|t| t.contains("colour of money"))
        })
        .await;
    assert!(delivered.remote_id.is_some(), "no msgid from the echo");
    assert_eq!(delivered.remote_id, seen.tags.msgid);
    bridge.stop().await;
}
