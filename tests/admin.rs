//! The admin API and the commands that use it, through the binary: every endpoint and its
//! token, dead letters made for real by a webhook receiver that refuses (400) and then
//! recovers, retried and delivered once, discarded; the commands against a running gateway
//! (through the API) and a stopped one (the store); the OpenAPI document against the router.

mod support;

#[path = "support/receiver.rs"]
mod receiver;

#[path = "support/admin.rs"]
mod admin;

use std::collections::BTreeSet;
use std::time::Duration;

use admin::{
    TOKEN, assert_dead_letters, assert_down_room_waits, call, config, dead_letters, get,
    type_dead_letters,
};
use serde_json::Value;
use support::{Gateway, free_port, run_failing, run_ok, wait_for_port, wait_until, write_config};

#[test]
fn the_admin_api_shows_the_gateway_and_retries_and_discards_dead_letters() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (receiver, receiver_addr) = rt.block_on(receiver::start(true));
    let port = free_port();
    let down_port = free_port();
    let mut gateway = Gateway::start(dir.path(), &config(port, receiver_addr, Some(down_port)));
    wait_for_port(port, Duration::from_secs(30));
    type_dead_letters(&mut gateway, &rt, port, &["first", "second"]);

    // Every endpoint wants the token: none is 401 (saying what to send), a wrong one 403.
    let endpoints = patchbay::admin::endpoints();
    assert_eq!(endpoints.len(), 11);
    for (method, path) in &endpoints {
        let path = path.replace("{id}", "1");
        let (status, body, headers) = call(&rt, method, port, &path, None);
        assert_eq!(status, 401, "{method} {path} without a token: {body}");
        assert_eq!(
            headers
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok()),
            Some("Bearer")
        );
        let (status, _, _) = call(&rt, method, port, &path, Some("wrong-token-0123456789"));
        assert_eq!(status, 403, "{method} {path} with a wrong token");
    }

    let status = get(&rt, port, "/admin/status");
    assert_eq!(status["engine"], "embedded");
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(
        (
            &status["accounts"],
            &status["routes"],
            &status["dead_letters"]
        ),
        (&Value::from(2), &Value::from(1), &Value::from(2))
    );

    let accounts = get(&rt, port, "/admin/accounts");
    let names: Vec<&str> = accounts
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["name"].as_str())
        .collect();
    assert_eq!(names, ["console.you", "webhook.team"]);
    for account in accounts.as_array().into_iter().flatten() {
        assert_eq!(account["state"], "up", "{account}");
        assert!(account["since_ms"].as_i64().unwrap_or(0) > 0);
    }

    let routes = get(&rt, port, "/admin/routes");
    assert_eq!(routes[0]["name"], "lobby");
    let rooms: Vec<(String, String)> = routes[0]["rooms"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            (
                r["room"].as_str().unwrap_or_default().to_owned(),
                r["direction"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        rooms,
        [
            ("console.you/lobby".to_owned(), "in".to_owned()),
            ("webhook.team/chat".to_owned(), "out".to_owned()),
            ("webhook.team/down".to_owned(), "out".to_owned()),
        ]
    );

    // The room whose receiver never listens holds both, oldest first.
    assert_down_room_waits(&rt, port, 2);
    let dead = assert_dead_letters(&rt, port, &["first", "second"]);
    let (first, second) = (
        dead[0]["id"].as_u64().expect("id"),
        dead[1]["id"].as_u64().expect("id"),
    );

    // The commands ask the running gateway.
    let config_path = gateway.config.clone();
    let listed = run_ok(&["dead-letters", "list"], &config_path);
    assert!(listed.starts_with("2 dead letters:"), "{listed}");
    assert!(
        listed.contains(&format!(
            "  {first}: to webhook.team/chat (route lobby) failed "
        )),
        "{listed}"
    );
    assert!(listed.contains("     <alice> second"), "{listed}");
    let report = run_ok(&["status"], &config_path);
    assert!(
        report.starts_with(&format!(
            "engine: embedded (asked the running gateway on 127.0.0.1:{port})"
        )),
        "{report}"
    );
    assert!(report.contains("  webhook.team: up since "), "{report}");
    assert!(
        report.contains("  webhook.team/down: 2 waiting, the oldest for"),
        "{report}"
    );
    assert!(report.contains("dead letters: 2"), "{report}");

    // Fixed receiver: the retried one is delivered, once; the discarded one never.
    receiver.set_broken(false);
    let retried = run_ok(&["dead-letters", "retry", &first.to_string()], &config_path);
    assert_eq!(
        retried,
        format!("dead letter {first}: back in its room's outbox\n")
    );
    wait_until(Duration::from_secs(30), "the retried delivery", || {
        !receiver.got().is_empty()
    });
    let (status, body, _) = call(
        &rt,
        "DELETE",
        port,
        &format!("/admin/dead-letters/{second}"),
        Some(TOKEN),
    );
    assert_eq!((status, &body["outcome"]), (200, &Value::from("discarded")));
    assert!(dead_letters(&rt, port).is_empty());
    for (method, path, want) in [
        ("DELETE", format!("/admin/dead-letters/{second}"), 404),
        ("POST", format!("/admin/dead-letters/{second}/retry"), 404),
        ("POST", "/admin/dead-letters/x/retry".to_owned(), 400),
    ] {
        let (status, body, _) = call(&rt, method, port, &path, Some(TOKEN));
        assert_eq!(status, want, "{method} {path}: {body}");
        assert!(body["error"].is_string(), "{body}");
    }
    let gone = run_failing(
        &["dead-letters", "discard", &second.to_string()],
        &config_path,
    );
    assert!(gone.contains(&format!("no dead letter {second}")));

    // Reload: an unchanged file is accepted (200 and what changed); a file with an error is
    // refused (422) with what `patchbay check` says, and the gateway keeps running.
    let (status, body, _) = call(&rt, "POST", port, "/admin/reload", Some(TOKEN));
    assert_eq!(status, 200, "an unchanged reload: {body}");
    assert!(body["routes_changed"].is_boolean(), "{body}");
    let reloaded = run_ok(&["reload"], &config_path);
    assert!(reloaded.starts_with("reloaded\n"), "{reloaded}");
    let good = std::fs::read_to_string(&config_path).expect("read the config");
    std::fs::write(
        &config_path,
        good.replace(
            "name = \"lobby\"",
            "name = \"lobby\"\nnick_format = \"{nope}\"",
        ),
    )
    .expect("break the config");
    let (status, body, _) = call(&rt, "POST", port, "/admin/reload", Some(TOKEN));
    assert_eq!(status, 422, "a broken reload: {body}");
    let errors = body["errors"].as_str().unwrap_or_default();
    let check_errors = run_failing(&["check"], &config_path);
    assert!(
        !errors.is_empty() && check_errors.contains(errors.trim()),
        "reload said {errors:?}; check said {check_errors:?}"
    );
    std::fs::write(&config_path, &good).expect("restore the config");
    assert_eq!(get(&rt, port, "/admin/status")["dead_letters"], 0);

    gateway.type_line("third");
    wait_until(Duration::from_secs(30), "the next message", || {
        receiver.got().len() >= 2
    });
    assert_eq!(
        receiver.got(),
        ["first", "third"],
        "the retried one once, the discarded one never"
    );
    assert!(gateway.stop(), "clean stop");
}

#[test]
fn with_the_gateway_stopped_the_commands_read_and_change_the_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (receiver, receiver_addr) = rt.block_on(receiver::start(true));
    let port = free_port();
    let text = config(port, receiver_addr, None);
    let mut gateway = Gateway::start(dir.path(), &text);
    wait_for_port(port, Duration::from_secs(30));
    type_dead_letters(&mut gateway, &rt, port, &["dropped", "kept"]);
    let config_path = gateway.config.clone();
    assert!(gateway.stop(), "clean stop");

    let report = run_ok(&["status"], &config_path);
    assert!(report.starts_with("engine: embedded ("), "{report}");
    assert!(report.contains("dead letters: 2"), "{report}");
    let listed = run_ok(&["dead-letters", "list"], &config_path);
    let ids: Vec<u64> = listed
        .lines()
        .filter_map(|l| l.strip_prefix("  ")?.split(':').next()?.parse().ok())
        .collect();
    assert_eq!(ids.len(), 2, "{listed}");
    assert!(listed.contains("     <alice> dropped") && listed.contains("answered 400"));
    let discarded = run_ok(
        &["dead-letters", "discard", &ids[0].to_string()],
        &config_path,
    );
    assert_eq!(discarded, format!("dead letter {}: discarded\n", ids[0]));
    let retried = run_ok(
        &["dead-letters", "retry", &ids[1].to_string()],
        &config_path,
    );
    assert!(retried.starts_with(&format!(
        "dead letter {}: back in its room's outbox",
        ids[1]
    )));
    let report = run_ok(&["status"], &config_path);
    assert!(
        report.contains("  webhook.team/chat: 1 waiting"),
        "{report}"
    );
    assert!(report.contains("dead letters: 0"), "{report}");
    assert!(run_failing(&["reload"], &config_path).contains("the gateway is not running"));

    // Started again with the receiver fixed: the retried one arrives, once.
    receiver.set_broken(false);
    let gateway = Gateway::start_with(dir.path(), &config_path);
    wait_until(Duration::from_secs(30), "the retried delivery", || {
        !receiver.got().is_empty()
    });
    wait_for_port(port, Duration::from_secs(30));
    // The receiver has it before the delivery is recorded as done.
    wait_until(Duration::from_secs(30), "nothing pending", || {
        get(&rt, port, "/admin/status")["pending"] == 0
    });
    assert_eq!(receiver.got(), ["kept"]);
    assert!(gateway.stop(), "clean stop");
}

#[test]
fn without_a_token_the_admin_api_is_off() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let config = format!(
        "[http]\nlisten = \"127.0.0.1:{port}\"\n\n[console.you]\ninput = \"none\"\noutput = \"stdout\"\n"
    );
    let gateway = Gateway::start(dir.path(), &config);
    wait_for_port(port, Duration::from_secs(30));
    let (status, _) = support::http_get(port, "/admin/status");
    assert_eq!(status, 404);
    wait_until(Duration::from_secs(10), "the startup line", || {
        gateway
            .log()
            .contains("admin API off: [admin] sets no token")
    });
    assert!(gateway.stop());
}

#[test]
fn a_short_admin_token_is_a_config_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_config(
        dir.path(),
        "[admin]\ntoken = \"short\"\n\n[console.you]\ninput = \"none\"\noutput = \"stdout\"\n",
    );
    let stderr = run_failing(&["check"], &path);
    assert!(
        stderr.contains("admin.token") && stderr.contains("at least 16 characters"),
        "{stderr}"
    );
}

/// docs/api.openapi.json is valid JSON, OpenAPI 3.1, and documents exactly the gateway's own
/// and admin routes (the connectors' `/api/` and `/hooks/` are documented there too).
#[test]
fn the_openapi_document_lists_every_gateway_route_and_no_other() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/api.openapi.json"
    ))
    .expect("read the document");
    let doc: Value = serde_json::from_str(&text).expect("valid JSON");
    assert_eq!(doc["openapi"], "3.1.0");
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in ["get", "post", "put", "delete", "patch"] {
            if item.get(method).is_some() {
                documented.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    let served: BTreeSet<(String, String)> = patchbay::admin::endpoints()
        .into_iter()
        .chain(patchbay::http::OWN_ROUTES)
        .map(|(m, p)| (m.to_owned(), p.to_owned()))
        .collect();
    let connectors: BTreeSet<_> = documented
        .iter()
        .filter(|(_, p)| p.starts_with("/api/") || p.starts_with("/hooks/"))
        .cloned()
        .collect();
    let gateway: BTreeSet<_> = documented.difference(&connectors).cloned().collect();
    assert_eq!(gateway, served, "documented vs served gateway routes");
    // Every documented admin operation says it needs the token.
    for (method, path) in &served {
        if path.starts_with("/admin/") {
            let op = &doc["paths"][path][method.to_lowercase()];
            assert!(op["security"].is_array(), "{method} {path} has no security");
            assert!(
                op["responses"]["401"].is_object(),
                "{method} {path}: no 401"
            );
        }
    }
}
