//! The [`Connector`] trait and what passes across it.
//!
//! The gateway builds one connector per configured account and calls [`Connector::run`] once; the
//! connector connects, keeps its connection up (reconnecting as its protocol needs), reports its
//! [`ConnectorState`], and emits what it sees into its [`EventSink`]. Independently, the
//! gateway's delivery worker for the account calls [`Connector::deliver`] for each event routed
//! to one of its rooms, in order per room, and retries on [`DeliveryError::Retryable`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::event::{Event, EventId, Inbound};
use crate::signal::Signal;

/// One account on one network.
#[async_trait]
pub trait Connector: Send + Sync + 'static {
    /// Connect and stay connected until `ctx.shutdown` is cancelled, emitting events into
    /// `ctx.sink`. Returns only on shutdown or on an error that retrying cannot fix (bad
    /// credentials, say); transient failures are the connector's to retry.
    async fn run(&self, ctx: ConnectorContext) -> Result<(), ConnectorError>;

    /// Deliver one event into one of this account's rooms. Returns the id the network gave the
    /// new message, if it gives one, so later edits, deletes and replies can find it.
    async fn deliver(&self, delivery: Delivery) -> Result<Delivered, DeliveryError>;

    /// The most waiting deliveries of one room this connector takes in one
    /// [`deliver_run`](Connector::deliver_run) call. A connector that merges a burst into fewer
    /// network messages (SSH chat under an anti-spam limit) raises it; the default, 1, hands
    /// deliveries over one at a time.
    fn run_limit(&self) -> usize {
        1
    }

    /// Deliver a run of consecutive deliveries into one room, in order, and answer only once
    /// each answered one is really sent: the gateway removes an `Ok` from the outbox as soon as
    /// it gets it. Returns one result per delivery for a prefix of `run`: it stops at the first
    /// retryable `Err` (or any `Err`, where later deliveries were not sent), and the deliveries
    /// after the last result are retried later, from there, in order. A permanent `Err` may be
    /// followed by more results when the deliveries after it were already sent (a pipelined
    /// run): the gateway dead-letters that one and goes on. The default calls
    /// [`deliver`](Connector::deliver) for each.
    async fn deliver_run(&self, run: Vec<Delivery>) -> Vec<Result<Delivered, DeliveryError>> {
        let mut results = Vec::with_capacity(run.len());
        for delivery in run {
            let result = self.deliver(delivery).await;
            let failed = result.is_err();
            results.push(result);
            if failed {
                break;
            }
        }
        results
    }

    /// Whether the account keeps a connection to its network that must exist once (an IRC
    /// or SSH session, a Matrix sync). When several gateway instances share one config, such an
    /// account runs on one instance at a time; an account that only serves HTTP and sends
    /// requests (webhooks, the API) returns false and runs on every instance, so a load
    /// balancer can spread its inbound traffic, while its outbound deliveries still have one
    /// owner.
    fn holds_connection(&self) -> bool {
        true
    }

    /// HTTP routes this connector serves on the gateway's shared listener (inbound webhooks,
    /// the API, media links), with paths absolute from the listener's root. Called once, before
    /// `run`. The default serves nothing.
    fn http_routes(&self) -> Option<axum::Router> {
        None
    }

    /// What `patchbay check` should tell the operator about this account beyond "valid": one
    /// plain sentence each about what the chosen settings do not do (a mode that cannot read
    /// encrypted rooms, say), so that it is learnt before users find out. The default says
    /// nothing.
    fn check_notes(&self) -> Vec<String> {
        Vec::new()
    }
}

/// What a connector gets to run with.
#[derive(Clone)]
pub struct ConnectorContext {
    /// The account, `PROTOCOL.NAME`.
    pub account: String,
    /// Where emitted events go.
    pub sink: EventSink,
    /// Where the connector reports whether it is connected.
    pub state: StateHandle,
    /// Cancelled when the gateway stops.
    pub shutdown: CancellationToken,
    /// A directory of the connector's own, for keys, sessions and sync positions.
    pub data_dir: PathBuf,
}

/// A fatal connector error: the account stays down until the gateway restarts.
///
/// Its `Display` is the whole sentence an operator reads — what failed, then `: ` and the
/// cause when there is one — because the gateway shows it as the account's one-line `Down`
/// reason; the cause is also kept typed as its [`source`](std::error::Error::source), for code
/// that needs to tell causes apart.
#[derive(Debug)]
pub struct ConnectorError {
    /// The sentence, cause included.
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl ConnectorError {
    /// A failure with nothing beneath it (the server said no, a task stopped).
    pub fn new(what: impl Into<String>) -> Self {
        ConnectorError {
            message: what.into(),
            source: None,
        }
    }

    /// `what` failed because of `source`.
    pub fn with_source(
        what: impl std::fmt::Display,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        let source = source.into();
        ConnectorError {
            message: format!("{what}: {source}"),
            source: Some(source),
        }
    }
}

impl std::fmt::Display for ConnectorError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConnectorError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|s| s as _)
    }
}

impl From<String> for ConnectorError {
    fn from(what: String) -> Self {
        ConnectorError::new(what)
    }
}

/// An event routed to one of the connector's rooms.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// The destination room within this account.
    pub room: String,
    /// The event. Its [`MessageRef`](crate::MessageRef)s (edit target, reply) are already
    /// translated to this network's ids where the gateway knows them.
    pub event: Event,
    /// The author's name as the route formats it for this room (e.g. `[irc] alice`).
    pub nick: String,
    /// The route the event was relayed along.
    pub route: String,
    /// The message this one replies to, for networks that show replies as a quote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quote: Option<Quote>,
}

/// A short view of an earlier message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quote {
    pub author: String,
    pub text: String,
}

/// A successful delivery.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Delivered {
    /// The network's id for the message as delivered (the first one when it was split).
    pub remote_id: Option<String>,
}

/// Why a delivery failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// Try again later: the connection is down, the server said slow down.
    #[error("retryable: {reason}")]
    Retryable {
        reason: String,
        /// How long the network asked us to wait, if it said.
        retry_after: Option<Duration>,
    },
    /// Retrying will not help (no such room, message refused): goes to the dead-letter table.
    #[error("permanent: {reason}")]
    Permanent { reason: String },
}

impl DeliveryError {
    pub fn retryable(reason: impl Into<String>) -> Self {
        DeliveryError::Retryable {
            reason: reason.into(),
            retry_after: None,
        }
    }

    pub fn permanent(reason: impl Into<String>) -> Self {
        DeliveryError::Permanent {
            reason: reason.into(),
        }
    }
}

/// Whether a connector is connected.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ConnectorState {
    Connecting,
    Up,
    Down { reason: String },
}

/// Where a connector reports its state; the gateway watches it for health checks and metrics.
#[derive(Clone, Debug)]
pub struct StateHandle(Arc<watch::Sender<ConnectorState>>);

impl StateHandle {
    pub fn new() -> (Self, watch::Receiver<ConnectorState>) {
        let (tx, rx) = watch::channel(ConnectorState::Connecting);
        (StateHandle(Arc::new(tx)), rx)
    }

    pub fn set(&self, state: ConnectorState) {
        self.0.send_if_modified(|current| {
            if *current == state {
                false
            } else {
                *current = state;
                true
            }
        });
    }

    pub fn up(&self) {
        self.set(ConnectorState::Up);
    }

    pub fn down(&self, reason: impl Into<String>) {
        self.set(ConnectorState::Down {
            reason: reason.into(),
        });
    }

    pub fn get(&self) -> ConnectorState {
        self.0.borrow().clone()
    }
}

/// Why an emitted event was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum EmitError {
    /// The gateway is shutting down and takes no new events.
    #[error("the gateway is shutting down")]
    Closed,
    /// The store could not record the event; the source should not acknowledge it.
    #[error("the event could not be recorded: {0}")]
    Store(String),
}

/// The gateway side of an [`EventSink`].
#[async_trait]
pub trait Emit: Send + Sync + 'static {
    /// Record `inbound` as seen by `account` and route it. Returns once the event and its
    /// deliveries are durably recorded, with the event's id, or `None` when the event was
    /// dropped on purpose (an echo of our own message).
    async fn emit(&self, account: &str, inbound: Inbound) -> Result<Option<EventId>, EmitError>;

    /// Record a run of events seen by `account`, in the order given, with one answer per
    /// event in that order. Returns once all of them are durable; the gateway may group them
    /// into one commit, which is what makes a burst cheap. On an error, some of the run may
    /// be recorded already: a source that resends it all is safe, since an event whose
    /// network id is recorded is a duplicate the second time.
    async fn emit_many(
        &self,
        account: &str,
        inbounds: Vec<Inbound>,
    ) -> Result<Vec<Option<EventId>>, EmitError> {
        let mut ids = Vec::with_capacity(inbounds.len());
        for inbound in inbounds {
            ids.push(self.emit(account, inbound).await?);
        }
        Ok(ids)
    }

    /// The newest event the gateway accepted from `room` of `account`, on any instance.
    async fn last_seen(&self, account: &str, room: &str) -> Result<Option<Seen>, EmitError> {
        let _ = (account, room);
        Ok(None)
    }

    /// `account` is connected to `network` as `names` (see [`EventSink::announce`]).
    fn announce(&self, account: &str, network: &str, names: Vec<String>) {
        let _ = (account, network, names);
    }

    /// Count one health event of `account` (see [`crate::health`]): the gateway adds it to
    /// the account's `patchbay_connector_events_total`. Called only by
    /// [`HealthEvent::emit`](crate::health::HealthEvent::emit), right after the event's log
    /// line. The default drops it: a test collector need not count.
    fn count(&self, account: &str, signal: Signal) {
        let _ = (account, signal);
    }
}

/// The newest event accepted from a room: when, and the network's id for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub time: crate::event::Timestamp,
    pub remote_id: Option<String>,
}

/// Where a connector sends what it sees.
#[derive(Clone)]
pub struct EventSink {
    account: Arc<str>,
    inner: Arc<dyn Emit>,
}

impl EventSink {
    pub fn new(account: impl Into<Arc<str>>, inner: Arc<dyn Emit>) -> Self {
        EventSink {
            account: account.into(),
            inner,
        }
    }

    /// Hand an event to the gateway. When this returns `Ok`, the event is durable: a source
    /// that acknowledges messages (a webhook's 202, a sync position) may acknowledge it now.
    pub async fn emit(&self, inbound: Inbound) -> Result<Option<EventId>, EmitError> {
        self.inner.emit(&self.account, inbound).await
    }

    /// Hand a run of events to the gateway at once, in order (a burst read from one socket):
    /// one answer per event, and when this returns `Ok` all of them are durable. Cheaper than
    /// emitting them one by one, which waits for a commit per event.
    pub async fn emit_many(
        &self,
        inbounds: Vec<Inbound>,
    ) -> Result<Vec<Option<EventId>>, EmitError> {
        self.inner.emit_many(&self.account, inbounds).await
    }

    /// Tell the gateway who this account is on its network: `network` names the server in a
    /// way every account of the same protocol spells alike (`devzat@127.0.0.1:2222`,
    /// `irc@irc.libera.chat:6697`), `names` are the author ids the account speaks as there.
    /// Events another account of this gateway sees from one of these names on the same
    /// network are the gateway's own words (a bridge's commands, its relayed lines) and are
    /// never relayed. Call it again when the names change (a nick collision); the last call
    /// counts.
    pub fn announce(&self, network: impl Into<String>, names: Vec<String>) {
        self.inner.announce(&self.account, &network.into(), names);
    }

    /// The newest event the gateway accepted from `room` of this account, whichever instance
    /// accepted it. A connector that catches up from its network's history and keeps its own
    /// mark in its data dir starts from this when it has no mark: after a restart on another
    /// machine (another instance took the account over), or with a fresh data dir.
    pub async fn last_seen(&self, room: &str) -> Result<Option<Seen>, EmitError> {
        self.inner.last_seen(&self.account, room).await
    }

    pub fn account(&self) -> &str {
        &self.account
    }

    /// Count a health event for this account. Crate-private: only
    /// [`HealthEvent::emit`](crate::health::HealthEvent::emit) counts, after it logs.
    pub(crate) fn count(&self, signal: Signal) {
        self.inner.count(&self.account, signal);
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn a_connector_error_reads_as_one_line_and_keeps_its_cause() {
        let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied");
        let err = ConnectorError::with_source("cannot open /x/api.db", io);
        assert_eq!(err.to_string(), "cannot open /x/api.db: denied");
        let cause = err
            .source()
            .and_then(|s| s.downcast_ref::<std::io::Error>());
        assert_eq!(
            cause.map(std::io::Error::kind),
            Some(std::io::ErrorKind::PermissionDenied)
        );
    }
}
