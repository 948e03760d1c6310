//! Test support: an API account built from TOML by the sdk's test kit, served on a loopback
//! port and recording into a [`Recorder::gateway`]: an idempotency key relies on the gateway
//! answering a remote id it has seen with "already recorded".
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use patchbay_api::ApiFactory;
use patchbay_sdk::testkit::{self, Recorder, Running, Served};
use patchbay_sdk::{AccountInfo, Connector, Delivery, EventId, Inbound};

pub const TOKEN: &str = "api-token-123";

/// How long the support waits for the connector, and for what it emits.
const WAIT: Duration = Duration::from_secs(10);

/// A running API account and the URLs its routes are served at.
pub struct Api {
    pub base: String,
    pub ws: String,
    pub connector: Arc<dyn Connector>,
    pub recorder: Arc<Recorder>,
    running: Running,
    _served: Served,
}

impl Api {
    /// Stop the connector and its listener, and wait for the connector to return.
    pub async fn stop(self) {
        let _ = self.running.stop(WAIT).await;
    }

    /// Deliver a message from `who` into `room`.
    pub async fn say(&self, room: &str, who: &str, text: &str) {
        deliver(&self.connector, delivery(room, who, text)).await;
    }

    /// The events emitted, with the ids they were answered with, once there are `n`.
    pub async fn wait_emitted(&self, n: usize) -> Vec<(EventId, Inbound)> {
        self.recorder
            .wait_until(WAIT, |r| Some(r.emitted()).filter(|e| e.len() >= n))
            .await
            .expect("the events within 10 s")
    }
}

/// Build `[api.NAME]` from `config`, serve its routes and run it with `data_dir`.
pub async fn start(name: &str, config: &str, data_dir: &Path) -> Api {
    let account = AccountInfo {
        account: format!("api.{name}"),
        config_dir: data_dir.to_owned(),
        data_dir: data_dir.to_owned(),
    };
    let built = testkit::build_in(&ApiFactory, account, config).expect("a valid config");
    let served = testkit::serve(&*built.connector).await.expect("routes");
    let addr = served.addr;
    let mut running = built.start_recording(Arc::new(Recorder::gateway()));
    assert!(running.wait_up(WAIT).await, "the connector comes up");
    Api {
        base: format!("http://{addr}/api/{name}"),
        ws: format!("ws://{addr}/api/{name}/stream"),
        connector: Arc::clone(&running.connector),
        recorder: Arc::clone(&running.recorder),
        running,
        _served: served,
    }
}

/// A delivery to `room` of a message from `who`, relayed with an IRC-style nick.
pub fn delivery(room: &str, who: &str, text: &str) -> Delivery {
    Delivery {
        nick: format!("[irc] {who}"),
        ..testkit::delivery(room, who, text)
    }
}

/// GET `url` with the token.
pub async fn get(url: impl reqwest::IntoUrl) -> reqwest::Response {
    let request = reqwest::Client::new().get(url).bearer_auth(TOKEN);
    request.send().await.expect("get")
}

/// GET `url` with the token, and read the answer as JSON.
pub async fn get_json(url: impl reqwest::IntoUrl) -> serde_json::Value {
    get(url).await.json().await.expect("json")
}

/// POST `body` as JSON to `url` with the token.
pub async fn post_json(url: impl reqwest::IntoUrl, body: serde_json::Value) -> reqwest::Response {
    let request = reqwest::Client::new().post(url).bearer_auth(TOKEN);
    request.json(&body).send().await.expect("post")
}

/// Deliver one event.
pub async fn deliver(connector: &Arc<dyn Connector>, delivery: Delivery) {
    connector.deliver(delivery).await.expect("delivered");
}
