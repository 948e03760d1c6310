//! The connector test kit (feature `testkit`, for dev-dependencies only): what every
//! connector's tests need from a gateway, written once.
//!
//! - [`Recorder`]: the gateway's side of an [`EventSink`]; it records what a connector emits
//!   and announces, and waits for an event with a timeout (never a sleep). [`Recorder::gateway`]
//!   also drops what the gateway would drop, for tests that lean on it.
//! - [`build`]: a connector from a config snippet, as `[PROTOCOL.NAME]` would hold it, with its
//!   own temporary config and data directories ([`build_in`]: in directories the test keeps,
//!   for a restart). [`Built::start`] runs it: [`Running`]; [`serve`] serves its HTTP routes.
//! - [`deliver_retrying`]: a delivery retried as the gateway's outbox retries it.
//! - [`Listener`]: a loopback port the test controls, which counts who connected to it.
//! - [`Contract`]: the checks every connector passes — building does not connect, a delivery
//!   before the connector is up is answered retryable, shutdown returns `Ok` promptly.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::connector::{
    Connector, ConnectorContext, ConnectorError, ConnectorState, Delivered, Delivery,
    DeliveryError, Emit, EmitError, EventSink, StateHandle,
};
use crate::event::{Author, Event, EventId, Inbound};
use crate::factory::{AccountInfo, ConfigError, ConnectorFactory};
use crate::sync::lock;
use crate::text::RichText;

/// How long the contract gives a connector to answer a delivery or to stop.
pub const CONTRACT_TIMEOUT: Duration = Duration::from_secs(10);

/// Stands in for the gateway behind a connector's [`EventSink`]: accepts every event, in
/// order, and keeps it and every `announce` call for the test to read. Several accounts may
/// share one, as they share the gateway.
#[derive(Default)]
pub struct Recorder {
    /// Every event accepted, in order: (account, the id it was answered with, event).
    events: Mutex<Vec<(String, EventId, Inbound)>>,
    /// Every event dropped as the gateway would drop it (only [`Recorder::gateway`]):
    /// (account, event).
    dropped: Mutex<Vec<(String, Inbound)>>,
    /// Every announce call in order: (account, network, names).
    announced: Mutex<Vec<(String, String, Vec<String>)>>,
    /// How many calls handed events over (`emit` and `emit_many` alike): a connector that
    /// groups a burst makes fewer calls than events.
    calls: std::sync::atomic::AtomicUsize,
    /// Whether to drop what the gateway drops (see [`Recorder::gateway`]).
    as_gateway: bool,
    changed: Notify,
}

#[async_trait]
impl Emit for Recorder {
    async fn emit(&self, account: &str, inbound: Inbound) -> Result<Option<EventId>, EmitError> {
        self.calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(self.record(account, inbound))
    }

    async fn emit_many(
        &self,
        account: &str,
        inbounds: Vec<Inbound>,
    ) -> Result<Vec<Option<EventId>>, EmitError> {
        self.calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(inbounds
            .into_iter()
            .map(|inbound| self.record(account, inbound))
            .collect())
    }

    fn announce(&self, account: &str, network: &str, names: Vec<String>) {
        lock(&self.announced).push((account.to_owned(), network.to_owned(), names));
        self.changed.notify_waiters();
    }
}

impl Recorder {
    /// Keep one event as the gateway would: its id, or `None` where it is dropped.
    fn record(&self, account: &str, inbound: Inbound) -> Option<EventId> {
        let another_accounts = self.as_gateway && self.announced_by_another(account, &inbound);
        let id = {
            // Checked and kept under one lock, so a redelivery racing the first is seen.
            let mut events = lock(&self.events);
            let seen = self.as_gateway && seen_before(&events, account, &inbound);
            (!seen && !another_accounts).then(|| {
                let id = EventId::new();
                events.push((account.to_owned(), id, inbound.clone()));
                id
            })
        };
        if id.is_none() {
            lock(&self.dropped).push((account.to_owned(), inbound));
        }
        self.changed.notify_waiters();
        id
    }

    /// How many calls handed events over so far (`emit` and `emit_many` alike).
    pub fn calls(&self) -> usize {
        self.calls.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A recorder that drops what the gateway drops, answering `Ok(None)` as its store does:
    /// an event whose remote id the same account already emitted in the same room (a
    /// redelivery), and an event whose author another account announced as its own on the
    /// same network (an account reading another's words). A connector that relies on those
    /// answers, such as an idempotency key or two accounts in one room, is tested with this.
    pub fn gateway() -> Self {
        Recorder {
            as_gateway: true,
            ..Recorder::default()
        }
    }

    fn announced_by_another(&self, account: &str, inbound: &Inbound) -> bool {
        let announced = lock(&self.announced);
        // The last call per account counts, as each replaces the account's names.
        let mut latest: HashMap<&str, (&str, &Vec<String>)> = HashMap::new();
        for (who, network, names) in announced.iter() {
            latest.insert(who, (network, names));
        }
        let own_network = latest.get(account).map(|(network, _)| *network);
        latest.iter().any(|(who, (network, names))| {
            *who != account && Some(*network) == own_network && names.contains(&inbound.author.id)
        })
    }

    /// A sink for `account` that records into this recorder.
    pub fn sink(self: &Arc<Self>, account: &str) -> EventSink {
        EventSink::new(account, Arc::clone(self) as Arc<dyn Emit>)
    }

    /// Every event accepted so far, in order.
    pub fn events(&self) -> Vec<Inbound> {
        lock(&self.events)
            .iter()
            .map(|(_, _, e)| e.clone())
            .collect()
    }

    /// Every event accepted so far with the id the recorder answered it with, in order: what
    /// a connector hands back to its own clients as the gateway's id.
    pub fn emitted(&self) -> Vec<(EventId, Inbound)> {
        lock(&self.events)
            .iter()
            .map(|(_, id, e)| (*id, e.clone()))
            .collect()
    }

    /// Every event dropped so far as the gateway would drop it: (account, event).
    pub fn dropped(&self) -> Vec<(String, Inbound)> {
        lock(&self.dropped).clone()
    }

    /// Every announce call so far: (account, network, names).
    pub fn announced(&self) -> Vec<(String, String, Vec<String>)> {
        lock(&self.announced).clone()
    }

    /// The events accepted once there are at least `n`, waiting up to `timeout` for them.
    pub async fn wait_events(&self, timeout: Duration, n: usize) -> Option<Vec<Inbound>> {
        self.wait_until(timeout, |r| {
            let events = r.events();
            (events.len() >= n).then_some(events)
        })
        .await
    }

    /// The first accepted event matching `pred`, waiting up to `timeout` for it.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        pred: impl Fn(&Inbound) -> bool,
    ) -> Option<Inbound> {
        self.wait_until(timeout, |r| r.events().into_iter().find(|e| pred(e)))
            .await
    }

    /// What `check` finds in the recorder, waiting up to `timeout` for it to find something.
    pub async fn wait_until<T>(
        &self,
        timeout: Duration,
        check: impl Fn(&Recorder) -> Option<T>,
    ) -> Option<T> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Registered before looking, so an event between the look and the wait wakes us.
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(found) = check(self) {
                return Some(found);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return check(self);
            }
        }
    }
}

/// Whether `account` already emitted `inbound`'s remote id in its room: a redelivery.
fn seen_before(events: &[(String, EventId, Inbound)], account: &str, inbound: &Inbound) -> bool {
    inbound.remote_id.is_some()
        && events.iter().any(|(who, _, e)| {
            who == account && e.room == inbound.room && e.remote_id == inbound.remote_id
        })
}

/// A connector built from a config snippet, not running yet.
pub struct Built {
    pub connector: Arc<dyn Connector>,
    pub account: AccountInfo,
    /// The config and data directories made by [`build`], removed when this is dropped; `None`
    /// from [`build_in`], whose directories belong to the test.
    pub dir: Option<tempfile::TempDir>,
}

/// Build `account` (`PROTOCOL.NAME`) with `factory` from `table`, the TOML body of its
/// `[PROTOCOL.NAME]` table, in a new temporary directory (the data dir is its `data`).
/// Needs no runtime, as `patchbay check` builds without one.
pub fn build(
    factory: &dyn ConnectorFactory,
    account: &str,
    table: &str,
) -> Result<Built, ConfigError> {
    let dir = tempfile::tempdir()
        .map_err(|err| ConfigError::at(&[], format!("cannot make a temp dir: {err}")))?;
    let account = AccountInfo {
        account: account.to_owned(),
        config_dir: dir.path().to_owned(),
        data_dir: dir.path().join("data"),
    };
    let built = build_in(factory, account, table)?;
    Ok(Built {
        dir: Some(dir),
        ..built
    })
}

/// Build as [`build`] does, with the directories `account` names: a test that restarts a
/// connector on the same data, or reads what it wrote there, keeps them itself.
pub fn build_in(
    factory: &dyn ConnectorFactory,
    account: AccountInfo,
    table: &str,
) -> Result<Built, ConfigError> {
    let table: toml::Table = table
        .parse()
        .map_err(|err| ConfigError::at(&[], format!("the snippet is not TOML: {err}")))?;
    let connector = factory.build(&account, table)?;
    Ok(Built {
        connector,
        account,
        dir: None,
    })
}

impl Built {
    /// Run the connector as the gateway does: its data dir created, its events recorded.
    pub fn start(self) -> Running {
        self.start_recording(Arc::new(Recorder::default()))
    }

    /// Run the connector recording into `recorder`, which other accounts may share (as they
    /// share the gateway) or which drops what the gateway drops ([`Recorder::gateway`]).
    pub fn start_recording(self, recorder: Arc<Recorder>) -> Running {
        let emit = Arc::clone(&recorder) as Arc<dyn Emit>;
        self.start_behind(emit, recorder)
    }

    /// Run the connector with `emit` as the gateway in front of `recorder`: a store that
    /// fails or takes its time, which forwards to `recorder` what it accepts.
    pub fn start_behind(self, emit: Arc<dyn Emit>, recorder: Arc<Recorder>) -> Running {
        let (state, rx) = StateHandle::new();
        let shutdown = CancellationToken::new();
        // A data dir that cannot be made shows up as the connector's own error on `run`.
        let _ = std::fs::create_dir_all(&self.account.data_dir);
        let ctx = ConnectorContext {
            account: self.account.account.clone(),
            sink: EventSink::new(self.account.account.as_str(), emit),
            state,
            shutdown: shutdown.clone(),
            data_dir: self.account.data_dir.clone(),
        };
        let connector = Arc::clone(&self.connector);
        let task = tokio::spawn(async move { connector.run(ctx).await });
        Running {
            connector: self.connector,
            recorder,
            state: rx,
            shutdown,
            task,
            dir: self.dir,
        }
    }
}

/// A connector's HTTP routes served on a loopback port, as the gateway's listener serves
/// them (whether or not the connector runs yet); the server stops when this is dropped.
pub struct Served {
    pub addr: SocketAddr,
    stop: CancellationToken,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Serve `connector`'s [`Connector::http_routes`] on a free port of 127.0.0.1.
pub async fn serve(connector: &dyn Connector) -> std::io::Result<Served> {
    let routes = connector
        .http_routes()
        .ok_or_else(|| std::io::Error::other("the connector serves no HTTP routes"))?;
    serve_routes(routes).await
}

/// Serve `routes` on a free port of 127.0.0.1: a connector's, or a peer's that the test
/// plays (a webhook receiver).
pub async fn serve_routes(routes: axum::Router) -> std::io::Result<Served> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    tokio::spawn(async move {
        let _ = axum::serve(listener, routes)
            .with_graceful_shutdown(async move { stopped.cancelled().await })
            .await;
    });
    Ok(Served { addr, stop })
}

/// How long [`Running::deliver`] retries a delivery the connector is not ready for.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

/// Deliver as the gateway's outbox does: a retryable error is tried again, after its
/// `retry_after` (at most half a second, 100 ms without one: the outbox's backoff, shortened
/// for tests) until `timeout` has passed. The answer is the first `Ok` or permanent error, or
/// the last retryable error once time is up.
pub async fn deliver_retrying(
    connector: &dyn Connector,
    delivery: Delivery,
    timeout: Duration,
) -> Result<Delivered, DeliveryError> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match connector.deliver(delivery.clone()).await {
            Err(DeliveryError::Retryable { retry_after, .. })
                if tokio::time::Instant::now() < deadline =>
            {
                let pause = retry_after
                    .unwrap_or(Duration::from_millis(100))
                    .min(Duration::from_millis(500));
                tokio::time::sleep_until(deadline.min(tokio::time::Instant::now() + pause)).await;
            }
            answer => return answer,
        }
    }
}

/// Why a connector did not stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum StopError {
    #[error("the connector did not stop within {0:?} of shutdown")]
    TimedOut(Duration),
    #[error("the connector's run panicked: {0}")]
    Panicked(#[source] tokio::task::JoinError),
    #[error("the connector's run failed: {0}")]
    Failed(#[source] ConnectorError),
}

/// A running connector under test.
pub struct Running {
    pub connector: Arc<dyn Connector>,
    pub recorder: Arc<Recorder>,
    pub state: watch::Receiver<ConnectorState>,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<Result<(), ConnectorError>>,
    /// The directories [`build`] made, if it made them.
    pub dir: Option<tempfile::TempDir>,
}

impl Running {
    /// Whether the connector's state satisfies `pred` within `timeout`.
    pub async fn wait_state(
        &mut self,
        timeout: Duration,
        pred: impl FnMut(&ConnectorState) -> bool,
    ) -> bool {
        tokio::time::timeout(timeout, self.state.wait_for(pred))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Whether the connector reports `Up` within `timeout`.
    pub async fn wait_up(&mut self, timeout: Duration) -> bool {
        self.wait_state(timeout, |s| *s == ConnectorState::Up).await
    }

    /// Deliver with [`deliver_retrying`] for up to [`DELIVERY_TIMEOUT`].
    pub async fn deliver(&self, delivery: Delivery) -> Result<Delivered, DeliveryError> {
        deliver_retrying(&*self.connector, delivery, DELIVERY_TIMEOUT).await
    }

    /// Cancel the shutdown token and wait up to `timeout` for `run` to return `Ok`.
    pub async fn stop(self, timeout: Duration) -> Result<(), StopError> {
        self.shutdown.cancel();
        match tokio::time::timeout(timeout, self.task).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(err))) => Err(StopError::Failed(err)),
            Ok(Err(err)) => Err(StopError::Panicked(err)),
            Err(_) => Err(StopError::TimedOut(timeout)),
        }
    }
}

/// A plain message from `nick` for `room`, as the gateway would route it.
pub fn delivery(room: &str, nick: &str, text: &str) -> Delivery {
    let inbound = Inbound::message(room, Author::named(nick), RichText::plain(text));
    Delivery {
        room: room.to_owned(),
        event: Event::from_inbound("testkit.source", inbound),
        nick: nick.to_owned(),
        route: "testkit".into(),
        quote: None,
    }
}

/// A loopback port the test controls: anything that connects is counted, and held open
/// without a word, so a connector pointed at it is stuck mid-connect (the worst case for a
/// prompt shutdown).
pub struct Listener {
    listener: TcpListener,
    held: Mutex<Vec<TcpStream>>,
}

impl Listener {
    pub fn bind() -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        Ok(Listener {
            listener,
            held: Mutex::new(Vec::new()),
        })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// Whether a connection reaches the port within `timeout` (it is then held open, and
    /// counted).
    pub async fn wait_connection(&self, timeout: Duration) -> bool {
        if self.connections() > 0 {
            return true;
        }
        let Ok(listener) = self
            .listener
            .try_clone()
            .and_then(tokio::net::TcpListener::from_std)
        else {
            return false;
        };
        match tokio::time::timeout(timeout, listener.accept()).await {
            Ok(Ok((stream, _))) => match stream.into_std() {
                Ok(stream) => {
                    lock(&self.held).push(stream);
                    true
                }
                Err(_) => false,
            },
            _ => false,
        }
    }

    /// How many connections have reached the port so far (the kernel completes them before
    /// anyone accepts, so a connection made and dropped is counted too).
    pub fn connections(&self) -> usize {
        let mut held = lock(&self.held);
        while let Ok((stream, _)) = self.listener.accept() {
            held.push(stream);
        }
        held.len()
    }
}

/// The contract every connector keeps, checked against one connector's config.
///
/// `table` writes the account's config snippet given a port on 127.0.0.1 that the test
/// controls: the connector's server (or outbound URL) should point at it, so that a connection
/// made too early is seen. `room` is a room the account may be delivered to.
pub struct Contract<'a> {
    pub factory: &'a dyn ConnectorFactory,
    /// `PROTOCOL.NAME`.
    pub account: &'a str,
    pub room: &'a str,
    pub table: &'a dyn Fn(u16) -> String,
}

impl Contract<'_> {
    fn build(&self, port: u16) -> Built {
        match build(self.factory, self.account, &(self.table)(port)) {
            Ok(built) => built,
            Err(err) => panic!("{} does not build: {err} (at {:?})", self.account, err.path),
        }
    }

    fn listener() -> Listener {
        match Listener::bind() {
            Ok(listener) => listener,
            Err(err) => panic!("cannot listen on 127.0.0.1: {err}"),
        }
    }

    /// Building needs no runtime (call this outside one) and opens no connection: building
    /// also runs for `patchbay check`, and an account runs on one instance only.
    pub fn building_does_not_connect(&self) {
        let listener = Self::listener();
        let built = self.build(listener.port());
        drop(built);
        assert_eq!(
            listener.connections(),
            0,
            "building {} connected to its server",
            self.account
        );
    }

    /// A delivery before `run` is answered, within [`CONTRACT_TIMEOUT`], with a retryable
    /// error: the gateway's outbox keeps it and tries again once the connector is up. A
    /// connector that holds no connection (see [`Connector::holds_connection`]: outbound
    /// webhooks) has nothing to be up for and may send at once; it must still answer in time,
    /// and a server that does not answer is retryable.
    pub async fn deliver_before_up_is_retryable(&self) {
        let listener = Self::listener();
        let built = self.build(listener.port());
        let holds_connection = built.connector.holds_connection();
        let answer = tokio::time::timeout(
            CONTRACT_TIMEOUT,
            built
                .connector
                .deliver(delivery(self.room, "alice", "early")),
        )
        .await;
        match answer {
            Ok(Err(DeliveryError::Retryable { .. })) => {}
            Ok(other) => panic!(
                "{}: a delivery before run was answered {other:?}, not a retryable error",
                self.account
            ),
            Err(_) => panic!(
                "{}: a delivery before run got no answer within {CONTRACT_TIMEOUT:?}",
                self.account
            ),
        }
        if holds_connection {
            assert_eq!(
                listener.connections(),
                0,
                "{}: a delivery before run connected to the server",
                self.account
            );
        }
    }

    /// Shutdown while the connector is mid-connect (its server accepts and says nothing)
    /// makes `run` return `Ok` within [`CONTRACT_TIMEOUT`].
    pub async fn shutdown_returns_cleanly(&self) {
        let listener = Self::listener();
        let running = self.build(listener.port()).start();
        // Let it get somewhere first: up (an HTTP-only account), down (it failed), or connected
        // to our silent port and waiting for an answer. Getting nowhere in time is no failure
        // of this check, which is about what shutdown does next.
        let mut state = running.state.clone();
        tokio::select! {
            _ = tokio::time::timeout(
                CONTRACT_TIMEOUT,
                state.wait_for(|s| !matches!(s, ConnectorState::Connecting)),
            ) => {}
            _ = listener.wait_connection(CONTRACT_TIMEOUT) => {}
        }
        if let Err(err) = running.stop(CONTRACT_TIMEOUT).await {
            panic!("{}: {err}", self.account);
        }
    }
}

#[cfg(test)]
#[path = "testkit_tests.rs"]
mod tests;

/// The three contract checks as tests, for a crate's `tests/contract.rs`:
/// `patchbay_sdk::contract_tests!(Contract { factory, account, room, table });`, the
/// [`Contract`] written in place (each test builds it anew, so `table` may be a closure).
#[macro_export]
macro_rules! contract_tests {
    ($contract:expr) => {
        #[test]
        fn building_does_not_connect() {
            $contract.building_does_not_connect();
        }

        #[tokio::test]
        async fn a_delivery_before_run_is_retryable() {
            $contract.deliver_before_up_is_retryable().await;
        }

        #[tokio::test]
        async fn shutdown_returns_cleanly() {
            $contract.shutdown_returns_cleanly().await;
        }
    };
}
