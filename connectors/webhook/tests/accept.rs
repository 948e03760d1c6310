//! A hook is answered 202 only once the gateway has durably recorded its event: not before
//! `emit` returns, never when it fails, and 503 while the connector has not started.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use patchbay_sdk::{Emit, EmitError, EventId, Inbound};
use reqwest::StatusCode;
use support::{send, serve};

const CONFIG: &str = "token = \"t0ken\"\nstart_wait_secs = 0.5\n";

/// A gateway that takes its time to record, or fails to.
struct SlowStore {
    delay: Duration,
    fail: bool,
    returned: Mutex<Option<Instant>>,
}

#[async_trait]
impl Emit for SlowStore {
    async fn emit(&self, _: &str, _: Inbound) -> Result<Option<EventId>, EmitError> {
        tokio::time::sleep(self.delay).await;
        *self.returned.lock().expect("lock") = Some(Instant::now());
        if self.fail {
            Err(EmitError::Store("disk full".into()))
        } else {
            Ok(Some(EventId::new()))
        }
    }
}

async fn post(base: &str) -> (reqwest::Response, Instant) {
    let response = send(
        reqwest::Client::new()
            .post(format!("{base}/hooks/n/room"))
            .bearer_auth("t0ken")
            .body("hello"),
    )
    .await;
    (response, Instant::now())
}

#[tokio::test]
async fn the_202_comes_after_the_event_is_recorded() {
    let (base, built, _served) = serve("n", CONFIG).await;
    let store = Arc::new(SlowStore {
        delay: Duration::from_millis(300),
        fail: false,
        returned: Mutex::new(None),
    });
    let running = built.start_behind(store.clone(), Default::default());
    let (response, answered) = post(&base).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let recorded = store.returned.lock().expect("lock").expect("emit returned");
    assert!(
        recorded <= answered,
        "answered before the event was recorded"
    );
    running.shutdown.cancel();
}

#[tokio::test]
async fn a_store_failure_is_not_acknowledged() {
    let (base, built, _served) = serve("n", CONFIG).await;
    let store = Arc::new(SlowStore {
        delay: Duration::ZERO,
        fail: true,
        returned: Mutex::new(None),
    });
    let running = built.start_behind(store, Default::default());
    let (response, _) = post(&base).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key("retry-after"));
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["error"], "the event could not be recorded: disk full");
    running.shutdown.cancel();
}

#[tokio::test]
async fn before_the_connector_runs_requests_wait_then_get_503() {
    let (base, built, _served) = serve("n", CONFIG).await;
    let (response, _) = post(&base).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    // A request racing the start: it waits for the sink and is accepted.
    let store = Arc::new(SlowStore {
        delay: Duration::ZERO,
        fail: false,
        returned: Mutex::new(None),
    });
    let pending = tokio::spawn({
        let base = base.clone();
        async move { post(&base).await.0.status() }
    });
    let running = built.start_behind(store.clone(), Default::default());
    assert_eq!(pending.await.expect("join"), StatusCode::ACCEPTED);
    running.shutdown.cancel();
}
