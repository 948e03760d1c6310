//! End to end through the `patchbay` binary with real IRC servers: InspIRCd and ngircd, started
//! by the IRC connector's test support on loopback ports.

mod support;

#[path = "../connectors/irc/tests/support/mod.rs"]
mod irc;

use std::time::Duration;

use irc::{Gate, IrcServer, TestClient, available, require};
use patchbay_irc::mirc;
use support::Gateway;

const WAIT: Duration = Duration::from_secs(30);
const CAPS: &[&str] = &["server-time", "message-tags", "batch"];

/// [`irc::account`], reconnecting after 0.5 to 2 s.
fn account(name: &str, port: u16, nick: &str, channel: &str, extra: &str) -> String {
    let reconnect = "reconnect_min_secs = 0.5\nreconnect_max_secs = 2";
    irc::account(name, port, nick, channel, &format!("{reconnect}\n{extra}"))
}

/// Two channels on one InspIRCd mirrored with each other and the console; formatting
/// survives IRC → IRC (mIRC codes) and IRC → console (Markdown); nothing comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_inspircd_channels_and_the_console_mirror_each_other() {
    require!("inspircd");
    let server = IrcServer::inspircd().await;
    let dir = irc::tempdir();
    let config = format!(
        "[general]\ndata_dir = \"data\"\n\n[console.term]\ninput = \"stdin\"\noutput = \"stdout\"\nroom = \"lobby\"\nnick = \"you\"\n\n{}{}\
         [[route]]\nname = \"mirror\"\ninout = [\"irc.a/#one\", \"irc.b/#two\", \"console.term/lobby\"]\n\
         nick_format = \"{{nick}}\"\n",
        account("a", server.port, "pba", "#one", ""),
        account("b", server.port, "pbb", "#two", ""),
    );
    let mut alice = TestClient::connect_in_with_caps(server.port, "alice", CAPS, "#one").await;
    let mut bob = TestClient::connect_in_with_caps(server.port, "bob", CAPS, "#two").await;
    let mut gateway = Gateway::start(dir.path(), &config);
    alice.expect_join("pba", "#one").await;
    bob.expect_join("pbb", "#two").await;

    alice
        .send("PRIVMSG #one :hello \x02bold\x02 and \x1ditalic\x1d in \x0304,01red\x03")
        .await;
    let seen = bob.expect_privmsg("#two", "hello").await;
    assert_eq!(
        mirc::strip(&seen),
        "<a\u{200B}lice> hello bold and italic in red"
    );
    assert!(seen.contains("\x02bold"), "{seen:?}");
    assert!(seen.contains("\x1ditalic"), "{seen:?}");
    assert!(seen.contains("\x0304,01red"), "{seen:?}");
    let line = tokio::task::block_in_place(|| gateway.expect_line(WAIT, |l| l.contains("hello")));
    assert!(line.contains("hello **bold** and *italic*"), "{line}");

    bob.send("PRIVMSG #two :\x01ACTION waves back\x01").await;
    let seen = alice.expect_privmsg("#one", "waves back").await;
    assert_eq!(seen, "\x01ACTION b\u{200B}ob waves back\x01");

    // A 3,000-character multi-byte line typed on the console arrives complete and in order,
    // split into IRC lines.
    let long: String = "ÄÖÜ漢字テストé🎉".chars().cycle().take(3000).collect();
    tokio::task::block_in_place(|| gateway.type_line(&long));
    let mut received = String::new();
    while received.chars().count() < 3000 {
        let line = bob.expect_privmsg("#two", "<y\u{200B}ou> ").await;
        received.push_str(line.strip_prefix("<y\u{200B}ou> ").expect("nick prefix"));
    }
    assert_eq!(received, long);

    // Nothing relayed back into its own channel: the next line alice sees is bob's marker.
    bob.send("PRIVMSG #two :marker").await;
    let mut next = alice
        .expect("the next message", |cmd, _, _| cmd == "PRIVMSG")
        .await;
    // alice also got the console's long line (in #one); skip those.
    while patchbay_irc::parse::command_params(&next.message).1[1].starts_with("<y\u{200B}ou> ") {
        next = alice
            .expect("the next message", |cmd, _, _| cmd == "PRIVMSG")
            .await;
    }
    let (_, params) = patchbay_irc::parse::command_params(&next.message);
    assert!(params[1].contains("marker"), "unexpected {params:?}");
    drop(gateway);
}

/// An InspIRCd channel mirrored with an ngircd channel (two networks); ngircd is restarted
/// while InspIRCd users keep talking; everything arrives on ngircd, in order, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspircd_and_ngircd_mirror_through_an_ngircd_restart() {
    require!("inspircd", "ngircd");
    let insp = IrcServer::inspircd().await;
    let mut ng = IrcServer::ngircd().await;
    // The bridge reaches ngircd through a gate, so the test can let carol in first after the
    // restart (ngircd keeps no history: what is said before she joins she would not see).
    let gate = Gate::new(ng.port).await;
    let dir = irc::tempdir();
    let config = format!(
        "[general]\ndata_dir = \"data\"\n\n{}{}\
         [[route]]\nname = \"nets\"\ninout = [\"irc.insp/#x\", \"irc.ng/#x\"]\nnick_format = \"{{nick}}\"\n",
        account("insp", insp.port, "pb", "#x", ""),
        account("ng", gate.port, "pb", "#x", "anti_highlight = \"\""),
    );
    let mut alice = TestClient::connect_in_with_caps(insp.port, "alice", CAPS, "#x").await;
    let mut carol = TestClient::connect_in(ng.port, "carol", "#x").await;
    let gateway = Gateway::start(dir.path(), &config);
    alice.expect_join("pb", "#x").await;
    carol.expect_join("pb", "#x").await;

    for i in 0..5 {
        alice.send(&format!("PRIVMSG #x :before {i}")).await;
    }
    for i in 0..5 {
        let line = carol.expect_privmsg("#x", "before").await;
        assert_eq!(line, format!("<alice> before {i}"));
    }

    // ngircd goes away; alice keeps talking; the lines wait in the gateway's outbox.
    gate.set_open(false);
    ng.stop();
    for i in 0..10 {
        alice.send(&format!("PRIVMSG #x :during {i}")).await;
    }
    ng.start().await;
    let mut carol = TestClient::connect_in(ng.port, "carol", "#x").await;
    gate.set_open(true);
    carol.expect_join("pb", "#x").await;
    for i in 0..10 {
        let line = carol.expect_privmsg("#x", "during").await;
        assert_eq!(line, format!("<alice> during {i}"));
    }
    alice.send("PRIVMSG #x :after").await;
    let next = carol
        .expect("the next message", |cmd, _, _| cmd == "PRIVMSG")
        .await;
    let (_, params) = patchbay_irc::parse::command_params(&next.message);
    assert_eq!(
        params[1], "<alice> after",
        "a line arrived twice or out of order"
    );

    // And back the other way after the restart.
    carol.send("PRIVMSG #x :back again").await;
    let seen = alice.expect_privmsg("#x", "back again").await;
    assert_eq!(seen, "<c\u{200B}arol> back again");
    drop(gateway);
}

/// The gateway is stopped while users keep talking; after it starts again the missed lines
/// arrive from InspIRCd's channel history, once, in order, followed by live ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missed_lines_arrive_from_history_after_a_gateway_restart() {
    require!("inspircd");
    let server = IrcServer::inspircd().await;
    let dir = irc::tempdir();
    let config = format!(
        "[general]\ndata_dir = \"data\"\n\n{}{}\
         [[route]]\nname = \"mirror\"\ninout = [\"irc.a/#one\", \"irc.b/#two\"]\nnick_format = \"{{nick}}\"\n",
        account("a", server.port, "pba", "#one", "anti_highlight = \"\""),
        account("b", server.port, "pbb", "#two", "anti_highlight = \"\""),
    );
    let mut alice = TestClient::connect_in_with_caps(server.port, "alice", CAPS, "#one").await;
    let mut bob = TestClient::connect_in_with_caps(server.port, "bob", CAPS, "#two").await;
    let gateway = Gateway::start(dir.path(), &config);
    alice.expect_join("pba", "#one").await;
    bob.expect_join("pbb", "#two").await;
    for text in ["one", "two"] {
        alice.send(&format!("PRIVMSG #one :{text}")).await;
        assert_eq!(
            bob.expect_privmsg("#two", text).await,
            format!("<alice> {text}")
        );
    }
    assert!(tokio::task::block_in_place(|| gateway.stop()), "clean stop");

    for text in ["three", "four", "five"] {
        alice.send(&format!("PRIVMSG #one :{text}")).await;
    }
    let config_path = dir.path().join("patchbay.toml");
    let gateway = Gateway::start_with(dir.path(), &config_path);
    bob.expect_join("pbb", "#two").await;
    let mut got = Vec::new();
    for _ in 0..3 {
        let line = bob
            .expect("a relayed line", |cmd, _, _| cmd == "PRIVMSG")
            .await;
        got.push(patchbay_irc::parse::command_params(&line.message).1[1].clone());
    }
    assert_eq!(got, vec!["<alice> three", "<alice> four", "<alice> five"]);
    alice.expect_join("pba", "#one").await;
    alice.send("PRIVMSG #one :six").await;
    let line = bob
        .expect("the live line", |cmd, _, _| cmd == "PRIVMSG")
        .await;
    assert_eq!(
        patchbay_irc::parse::command_params(&line.message).1[1],
        "<alice> six"
    );
    drop(gateway);
}

/// The IRC server goes away and comes back: `/metrics` counts the account's reconnects (the
/// sdk's supervisor emits them) next to its `patchbay_connector_up`, which follows it down
/// and up again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_the_reconnects_of_an_irc_account_whose_server_restarted() {
    require!("inspircd");
    let mut server = IrcServer::inspircd().await;
    let dir = irc::tempdir();
    let http = support::free_port();
    let config = format!(
        "[general]\ndata_dir = \"data\"\n\n[http]\nlisten = \"127.0.0.1:{http}\"\n\n\
         [console.screen]\ninput = \"none\"\noutput = \"screen.log\"\n\n{}\
         [[route]]\nname = \"r\"\ninout = [\"irc.net/#x\", \"console.screen/lobby\"]\n",
        account("net", server.port, "pb", "#x", ""),
    );
    let gateway = Gateway::start(dir.path(), &config);
    let metric = |name: &str| {
        let (_, body) = support::http_get(http, "/metrics");
        body.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<u64>().ok())
    };
    let up = "patchbay_connector_up{account=\"irc.net\"}";
    let reconnects = "patchbay_connector_events_total{account=\"irc.net\",event=\"reconnect\"}";
    tokio::task::block_in_place(|| {
        support::wait_for_port(http, WAIT);
        support::wait_until(WAIT, "irc.net up", || metric(up) == Some(1));
    });
    assert_eq!(metric(reconnects), None, "no reconnect before the restart");

    server.stop();
    tokio::task::block_in_place(|| {
        support::wait_until(WAIT, "a reconnect counted", || {
            metric(reconnects).is_some_and(|n| n >= 1)
        });
    });
    assert_eq!(metric(up), Some(0));
    server.start().await;
    tokio::task::block_in_place(|| {
        support::wait_until(WAIT, "irc.net up again", || metric(up) == Some(1));
    });
    assert!(metric(reconnects).is_some_and(|n| n >= 1));
    drop(gateway);
}
