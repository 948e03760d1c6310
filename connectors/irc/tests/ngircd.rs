//! The connector against ngircd: classic RFC behaviour, no IRCv3 capabilities.

mod support;

use std::time::{Duration, Instant};

use patchbay_sdk::text::{Span, Style};
use patchbay_sdk::{ConnectorState, Kind, RichText};
use support::*;

/// The bridge's table: [`support::config`] in `#test`, rejoining 0.3 s after a kick.
fn config(port: u16, extra: &str) -> String {
    support::config(port, "#test", &format!("rejoin_delay_secs = 0.3\n{extra}"))
}

#[tokio::test]
async fn relays_messages_actions_and_membership_both_ways() {
    require!("ngircd");
    let server = IrcServer::ngircd().await;
    let data = tempdir();
    let mut alice = TestClient::connect_in(server.port, "alice", "#test").await;
    let bridge = start_up(&config(server.port, ""), data.path()).await;
    alice.expect_join("pb", "#test").await;

    // IRC → gateway, with formatting.
    alice.send("PRIVMSG #test :hello \x02world\x02").await;
    let event = bridge
        .recorder
        .wait_for(TIMEOUT, |e| matches!(e.kind, Kind::Message { .. }))
        .await
        .expect("alice's message");
    assert_eq!(event.room, "#test");
    assert_eq!(event.author.name, "alice");
    let body = event.kind.body().expect("body");
    assert_eq!(body.to_plain(), "hello world");
    assert!(
        body.spans()
            .iter()
            .any(|s| s.text == "world" && s.style.bold)
    );
    alice.send("PRIVMSG #test :\x01ACTION waves\x01").await;
    bridge
        .recorder
        .wait_for(
            TIMEOUT,
            |e| matches!(&e.kind, Kind::Action { body } if body.to_plain() == "waves"),
        )
        .await
        .expect("alice's action");

    // Gateway → IRC: anti-highlighted nick, formatting kept.
    let rich = RichText::from_spans(vec![
        Span::text("hi "),
        Span::styled(
            "there",
            Style {
                italic: true,
                ..Style::default()
            },
        ),
    ]);
    deliver(&bridge.connector, delivery("#test", "bob", rich)).await;
    let text = alice.expect_privmsg("#test", "there").await;
    assert_eq!(text, "<b\u{200B}ob> hi \x1dthere\x0f");

    // Membership changes become events.
    let mut carol = TestClient::connect_in(server.port, "carol", "#test").await;
    bridge
        .recorder
        .wait_for(TIMEOUT, |e| {
            e.kind == Kind::Join && e.author.name == "carol"
        })
        .await
        .expect("carol's join");
    carol.send("NICK carol2").await;
    bridge
        .recorder
        .wait_for(
            TIMEOUT,
            |e| matches!(&e.kind, Kind::Nick { old, new } if old == "carol" && new == "carol2"),
        )
        .await
        .expect("carol's nick change");
    carol.send("QUIT :bye").await;
    bridge
        .recorder
        .wait_for(TIMEOUT, |e| {
            matches!(&e.kind, Kind::Part { reason: Some(r) } if r.contains("bye"))
                && e.author.name == "carol2"
        })
        .await
        .expect("carol's quit");
    let _ = bridge.stop(TIMEOUT).await;
}

#[tokio::test]
async fn nick_in_use_takes_the_alternative() {
    require!("ngircd");
    let server = IrcServer::ngircd().await;
    let data = tempdir();
    let mut squatter = TestClient::connect_in(server.port, "pb", "#test").await;
    let bridge = start_up(&config(server.port, "regain_nick_secs = 0.3"), data.path()).await;
    squatter.expect_join("pb_", "#test").await;
    // Once the nick is free the bridge takes it back.
    let mut watcher = TestClient::connect_in(server.port, "watcher", "#test").await;
    squatter.send("QUIT :bye").await;
    watcher
        .expect("the bridge taking its nick back", |cmd, params, p| {
            cmd == "NICK"
                && p.source.as_ref().is_some_and(|s| s.nick == "pb_")
                && params.first().is_some_and(|n| n == "pb")
        })
        .await;
    relay(&bridge, "#test", "as pb").await;
    let line = watcher
        .expect("the next message", |cmd, _, _| cmd == "PRIVMSG")
        .await;
    assert_eq!(line.source.map(|s| s.nick).as_deref(), Some("pb"));
    let _ = bridge.stop(TIMEOUT).await;
}

#[tokio::test]
async fn rejoins_after_a_kick() {
    require!("ngircd");
    let server = IrcServer::ngircd().await;
    let data = tempdir();
    let mut op = TestClient::connect_in(server.port, "op", "#test").await;
    let bridge = start_up(&config(server.port, ""), data.path()).await;
    op.expect_join("pb", "#test").await;
    op.send("KICK #test pb :go away").await;
    op.expect_join("pb", "#test").await;
    // Deliveries still flow after the rejoin.
    relay(&bridge, "#test", "back again").await;
    op.expect_privmsg("#test", "back again").await;
    let _ = bridge.stop(TIMEOUT).await;
}

#[tokio::test]
async fn server_restart_mid_stream_delivers_everything_in_order_once() {
    require!("ngircd");
    let mut server = IrcServer::ngircd().await;
    let data = tempdir();
    // The bridge goes through a gate so that alice is back in the channel before it is
    // (ngircd keeps no history for her to catch up from).
    let gate = Gate::new(server.port).await;
    let mut bridge = start_up(&config(gate.port, ""), data.path()).await;
    let mut alice = TestClient::connect_in(server.port, "alice", "#test").await;
    for i in 0..3 {
        relay(&bridge, "#test", format!("before {i}")).await;
    }
    for i in 0..3 {
        alice.expect_privmsg("#test", &format!("before {i}")).await;
    }

    gate.set_open(false);
    server.stop();
    assert!(
        bridge
            .wait_state(TIMEOUT, |s| {
                matches!(s, ConnectorState::Down { .. } | ConnectorState::Connecting)
            })
            .await,
        "down"
    );
    // The gateway keeps delivering while the server is down; the connector refuses as
    // retryable and the worker retries in order.
    let connector = bridge.connector.clone();
    let sender = tokio::spawn(async move {
        for i in 0..10 {
            deliver(
                &connector,
                delivery("#test", "bob", RichText::plain(format!("during {i}"))),
            )
            .await;
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.start().await;
    let mut alice = TestClient::connect_in(server.port, "alice", "#test").await;
    gate.set_open(true);
    assert!(bridge.wait_up(TIMEOUT).await, "the connector is up");
    sender.await.expect("sender");
    for i in 0..10 {
        alice.expect_privmsg("#test", &format!("during {i}")).await;
    }
    // And nothing twice: a marker after the last shows the stream ended.
    relay(&bridge, "#test", "end marker").await;
    let next = alice
        .expect("the next message", |cmd, _, _| cmd == "PRIVMSG")
        .await;
    let (_, params) = patchbay_irc::parse::command_params(&next.message);
    assert!(
        params[1].contains("end marker"),
        "unexpected extra line {params:?}"
    );
    let _ = bridge.stop(TIMEOUT).await;
}

#[tokio::test]
async fn long_multibyte_message_arrives_complete_and_in_order() {
    require!("ngircd");
    let server = IrcServer::ngircd().await;
    let data = tempdir();
    let bridge = start_up(
        &config(
            server.port,
            "anti_highlight = \"\"\nflood_rate = 20.0\nflood_burst = 10",
        ),
        data.path(),
    )
    .await;
    let mut alice = TestClient::connect_in(server.port, "alice", "#test").await;
    let text: String = "ÄÖÜ漢字テスト🎉é".chars().cycle().take(3000).collect();
    relay(&bridge, "#test", text.clone()).await;
    let mut received = String::new();
    while received.chars().count() < 3000 {
        let line = alice.expect_privmsg("#test", "<bob> ").await;
        received.push_str(line.strip_prefix("<bob> ").expect("nick prefix"));
    }
    assert_eq!(received, text);
    let _ = bridge.stop(TIMEOUT).await;
}

#[tokio::test]
async fn latin1_lines_are_decoded() {
    require!("ngircd");
    let server = IrcServer::ngircd().await;
    let data = tempdir();
    let bridge = start_up(&config(server.port, ""), data.path()).await;
    let mut alice = TestClient::connect_in(server.port, "alice", "#test").await;
    alice.wait_member("#test", "pb").await;
    alice.send_raw(b"PRIVMSG #test :caf\xe9 cr\xe8me\r\n").await;
    alice.send("PRIVMSG #test :still alive").await;
    heard(&bridge.recorder, "café crème").await;
    heard(&bridge.recorder, "still alive").await;
    let _ = bridge.stop(TIMEOUT).await;
}

#[tokio::test]
async fn flood_control_queues_and_never_drops() {
    require!("ngircd");
    let server = IrcServer::ngircd().await;
    let data = tempdir();
    let bridge = start_up(
        &config(server.port, "flood_burst = 3\nflood_rate = 10.0"),
        data.path(),
    )
    .await;
    let mut alice = TestClient::connect_in(server.port, "alice", "#test").await;
    let started = Instant::now();
    let text = (0..13)
        .map(|i| format!("line {i}"))
        .collect::<Vec<_>>()
        .join("\n");
    relay(&bridge, "#test", text).await;
    for i in 0..13 {
        alice.expect_privmsg("#test", &format!("line {i}")).await;
    }
    // 3 at once, then 10 more at 10 per second.
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    let _ = bridge.stop(TIMEOUT).await;
}

#[tokio::test]
async fn ping_timeout_is_detected_and_the_bridge_reconnects() {
    require!("ngircd");
    let server = IrcServer::ngircd().await;
    let data = tempdir();
    let mut bridge = start_up(
        &config(
            server.port,
            "ping_interval_secs = 0.5\nping_timeout_secs = 1.5\nconnect_timeout_secs = 2",
        ),
        data.path(),
    )
    .await;
    server.signal("STOP");
    expect_down(&mut bridge, "down on ping timeout", |r| {
        r.contains("ping timeout")
    })
    .await;
    server.signal("CONT");
    assert!(bridge.wait_up(TIMEOUT).await, "the connector is up");
    let mut alice = TestClient::connect_in(server.port, "alice", "#test").await;
    relay(&bridge, "#test", "reconnected").await;
    alice.expect_privmsg("#test", "reconnected").await;
    let _ = bridge.stop(TIMEOUT).await;
}

#[tokio::test]
async fn keyed_channels_on_connect_commands_and_topics() {
    require!("ngircd");
    let server = IrcServer::ngircd().await;
    let data = tempdir();
    let mut op = TestClient::connect_in(server.port, "op", "#keyed").await;
    op.send("MODE #keyed +k s3cret").await;
    op.send("TOPIC #keyed :first topic").await;
    op.expect("the topic", |cmd, _, _| cmd == "TOPIC").await;
    let bridge = start_up(
        &format!(
            "server = \"127.0.0.1\"\nport = {}\nnick = \"pb\"\n\
             channels = [{{ name = \"#keyed\", key = \"s3cret\" }}]\n\
             on_connect = [\"PRIVMSG op :hello from $nick\"]",
            server.port
        ),
        data.path(),
    )
    .await;
    op.expect_privmsg("op", "hello from pb").await;
    op.expect_join("pb", "#keyed").await;
    op.send("TOPIC #keyed :second topic").await;
    bridge
        .recorder
        .wait_for(TIMEOUT, |e| {
            matches!(&e.kind, Kind::Topic { topic } if topic == "second topic")
                && e.room == "#keyed"
        })
        .await
        .expect("the topic change");
    let _ = bridge.stop(TIMEOUT).await;
}

#[tokio::test]
async fn server_password_is_sent() {
    require!("ngircd");
    let server = IrcServer::ngircd_with_password("letmein").await;
    let data = tempdir();
    let bridge = start_up(&config(server.port, "password = \"letmein\""), data.path()).await;
    let _ = bridge.stop(TIMEOUT).await;
    let mut bridge = start_connector(&config(server.port, "password = \"wrong\""), data.path());
    let refused = |r: &str| r.contains("password") || r.contains("closed");
    expect_down(&mut bridge, "down with a password error", refused).await;
    let _ = bridge.stop(TIMEOUT).await;
}

#[tokio::test]
async fn channels_joined_for_deliveries_keep_the_route_spelling_and_are_rejoined() {
    require!("ngircd");
    let mut server = IrcServer::ngircd().await;
    let data = tempdir();
    let mut alice = TestClient::connect_in(server.port, "alice", "#dyn").await;
    let bridge = start_up(
        &format!(
            "server = \"127.0.0.1\"\nport = {}\nnick = \"pb\"\nreconnect_min_secs = 0.3\nreconnect_max_secs = 1",
            server.port
        ),
        data.path(),
    ).await;
    relay(&bridge, "#Dyn", "joined on demand").await;
    alice.expect_privmsg("#dyn", "joined on demand").await;
    alice.send("PRIVMSG #dyn :hello back").await;
    let event = heard(&bridge.recorder, "hello back").await;
    assert_eq!(event.room, "#Dyn");
    server.restart().await;
    // The bridge joins #dyn again by itself (it may be there before or after alice).
    let mut alice = TestClient::connect_in(server.port, "alice", "#dyn").await;
    alice.wait_member("#dyn", "pb").await;
    let _ = bridge.stop(TIMEOUT).await;
}
