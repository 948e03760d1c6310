//! Property tests of what a hook reads from outside: bodies (every format, through the shipped
//! templates), their content types and form encoding, and signature headers.
//!
//! The bodies are structure-aware: a realistic payload of each sender (Slack, Discord, GitHub
//! push/issues/pull_request/release/workflow_run, GitLab, Alertmanager, Grafana) with some of
//! its fields replaced by any JSON, removed, or its subtrees duplicated elsewhere — the shapes
//! a sender's new version or a hostile client would send — plus free JSON and raw bytes.
//! Whatever comes in, parsing returns a message or a refusal that says something; it never
//! panics. Cases proptest shrinks to are kept in `proptest-regressions/`.

use axum::http::HeaderMap;
use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::config::{Format, SignatureScheme};

fn settings(format: Format) -> InboundSettings {
    InboundSettings {
        secret: Some("secret".into()),
        format,
        template: Some("in:custom".into()),
        ..crate::config::test_hook()
    }
}

fn templates() -> Templates {
    let mut templates = Templates::new();
    templates
        .add(
            "in:custom",
            "{{ headers['x-app'] }}: {{ build.status }} ({{ body.build.id[:3] }})".into(),
        )
        .expect("compiles");
    templates
}

/// One realistic payload per sender, with the GitHub event it comes with.
fn samples() -> Vec<(Format, Option<&'static str>, Value)> {
    let repository = json!({"full_name": "o/r", "html_url": "https://github.com/o/r"});
    let commit = json!({"id": "0123456789", "url": "https://github.com/o/r/commit/0123456", "message": "Fix it\n\nbecause", "author": {"name": "Alice"}});
    vec![
        (
            Format::Auto,
            None,
            json!({"text": "*deploy* <https://ci/1|#1> ~done~ <@U1>", "username": "bot", "icon_url": "https://i/b.png",
                "attachments": [{"pretext": "p", "title": "t", "title_link": "https://l", "text": "x", "fallback": "f"}]}),
        ),
        (
            Format::Discord,
            None,
            json!({"content": "**tests** passed", "username": "ci", "avatar_url": "https://i/c.png",
                "embeds": [{"title": "v2", "url": "https://r/2", "description": "notes"}]}),
        ),
        (
            Format::Github,
            Some("push"),
            json!({"ref": "refs/heads/main", "compare": "https://github.com/o/r/compare/a...b", "deleted": false,
                "pusher": {"name": "alice"}, "sender": {"login": "alice"}, "repository": repository,
                "commits": [commit.clone(), commit], "head_commit": {"id": "0123456789"}}),
        ),
        (
            Format::Github,
            Some("issues"),
            json!({"action": "opened", "sender": {"login": "bob"}, "repository": repository,
                "issue": {"number": 12, "title": "Crash", "html_url": "https://github.com/o/r/issues/12", "body": "It crashes."}}),
        ),
        (
            Format::Github,
            Some("pull_request"),
            json!({"action": "closed", "sender": {"login": "bob"}, "repository": repository,
                "pull_request": {"number": 3, "title": "Feature", "merged": true, "html_url": "https://github.com/o/r/pull/3"}}),
        ),
        (
            Format::Github,
            Some("release"),
            json!({"action": "published", "sender": {"login": "bob"}, "repository": repository,
                "release": {"tag_name": "v1", "name": "One", "prerelease": false, "html_url": "https://github.com/o/r/releases/v1"}}),
        ),
        (
            Format::Github,
            Some("workflow_run"),
            json!({"action": "completed", "repository": repository,
                "workflow_run": {"name": "CI", "conclusion": "failure", "head_branch": "main", "html_url": "https://github.com/o/r/actions/runs/1"}}),
        ),
        (
            Format::Gitlab,
            None,
            json!({"object_kind": "push", "ref": "refs/heads/dev", "user_name": "Carol", "total_commits_count": 7,
                "project": {"path_with_namespace": "g/p", "web_url": "https://gitlab.com/g/p"},
                "commits": [{"id": "abcdef0123456789", "url": "https://gitlab.com/g/p/-/commit/abcdef01", "message": "Tidy", "author": {"name": "Carol"}}]}),
        ),
        (
            Format::Alertmanager,
            None,
            json!({"version": "4", "status": "firing", "groupLabels": {"alertname": "HighLoad"},
                "commonLabels": {"alertname": "HighLoad"}, "externalURL": "http://am",
                "alerts": [{"status": "firing", "labels": {"alertname": "HighLoad", "severity": "page"},
                    "annotations": {"summary": "load 12", "description": "a\nb"}, "generatorURL": "http://prom/graph"}]}),
        ),
        (
            Format::Grafana,
            None,
            json!({"title": "[FIRING:1] Disk full", "status": "firing", "message": "disk full",
                "alerts": [{"status": "firing", "labels": {"alertname": "Disk full"}, "annotations": {"summary": "/ at 98%"}}]}),
        ),
        (
            Format::Template,
            None,
            json!({"build": {"status": "green", "id": "99-abc"}}),
        ),
    ]
}

/// Text with the characters the parsers treat specially.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z <>|*~_@#!:/\\n.-]{0,40}",
        any::<String>(),
        Just(String::new()),
        "https?://[a-z]{1,8}(/[a-z0-9|]{0,5})?",
    ]
}

/// Any JSON, a few levels deep, with keys the parsers and templates look up.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON numbers are finite", |f| f.is_finite())
            .prop_map(Value::from),
        text().prop_map(Value::from),
    ];
    let key = prop_oneof![
        prop::sample::select(vec![
            "text",
            "content",
            "username",
            "title",
            "status",
            "alerts",
            "labels",
            "commits",
            "id",
            "ref",
            "name",
            "action",
            "repository",
            "full_name",
            "attachments",
            "embeds",
        ])
        .prop_map(str::to_owned),
        "[a-z_]{1,8}",
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..6)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// One change to a payload: the node at `at` (an index into its nodes) is replaced, removed,
/// or overwritten with another of its nodes.
#[derive(Debug, Clone)]
enum Mutation {
    Replace(usize, Value),
    Remove(usize),
    Copy { from: usize, to: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<usize>(), json_value()).prop_map(|(at, value)| Mutation::Replace(at, value)),
        2 => any::<usize>().prop_map(Mutation::Remove),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(from, to)| Mutation::Copy { from, to }),
    ]
}

/// JSON pointers to every node below the root.
fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
    let children: Vec<(String, &Value)> = match value {
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| (k.replace('~', "~0").replace('/', "~1"), v))
            .collect(),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| (i.to_string(), v))
            .collect(),
        _ => Vec::new(),
    };
    for (token, child) in children {
        let path = format!("{at}/{token}");
        out.push(path.clone());
        pointers(child, path, out);
    }
}

fn apply(value: &mut Value, mutation: &Mutation) {
    let mut all = Vec::new();
    pointers(value, String::new(), &mut all);
    if all.is_empty() {
        return;
    }
    let pick = |i: usize| all[i % all.len()].clone();
    match mutation {
        Mutation::Replace(at, new) => {
            if let Some(node) = value.pointer_mut(&pick(*at)) {
                *node = new.clone();
            }
        }
        Mutation::Remove(at) => {
            let path = pick(*at);
            let (parent, last) = path.rsplit_once('/').unwrap_or(("", ""));
            let last = last.replace("~1", "/").replace("~0", "~");
            match value.pointer_mut(parent) {
                Some(Value::Object(map)) => {
                    map.remove(&last);
                }
                Some(Value::Array(items)) => {
                    if let Ok(i) = last.parse::<usize>()
                        && i < items.len()
                    {
                        items.remove(i);
                    }
                }
                _ => {}
            }
        }
        Mutation::Copy { from, to } => {
            let copied = value.pointer(&pick(*from)).cloned();
            if let (Some(copied), Some(node)) = (copied, value.pointer_mut(&pick(*to))) {
                *node = copied;
            }
        }
    }
}

/// A payload of one sender, changed a few times.
fn shaped_body() -> impl Strategy<Value = (Format, Option<&'static str>, Value)> {
    (
        prop::sample::select(samples()),
        prop::collection::vec(mutation(), 0..5),
    )
        .prop_map(|((format, event, mut body), mutations)| {
            for mutation in &mutations {
                apply(&mut body, mutation);
            }
            (format, event, body)
        })
}

fn headers(content_type: &str, event: Option<&str>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Ok(value) = content_type.parse() {
        headers.insert("content-type", value);
    }
    if let Some(event) = event.and_then(|e| e.parse().ok()) {
        headers.insert("x-github-event", event);
    }
    if let Ok(value) = "app-x".parse() {
        headers.insert("x-app", value);
    }
    headers
}

/// What every parse must be: a message with text, an ignore with a reason, or a refusal that
/// says what is wrong.
fn check_outcome(outcome: Result<Parsed, String>) -> Result<(), TestCaseError> {
    match outcome {
        Ok(Parsed::Message(message)) => {
            prop_assert!(!message.text.trim().is_empty(), "an empty message");
        }
        Ok(Parsed::Ignored(why)) => prop_assert!(!why.is_empty()),
        Err(why) => prop_assert!(!why.is_empty(), "a refusal that says nothing"),
    }
    Ok(())
}

const FORMATS: [Format; 9] = [
    Format::Auto,
    Format::Slack,
    Format::Discord,
    Format::Text,
    Format::Github,
    Format::Gitlab,
    Format::Alertmanager,
    Format::Grafana,
    Format::Template,
];

/// The samples the shaped bodies start from are what their senders really send: each one, as
/// sent, is a message.
#[test]
fn every_sample_as_sent_is_a_message() {
    let templates = templates();
    for (format, event, body) in samples() {
        let json = serde_json::to_vec(&body).expect("serialises");
        let parsed = parse(
            &settings(format),
            &templates,
            &headers("application/json", event),
            &json,
        );
        assert!(
            matches!(&parsed, Ok(Parsed::Message(m)) if !m.text.is_empty()),
            "{format:?} {event:?}: {parsed:?}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn shaped_bodies_parse_to_a_message_or_a_refusal(
        (format, event, body) in shaped_body(),
        as_form in any::<bool>(),
    ) {
        let templates = templates();
        let json = serde_json::to_vec(&body).expect("serialises");
        let outcome = if as_form {
            let form: String = form_urlencoded::Serializer::new(String::new())
                .append_pair("payload", &String::from_utf8_lossy(&json))
                .finish();
            let headers = headers("application/x-www-form-urlencoded", event);
            parse(&settings(format), &templates, &headers, form.as_bytes())
        } else {
            parse(&settings(format), &templates, &headers("application/json", event), &json)
        };
        check_outcome(outcome)?;
    }

    #[test]
    fn any_json_in_any_format_parses_to_a_message_or_a_refusal(
        body in json_value(),
        format in prop::sample::select(FORMATS.to_vec()),
        event in prop::option::of(prop::sample::select(vec!["push", "issues", "ping", "pull_request", "release", "workflow_run", "star"])),
    ) {
        let json = serde_json::to_vec(&body).expect("serialises");
        let outcome = parse(&settings(format), &templates(), &headers("application/json", event), &json);
        check_outcome(outcome)?;
    }

    #[test]
    fn raw_bytes_and_content_types_never_panic(
        body in prop::collection::vec(any::<u8>(), 0..256),
        content_type in prop_oneof![
            Just("application/json".to_owned()),
            Just("application/x-www-form-urlencoded".to_owned()),
            Just("text/plain; charset=utf-8".to_owned()),
            Just("application/vnd.x+json".to_owned()),
            "[ -~]{0,30}",
        ],
        format in prop::sample::select(FORMATS.to_vec()),
    ) {
        let outcome = parse(&settings(format), &templates(), &headers(&content_type, Some("push")), &body);
        check_outcome(outcome)?;
    }

    #[test]
    fn slack_markup_converts_without_losing_plain_text(text in text()) {
        let converted = slack_to_markdown(&text);
        if !text.contains(['<', '*', '~']) {
            prop_assert_eq!(converted, text);
        }
    }

    /// Signature and timestamp headers of any shape are refused or accepted, never a panic;
    /// only the real signature of this body and time is accepted.
    #[test]
    fn signature_headers_of_any_shape_are_checked_safely(
        scheme in prop::sample::select(vec![SignatureScheme::Github, SignatureScheme::Slack, SignatureScheme::Patchbay]),
        signature in prop_oneof!["(sha256=|v0=|v1=)?[0-9a-fA-F]{0,70}", "[ -~]{0,80}"],
        timestamp in prop_oneof!["-?[0-9]{1,20}", "[ -~]{0,20}"],
        now in any::<i64>(),
        body in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut hook = settings(Format::Auto);
        hook.signature_scheme = scheme;
        let mut headers = HeaderMap::new();
        for name in ["x-hub-signature-256", "x-slack-signature", "x-patchbay-signature"] {
            if let Ok(value) = signature.parse() {
                headers.insert(name, value);
            }
        }
        for name in ["x-slack-request-timestamp", "x-patchbay-timestamp"] {
            if let Ok(value) = timestamp.parse() {
                headers.insert(name, value);
            }
        }
        let checked = crate::auth::check(&hook, &headers, None, &body, now);
        prop_assert!(checked.is_err(), "a made-up signature passed: {checked:?}");
        // The genuine one for this scheme passes (when the time is inside the window).
        if scheme == SignatureScheme::Patchbay {
            let genuine = crate::auth::sign_timed("secret", now, &body);
            let mut headers = HeaderMap::new();
            headers.insert("x-patchbay-signature", genuine.parse().expect("hex"));
            headers.insert("x-patchbay-timestamp", now.to_string().parse().expect("digits"));
            let checked = crate::auth::check(&hook, &headers, None, &body, now);
            prop_assert!(checked.is_ok(), "{checked:?}");
        }
    }
}
