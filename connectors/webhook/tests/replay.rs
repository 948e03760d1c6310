//! Replay protection over real HTTP on loopback: Slack's timed signature and patchbay's own
//! (POSTed by one webhook account, checked by another) are accepted while fresh, refused when
//! stale, and refused when the same signed request comes again inside the window.

mod support;

use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use patchbay_sdk::testkit::delivery;
use reqwest::StatusCode;
use sha2::Sha256;
use support::{Receiver, build, error_of, send, start};

const CONFIG: &str = r#"
token = "account-token"
signature_max_age_secs = 120

[rooms.slack]
secret = "slack-signing-secret"
signature_scheme = "slack"

[rooms.peer]
secret = "between-gateways"
signature_scheme = "patchbay"
"#;

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// What Slack sends: `v0=HEX` of `v0:{ts}:{body}`.
fn slack_signature(secret: &str, timestamp: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(format!("v0:{timestamp}:{body}").as_bytes());
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

async fn post_slack(
    client: &reqwest::Client,
    url: &str,
    timestamp: i64,
    body: &str,
) -> reqwest::Response {
    send(
        client
            .post(url)
            .header("content-type", "application/json")
            .header("x-slack-request-timestamp", timestamp.to_string())
            .header(
                "x-slack-signature",
                slack_signature("slack-signing-secret", timestamp, body),
            )
            .body(body.to_owned()),
    )
    .await
}

#[tokio::test]
async fn a_fresh_slack_request_is_relayed_once_and_a_stale_one_is_refused() {
    let hook = start("chat", CONFIG).await;
    let client = reqwest::Client::new();
    let url = format!("{}/hooks/chat/slack", hook.base);
    let body = r#"{"text": "deploy *done*"}"#;
    let signed_at = now();

    let fresh = post_slack(&client, &url, signed_at, body).await;
    assert_eq!(fresh.status(), StatusCode::ACCEPTED);
    let events = hook.wait_events(1).await;
    assert_eq!(
        events[0].kind.body().map(|b| b.to_plain()).as_deref(),
        Some("deploy done")
    );
    assert!(
        events[0]
            .remote_id
            .as_deref()
            .is_some_and(|id| id.starts_with("signature:")),
        "the signature names the event for the gateway's own duplicate check: {:?}",
        events[0].remote_id
    );

    // The very same request again, inside the window: a replay.
    let replay = post_slack(&client, &url, signed_at, body).await;
    assert_eq!(replay.status(), StatusCode::CONFLICT);
    assert_eq!(
        error_of(replay).await,
        "this signature was already accepted: a replayed request is not relayed twice"
    );

    // A correctly signed request from ten minutes ago.
    let stale = post_slack(&client, &url, signed_at - 600, body).await;
    assert_eq!(stale.status(), StatusCode::FORBIDDEN);
    let why = error_of(stale).await;
    assert!(
        why.starts_with("the request's timestamp is 6") && why.contains("accepted for 120 s"),
        "{why}"
    );

    // A new request (same text, new timestamp) is a new message.
    let again = post_slack(&client, &url, signed_at + 1, body).await;
    assert_eq!(again.status(), StatusCode::ACCEPTED);
    hook.wait_events(2).await;
    assert_eq!(
        hook.recorder.events().len(),
        2,
        "the replay and the stale request were not relayed"
    );

    // Without the timestamp, or with a signature that is not Slack's: refused as such.
    let no_time = send(
        client
            .post(&url)
            .header(
                "x-slack-signature",
                slack_signature("slack-signing-secret", signed_at, body),
            )
            .body(body),
    )
    .await;
    assert_eq!(no_time.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        error_of(no_time).await,
        "the X-Slack-Request-Timestamp header is missing"
    );
    let unsigned = send(client.post(&url).body(body)).await;
    assert_eq!(unsigned.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(hook.recorder.events().len(), 2);
}

#[tokio::test]
async fn patchbays_own_signature_is_checked_by_a_patchbay_hook() {
    // One gateway's outbound POST, captured by a receiver, then sent to another's hook.
    let receiver = Receiver::start().await;
    let dir = std::env::temp_dir();
    let sender = build(
        &dir,
        "out",
        &format!(
            "[rooms.peer]\nurl = \"{}\"\npayload = \"slack\"\nsign_secret = \"between-gateways\"\n",
            receiver.url
        ),
    );
    sender
        .deliver(delivery("peer", "alice", "from the other side"))
        .await
        .expect("delivered");
    let sent = receiver.accepted().pop().expect("one POST");
    for name in [
        "x-patchbay-signature-256",
        "x-patchbay-signature",
        "x-patchbay-timestamp",
    ] {
        assert!(sent.headers.contains_key(name), "{name} is sent");
    }
    let timestamp: i64 = sent.headers["x-patchbay-timestamp"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("Unix seconds");
    assert!((now() - timestamp).abs() < 60, "signed now: {timestamp}");

    let hook = start("chat", CONFIG).await;
    let client = reqwest::Client::new();
    let url = format!("{}/hooks/chat/peer", hook.base);
    let forward = |headers: &axum::http::HeaderMap, body: Vec<u8>| {
        let mut request = client.post(&url).body(body);
        for name in [
            "content-type",
            "x-patchbay-signature",
            "x-patchbay-timestamp",
        ] {
            if let Some(value) = headers.get(name) {
                request = request.header(name, value.as_bytes());
            }
        }
        send(request)
    };
    let first = forward(&sent.headers, sent.body.clone()).await;
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    let events = hook.wait_events(1).await;
    assert_eq!(
        events[0].kind.body().map(|b| b.to_plain()).as_deref(),
        Some("from the other side")
    );
    let replay = forward(&sent.headers, sent.body.clone()).await;
    assert_eq!(replay.status(), StatusCode::CONFLICT);

    // A timestamp moved forward to dodge the window breaks the signature.
    let mut moved = sent.headers.clone();
    moved.insert(
        "x-patchbay-timestamp",
        (timestamp + 5).to_string().parse().expect("header"),
    );
    let forged = forward(&moved, sent.body.clone()).await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        error_of(forged).await,
        "the signature does not match the timestamp and body"
    );
    assert_eq!(hook.recorder.events().len(), 1);
}
