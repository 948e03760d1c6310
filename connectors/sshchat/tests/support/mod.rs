//! Shared test support: an in-test gateway stand-in that collects emitted events, and helpers to
//! build and run the connector from a config table against a test server.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use patchbay_sdk::{
    AccountInfo, Author, Connector, ConnectorContext, ConnectorError, ConnectorFactory,
    ConnectorState, Delivery, Emit, EmitError, Event, EventId, EventSink, Inbound, RichText,
    StateHandle,
};
use patchbay_sshchat::SshChatFactory;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

/// Collects what the connector emits, like the gateway's sink would.
#[derive(Default)]
pub struct Collect {
    events: Mutex<Vec<Inbound>>,
    changed: Notify,
}

#[async_trait]
impl Emit for Collect {
    async fn emit(&self, _account: &str, inbound: Inbound) -> Result<Option<EventId>, EmitError> {
        self.events.lock().expect("lock").push(inbound);
        self.changed.notify_waiters();
        Ok(Some(EventId::new()))
    }
}

impl Collect {
    pub fn events(&self) -> Vec<Inbound> {
        self.events.lock().expect("lock").clone()
    }

    /// Wait for an emitted event matching `pred`.
    pub async fn wait(
        &self,
        timeout: Duration,
        pred: impl Fn(&Inbound) -> bool,
    ) -> Option<Inbound> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            if let Some(found) = self.events().into_iter().find(|e| pred(e)) {
                return Some(found);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return None;
            }
        }
    }
}

/// The plain text of an event's body.
pub fn text(event: &Inbound) -> String {
    event.kind.body().map(|b| b.to_plain()).unwrap_or_default()
}

/// A running connector under test.
pub struct Running {
    pub connector: Arc<dyn Connector>,
    pub events: Arc<Collect>,
    pub state: watch::Receiver<ConnectorState>,
    pub shutdown: CancellationToken,
    pub task: tokio::task::JoinHandle<Result<(), ConnectorError>>,
    pub dir: tempfile::TempDir,
}

impl Running {
    /// Wait until the connector reports `Up`.
    pub async fn wait_up(&mut self, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, self.state.wait_for(|s| *s == ConnectorState::Up))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Deliver, retrying while the connector says it is not ready (as the gateway would).
    pub async fn deliver(&self, delivery: Delivery) -> Result<(), patchbay_sdk::DeliveryError> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            match self.connector.deliver(delivery.clone()).await {
                Ok(_) => return Ok(()),
                Err(patchbay_sdk::DeliveryError::Retryable { .. })
                    if tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(err) => return Err(err),
            }
        }
    }

    pub async fn stop(self) -> Result<(), ConnectorError> {
        self.shutdown.cancel();
        match tokio::time::timeout(Duration::from_secs(10), self.task).await {
            Ok(Ok(result)) => result,
            Ok(Err(err)) => Err(ConnectorError(format!("task: {err}"))),
            Err(_) => Err(ConnectorError("did not stop within 10 s".into())),
        }
    }
}

/// Build the connector from a TOML table (as `[sshchat.test]` would hold) and run it.
pub fn start(table: &str) -> Running {
    let dir = tempfile::tempdir().expect("tempdir");
    start_in(table, dir)
}

pub fn start_in(table: &str, dir: tempfile::TempDir) -> Running {
    let account = AccountInfo {
        account: "sshchat.test".into(),
        config_dir: dir.path().to_owned(),
        data_dir: dir.path().join("data"),
    };
    let table: toml::Table = table.parse().expect("test config parses");
    let connector = SshChatFactory
        .build(&account, table)
        .expect("config is valid");
    let events = Arc::new(Collect::default());
    let (state, state_rx) = StateHandle::new();
    let shutdown = CancellationToken::new();
    let ctx = ConnectorContext {
        account: account.account.clone(),
        sink: EventSink::new(account.account.clone(), events.clone()),
        state,
        shutdown: shutdown.clone(),
        data_dir: account.data_dir.clone(),
    };
    let task = {
        let connector = connector.clone();
        tokio::spawn(async move { connector.run(ctx).await })
    };
    Running {
        connector,
        events,
        state: state_rx,
        shutdown,
        task,
        dir,
    }
}

/// A message relayed from another network, as the gateway would hand it over.
pub fn delivery(room: &str, nick: &str, text: &str) -> Delivery {
    let inbound = Inbound::message("#elsewhere", Author::named(nick), RichText::plain(text));
    Delivery {
        room: room.into(),
        event: Event::from_inbound("irc.net", inbound),
        nick: nick.into(),
        route: "test".into(),
        quote: None,
    }
}

pub const WAIT: Duration = Duration::from_secs(15);

/// Text as a person sees it: zero-width characters (hop trace, neutralised command words) removed.
pub fn visible(text: &str) -> String {
    text.chars()
        .filter(|c| !patchbay_sshchat_testserver::format::is_zero_width(*c))
        .collect()
}
