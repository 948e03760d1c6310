//! An outbound webhook's receiving end on a loopback port, at `http://ADDR/in`: it answers 500
//! (retryable) to its first `fail` requests, 400 (a permanent refusal: dead letters) while
//! broken, and otherwise 200, recording each request it takes. With it, the config tables of
//! the tests that send console lines to it.
#![allow(dead_code)]

use std::fmt::Display;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};

/// What the receiver took, and how it answers.
#[derive(Default)]
pub struct Receiver {
    broken: AtomicBool,
    fail: AtomicU32,
    attempts: AtomicU32,
    got: Mutex<Vec<(HeaderMap, Vec<u8>)>>,
}

impl Receiver {
    /// Refuse (400) from now on, or take deliveries again.
    pub fn set_broken(&self, broken: bool) {
        self.broken.store(broken, Ordering::SeqCst);
    }

    /// Every request that came, answered or not.
    pub fn attempts(&self) -> u32 {
        self.attempts.load(Ordering::SeqCst)
    }

    /// The requests taken so far, in order.
    pub fn requests(&self) -> Vec<(HeaderMap, Vec<u8>)> {
        self.got.lock().expect("lock").clone()
    }

    /// The `text` of each JSON body taken (Slack's shape), in order.
    pub fn got(&self) -> Vec<String> {
        self.requests()
            .iter()
            .map(|(_, body)| {
                let json: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
                json["text"].as_str().unwrap_or_default().to_owned()
            })
            .collect()
    }

    /// The `field` of each JSON body taken, in order; each must come from `username`.
    pub fn fields(&self, field: &str, username: &str) -> Vec<String> {
        self.requests()
            .iter()
            .map(|(_, body)| {
                let json: serde_json::Value = serde_json::from_slice(body).expect("JSON");
                assert_eq!(json["username"], username);
                json[field].as_str().unwrap_or_default().to_owned()
            })
            .collect()
    }
}

async fn receive(
    State(receiver): State<Arc<Receiver>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> (StatusCode, &'static str) {
    receiver.attempts.fetch_add(1, Ordering::SeqCst);
    let failing = receiver
        .fail
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if failing {
        return (StatusCode::INTERNAL_SERVER_ERROR, "try again");
    }
    if receiver.broken.load(Ordering::SeqCst) {
        return (StatusCode::BAD_REQUEST, "channel_is_archived");
    }
    receiver
        .got
        .lock()
        .expect("lock")
        .push((headers, body.to_vec()));
    (StatusCode::OK, "ok")
}

/// A receiver on a free port, served on the current runtime; broken if `broken`.
pub async fn start(broken: bool) -> (Arc<Receiver>, SocketAddr) {
    let (receiver, addr) = start_failing(0, "127.0.0.1:0").await;
    receiver.set_broken(broken);
    (receiver, addr)
}

/// A receiver listening on `bind` that fails its first `fail` requests with 500.
pub async fn start_failing(
    fail: u32,
    bind: impl tokio::net::ToSocketAddrs,
) -> (Arc<Receiver>, SocketAddr) {
    let receiver = Arc::new(Receiver::default());
    receiver.fail.store(fail, Ordering::SeqCst);
    let app = axum::Router::new()
        .route("/in", axum::routing::post(receive))
        .with_state(Arc::clone(&receiver));
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .expect("bind the receiver's port");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (receiver, addr)
}

/// `[console.you]`: `nick` types into room `lobby` on standard input, and what the console gets
/// goes to `output` (a file name, or `stdout`).
pub fn console_table(output: &str, nick: &str) -> String {
    format!(
        "[console.you]\ninput = \"stdin\"\noutput = \"{output}\"\nroom = \"lobby\"\nnick = \"{nick}\"\n\n"
    )
}

/// `[webhook.team.rooms.NAME]`: posts to a receiver at `http://ADDR/in` in Slack's shape;
/// `extra` ends the table.
pub fn slack_room(name: &str, addr: impl Display, extra: &str) -> String {
    format!(
        "[webhook.team.rooms.{name}]\nurl = \"http://{addr}/in\"\npayload = \"slack\"\n{extra}\n"
    )
}
