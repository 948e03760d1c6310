//! The connector against InspIRCd: IRCv3 capabilities and catching up from chanhistory.

mod support;

use patchbay_sdk::{Delivery, DeliveryError, Kind, MessageRef, RichText};
use support::*;

/// Start the connector in `channel` and wait until `watcher` sees it join.
async fn start_joined(
    port: u16,
    channel: &str,
    extra: &str,
    data: &tempfile::TempDir,
    watcher: &mut TestClient,
) -> Running {
    let bridge = start_up(&config(port, channel, extra), data.path()).await;
    watcher.expect_join("pb", channel).await;
    bridge
}

const CAPS: &[&str] = &["server-time", "message-tags", "echo-message", "batch"];

#[tokio::test]
async fn ircv3_ids_times_accounts_and_echoes() {
    require!("inspircd");
    let server = IrcServer::inspircd().await;
    let data = tempdir();
    let mut alice = TestClient::connect_in_with_caps(server.port, "alice", CAPS, "#v3").await;
    let bridge = start_joined(server.port, "#v3", "", &data, &mut alice).await;

    // Inbound messages carry the server's msgid and time.
    alice.send("PRIVMSG #v3 :tagged").await;
    let seen = alice.expect_privmsg("#v3", "tagged").await;
    assert_eq!(seen, "tagged");
    let event = bridge
        .recorder
        .wait_for(TIMEOUT, |e| matches!(e.kind, Kind::Message { .. }))
        .await
        .expect("alice's message");
    let id = event.remote_id.clone().expect("msgid from the server");
    let age = patchbay_sdk::Timestamp::now().0 - event.time.0;
    assert!((0..10_000).contains(&age), "server-time {:?}", event.time);

    // A reply from IRC refers to the original by its msgid.
    alice
        .send(&format!("@+draft/reply={id} PRIVMSG #v3 :a reply"))
        .await;
    let reply = heard(&bridge.recorder, "a reply").await;
    assert_eq!(reply.reply_to, Some(MessageRef::Native(id)));

    // echo-message confirms deliveries and gives their ids; the echo is marked as ours.
    let delivered = relay(&bridge, "#v3", "from the bridge").await;
    let remote_id = delivered.remote_id.expect("echo-message gives the id");
    alice.expect_privmsg("#v3", "from the bridge").await;
    let echo = bridge
        .recorder
        .wait_for(TIMEOUT, |e| {
            e.remote_id.as_deref() == Some(remote_id.as_str())
        })
        .await
        .expect("the echo");
    assert!(echo.is_echo);
    assert!(
        texts(&bridge.recorder, "#v3")
            .iter()
            .all(|t| !t.contains("from the bridge"))
    );
    let _ = bridge.stop(TIMEOUT).await;
}

#[tokio::test]
async fn bridge_restart_catches_up_from_chanhistory_exactly_once() {
    require!("inspircd");
    let server = IrcServer::inspircd().await;
    let data = tempdir();
    let mut alice = TestClient::connect_in_with_caps(server.port, "alice", CAPS, "#hist").await;
    alice.send("PRIVMSG #hist :before the bridge existed").await;

    let bridge = start_joined(server.port, "#hist", "", &data, &mut alice).await;
    for text in ["one", "two"] {
        alice.send(&format!("PRIVMSG #hist :{text}")).await;
    }
    assert_eq!(
        wait_texts(&bridge.recorder, "#hist", 2).await,
        vec!["one", "two"]
    );
    let _ = bridge.stop(TIMEOUT).await;

    // Users keep talking while the bridge is away.
    for text in ["three", "four", "five"] {
        alice.send(&format!("PRIVMSG #hist :{text}")).await;
    }
    alice.expect_privmsg("#hist", "five").await;

    let bridge = start_joined(server.port, "#hist", "", &data, &mut alice).await;
    alice.send("PRIVMSG #hist :six").await;
    let texts = wait_texts(&bridge.recorder, "#hist", 4).await;
    assert_eq!(texts, vec!["three", "four", "five", "six"]);
    let _ = bridge.stop(TIMEOUT).await;
}

#[tokio::test]
async fn first_join_does_not_replay_old_history() {
    require!("inspircd");
    let server = IrcServer::inspircd().await;
    let data = tempdir();
    let mut alice = TestClient::connect_in_with_caps(server.port, "alice", CAPS, "#old").await;
    alice.send("PRIVMSG #old :ancient").await;
    alice.expect_privmsg("#old", "ancient").await;
    let bridge = start_joined(server.port, "#old", "", &data, &mut alice).await;
    alice.send("PRIVMSG #old :fresh").await;
    assert_eq!(wait_texts(&bridge.recorder, "#old", 1).await, vec!["fresh"]);
    let _ = bridge.stop(TIMEOUT).await;
}

#[tokio::test]
async fn a_refused_message_fails_the_delivery_instead_of_hanging() {
    require!("inspircd");
    let server = IrcServer::inspircd().await;
    let data = tempdir();
    let mut op = TestClient::connect_in_with_caps(server.port, "op", CAPS, "#mod").await;
    op.send("MODE #mod +m").await;
    op.expect("+m", |cmd, _, _| cmd == "MODE").await;
    let bridge = start_joined(server.port, "#mod", "", &data, &mut op).await;
    let refused = loop {
        match bridge
            .connector
            .deliver(delivery("#mod", "bob", RichText::plain("hello?")))
            .await
        {
            Err(DeliveryError::Retryable { .. }) => {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            other => break other,
        }
    };
    match refused {
        Err(DeliveryError::Permanent { reason }) => {
            assert!(reason.contains("#mod"), "{reason}")
        }
        other => panic!("expected a permanent refusal, got {other:?}"),
    }
    op.send("MODE #mod -m").await;
    op.expect("-m", |cmd, _, _| cmd == "MODE").await;
    relay(&bridge, "#mod", "now it works").await;
    op.expect_privmsg("#mod", "now it works").await;
    let _ = bridge.stop(TIMEOUT).await;
}

/// With flood control off a run of deliveries is sent ahead of its echoes: every line arrives
/// once, in order, each delivery gets its own msgid, and a line the server refuses fails alone
/// (the lines after it in the run were sent and stay delivered).
#[tokio::test]
async fn a_pipelined_run_arrives_in_order_and_a_refusal_fails_only_its_line() {
    require!("inspircd");
    let server = IrcServer::inspircd().await;
    let data = tempdir();
    let mut op = TestClient::connect_in_with_caps(server.port, "op", CAPS, "#pipe").await;
    // blockcaps: lines more than half capitals are refused (ERR_CANNOTSENDTOCHAN).
    op.send("MODE #pipe +B").await;
    op.expect("+B", |cmd, _, _| cmd == "MODE").await;
    let flood_off = "flood_control = false\n";
    let bridge = start_joined(server.port, "#pipe", flood_off, &data, &mut op).await;
    assert!(
        bridge.connector.run_limit() > 1,
        "flood control off pipelines"
    );

    const LOUD: usize = 10;
    let texts: Vec<String> = (0..40)
        .map(|i| match i {
            LOUD => "THIS LINE SHOUTS AND IS REFUSED".to_owned(),
            _ => format!("line {i}"),
        })
        .collect();
    let run: Vec<Delivery> = texts
        .iter()
        .map(|t| delivery("#pipe", "bob", RichText::plain(t)))
        .collect();
    let results = bridge.connector.deliver_run(run).await;
    assert_eq!(results.len(), texts.len(), "one answer per delivery");
    let mut ids = std::collections::HashSet::new();
    for (i, result) in results.iter().enumerate() {
        match (i, result) {
            (LOUD, Err(DeliveryError::Permanent { reason })) => {
                assert!(reason.contains("#pipe"), "{reason}")
            }
            (LOUD, other) => panic!("the loud line should be refused, got {other:?}"),
            (_, Ok(delivered)) => {
                let id = delivered
                    .remote_id
                    .clone()
                    .expect("echo-message gives the id");
                assert!(ids.insert(id), "each delivery has its own msgid");
            }
            (_, Err(err)) => panic!("line {i} failed: {err}"),
        }
    }

    // What the channel saw: every line but the loud one, once each, in order.
    relay(&bridge, "#pipe", "end").await;
    let mut seen = Vec::new();
    loop {
        let p = op
            .expect("a line in #pipe", |cmd, params, _| {
                cmd == "PRIVMSG" && params.first().is_some_and(|t| t == "#pipe")
            })
            .await;
        let (_, params) = patchbay_irc::parse::command_params(&p.message);
        let text = params.get(1).cloned().unwrap_or_default();
        if text.ends_with("end") {
            break;
        }
        seen.push(text);
    }
    let expected: Vec<&String> = texts
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != LOUD)
        .map(|(_, t)| t)
        .collect();
    assert_eq!(seen.len(), expected.len(), "{seen:?}");
    for (line, text) in seen.iter().zip(&expected) {
        assert!(
            line.ends_with(text.as_str()),
            "{line:?} in place of {text:?}: {seen:?}"
        );
    }
    let _ = bridge.stop(TIMEOUT).await;
}

/// A burst read in one go reaches the gateway as runs, not line by line: every line once, in
/// the channel's order, in fewer hand-overs than lines (each hand-over is one durable commit).
#[tokio::test]
async fn a_burst_is_handed_over_in_runs_in_order() {
    require!("inspircd");
    let server = IrcServer::inspircd().await;
    let data = tempdir();
    let mut alice = TestClient::connect_in_with_caps(server.port, "alice", CAPS, "#burst").await;
    let bridge = start_joined(server.port, "#burst", "", &data, &mut alice).await;
    let before = bridge.recorder.calls();

    const LINES: usize = 500;
    let burst: String = (0..LINES)
        .map(|i| format!("PRIVMSG #burst :burst {i}\r\n"))
        .collect();
    alice.send_raw(burst.as_bytes()).await;
    let seen = wait_texts(&bridge.recorder, "#burst", LINES).await;
    let expected: Vec<String> = (0..LINES).map(|i| format!("burst {i}")).collect();
    assert_eq!(seen, expected, "every line once, in order");
    let calls = bridge.recorder.calls() - before;
    assert!(
        calls < LINES / 2,
        "{LINES} lines were handed over in {calls} calls"
    );
    let _ = bridge.stop(TIMEOUT).await;
}
