//! The store: events, the durable outbox, the message-id map and the dead letters.
//!
//! Behind a small trait so the embedded SQLite store can be swapped for a shared one (NATS
//! JetStream) when several gateway instances share one routing table.

mod sqlite;

pub use sqlite::SqliteStore;

use async_trait::async_trait;
use patchbay_sdk::{Event, EventId, Quote, Timestamp};

use crate::router::RoomKey;

/// One delivery to record with an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewDelivery {
    pub room: RoomKey,
    pub route: String,
    /// Not to be delivered before this time (a rate limit's schedule).
    pub not_before: Option<Timestamp>,
}

/// What became of an accepted event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accepted {
    /// Recorded, with its deliveries.
    Recorded,
    /// Already known: its origin remote id is one we relayed (an echo) or one we recorded
    /// before (a replay). Nothing was written.
    Duplicate,
}

/// A delivery waiting in the outbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    /// Its place in the outbox; deliveries into one room go in this order.
    pub seq: i64,
    pub room: RoomKey,
    pub route: String,
    pub not_before: Option<Timestamp>,
    pub event: Event,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] rusqlite::Error),
    #[error("a stored event is not readable: {0}")]
    Corrupt(#[from] serde_json::Error),
    #[error("the store is closed")]
    Closed,
    #[error("cannot open the store: {0}")]
    Open(String),
    #[error("the store could not commit: {0}")]
    Commit(String),
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Record an event and its deliveries in one transaction, unless its origin remote id is
    /// already in the message-id map.
    async fn accept(
        &self,
        event: Event,
        deliveries: Vec<NewDelivery>,
    ) -> Result<Accepted, StoreError>;

    /// The feed of committed deliveries, in commit order: the bus from intake to the outbox.
    /// Deliveries reach it only once they are durable; it can be taken once.
    fn take_feed(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<Vec<Pending>>>;

    /// The gateway id of the message a network knows as `remote_id` in `room`.
    async fn resolve(&self, room: &RoomKey, remote_id: &str)
    -> Result<Option<EventId>, StoreError>;

    /// The id a network gave message `id` when it was delivered into (or came from) `room`.
    async fn native_id(&self, id: EventId, room: &RoomKey) -> Result<Option<String>, StoreError>;

    /// Author and text of a recorded event, for replies shown as quotes.
    async fn quote(&self, id: EventId) -> Result<Option<Quote>, StoreError>;

    /// Up to `limit` deliveries into `room` after `after_seq`, in order.
    async fn pending(
        &self,
        room: &RoomKey,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<Pending>, StoreError>;

    /// Every room with deliveries waiting.
    async fn rooms_with_pending(&self) -> Result<Vec<RoomKey>, StoreError>;

    /// A delivery succeeded: remove it from the outbox and map the network's id, if any.
    /// Completions are recorded in order but may return before they are durable, so a worker
    /// never waits on the disk between two sends; a crash in that window sends the delivery
    /// once more, and nothing recorded as delivered is ever sent again.
    async fn complete(
        &self,
        pending: &Pending,
        remote_id: Option<String>,
    ) -> Result<(), StoreError>;

    /// A delivery failed for good: move it to the dead-letter table.
    async fn dead_letter(&self, pending: &Pending, reason: &str) -> Result<(), StoreError>;

    /// Forget mappings and delivered events older than `before`. Returns how many events went.
    async fn prune(&self, before: Timestamp) -> Result<usize, StoreError>;

    /// Deliveries waiting, by destination account.
    async fn outbox_depths(&self) -> Result<std::collections::BTreeMap<String, u64>, StoreError>;

    /// Counts, for metrics and tests.
    async fn stats(&self) -> Result<StoreStats, StoreError>;
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub events: u64,
    pub pending: u64,
    pub dead_letters: u64,
}

#[cfg(test)]
mod tests;
