//! Test support: an API account built from TOML, served on a loopback port, emitting into a
//! collecting sink.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use patchbay_api::ApiFactory;
use patchbay_sdk::{
    AccountInfo, Author, Connector, ConnectorContext, ConnectorFactory, Delivery, Emit, EmitError,
    Event, EventId, EventSink, Inbound, RichText, StateHandle,
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub const TOKEN: &str = "api-token-123";

/// Collects what the connector emits, giving each a fresh id.
#[derive(Default)]
pub struct Collect {
    pub events: Mutex<Vec<(EventId, Inbound)>>,
    notify: Notify,
}

#[async_trait]
impl Emit for Collect {
    async fn emit(&self, _account: &str, inbound: Inbound) -> Result<Option<EventId>, EmitError> {
        let mut events = self.events.lock().expect("lock");
        // Like the gateway's store: a remote id seen before is a duplicate.
        if inbound.remote_id.is_some()
            && events.iter().any(|(_, e)| e.remote_id == inbound.remote_id)
        {
            return Ok(None);
        }
        let id = EventId::new();
        events.push((id, inbound));
        self.notify.notify_waiters();
        Ok(Some(id))
    }
}

impl Collect {
    pub async fn wait_for(&self, n: usize) -> Vec<(EventId, Inbound)> {
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
}

/// A running API account.
pub struct Running {
    pub base: String,
    pub ws: String,
    pub connector: Arc<dyn Connector>,
    pub sink: Arc<Collect>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stop the connector and its listener, and wait for the connector to return.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
    }
}

/// Build `[api.NAME]` from `config`, serve its routes and run it with `data_dir`.
pub async fn start(name: &str, config: &str, data_dir: &Path) -> Running {
    let table: toml::Table = toml::from_str(config).expect("valid TOML");
    let info = AccountInfo {
        account: format!("api.{name}"),
        config_dir: data_dir.to_owned(),
        data_dir: data_dir.to_owned(),
    };
    let connector = ApiFactory.build(&info, table).expect("a valid config");
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
    let sink = Arc::new(Collect::default());
    let (state, mut up) = StateHandle::new();
    let ctx = ConnectorContext {
        account: format!("api.{name}"),
        sink: EventSink::new(format!("api.{name}"), sink.clone()),
        state,
        shutdown: stop.clone(),
        data_dir: PathBuf::from(data_dir),
    };
    let running = Arc::clone(&connector);
    let task = tokio::spawn(async move {
        let _ = running.run(ctx).await;
    });
    tokio::time::timeout(
        Duration::from_secs(10),
        up.wait_for(|s| *s == patchbay_sdk::ConnectorState::Up),
    )
    .await
    .expect("the connector comes up")
    .expect("state");
    Running {
        base: format!("http://{addr}/api/{name}"),
        ws: format!("ws://{addr}/api/{name}/stream"),
        connector,
        sink,
        stop,
        task,
    }
}

/// A delivery to `room` of a message from `who` on IRC.
pub fn delivery(room: &str, who: &str, text: &str) -> Delivery {
    let inbound = Inbound::message("#rust", Author::named(who), RichText::plain(text));
    Delivery {
        room: room.into(),
        event: Event::from_inbound("irc.libera", inbound),
        nick: format!("[irc] {who}"),
        route: "lobby".into(),
        quote: None,
    }
}

/// Deliver one event.
pub async fn deliver(connector: &Arc<dyn Connector>, delivery: Delivery) {
    connector.deliver(delivery).await.expect("delivered");
}
