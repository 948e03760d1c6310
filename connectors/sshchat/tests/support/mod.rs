//! Shared test support: an in-test gateway stand-in that collects emitted events, and helpers to
//! build and run the connector from a config table against a test server.
#![allow(dead_code)]

pub mod real;

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

/// Collects what the connectors emit, like the gateway's sink would, and keeps what they
/// announced. Several accounts may share one: an event one account sees from a name another
/// account announced on the same network is dropped, as the gateway drops it.
#[derive(Default)]
pub struct Collect {
    events: Mutex<Vec<Inbound>>,
    /// Dropped because another account announced the author: (account, event).
    dropped: Mutex<Vec<(String, Inbound)>>,
    /// Every announce call in order: (account, network, names).
    announced: Mutex<Vec<(String, String, Vec<String>)>>,
    changed: Notify,
}

#[async_trait]
impl Emit for Collect {
    async fn emit(&self, account: &str, inbound: Inbound) -> Result<Option<EventId>, EmitError> {
        let ours = {
            let announced = self.announced.lock().expect("lock");
            // The last call per account counts.
            let mut latest: std::collections::HashMap<&str, (&str, &Vec<String>)> =
                Default::default();
            for (who, network, names) in announced.iter() {
                latest.insert(who, (network, names));
            }
            let own_network = latest.get(account).map(|(n, _)| *n);
            latest.iter().any(|(who, (network, names))| {
                *who != account
                    && Some(*network) == own_network
                    && names.contains(&inbound.author.id)
            })
        };
        if ours {
            self.dropped
                .lock()
                .expect("lock")
                .push((account.to_owned(), inbound));
            self.changed.notify_waiters();
            return Ok(None);
        }
        self.events.lock().expect("lock").push(inbound);
        self.changed.notify_waiters();
        Ok(Some(EventId::new()))
    }

    fn announce(&self, account: &str, network: &str, names: Vec<String>) {
        self.announced
            .lock()
            .expect("lock")
            .push((account.to_owned(), network.to_owned(), names));
        self.changed.notify_waiters();
    }
}

impl Collect {
    /// What was emitted and not dropped as another account's own words.
    pub fn events(&self) -> Vec<Inbound> {
        self.events.lock().expect("lock").clone()
    }

    /// What was dropped because another account announced its author.
    pub fn dropped(&self) -> Vec<(String, Inbound)> {
        self.dropped.lock().expect("lock").clone()
    }

    /// Every announce call: (account, network, names).
    pub fn announced(&self) -> Vec<(String, String, Vec<String>)> {
        self.announced.lock().expect("lock").clone()
    }

    /// Wait for an emitted event matching `pred`.
    pub async fn wait(
        &self,
        timeout: Duration,
        pred: impl Fn(&Inbound) -> bool,
    ) -> Option<Inbound> {
        self.wait_until(timeout, |c| c.events().into_iter().find(|e| pred(e)))
            .await
    }

    /// Wait until `check` finds something.
    pub async fn wait_until<T>(
        &self,
        timeout: Duration,
        check: impl Fn(&Collect) -> Option<T>,
    ) -> Option<T> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            if let Some(found) = check(self) {
                return Some(found);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return check(self);
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

    /// Deliver a run as the gateway's lane does: hand the rest over again after each answer
    /// until every delivery is answered `Ok` or the connector fails one. Returns the answers.
    pub async fn deliver_all(
        &self,
        run: Vec<Delivery>,
        limit: usize,
    ) -> Vec<Result<patchbay_sdk::Delivered, patchbay_sdk::DeliveryError>> {
        let mut left: std::collections::VecDeque<Delivery> = run.into();
        let mut answers = Vec::new();
        while !left.is_empty() {
            let take = left.len().min(limit);
            let batch: Vec<Delivery> = left.iter().take(take).cloned().collect();
            let results = self.connector.deliver_run(batch).await;
            if results.is_empty() {
                break;
            }
            for result in results {
                left.pop_front();
                let failed = result.is_err();
                answers.push(result);
                if failed {
                    return answers;
                }
            }
        }
        answers
    }

    pub async fn stop(self) -> Result<(), ConnectorError> {
        self.shutdown.cancel();
        match tokio::time::timeout(Duration::from_secs(10), self.task).await {
            Ok(Ok(result)) => result,
            Ok(Err(err)) => Err(ConnectorError::with_source("task", err)),
            Err(_) => Err(ConnectorError::new("did not stop within 10 s")),
        }
    }
}

/// Build the connector from a TOML table (as `[sshchat.test]` would hold) and run it.
pub fn start(table: &str) -> Running {
    let dir = tempfile::tempdir().expect("tempdir");
    start_in(table, dir)
}

pub fn start_in(table: &str, dir: tempfile::TempDir) -> Running {
    start_shared(table, "sshchat.test", dir, Arc::new(Collect::default()))
}

/// Run account `account` emitting into `events`, which other accounts may share.
pub fn start_shared(
    table: &str,
    account: &str,
    dir: tempfile::TempDir,
    events: Arc<Collect>,
) -> Running {
    let account = AccountInfo {
        account: account.into(),
        config_dir: dir.path().to_owned(),
        data_dir: dir.path().join("data"),
    };
    let table: toml::Table = table.parse().expect("test config parses");
    let connector = SshChatFactory
        .build(&account, table)
        .expect("config is valid");
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
