//! The admin API and the dead-letter commands on the nats engine, through the binary against
//! a real nats-server: dead letters in `P_dead` listed with their reason, one retried through
//! the API and delivered once, the other discarded from the command line with the gateway
//! stopped (JetStream is read directly); the outbox's oldest waiting delivery per room.

mod support;

#[path = "support/receiver.rs"]
mod receiver;

use std::time::Duration;

use serde_json::Value;
use support::nats::NatsServer;
use support::{Gateway, free_port, run_ok, wait_for_port, wait_until};

const TOKEN: &str = "admin-nats-token-0123456789";

fn get(rt: &tokio::runtime::Runtime, port: u16, path: &str) -> Value {
    rt.block_on(async {
        let response = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{port}{path}"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("the admin API answers");
        assert_eq!(response.status(), 200, "GET {path}");
        response.json().await.expect("JSON")
    })
}

fn post(rt: &tokio::runtime::Runtime, port: u16, path: &str) -> u16 {
    rt.block_on(async {
        reqwest::Client::new()
            .post(format!("http://127.0.0.1:{port}{path}"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("the admin API answers")
            .status()
            .as_u16()
    })
}

#[test]
fn dead_letters_on_the_nats_engine_are_listed_retried_and_discarded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nats = NatsServer::start(dir.path());
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (receiver, receiver_addr) = rt.block_on(receiver::start(true));

    let port = free_port();
    let down_port = free_port();
    let config = format!(
        r#"
[bus]
engine = "nats"
servers = ["{url}"]
prefix = "adm"
lease = "2s"

[http]
listen = "127.0.0.1:{port}"

[admin]
token = "{TOKEN}"

[console.you]
input = "stdin"
output = "you.log"
room = "lobby"
nick = "alice"

[webhook.team.rooms.chat]
url = "http://{receiver_addr}/in"
payload = "slack"

[webhook.team.rooms.down]
url = "http://127.0.0.1:{down_port}/in"
payload = "slack"

[[route]]
name = "lobby"
in = ["console.you/lobby"]
out = ["webhook.team/chat", "webhook.team/down"]
"#,
        url = nats.url()
    );
    let mut gateway = Gateway::start(dir.path(), &config);
    wait_for_port(port, Duration::from_secs(30));
    // The console account runs once this instance holds its lease.
    wait_until(Duration::from_secs(30), "the console account up", || {
        get(&rt, port, "/admin/accounts")
            .as_array()
            .into_iter()
            .flatten()
            .any(|a| a["name"] == "console.you" && a["state"] == "up")
    });
    gateway.type_line("one");
    gateway.type_line("two");
    let dead = |rt: &tokio::runtime::Runtime| -> Vec<Value> {
        get(rt, port, "/admin/dead-letters")
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    wait_until(Duration::from_secs(30), "two dead letters", || {
        dead(&rt).len() == 2
    });
    assert_eq!(get(&rt, port, "/admin/status")["engine"], "nats");
    let letters = dead(&rt);
    let texts: Vec<&str> = letters.iter().filter_map(|d| d["text"].as_str()).collect();
    assert_eq!(texts, ["one", "two"]);
    for letter in &letters {
        assert_eq!(letter["room"], "webhook.team/chat");
        assert!(
            letter["reason"]
                .as_str()
                .is_some_and(|r| r.contains("400") && r.contains("channel_is_archived")),
            "{letter}"
        );
        assert!(letter["failed_at_ms"].as_i64().unwrap_or(0) > 0);
    }
    let outbox = get(&rt, port, "/admin/outbox");
    assert_eq!(outbox[0]["room"], "webhook.team/down", "{outbox}");
    assert_eq!(outbox[0]["depth"], 2);
    assert!(outbox[0]["oldest_waiting_ms"].as_i64().unwrap_or(0) > 0);

    // Retried through the API: back on the room's outbox subject, delivered once.
    receiver.set_broken(false);
    let (first, second) = (
        letters[0]["id"].as_u64().expect("id"),
        letters[1]["id"].as_u64().expect("id"),
    );
    assert_eq!(
        post(&rt, port, &format!("/admin/dead-letters/{first}/retry")),
        200
    );
    wait_until(Duration::from_secs(30), "the retried delivery", || {
        !receiver.got().is_empty()
    });
    assert_eq!(dead(&rt).len(), 1);
    let config_path = gateway.config.clone();
    assert!(gateway.stop(), "clean stop");

    // Stopped: the commands read and change JetStream directly.
    let listed = run_ok(&["dead-letters", "list"], &config_path);
    assert!(listed.starts_with("1 dead letter:"), "{listed}");
    assert!(listed.contains(&format!("  {second}: to webhook.team/chat")));
    let discarded = run_ok(
        &["dead-letters", "discard", &second.to_string()],
        &config_path,
    );
    assert_eq!(discarded, format!("dead letter {second}: discarded\n"));
    assert_eq!(
        run_ok(&["dead-letters", "list"], &config_path),
        "no dead letters\n"
    );
    assert_eq!(receiver.got(), ["one"]);
}
