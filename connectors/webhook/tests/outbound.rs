//! Outbound deliveries POSTed to a receiver on loopback: each payload format, the signature
//! header, and how failures map to retryable or permanent errors.

mod support;

use std::time::Duration;

use patchbay_sdk::{Author, Delivery, DeliveryError, Event, Inbound, Kind, Quote, RichText};
use serde_json::Value;
use support::{Receiver, build};

fn delivery(room: &str, text: &str) -> Delivery {
    let mut author = Author::named("alice");
    author.avatar = Some("https://img/alice.png".into());
    let inbound = Inbound::message(
        "#rust",
        author,
        patchbay_sdk::text::markdown::from_markdown(text),
    );
    Delivery {
        room: room.into(),
        event: Event::from_inbound("irc.libera", inbound),
        nick: "[irc] alice".into(),
        route: "r".into(),
        quote: None,
    }
}

fn config(receiver: &Receiver) -> String {
    format!(
        r#"
timeout_secs = 1

[rooms.slack]
url = "{url}"
payload = "slack"

[rooms.discord]
url = "{url}"
payload = "discord"

[rooms.mattermost]
url = "{url}"
payload = "mattermost"

[rooms.json]
url = "{url}"
payload = "json"
sign_secret = "out-secret"

[rooms.custom]
url = "{url}"
payload = "template"
content_type = "text/plain"
payload_template = "{{{{ nick }}}} said {{{{ plain }}}} in {{{{ event.origin.room }}}}"
headers = {{ "X-Extra" = "1" }}

[rooms.nowhere]
url = "http://127.0.0.1:9/in"
"#,
        url = receiver.url
    )
}

fn json_body(received: &support::Received) -> Value {
    serde_json::from_slice(&received.body).expect("a JSON body")
}

#[tokio::test]
async fn each_payload_format_carries_the_text_author_and_avatar() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let hook = build(dir.path(), "out", &config(&receiver));
    for room in ["slack", "discord", "mattermost", "json", "custom"] {
        let mut d = delivery(room, "**build** [3](https://ci/3) ok");
        if room == "mattermost" {
            d.quote = Some(Quote {
                author: "bob".into(),
                text: "is it green?".into(),
            });
        }
        hook.deliver(d).await.expect("delivered");
    }
    let got = receiver.accepted();
    assert_eq!(got.len(), 5);
    let slack = json_body(&got[0]);
    assert_eq!(slack["text"], "*build* <https://ci/3|3> ok");
    assert_eq!(slack["username"], "[irc] alice");
    assert_eq!(slack["icon_url"], "https://img/alice.png");
    let discord = json_body(&got[1]);
    assert_eq!(discord["content"], "**build** [3](https://ci/3) ok");
    assert_eq!(discord["username"], "[irc] alice");
    assert_eq!(discord["avatar_url"], "https://img/alice.png");
    assert_eq!(discord["allowed_mentions"]["parse"], serde_json::json!([]));
    let mattermost = json_body(&got[2]);
    assert_eq!(
        mattermost["text"],
        "> bob: is it green?\n**build** [3](https://ci/3) ok"
    );
    assert_eq!(mattermost["icon_url"], "https://img/alice.png");
    // JSON: the normalized delivery, signed.
    let json = json_body(&got[3]);
    assert_eq!(json["nick"], "[irc] alice");
    assert_eq!(json["event"]["type"], "message");
    assert_eq!(json["event"]["origin"]["account"], "irc.libera");
    let back: Delivery = serde_json::from_value(json).expect("a Delivery");
    assert_eq!(
        back.event.kind.body().map(RichText::to_plain).as_deref(),
        Some("build 3 (https://ci/3) ok")
    );
    let signature = got[3]
        .headers
        .get("x-patchbay-signature-256")
        .and_then(|v| v.to_str().ok())
        .expect("a signature header");
    assert!(patchbay_webhook::verify(
        "out-secret",
        &got[3].body,
        signature
    ));
    assert!(
        !got[0].headers.contains_key("x-patchbay-signature-256"),
        "unsigned unless configured"
    );
    // Template.
    assert_eq!(
        String::from_utf8_lossy(&got[4].body),
        "[irc] alice said build 3 (https://ci/3) ok in #rust"
    );
    assert_eq!(
        got[4]
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/plain")
    );
    assert_eq!(
        got[4].headers.get("x-extra").and_then(|v| v.to_str().ok()),
        Some("1")
    );
}

#[tokio::test]
async fn failures_are_retryable_or_permanent_as_the_status_says() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let hook = build(dir.path(), "out", &config(&receiver));
    receiver.fail(1, 500);
    let err = hook.deliver(delivery("json", "a")).await.expect_err("500");
    assert!(matches!(err, DeliveryError::Retryable { .. }), "{err}");
    receiver.fail(1, 429);
    let err = hook.deliver(delivery("json", "a")).await.expect_err("429");
    assert!(matches!(err, DeliveryError::Retryable { .. }), "{err}");
    receiver.fail(1, 308);
    let err = hook
        .deliver(delivery("json", "a"))
        .await
        .expect_err("redirect");
    assert!(matches!(err, DeliveryError::Permanent { .. }), "{err}");
    assert!(err.to_string().contains("308"), "{err}");
    receiver.fail(1, 404);
    let err = hook.deliver(delivery("json", "a")).await.expect_err("404");
    assert!(matches!(err, DeliveryError::Permanent { .. }), "{err}");
    assert!(err.to_string().contains("404"), "{err}");
    let err = hook
        .deliver(delivery("nowhere", "a"))
        .await
        .expect_err("refused");
    assert!(matches!(err, DeliveryError::Retryable { .. }), "{err}");
    let err = hook
        .deliver(delivery("unconfigured", "a"))
        .await
        .expect_err("no url");
    assert!(matches!(err, DeliveryError::Permanent { .. }), "{err}");
    assert!(receiver.accepted().is_empty());
}

#[tokio::test]
async fn retry_after_and_timeouts() {
    use axum::http::{HeaderValue, StatusCode};
    use axum::response::IntoResponse;
    // A receiver that answers 503 with Retry-After, and one that never answers in time.
    let app = axum::Router::new()
        .route(
            "/busy",
            axum::routing::post(|| async {
                let mut response = StatusCode::SERVICE_UNAVAILABLE.into_response();
                response
                    .headers_mut()
                    .insert("retry-after", HeaderValue::from_static("7"));
                response
            }),
        )
        .route(
            "/slow",
            axum::routing::post(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "late"
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    let dir = tempfile::tempdir().expect("tempdir");
    let hook = build(
        dir.path(),
        "out",
        &format!(
            "[rooms.busy]\nurl = \"http://{addr}/busy\"\n[rooms.slow]\nurl = \"http://{addr}/slow\"\ntimeout_secs = 0.3\n"
        ),
    );
    let err = hook.deliver(delivery("busy", "a")).await.expect_err("503");
    assert_eq!(
        err,
        DeliveryError::Retryable {
            reason: format!("POST http://{addr}/busy answered 503 Service Unavailable: "),
            retry_after: Some(Duration::from_secs(7)),
        }
    );
    let started = std::time::Instant::now();
    let err = hook
        .deliver(delivery("slow", "a"))
        .await
        .expect_err("timeout");
    assert!(matches!(err, DeliveryError::Retryable { .. }), "{err}");
    assert!(err.to_string().contains("timed out"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn reactions_and_deletions_are_skipped_and_joins_are_lines() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let hook = build(dir.path(), "out", &config(&receiver));
    let mut reaction = delivery("slack", "x");
    reaction.event.kind = Kind::Reaction {
        target: patchbay_sdk::MessageRef::Native("1".into()),
        emoji: "👍".into(),
    };
    hook.deliver(reaction).await.expect("skipped, not failed");
    let mut join = delivery("slack", "x");
    join.event.kind = Kind::Join;
    hook.deliver(join).await.expect("delivered");
    let got = receiver.accepted();
    assert_eq!(got.len(), 1);
    assert_eq!(json_body(&got[0])["text"], "[irc] alice joined");
}
