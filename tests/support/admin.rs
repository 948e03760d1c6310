//! The admin API's tests on either engine share this: a config whose console lines go to a
//! webhook receiver (refusing ones become dead letters), the admin API called from the test
//! thread on a runtime of the test's, and the wait for console lines to be dead letters.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tokio::runtime::Runtime;

use crate::receiver::{console_table, slack_room};
use crate::support::{Gateway, wait_until};

pub const TOKEN: &str = "admin-test-token-0123456789";

/// The admin API on `port`; alice's console lines go to `webhook.team/chat`, posted to
/// `receiver`, and, with `down_port`, to a second room whose receiver never listens there (its
/// deliveries wait in the outbox, retried).
pub fn config(port: u16, receiver: SocketAddr, down_port: Option<u16>) -> String {
    let (down_room, down_out) = match down_port {
        Some(p) => (
            slack_room("down", format!("127.0.0.1:{p}"), ""),
            ", \"webhook.team/down\"",
        ),
        None => (String::new(), ""),
    };
    format!(
        "[http]\nlisten = \"127.0.0.1:{port}\"\n\n[admin]\ntoken = \"{TOKEN}\"\n\n{}{}{down_room}\
         [[route]]\nname = \"lobby\"\nin = [\"console.you/lobby\"]\nout = [\"webhook.team/chat\"{down_out}]\n",
        console_table("you.log", "alice"),
        slack_room("chat", receiver, ""),
    )
}

/// One admin request: status, JSON body (null if it is none) and headers.
pub fn call(
    rt: &Runtime,
    method: &str,
    port: u16,
    path: &str,
    token: Option<&str>,
) -> (u16, Value, reqwest::header::HeaderMap) {
    rt.block_on(async {
        let client = reqwest::Client::new();
        let url = format!("http://127.0.0.1:{port}{path}");
        let mut request = match method {
            "POST" => client.post(url),
            "DELETE" => client.delete(url),
            _ => client.get(url),
        };
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("the admin API answers");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.text().await.expect("body");
        (
            status,
            serde_json::from_str(&body).unwrap_or(Value::Null),
            headers,
        )
    })
}

/// GET `path` with the token, which must answer 200 with JSON; the JSON.
pub fn get(rt: &Runtime, port: u16, path: &str) -> Value {
    let (status, body, _) = call(rt, "GET", port, path, Some(TOKEN));
    assert_eq!(status, 200, "GET {path}: {body}");
    assert!(!body.is_null(), "GET {path}: no JSON");
    body
}

pub fn dead_letters(rt: &Runtime, port: u16) -> Vec<Value> {
    get(rt, port, "/admin/dead-letters")
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Type `lines` on the gateway's console; once there are as many dead letters.
pub fn type_dead_letters(gateway: &mut Gateway, rt: &Runtime, port: u16, lines: &[&str]) {
    for line in lines {
        gateway.type_line(line);
    }
    let what = format!("{} dead letters", lines.len());
    wait_until(Duration::from_secs(30), &what, || {
        dead_letters(rt, port).len() == lines.len()
    });
}

/// The dead letters: `texts` in order, each refused (400, `channel_is_archived`) by the receiver
/// of `webhook.team/chat` on route `lobby`, with the time it failed.
pub fn assert_dead_letters(rt: &Runtime, port: u16, texts: &[&str]) -> Vec<Value> {
    let dead = dead_letters(rt, port);
    let got: Vec<&str> = dead.iter().filter_map(|d| d["text"].as_str()).collect();
    assert_eq!(got, texts);
    for letter in &dead {
        assert_eq!(letter["room"], "webhook.team/chat");
        assert_eq!(letter["route"], "lobby");
        let reason = letter["reason"].as_str().unwrap_or_default();
        assert!(
            reason.contains("400") && reason.contains("channel_is_archived"),
            "{letter}"
        );
        assert!(letter["failed_at_ms"].as_i64().unwrap_or(0) > 0);
    }
    dead
}

/// The outbox: only `webhook.team/down`, whose receiver never listens, holding `depth`.
pub fn assert_down_room_waits(rt: &Runtime, port: u16, depth: u64) {
    let outbox = get(rt, port, "/admin/outbox");
    assert_eq!(outbox.as_array().map(Vec::len), Some(1), "{outbox}");
    assert_eq!(outbox[0]["room"], "webhook.team/down", "{outbox}");
    assert_eq!(outbox[0]["depth"], depth);
    assert!(outbox[0]["oldest_waiting_ms"].as_i64().unwrap_or(0) > 0);
}
