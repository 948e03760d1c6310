//! Inbound hooks over real HTTP on loopback: each documented body format, tokens, HMAC
//! signatures, bad bodies, the size limit and the rate limit.

mod support;

use patchbay_sdk::{Kind, RichText};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{error_of, send, start};

const CONFIG: &str = r#"
token = "s3cret"
max_body_bytes = 2048
rate_limit_per_minute = 60
rate_limit_burst = 20

[rooms.github]
format = "github"
secret = "gh-secret"

[rooms.gitlab]
format = "gitlab"

[rooms.alerts]
format = "alertmanager"
kind = "notice"

[rooms.grafana]
format = "grafana"

[rooms.custom]
format = "template"
template = "{{ headers['x-app'] }}: {{ build.status }} ({{ body.build.id }})"

[rooms.limited]
format = "text"

[rooms.open]
secret = "hmac-only"
signature_header = "X-Signature"
"#;

fn body_text(kind: &Kind) -> String {
    kind.body().map(RichText::to_plain).unwrap_or_default()
}

/// Send `request` with the account's token, as a sender that holds it does.
async fn authed(request: reqwest::RequestBuilder) -> reqwest::Response {
    send(request.bearer_auth("s3cret")).await
}

#[tokio::test]
async fn slack_discord_and_plain_bodies_become_messages_with_their_author() {
    let hook = start("ci", CONFIG).await;
    let client = reqwest::Client::new();
    let url = format!("{}/hooks/ci/builds", hook.base);
    let slack = authed(client.post(&url).json(
        &json!({"text": "*deploy* <https://ci/1|#1> done", "username": "deploybot", "icon_url": "https://img/bot.png"}),
    ))
    .await;
    assert_eq!(slack.status(), StatusCode::ACCEPTED);
    let answer: Value = slack.json().await.expect("json");
    assert!(
        answer["id"].as_str().is_some_and(|id| id.len() == 26),
        "{answer}"
    );

    let discord = send(client.post(format!("{url}?token=s3cret")).json(
        &json!({"content": "**tests** passed", "username": "ci", "avatar_url": "https://img/ci.png"}),
    ))
    .await;
    assert_eq!(discord.status(), StatusCode::ACCEPTED);

    let plain = authed(
        client
            .post(&url)
            .header("content-type", "text/plain")
            .body("just text\n"),
    )
    .await;
    assert_eq!(plain.status(), StatusCode::ACCEPTED);

    let events = hook.wait_events(3).await;
    assert!(events.iter().all(|e| e.room == "builds"));
    assert_eq!(events[0].author.name, "deploybot");
    assert_eq!(
        events[0].author.avatar.as_deref(),
        Some("https://img/bot.png")
    );
    assert_eq!(body_text(&events[0].kind), "deploy #1 (https://ci/1) done");
    let spans = events[0].kind.body().expect("body").spans();
    assert!(spans[0].style.bold, "{spans:?}");
    assert!(spans.iter().any(
        |s| matches!(&s.kind, patchbay_sdk::text::SpanKind::Link { url } if url == "https://ci/1")
    ));
    assert_eq!(events[1].author.name, "ci");
    assert_eq!(
        events[1].author.avatar.as_deref(),
        Some("https://img/ci.png")
    );
    assert_eq!(body_text(&events[1].kind), "tests passed");
    // No username: the account's name.
    assert_eq!(events[2].author.name, "ci");
    assert_eq!(body_text(&events[2].kind), "just text");
    assert!(events.iter().all(|e| e.author.is_bot));
}

#[tokio::test]
async fn tokens_are_checked() {
    let hook = start("ci", CONFIG).await;
    let client = reqwest::Client::new();
    let url = format!("{}/hooks/ci/builds", hook.base);
    let none = send(client.post(&url).body("x")).await;
    assert_eq!(none.status(), StatusCode::UNAUTHORIZED);
    assert!(none.headers().contains_key("www-authenticate"));
    assert_eq!(error_of(none).await, "a bearer token is required");
    let wrong = send(client.post(&url).bearer_auth("s3cre").body("x")).await;
    assert_eq!(wrong.status(), StatusCode::FORBIDDEN);
    assert_eq!(error_of(wrong).await, "the token is wrong");
    let wrong_query = send(client.post(format!("{url}?token=nope")).body("x")).await;
    assert_eq!(wrong_query.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        hook.recorder.events().len(),
        0,
        "nothing refused was emitted"
    );
}

#[tokio::test]
async fn hmac_signatures_are_checked_against_the_exact_body() {
    let hook = start("ci", CONFIG).await;
    let client = reqwest::Client::new();
    let url = format!("{}/hooks/ci/open", hook.base);
    let body = br#"{"text": "signed"}"#.to_vec();
    let good = send(
        client
            .post(&url)
            .header("X-Signature", patchbay_webhook::sign("hmac-only", &body))
            .header("content-type", "application/json")
            .body(body.clone()),
    )
    .await;
    assert_eq!(good.status(), StatusCode::ACCEPTED);
    let tampered = send(
        client
            .post(&url)
            .header("X-Signature", patchbay_webhook::sign("hmac-only", &body))
            .header("content-type", "application/json")
            .body(br#"{"text": "signed!"}"#.to_vec()),
    )
    .await;
    assert_eq!(tampered.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        error_of(tampered).await,
        "the signature does not match the body"
    );
    let unsigned = send(client.post(&url).body(body.clone())).await;
    assert_eq!(unsigned.status(), StatusCode::UNAUTHORIZED);
    // This room's secret replaces the account's token? No: either one is accepted.
    let token = authed(client.post(&url).json(&json!({"text": "t"}))).await;
    assert_eq!(token.status(), StatusCode::ACCEPTED);
    let events = hook.wait_events(2).await;
    assert_eq!(body_text(&events[0].kind), "signed");
}

#[tokio::test]
async fn bad_bodies_get_400_naming_the_problem() {
    let hook = start("ci", CONFIG).await;
    let client = reqwest::Client::new();
    let url = format!("{}/hooks/ci/builds", hook.base);
    let cases: Vec<(&str, &[u8], &str)> = vec![
        (
            "application/json",
            b"{\"text\": ",
            "the body is not valid JSON",
        ),
        (
            "application/json",
            b"{\"foo\": 1}",
            "the JSON body has neither `text` (Slack style) nor `content` (Discord style)",
        ),
        (
            "application/json",
            b"{\"text\": 5}",
            "`text` must be a string",
        ),
        (
            "application/json",
            b"{\"content\": \"  \"}",
            "`content` is empty",
        ),
        ("text/plain", b"", "the body is empty"),
        ("text/plain", b"\xff\xfe", "the body is not UTF-8 text"),
    ];
    for (content_type, body, want) in cases {
        let response = authed(
            client
                .post(&url)
                .header("content-type", content_type)
                .body(body.to_vec()),
        )
        .await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{want}");
        let error = error_of(response).await;
        assert!(
            error.starts_with(want),
            "{error:?} should start with {want:?}"
        );
    }
    let github = authed(
        client
            .post(format!("{}/hooks/ci/github", hook.base))
            .header("X-GitHub-Event", "push")
            .json(&json!({"ref": "refs/heads/main"})),
    )
    .await;
    assert_eq!(github.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        error_of(github).await,
        "the body has no `repository.full_name`, which a github/push payload carries"
    );
    assert_eq!(hook.recorder.events().len(), 0);
}

#[tokio::test]
async fn bodies_over_the_limit_get_413_and_bursts_get_429_with_retry_after() {
    // Three at once, then one a minute: slow enough that no token comes back mid-test.
    let hook = start(
        "ci",
        &CONFIG
            .replace("rate_limit_burst = 20", "rate_limit_burst = 3")
            .replace("rate_limit_per_minute = 60", "rate_limit_per_minute = 1"),
    )
    .await;
    let client = reqwest::Client::new();
    let url = format!("{}/hooks/ci/limited", hook.base);
    let big = authed(client.post(&url).body("x".repeat(2049))).await;
    assert_eq!(big.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        error_of(big).await,
        "the body is over the limit of 2048 bytes"
    );
    // A chunked body (no Content-Length) is cut off at the limit too.
    let stream = chunks("y".repeat(4096));
    let chunked = authed(client.post(&url).body(reqwest::Body::wrap_stream(stream))).await;
    assert_eq!(chunked.status(), StatusCode::PAYLOAD_TOO_LARGE);

    for i in 0..3 {
        let ok = authed(client.post(&url).body(format!("line {i}"))).await;
        assert_eq!(ok.status(), StatusCode::ACCEPTED);
    }
    let limited = authed(client.post(&url).body("one too many")).await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = limited
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("a Retry-After in seconds");
    assert!((50..=60).contains(&retry_after), "{retry_after}");
    // Another hook of the same account has its own budget.
    let other = authed(
        client
            .post(format!("{}/hooks/ci/builds", hook.base))
            .body("x"),
    )
    .await;
    assert_eq!(other.status(), StatusCode::ACCEPTED);
    let events = hook.wait_events(4).await;
    let texts: Vec<String> = events
        .iter()
        .filter(|e| e.room == "limited")
        .map(|e| body_text(&e.kind))
        .collect();
    assert_eq!(texts, ["line 0", "line 1", "line 2"]);
}

/// A body sent in 512-byte chunks, without a Content-Length.
fn chunks(
    text: String,
) -> impl futures::Stream<Item = Result<Vec<u8>, std::io::Error>> + Send + 'static {
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = text
        .into_bytes()
        .chunks(512)
        .map(|c| Ok(c.to_vec()))
        .collect();
    futures::stream::iter(chunks)
}

#[tokio::test]
async fn shipped_templates_render_github_gitlab_alertmanager_and_grafana() {
    let hook = start("ci", CONFIG).await;
    let client = reqwest::Client::new();
    let push = json!({
        "ref": "refs/heads/main", "compare": "https://github.com/o/r/compare/a...b",
        "pusher": {"name": "alice"}, "sender": {"login": "alice"},
        "repository": {"full_name": "o/r", "html_url": "https://github.com/o/r"},
        "commits": [{"id": "0123456789", "url": "https://github.com/o/r/commit/0123456", "message": "Fix it\n\nbecause", "author": {"name": "Alice"}}]
    });
    let body = serde_json::to_vec(&push).expect("json");
    let github = send(
        signed_github(&client, &hook.base, "push", body.clone())
            .header("X-GitHub-Delivery", "d-1")
            .header("content-type", "application/json"),
    )
    .await;
    assert_eq!(github.status(), StatusCode::ACCEPTED);
    let ping = send(signed_github(&client, &hook.base, "ping", b"{}".to_vec())).await;
    assert_eq!(
        ping.status(),
        StatusCode::OK,
        "a ping is answered, not relayed"
    );
    let issue = json!({"action": "opened", "sender": {"login": "bob"}, "repository": {"full_name": "o/r"},
        "issue": {"number": 12, "title": "Crash on start", "html_url": "https://github.com/o/r/issues/12", "body": "It crashes.\nTrace: ..."}});
    let body = serde_json::to_vec(&issue).expect("json");
    let github_issue = send(signed_github(&client, &hook.base, "issues", body)).await;
    assert_eq!(github_issue.status(), StatusCode::ACCEPTED);

    let gitlab = send(
        client
            .post(format!("{}/hooks/ci/gitlab", hook.base))
            .header("X-Gitlab-Token", "s3cret")
            .json(&json!({"object_kind": "push", "ref": "refs/heads/dev", "user_name": "Carol", "total_commits_count": 1,
                "project": {"path_with_namespace": "g/p", "web_url": "https://gitlab.com/g/p"},
                "commits": [{"id": "abcdef0123456789", "url": "https://gitlab.com/g/p/-/commit/abcdef01", "message": "Tidy", "author": {"name": "Carol"}}]})),
    )
    .await;
    assert_eq!(gitlab.status(), StatusCode::ACCEPTED);

    let alert = authed(client.post(format!("{}/hooks/ci/alerts", hook.base)).json(
        &json!({"version": "4", "status": "firing", "groupLabels": {"alertname": "HighLoad"},
            "commonLabels": {"alertname": "HighLoad"}, "externalURL": "http://am",
            "alerts": [{"status": "firing", "labels": {"alertname": "HighLoad", "severity": "page"},
                "annotations": {"summary": "load 12 on db1"}, "generatorURL": "http://prom/graph"}]}),
    ))
    .await;
    assert_eq!(alert.status(), StatusCode::ACCEPTED);

    let grafana = authed(client.post(format!("{}/hooks/ci/grafana", hook.base)).json(
        &json!({"title": "[FIRING:1] Disk full", "status": "firing", "message": "disk full on db1",
            "alerts": [{"status": "firing", "labels": {"alertname": "Disk full"}, "annotations": {"summary": "/ at 98%"},
                "dashboardURL": "http://grafana/d/1"}]}),
    ))
    .await;
    assert_eq!(grafana.status(), StatusCode::ACCEPTED);

    let custom = authed(
        client
            .post(format!("{}/hooks/ci/custom", hook.base))
            .header("X-App", "builder")
            .json(&json!({"build": {"status": "green", "id": 99}})),
    )
    .await;
    assert_eq!(custom.status(), StatusCode::ACCEPTED);

    let events = hook.wait_events(6).await;
    let texts: Vec<(String, String)> = events
        .iter()
        .map(|e| (e.author.name.clone(), body_text(&e.kind)))
        .collect();
    assert_eq!(
        texts,
        [
            ("GitHub".to_owned(), "alice pushed 1 commit to main in o/r (https://github.com/o/r/compare/a...b)\n- 0123456 Fix it (Alice)".to_owned()),
            ("GitHub".to_owned(), "bob opened issue #12 Crash on start (https://github.com/o/r/issues/12) in o/r\n> It crashes.".to_owned()),
            ("GitLab".to_owned(), "Carol pushed 1 commit to dev in g/p (https://gitlab.com/g/p)\n- abcdef01 Tidy (Carol)".to_owned()),
            ("Alertmanager".to_owned(), "[FIRING:1] HighLoad\n- firing: load 12 on db1 (page) source (http://prom/graph)".to_owned()),
            ("Grafana".to_owned(), "[FIRING:1] Disk full\n- firing: / at 98% dashboard (http://grafana/d/1)".to_owned()),
            ("ci".to_owned(), "builder: green (99)".to_owned()),
        ]
    );
    assert_eq!(
        events[0].remote_id.as_deref(),
        Some("d-1"),
        "GitHub's delivery id dedups redeliveries"
    );
    assert!(
        matches!(events[3].kind, Kind::Notice { .. }),
        "kind = \"notice\""
    );
    assert!(matches!(events[0].kind, Kind::Message { .. }));
}

#[tokio::test]
async fn a_room_that_only_sends_out_refuses_inbound_requests() {
    let hook = start("team", "[rooms.chat]\nurl = \"http://127.0.0.1:9/in\"\n").await;
    let response = send(
        reqwest::Client::new()
            .post(format!("{}/hooks/team/chat", hook.base))
            .body("anyone?"),
    )
    .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        error_of(response).await,
        "this hook takes no requests (it has neither `token` nor `secret`)"
    );
    assert_eq!(hook.recorder.events().len(), 0);
}

#[tokio::test]
async fn form_bodies_curl_style_and_slack_payload_style() {
    let hook = start("ci", CONFIG).await;
    let client = reqwest::Client::new();
    let url = format!("{}/hooks/ci/builds", hook.base);
    for body in [
        "deploy finished",
        "payload=%7B%22text%22%3A%22from+*legacy*+slack%22%7D",
    ] {
        let response = authed(
            client
                .post(&url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body),
        )
        .await;
        assert_eq!(response.status(), StatusCode::ACCEPTED, "{body}");
    }
    let events = hook.wait_events(2).await;
    assert_eq!(body_text(&events[0].kind), "deploy finished");
    assert_eq!(body_text(&events[1].kind), "from legacy slack");
}

#[tokio::test]
async fn markdown_that_renders_to_nothing_is_relayed_as_sent() {
    let hook = start("ci", CONFIG).await;
    let client = reqwest::Client::new();
    for (n, text) in ["#", "##", ">"].into_iter().enumerate() {
        let response = authed(
            client
                .post(format!("{}/hooks/ci/builds", hook.base))
                .json(&json!({ "text": text })),
        )
        .await;
        assert_eq!(response.status(), StatusCode::ACCEPTED, "{text}");
        let events = hook.wait_events(n + 1).await;
        assert_eq!(body_text(&events[n].kind), text);
    }
}

/// A GitHub `event` delivery of `body` to the hook's `github` room, signed with its secret.
fn signed_github(
    client: &reqwest::Client,
    base: &str,
    event: &str,
    body: Vec<u8>,
) -> reqwest::RequestBuilder {
    client
        .post(format!("{base}/hooks/ci/github"))
        .header("X-GitHub-Event", event)
        .header(
            "X-Hub-Signature-256",
            patchbay_webhook::sign("gh-secret", &body),
        )
        .body(body)
}
