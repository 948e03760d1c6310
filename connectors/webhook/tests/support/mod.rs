//! Test support: a webhook account built from TOML by the sdk's test kit, served on a loopback
//! port and recording what it emits; and an HTTP receiver that records what is POSTed to it.
#![allow(dead_code)]

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use patchbay_sdk::testkit::{self, Built, Recorder, Running, Served};
use patchbay_sdk::{AccountInfo, Connector, Inbound};
use patchbay_webhook::WebhookFactory;

/// How long a test waits for what the connector emits.
const WAIT: Duration = Duration::from_secs(10);

/// A running webhook account; it stops when dropped.
pub struct Hook {
    pub base: String,
    pub connector: Arc<dyn Connector>,
    pub recorder: Arc<Recorder>,
    running: Running,
    _served: Served,
}

impl Drop for Hook {
    fn drop(&mut self) {
        self.running.shutdown.cancel();
    }
}

impl Hook {
    /// The events emitted once there are `n`.
    pub async fn wait_events(&self, n: usize) -> Vec<Inbound> {
        self.recorder
            .wait_events(WAIT, n)
            .await
            .expect("the events within 10 s")
    }
}

fn account(dir: &Path, name: &str) -> AccountInfo {
    AccountInfo {
        account: format!("webhook.{name}"),
        config_dir: dir.to_owned(),
        data_dir: dir.join("data"),
    }
}

/// Send `request`; its answer (a request that gets none fails the test).
pub async fn send(request: reqwest::RequestBuilder) -> reqwest::Response {
    request.send().await.expect("post")
}

/// The reason a refusal's JSON body gives in `error`.
pub async fn error_of(response: reqwest::Response) -> String {
    let json: serde_json::Value = response.json().await.expect("a JSON answer");
    json["error"].as_str().unwrap_or_default().to_owned()
}

pub fn build(dir: &Path, name: &str, config: &str) -> Arc<dyn Connector> {
    testkit::build_in(&WebhookFactory, account(dir, name), config)
        .expect("a valid config")
        .connector
}

/// Build `[webhook.NAME]` from `config`, serve its routes and run it.
pub async fn start(name: &str, config: &str) -> Hook {
    let (base, built, served) = serve(name, config).await;
    let running = built.start();
    Hook {
        base,
        connector: Arc::clone(&running.connector),
        recorder: Arc::clone(&running.recorder),
        running,
        _served: served,
    }
}

/// Build and serve the account's routes without running it: the base URL, the connector to
/// start, and the server (stopped when dropped).
pub async fn serve(name: &str, config: &str) -> (String, Built, Served) {
    let built = testkit::build(&WebhookFactory, &format!("webhook.{name}"), config)
        .expect("a valid config");
    let served = testkit::serve(&*built.connector).await.expect("routes");
    (format!("http://{}", served.addr), built, served)
}

/// One request a receiver got.
#[derive(Clone, Debug)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// An HTTP receiver on loopback: records every POST; answers `fail_with` while `failures`
/// is above zero (counting down), 200 after.
pub struct Receiver {
    pub url: String,
    pub got: Arc<ReceiverState>,
    _served: Served,
}

#[derive(Default)]
pub struct ReceiverState {
    pub requests: Mutex<Vec<Received>>,
    pub failures: Mutex<(u32, u16)>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let got = Arc::new(ReceiverState::default());
        let app = axum::Router::new()
            .route("/in", axum::routing::post(receive))
            .with_state(Arc::clone(&got));
        let served = testkit::serve_routes(app).await.expect("bind");
        Receiver {
            url: format!("http://{}/in", served.addr),
            got,
            _served: served,
        }
    }

    /// Answer `status` to the next `count` requests.
    pub fn fail(&self, count: u32, status: u16) {
        *self.got.failures.lock().expect("lock") = (count, status);
    }

    /// The bodies of the requests answered 200.
    pub fn accepted(&self) -> Vec<Received> {
        self.got.requests.lock().expect("lock").clone()
    }
}

async fn receive(
    State(got): State<Arc<ReceiverState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> (StatusCode, &'static str) {
    {
        let mut failures = got.failures.lock().expect("lock");
        if failures.0 > 0 {
            failures.0 -= 1;
            return (
                StatusCode::from_u16(failures.1).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                "not now",
            );
        }
    }
    got.requests.lock().expect("lock").push(Received {
        headers,
        body: body.to_vec(),
    });
    (StatusCode::OK, "ok")
}
