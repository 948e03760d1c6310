//! The REST side over real HTTP on loopback: sending as a named user, the room log with
//! `after`, tokens, bad bodies, limits, and the log surviving a restart.

mod support;

use patchbay_sdk::{Kind, MessageRef, RichText};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{TOKEN, deliver, delivery, get, get_json, post_json, start};

const CONFIG: &str = r#"
token = "api-token-123"
max_body_bytes = 1024
rooms = ["lobby", "ops"]
"#;

async fn error_of(response: reqwest::Response) -> String {
    let json: Value = response.json().await.expect("JSON");
    json["error"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_client_sends_as_a_named_user_and_reads_the_room_since_an_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    let api = start("bots", CONFIG, dir.path()).await;
    let client = reqwest::Client::new();
    let url = format!("{}/lobby/messages", api.base);

    api.say("lobby", "alice", "hello from irc").await;
    let sent = post_json(
        &url,
        json!({"username": "deploybot", "text": "deploying **v2**", "avatar": "https://img/b.png"}),
    )
    .await;
    assert_eq!(sent.status(), StatusCode::ACCEPTED);
    let sent: Value = sent.json().await.expect("json");
    let event_id = sent["event_id"].as_str().expect("event id").to_owned();

    // The send went into the route as the named user.
    let emitted = api.wait_emitted(1).await;
    let (id, inbound) = &emitted[0];
    assert_eq!(id.to_string(), event_id);
    assert_eq!(inbound.room, "lobby");
    assert_eq!(inbound.author.name, "deploybot");
    assert_eq!(inbound.author.avatar.as_deref(), Some("https://img/b.png"));
    assert_eq!(
        inbound.kind.body().map(RichText::to_plain).as_deref(),
        Some("deploying v2")
    );

    // A reply to the IRC message, by its gateway id.
    let irc = delivery("lobby", "bob", "second");
    let irc_id = irc.event.id;
    deliver(&api.connector, irc.clone()).await;
    // Redelivered after a gateway crash: logged once.
    deliver(&api.connector, irc).await;
    let reply = client
        .post(format!("{url}?token={TOKEN}"))
        .json(&json!({"username": "deploybot", "type": "action", "text": "nods", "reply_to": irc_id.to_string()}))
        .send()
        .await
        .expect("post");
    assert_eq!(reply.status(), StatusCode::ACCEPTED);
    let emitted = api.wait_emitted(2).await;
    assert_eq!(emitted[1].1.reply_to, Some(MessageRef::Gateway(irc_id)));
    assert!(matches!(emitted[1].1.kind, Kind::Action { .. }));

    let page: Value = get_json(&url).await;
    let entries = page["entries"].as_array().expect("entries");
    let summary: Vec<(String, String, String)> = entries
        .iter()
        .map(|e| {
            (
                e["direction"].as_str().unwrap_or_default().to_owned(),
                e["nick"].as_str().unwrap_or_default().to_owned(),
                e["event"]["type"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("delivered".into(), "[irc] alice".into(), "message".into()),
            ("sent".into(), "deploybot".into(), "message".into()),
            ("delivered".into(), "[irc] bob".into(), "message".into()),
            ("sent".into(), "deploybot".into(), "action".into()),
        ]
    );
    assert_eq!(entries[1]["event"]["id"], event_id.as_str());
    assert_eq!(entries[1]["id"], sent["id"]);
    assert_eq!(page["next"], entries[3]["id"]);

    // Since the second entry, two at a time.
    let second = entries[1]["id"].as_i64().expect("id");
    let page: Value = get_json(format!("{url}?after={second}&limit=1")).await;
    assert_eq!(page["entries"].as_array().map(Vec::len), Some(1));
    assert_eq!(page["entries"][0]["event"]["author"]["name"], "bob");
    // A client without a cursor starts from the newest entries.
    let tail: Value = get_json(format!("{url}?last=2")).await;
    assert_eq!(tail["entries"][0]["id"], entries[2]["id"]);
    assert_eq!(tail["entries"][1]["id"], entries[3]["id"]);
    assert_eq!(tail["next"], entries[3]["id"]);
    // Another room's log is its own.
    let ops: Value = get_json(format!("{}/ops/messages", api.base)).await;
    assert_eq!(ops["entries"], json!([]));
    assert_eq!(ops["next"], 0);
    api.stop().await;
}

#[tokio::test]
async fn the_log_survives_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let api = start("bots", CONFIG, dir.path()).await;
    api.say("ops", "alice", "before the restart").await;
    api.stop().await;
    let api = start("bots", CONFIG, dir.path()).await;
    api.say("ops", "alice", "after").await;
    let page: Value = get_json(format!("{}/ops/messages", api.base)).await;
    let texts: Vec<&str> = page["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["event"]["body"]["blocks"][0]["spans"][0]["text"].as_str())
        .collect();
    assert_eq!(texts, ["before the restart", "after"]);
    api.stop().await;
}

#[tokio::test]
async fn tokens_bodies_and_limits_are_checked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let api = start("bots", CONFIG, dir.path()).await;
    let client = reqwest::Client::new();
    let url = format!("{}/lobby/messages", api.base);
    let none = client.get(&url).send().await.expect("get");
    assert_eq!(none.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(error_of(none).await, "a bearer token is required");
    let wrong = client
        .post(&url)
        .bearer_auth("api-token-124")
        .json(&json!({"username": "x", "text": "y"}))
        .send()
        .await
        .expect("post");
    assert_eq!(wrong.status(), StatusCode::FORBIDDEN);
    let stream = client
        .get(format!("{}/stream", api.base))
        .send()
        .await
        .expect("get");
    assert_eq!(
        stream.status(),
        StatusCode::UNAUTHORIZED,
        "the stream needs the token too"
    );

    let cases: Vec<(&str, &str)> = vec![
        ("{\"username\": ", "the body is not a message: "),
        (
            "{\"username\": \"b\", \"txt\": \"y\"}",
            "the body is not a message: unknown field `txt`",
        ),
        (
            "{\"text\": \"y\"}",
            "`username` is required: who is speaking?",
        ),
        (
            "{\"username\": \"b\", \"type\": \"edit\", \"text\": \"y\"}",
            "`target` is required for a edit",
        ),
    ];
    for (body, want) in cases {
        let response = client
            .post(&url)
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("post");
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
        let error = error_of(response).await;
        assert!(
            error.starts_with(want),
            "{error:?} should start with {want:?}"
        );
    }
    let big = post_json(&url, json!({"username": "b", "text": "x".repeat(2000)})).await;
    assert_eq!(big.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let secret = format!("{}/secret/messages", api.base);
    let elsewhere = post_json(&secret, json!({"username": "b", "text": "x"})).await;
    assert_eq!(elsewhere.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        error_of(elsewhere).await,
        "this API does not serve room `secret`"
    );
    let history = get(&secret).await;
    assert_eq!(history.status(), StatusCode::NOT_FOUND);
    let bad_after = get(format!("{url}?after=-3")).await;
    assert_eq!(bad_after.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        error_of(bad_after).await,
        "`after` must be an entry id (a whole number, 0 or more)"
    );
    // An idempotency key: the second send is not relayed again.
    for expected in [StatusCode::ACCEPTED, StatusCode::OK] {
        let response = post_json(&url, json!({"username": "b", "text": "once", "id": "k-1"})).await;
        assert_eq!(response.status(), expected);
    }
    assert_eq!(api.recorder.events().len(), 1);
    api.stop().await;
}
