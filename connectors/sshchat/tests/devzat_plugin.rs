//! Devzat through its gRPC plugin API, against the test server.

mod support;

use std::time::Duration;

use patchbay_sdk::{DeliveryError, Kind};
use patchbay_sshchat_testserver::{Options, TestServer};
use support::{WAIT, delivery, start, text};

const TOKEN: &str = "dvz@dGVzdC10b2tlbg==";

async fn server() -> TestServer {
    let mut opts = Options::devzat();
    opts.tokens = vec![TOKEN.into(), "dvz@other".into()];
    TestServer::start(opts).await.expect("test server starts")
}

fn config(server: &TestServer, token: &str) -> String {
    format!(
        "server = \"{}\"\ndialect = \"devzat\"\nnick = \"bridge\"\nplugin = {{ address = \"{}\", token = \"{token}\" }}\n",
        server.ssh_addr(),
        server.grpc_url().expect("grpc"),
    )
}

#[tokio::test]
async fn relays_both_ways_under_native_names_without_echo_or_commands() {
    let server = server().await;
    let mut bridge = start(&config(&server, TOKEN));
    assert!(bridge.wait_up(WAIT).await, "plugin listener up");
    assert_eq!(
        server.middleware_requests(),
        0,
        "never a middleware listener"
    );

    // A person on Devzat writes Markdown; the bridge sees it as rich text.
    let alice = server.connect_user("alice").await.expect("alice connects");
    alice.say("hello **world**").await.expect("say");
    let event = bridge
        .events
        .wait(WAIT, |e| {
            e.author.name == "alice" && matches!(e.kind, Kind::Message { .. })
        })
        .await
        .expect("alice's message emitted");
    assert_eq!(event.room, "#main");
    assert_eq!(text(&event), "hello world");
    // Her join was announced as a system message and relayed as a join.
    bridge
        .events
        .wait(WAIT, |e| e.author.name == "alice" && e.kind == Kind::Join)
        .await
        .expect("join emitted");

    // A relayed message shows under the relayed author's own name.
    bridge
        .deliver(delivery("#main", "[irc] bob", "hi from irc"))
        .await
        .expect("delivered");
    alice
        .wait_line(WAIT, |l| l == "[irc] bob: hi from irc")
        .await
        .expect("alice sees bob under his own name");

    // A relayed line starting with a command word is shown, not run.
    bridge
        .deliver(delivery("#main", "", "cd #secret"))
        .await
        .expect("delivered");
    alice
        .wait_line(WAIT, |l| l.ends_with("cd #secret"))
        .await
        .expect("alice sees the text");
    assert!(
        server
            .commands()
            .iter()
            .all(|(_, line)| !line.starts_with("cd")),
        "no command ran: {:?}",
        server.commands()
    );

    // Nothing the bridge sent came back as an event.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        bridge
            .events
            .events()
            .iter()
            .all(|e| !e.author.name.contains("bob") && !text(e).contains("cd #secret")),
        "own messages were not emitted"
    );
    alice.close().await;
    bridge.stop().await.expect("clean stop");
}

#[tokio::test]
async fn unknown_room_is_permanent_and_wrong_token_is_a_clear_error() {
    let server = server().await;
    let mut bridge = start(&config(&server, TOKEN));
    assert!(bridge.wait_up(WAIT).await);
    let err = bridge
        .deliver(delivery("#nowhere", "x", "hello"))
        .await
        .expect_err("no such room");
    assert!(
        matches!(&err, DeliveryError::Permanent { reason } if reason.contains("Room does not exist")),
        "{err:?}"
    );
    bridge.stop().await.expect("stop");

    let wrong = start(&config(&server, "dvz@wrong"));
    let result = tokio::time::timeout(WAIT, wrong.task)
        .await
        .expect("stops by itself")
        .expect("task");
    let err = result.expect_err("wrong token is fatal");
    assert!(err.0.contains("refused the plugin token"), "{err}");
    assert!(err.0.contains("Invalid authorization header"), "{err}");
}

#[tokio::test]
async fn reconnects_after_a_server_restart_and_resumes() {
    let server = server().await;
    let mut bridge = start(&config(&server, TOKEN));
    assert!(bridge.wait_up(WAIT).await);
    server.restart().await.expect("restart");
    assert!(
        server
            .wait_until(Duration::from_secs(30), |s| s.listeners() == 1)
            .await,
        "listener registered again"
    );
    server.say("#main", "carol", "after the restart");
    bridge
        .events
        .wait(WAIT, |e| text(e) == "after the restart")
        .await
        .expect("events flow again");
    bridge
        .deliver(delivery("#main", "[irc] dan", "still here"))
        .await
        .expect("delivered after restart");
    server
        .wait_for(WAIT, |r| {
            r.from == "[irc] dan" && support::visible(&r.text) == "still here"
        })
        .await
        .expect("message arrived");
    bridge.stop().await.expect("stop");
}

#[tokio::test]
async fn a_second_token_sees_the_first_ones_messages_but_the_echo_filter_holds() {
    // Devzat echoes a token's messages to other tokens' listeners: two bridges with different
    // tokens see each other's relays. Each drops only its own.
    let server = server().await;
    let mut one = start(&config(&server, TOKEN));
    let mut two = start(&config(&server, "dvz@other"));
    assert!(one.wait_up(WAIT).await && two.wait_up(WAIT).await);
    assert!(server.wait_until(WAIT, |s| s.listeners() == 2).await);
    one.deliver(delivery("#main", "[irc] erin", "from one"))
        .await
        .expect("delivered");
    two.events
        .wait(WAIT, |e| {
            e.author.name == "[irc] erin" && text(e) == "from one"
        })
        .await
        .expect("the other token's bridge sees it");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(one.events.events().iter().all(|e| text(e) != "from one"));
    one.stop().await.expect("stop");
    two.stop().await.expect("stop");
}

#[tokio::test]
async fn room_moves_are_joins_and_parts_of_their_rooms() {
    let server = server().await;
    let mut bridge = start(&config(&server, TOKEN));
    assert!(bridge.wait_up(WAIT).await);
    let ann = server.connect_user("ann").await.expect("ann");
    ann.say("cd #dev").await.expect("cd");
    bridge
        .events
        .wait(WAIT, |e| {
            e.room == "#dev" && e.author.name == "ann" && e.kind == Kind::Join
        })
        .await
        .expect("ann joined #dev");
    bridge
        .events
        .wait(WAIT, |e| {
            e.room == "#main" && e.author.name == "ann" && matches!(e.kind, Kind::Part { .. })
        })
        .await
        .expect("ann left #main");
    ann.say("hello dev").await.expect("say");
    let event = bridge
        .events
        .wait(WAIT, |e| text(e) == "hello dev")
        .await
        .expect("message in #dev");
    assert_eq!(event.room, "#dev");
    ann.close().await;
    bridge.stop().await.expect("stop");
}

/// Throughput of relays over the plugin API against the test server (run with `--ignored`).
#[tokio::test]
#[ignore]
async fn measure_plugin_delivery_rate() {
    let server = server().await;
    let mut bridge = start(&config(&server, TOKEN));
    assert!(bridge.wait_up(WAIT).await);
    let n = 1000;
    let started = std::time::Instant::now();
    for i in 0..n {
        bridge
            .deliver(delivery("#main", "[irc] bench", &format!("message {i}")))
            .await
            .expect("delivered");
    }
    let elapsed = started.elapsed();
    println!(
        "{n} sequential deliveries in {elapsed:?}: {:.0}/s",
        n as f64 / elapsed.as_secs_f64()
    );
    assert!(server.wait_until(WAIT, |s| s.transcript().len() >= n).await);
    bridge.stop().await.expect("stop");
}
