//! Devzat through its gRPC plugin API, against the test server: what the real Devzat cannot be
//! made to show (a second token, a delivery-rate measure). The rest is in `real_devzat_plugin.rs`.

mod support;

use std::time::Duration;

use patchbay_sshchat_testserver::{Options, TestServer};
use support::{WAIT, over_plugin, relay, start, start_up, text};

const TOKEN: &str = "dvz@dGVzdC10b2tlbg==";

async fn server() -> TestServer {
    let mut opts = Options::devzat();
    opts.tokens = vec![TOKEN.into(), "dvz@other".into()];
    TestServer::start(opts).await.expect("test server starts")
}

#[tokio::test]
async fn a_second_token_sees_the_first_ones_messages_but_the_echo_filter_holds() {
    // Devzat echoes a token's messages to other tokens' listeners: two bridges with different
    // tokens see each other's relays. Each drops only its own.
    let server = server().await;
    let mut one = start(&over_plugin(&server, "bridge", TOKEN));
    let mut two = start(&over_plugin(&server, "bridge", "dvz@other"));
    assert!(one.wait_up(WAIT).await && two.wait_up(WAIT).await);
    assert!(server.wait_until(WAIT, |s| s.listeners() == 2).await);
    relay(&one, "#main", "[irc] erin", "from one").await;
    two.recorder
        .wait_for(WAIT, |e| {
            e.author.name == "[irc] erin" && text(e) == "from one"
        })
        .await
        .expect("the other token's bridge sees it");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(one.recorder.events().iter().all(|e| text(e) != "from one"));
    one.stop(WAIT).await.expect("stop");
    two.stop(WAIT).await.expect("stop");
}

#[tokio::test]
#[ignore]
async fn measure_plugin_delivery_rate() {
    let server = server().await;
    let bridge = start_up(&over_plugin(&server, "bridge", TOKEN), WAIT).await;
    let n = 1000;
    let started = std::time::Instant::now();
    for i in 0..n {
        relay(&bridge, "#main", "[irc] bench", &format!("message {i}")).await;
    }
    let elapsed = started.elapsed();
    println!(
        "{n} sequential deliveries in {elapsed:?}: {:.0}/s",
        n as f64 / elapsed.as_secs_f64()
    );
    assert!(server.wait_until(WAIT, |s| s.transcript().len() >= n).await);
    bridge.stop(WAIT).await.expect("stop");
}
