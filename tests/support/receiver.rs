//! An outbound webhook's receiving end (Slack-style JSON `{"text": ...}`) on a loopback port:
//! it refuses every delivery with 400 (a permanent refusal: dead letters) while broken, and
//! records the text of each one it takes.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;

/// What the receiver took, and whether it refuses.
#[derive(Default)]
pub struct Receiver {
    broken: AtomicBool,
    got: Mutex<Vec<String>>,
}

impl Receiver {
    /// Refuse (400) from now on, or take deliveries again.
    pub fn set_broken(&self, broken: bool) {
        self.broken.store(broken, Ordering::SeqCst);
    }

    /// The texts taken so far, in order.
    pub fn got(&self) -> Vec<String> {
        self.got.lock().expect("lock").clone()
    }
}

async fn receive(
    State(receiver): State<Arc<Receiver>>,
    body: axum::body::Bytes,
) -> (StatusCode, &'static str) {
    if receiver.broken.load(Ordering::SeqCst) {
        return (StatusCode::BAD_REQUEST, "channel_is_archived");
    }
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let text = json["text"].as_str().unwrap_or_default().to_owned();
    receiver.got.lock().expect("lock").push(text);
    (StatusCode::OK, "ok")
}

/// A receiver at `http://ADDR/in`, served on the current runtime; broken if `broken`.
pub async fn start(broken: bool) -> (Arc<Receiver>, SocketAddr) {
    let receiver = Arc::new(Receiver::default());
    receiver.set_broken(broken);
    let app = axum::Router::new()
        .route("/in", axum::routing::post(receive))
        .with_state(Arc::clone(&receiver));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the receiver");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (receiver, addr)
}
