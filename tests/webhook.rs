//! Webhooks and the API end to end through the binary, on its shared HTTP listener.

#[path = "support/receiver.rs"]
mod receiver;
mod support;

use std::path::Path;
use std::time::Duration;

use axum::http::StatusCode;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use support::{Gateway, free_port, wait_for_port, wait_until};

/// Start the gateway on `config` with its HTTP listener on a free port; once it takes
/// connections, the gateway and the port.
fn start(dir: &Path, config: &str) -> (Gateway, u16) {
    let port = free_port();
    let config = format!("[http]\nlisten = \"127.0.0.1:{port}\"\n{config}");
    let gateway = Gateway::start(dir, &config);
    wait_for_port(port, Duration::from_secs(30));
    (gateway, port)
}

#[test]
fn a_notification_posted_to_a_hook_reaches_the_console() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = r#"
[webhook.ci]
token = "hook-token"

[webhook.ci.rooms.github]
format = "github"
secret = "gh-secret"

[console.screen]
input = "none"
output = "stdout"

[[route]]
name = "notify"
in = ["webhook.ci/builds", "webhook.ci/github"]
out = ["console.screen/alerts"]
"#;
    let (mut gateway, port) = start(dir.path(), config);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}/hooks/ci");
    let status = post_build(
        &rt,
        port,
        json!({"text": "*build 42* passed", "username": "ci-bot"}),
    );
    assert_eq!(status, 202);
    gateway.expect("[console.screen/alerts] <ci-bot> **build 42** passed");

    let push = json!({"ref": "refs/heads/main", "pusher": {"name": "alice"},
        "repository": {"full_name": "o/r", "html_url": "https://github.com/o/r"}, "compare": "https://github.com/o/r/compare/a...b",
        "commits": [{"id": "0123456789", "url": "https://github.com/o/r/commit/0123456", "message": "Fix it", "author": {"name": "Alice"}}]});
    let body = serde_json::to_vec(&push).expect("json");
    let status = rt.block_on(async {
        client
            .post(format!("{base}/github"))
            .header("X-GitHub-Event", "push")
            .header(
                "X-Hub-Signature-256",
                patchbay_webhook::sign("gh-secret", &body),
            )
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("post")
            .status()
    });
    assert_eq!(status, StatusCode::ACCEPTED);
    gateway.expect_line(Duration::from_secs(20), |l| {
        l.starts_with("[console.screen/alerts] <GitHub> **alice** pushed 1 commit to `main`")
    });
    // A refused hook prints nothing and says why.
    let status = rt.block_on(async {
        client
            .post(format!("{base}/builds"))
            .bearer_auth("wrong")
            .body("x")
            .send()
            .await
            .expect("post")
            .status()
    });
    assert_eq!(status, StatusCode::FORBIDDEN);
    // ... and is counted for the account; the two 202s are not.
    let (_, metrics) = support::http_get(port, "/metrics");
    let refused =
        "patchbay_connector_events_total{account=\"webhook.ci\",event=\"request_refused\"} 1";
    assert!(
        metrics.lines().any(|l| l == refused),
        "missing {refused:?} in:\n{metrics}"
    );
    assert!(gateway.stop(), "patchbay did not stop cleanly");
}

/// POST `body` as JSON to `webhook.ci/builds` with the hook's token; the status it gets.
fn post_build(rt: &tokio::runtime::Runtime, port: u16, body: Value) -> u16 {
    rt.block_on(support::post_json(
        port,
        "/hooks/ci/builds",
        "hook-token",
        &body,
    ))
}

#[test]
fn a_receiver_that_fails_for_a_while_gets_everything_once_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (receiver, receiver_addr) = rt.block_on(receiver::start_failing(3, "127.0.0.1:0"));

    let config = format!(
        "{}{}[[route]]\nname = \"lobby\"\nin = [\"console.you/lobby\"]\nout = [\"webhook.team/chat\"]\n\
         nick_format = \"{{nick}} (console)\"\n",
        receiver::console_table("you.log", "alice"),
        receiver::slack_room("chat", receiver_addr, "sign_secret = \"out-secret\"\n"),
    );
    let (mut gateway, _) = start(dir.path(), &config);
    for i in 1..=5 {
        gateway.type_line(&format!("message **{i}**"));
    }
    let got = |n: usize| receiver.requests().len() >= n;
    wait_until(Duration::from_secs(60), "five deliveries", || got(5));
    // One more after recovery: anything repeated would have arrived before it.
    gateway.type_line("message **6**");
    wait_until(Duration::from_secs(30), "the sixth delivery", || got(6));
    assert_eq!(
        receiver.fields("text", "alice (console)"),
        (1..=6)
            .map(|i| format!("message *{i}*"))
            .collect::<Vec<_>>(),
        "each message once, in order, in Slack's mrkdwn"
    );
    for (headers, body) in receiver.requests() {
        let signature = headers
            .get("x-patchbay-signature-256")
            .and_then(|v| v.to_str().ok())
            .expect("signed");
        assert!(patchbay_webhook::verify("out-secret", &body, signature));
    }
    assert!(receiver.attempts() >= 9, "three failures were retried");
    assert!(gateway.stop());
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Open an API stream; `what` names it when that fails.
async fn connect(url: &str, what: &str) -> Ws {
    let (ws, _) = tokio_tungstenite::connect_async(url).await.expect(what);
    ws
}

async fn next_entry(ws: &mut Ws) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(20), ws.next())
            .await
            .expect("a frame within 20 s")
            .expect("open")
            .expect("a frame");
        if let tokio_tungstenite::tungstenite::Message::Text(text) = message {
            let frame: Value = serde_json::from_str(&text).expect("JSON");
            if frame["op"] == "entry" {
                return frame;
            }
        }
    }
}

#[test]
fn api_clients_stream_send_and_catch_up_through_the_gateway() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = r#"
[console.you]
input = "stdin"
output = "stdout"
room = "lobby"
nick = "alice"

[api.bots]
token = "api-token-123"

[[route]]
name = "lobby"
inout = ["console.you/lobby", "api.bots/lobby"]
"#;
    let (mut gateway, port) = start(dir.path(), config);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let ws_url = format!("ws://127.0.0.1:{port}/api/bots/stream?token=api-token-123");
    let (mut a, mut b) = rt.block_on(async {
        (
            connect(&ws_url, "connect a").await,
            connect(&ws_url, "connect b").await,
        )
    });
    gateway.type_line("hello bots");
    let (fa, fb) = rt.block_on(async { (next_entry(&mut a).await, next_entry(&mut b).await) });
    for frame in [&fa, &fb] {
        assert_eq!(frame["room"], "lobby");
        assert_eq!(frame["nick"], "alice");
        assert_eq!(frame["event"]["origin"]["account"], "console.you");
    }
    let last = fa["id"].as_i64().expect("id");
    // A sends into the route as "deploybot"; the console shows it.
    rt.block_on(async {
        a.send(tokio_tungstenite::tungstenite::Message::Text(
            json!({"op": "send", "room": "lobby", "username": "deploybot", "text": "on it"})
                .to_string()
                .into(),
        ))
        .await
        .expect("send");
    });
    gateway.expect("[console.you/lobby] <deploybot> on it");
    // B disconnects; two lines go by; B catches up over REST, then over the stream.
    drop(b);
    gateway.type_line("while you were out 1");
    gateway.type_line("while you were out 2");
    rt.block_on(async {
        let mut seen = Vec::new();
        while seen.len() < 2 {
            let frame = next_entry(&mut a).await;
            if frame["direction"] == "delivered" {
                seen.push(frame);
            }
        }
    });
    let page: Value = rt.block_on(async {
        reqwest::Client::new()
            .get(format!(
                "http://127.0.0.1:{port}/api/bots/lobby/messages?after={last}"
            ))
            .bearer_auth("api-token-123")
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json")
    });
    let summary: Vec<(String, String)> = page["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| {
            (
                e["nick"].as_str().unwrap_or_default().to_owned(),
                e["event"]["body"]["blocks"][0]["spans"][0]["text"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("deploybot".to_owned(), "on it".to_owned()),
            ("alice".to_owned(), "while you were out 1".to_owned()),
            ("alice".to_owned(), "while you were out 2".to_owned()),
        ]
    );
    let mut b = rt.block_on(connect(&format!("{ws_url}&after={last}"), "reconnect b"));
    let texts: Vec<Value> = rt.block_on(async {
        let mut texts = Vec::new();
        for _ in 0..3 {
            texts.push(
                next_entry(&mut b).await["event"]["body"]["blocks"][0]["spans"][0]["text"].clone(),
            );
        }
        texts
    });
    assert_eq!(
        texts,
        [
            json!("on it"),
            json!("while you were out 1"),
            json!("while you were out 2")
        ]
    );
    assert!(gateway.stop());
}

#[test]
fn hooks_accepted_while_the_receiver_is_down_reach_it_after_a_gateway_crash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let receiver_port = free_port();
    let config = format!(
        r#"
[webhook.ci]
token = "hook-token"

[webhook.team.rooms.chat]
url = "http://127.0.0.1:{receiver_port}/in"
payload = "discord"

[[route]]
name = "relay"
in = ["webhook.ci/builds"]
out = ["webhook.team/chat"]
"#
    );
    let (gateway, port) = start(dir.path(), &config);
    for i in 1..=3 {
        let body = json!({"content": format!("build {i} done"), "username": "ci"});
        let status = post_build(&rt, port, body);
        // 202: durably recorded, whatever happens to the gateway next.
        assert_eq!(status, 202);
    }
    gateway.kill();

    let (receiver, _) = rt.block_on(receiver::start_failing(0, ("127.0.0.1", receiver_port)));
    let gateway = Gateway::start_with(dir.path(), &dir.path().join("patchbay.toml"));
    let got = |n: usize| receiver.requests().len() >= n;
    wait_until(
        Duration::from_secs(60),
        "three deliveries after the restart",
        || got(3),
    );
    // One more, through the restarted gateway: anything repeated would arrive before it.
    let body = json!({"content": "build 4 done", "username": "ci"});
    assert_eq!(post_build(&rt, port, body), 202);
    wait_until(Duration::from_secs(30), "the fourth delivery", || got(4));
    assert_eq!(
        receiver.fields("content", "ci"),
        (1..=4)
            .map(|i| format!("build {i} done"))
            .collect::<Vec<_>>()
    );
    assert!(gateway.stop());
}
