//! Test support: a webhook account built from TOML, served on a loopback port, emitting into a
//! collecting sink; and an HTTP receiver that records what is POSTed to it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use patchbay_sdk::{
    AccountInfo, Connector, ConnectorContext, ConnectorFactory, Emit, EmitError, EventId,
    EventSink, Inbound, StateHandle,
};
use patchbay_webhook::WebhookFactory;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Collects what the connector emits.
#[derive(Default)]
pub struct Collect {
    pub events: Mutex<Vec<Inbound>>,
    notify: Notify,
}

#[async_trait]
impl Emit for Collect {
    async fn emit(&self, _account: &str, inbound: Inbound) -> Result<Option<EventId>, EmitError> {
        self.events.lock().expect("lock").push(inbound);
        self.notify.notify_waiters();
        Ok(Some(EventId::new()))
    }
}

impl Collect {
    /// Wait until `n` events were emitted; return them.
    pub async fn wait_for(&self, n: usize) -> Vec<Inbound> {
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let notified = self.notify.notified();
                {
                    let events = self.events.lock().expect("lock");
                    if events.len() >= n {
                        return events.clone();
                    }
                }
                notified.await;
            }
        })
        .await
        .expect("the events within 10 s")
    }

    pub fn count(&self) -> usize {
        self.events.lock().expect("lock").len()
    }
}

/// A running webhook account.
pub struct Hook {
    pub base: String,
    pub connector: Arc<dyn Connector>,
    pub sink: Arc<Collect>,
    stop: CancellationToken,
}

impl Drop for Hook {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

pub fn build(dir: &Path, name: &str, config: &str) -> Arc<dyn Connector> {
    let table: toml::Table = toml::from_str(config).expect("valid TOML");
    let info = AccountInfo {
        account: format!("webhook.{name}"),
        config_dir: dir.to_owned(),
        data_dir: dir.join("data"),
    };
    WebhookFactory.build(&info, table).expect("a valid config")
}

/// Build `[webhook.NAME]` from `config`, serve its routes and run it.
pub async fn start(name: &str, config: &str) -> Hook {
    let sink = Arc::new(Collect::default());
    let (base, connector, stop) = serve(name, config).await;
    run(&connector, name, sink.clone(), &stop);
    Hook {
        base,
        connector,
        sink,
        stop,
    }
}

/// Build and serve the account's routes without running it; returns the base URL.
pub async fn serve(name: &str, config: &str) -> (String, Arc<dyn Connector>, CancellationToken) {
    let dir = std::env::temp_dir();
    let connector = build(&dir, name, config);
    let routes = connector.http_routes().expect("routes");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let stop = CancellationToken::new();
    let server_stop = stop.clone();
    tokio::spawn(async move {
        let _ = axum::serve(listener, routes)
            .with_graceful_shutdown(async move { server_stop.cancelled().await })
            .await;
    });
    (format!("http://{addr}"), connector, stop)
}

/// Run the connector with `emit` as the gateway.
pub fn run(
    connector: &Arc<dyn Connector>,
    name: &str,
    emit: Arc<dyn Emit>,
    stop: &CancellationToken,
) {
    let (state, _) = StateHandle::new();
    let ctx = ConnectorContext {
        account: format!("webhook.{name}"),
        sink: EventSink::new(format!("webhook.{name}"), emit),
        state,
        shutdown: stop.clone(),
        data_dir: std::env::temp_dir().join("data"),
    };
    let running = Arc::clone(connector);
    tokio::spawn(async move { running.run(ctx).await });
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
    stop: CancellationToken,
}

#[derive(Default)]
pub struct ReceiverState {
    pub requests: Mutex<Vec<Received>>,
    pub failures: Mutex<(u32, u16)>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Receiver {
    pub async fn start() -> Receiver {
        let got = Arc::new(ReceiverState::default());
        let app = axum::Router::new()
            .route("/in", axum::routing::post(receive))
            .with_state(Arc::clone(&got));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr: SocketAddr = listener.local_addr().expect("addr");
        let stop = CancellationToken::new();
        let server_stop = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { server_stop.cancelled().await })
                .await;
        });
        Receiver {
            url: format!("http://{addr}/in"),
            got,
            stop,
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
