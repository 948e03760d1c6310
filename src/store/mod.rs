//! The store: events, the durable outbox, the message-id map and the dead letters.
//!
//! [`Store`] is the seam between the gateway and its engine: intake records through it, each
//! delivery lane reads and completes its room through a [`RoomOutbox`], and the gateway knows
//! nothing else of where things are kept. The embedded engine is one SQLite file
//! ([`SqliteStore`]); the scale-out engine is NATS JetStream ([`JetStreamStore`]), shared by
//! several instances.

mod jetstream;
mod sqlite;

pub use jetstream::JetStreamStore;
pub use sqlite::{LANE_QUEUE, SqliteStore};

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use patchbay_sdk::{Event, EventId, Quote, Seen, Timestamp};

use crate::router::RoomKey;

/// One delivery to record with an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewDelivery {
    pub room: RoomKey,
    pub route: String,
    /// Not to be delivered before this time (a rate limit's schedule).
    pub not_before: Option<Timestamp>,
}

/// An event to record, with its deliveries.
#[derive(Clone, Debug)]
pub struct NewEvent {
    pub event: Event,
    pub deliveries: Vec<NewDelivery>,
}

/// Who an account is on its network, as it announced (see `EventSink::announce`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AccountNames {
    /// The network, spelt alike by every account of the protocol.
    pub network: String,
    /// The author ids the account speaks as there.
    pub names: Vec<String>,
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
    /// Shared by every delivery of the event: a fan-out to many rooms holds one copy.
    pub event: Arc<Event>,
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
    /// A shared store (JetStream) did not answer; the operation may be retried.
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
}

/// Where the gateway keeps what it has accepted: events, the outbox, the message-id map and
/// the dead letters. Two engines implement it: [`SqliteStore`] (one process, one file) and
/// [`JetStreamStore`] (several instances sharing NATS JetStream).
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Record a run of events, each with its deliveries, as if each were accepted in turn
    /// ([`Store::accept`]), in as few commits or round trips as the engine can: a burst from
    /// one room costs about what one event does. One answer per event, in order; deliveries
    /// into one room keep the run's order. Returns once all of them are durable. On an error
    /// some of the run may be recorded already; a resend is safe, since an event whose origin
    /// remote id is recorded is a duplicate the second time.
    async fn accept_many(&self, run: Vec<NewEvent>) -> Result<Vec<Accepted>, StoreError>;

    /// Record an event and its deliveries atomically, unless its origin remote id is already
    /// in the message-id map. Returns once they are durable.
    async fn accept(
        &self,
        event: Event,
        deliveries: Vec<NewDelivery>,
    ) -> Result<Accepted, StoreError> {
        self.accept_many(vec![NewEvent { event, deliveries }])
            .await?
            .pop()
            .ok_or_else(|| StoreError::Commit("the engine answered nothing".to_owned()))
    }

    /// The outbox of one destination room: its waiting deliveries in order, and where their
    /// outcomes are recorded. The delivery lane of `room` opens it once and is its only
    /// reader; deliveries committed later reach it without asking the store again.
    async fn open_room(&self, room: &RoomKey) -> Result<Box<dyn RoomOutbox>, StoreError>;

    /// The gateway id of the message a network knows as `remote_id` in `room`.
    async fn resolve(&self, room: &RoomKey, remote_id: &str)
    -> Result<Option<EventId>, StoreError>;

    /// The id a network gave message `id` when it was delivered into (or came from) `room`.
    async fn native_id(&self, id: EventId, room: &RoomKey) -> Result<Option<String>, StoreError>;

    /// Author and text of a recorded event, for replies shown as quotes.
    async fn quote(&self, id: EventId) -> Result<Option<Quote>, StoreError>;

    /// When the newest event from `room` was accepted, and its network id.
    async fn last_origin(&self, room: &RoomKey) -> Result<Option<Seen>, StoreError>;

    /// Every room with deliveries waiting.
    async fn rooms_with_pending(&self) -> Result<Vec<RoomKey>, StoreError>;

    /// Forget mappings and delivered events older than `before`. Returns how many events went.
    async fn prune(&self, before: Timestamp) -> Result<usize, StoreError>;

    /// Deliveries waiting, by destination room.
    async fn room_depths(&self) -> Result<BTreeMap<RoomKey, u64>, StoreError>;

    /// Deliveries waiting, by destination account.
    async fn outbox_depths(&self) -> Result<BTreeMap<String, u64>, StoreError> {
        let mut depths = BTreeMap::new();
        for (room, depth) in self.room_depths().await? {
            *depths.entry(room.account).or_default() += depth;
        }
        Ok(depths)
    }

    /// Each destination room with deliveries waiting: how many, and when the oldest of them
    /// was accepted (what an operator looks at first: a room stuck for an hour).
    async fn room_backlogs(&self) -> Result<Vec<RoomBacklog>, StoreError>;

    /// Up to `limit` dead letters, oldest first, each with why it failed.
    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, StoreError>;

    /// Put dead letter `id` back at the end of its room's outbox (its room's lane delivers it
    /// like any other, in the order of the outbox) and remove it from the dead letters.
    /// `false` when there is no such dead letter.
    async fn retry_dead_letter(&self, id: u64) -> Result<bool, StoreError>;

    /// Drop dead letter `id` for good. `false` when there is no such dead letter.
    async fn discard_dead_letter(&self, id: u64) -> Result<bool, StoreError>;

    /// Tell the other instances who `account` is on its network. The embedded engine has no
    /// other instance to tell.
    async fn share_names(&self, account: &str, names: &AccountNames) -> Result<(), StoreError> {
        let _ = (account, names);
        Ok(())
    }

    /// What the accounts of every instance announced, the last of each first and then each
    /// new announcement, as (account, names); `None` when there are no other instances.
    async fn shared_names(
        &self,
    ) -> Result<Option<tokio::sync::mpsc::Receiver<(String, AccountNames)>>, StoreError> {
        Ok(None)
    }

    /// Counts, for metrics and tests.
    async fn stats(&self) -> Result<StoreStats, StoreError>;

    /// The engine's name, as the admin API reports it: `embedded` or `nats`.
    fn engine(&self) -> &'static str;

    /// Write out what is queued and release the store; later writes fail with
    /// [`StoreError::Closed`].
    async fn close(&self);
}

/// One destination room's outbox, as its delivery lane sees it.
#[async_trait]
pub trait RoomOutbox: Send {
    /// Up to `max` waiting deliveries, in order, starting after the last one this outbox
    /// handed out; waits until there is at least one. Cancel-safe: nothing is lost if the
    /// future is dropped.
    async fn next(&mut self, max: usize) -> Result<Vec<Pending>, StoreError>;

    /// A delivery succeeded: remove it from the outbox and map the network's id, if any.
    /// May return before the record is durable, so a lane never waits on the disk between two
    /// sends; a crash in that window sends the delivery once more, and nothing recorded as
    /// delivered is ever sent again.
    async fn complete(
        &mut self,
        pending: &Pending,
        remote_id: Option<String>,
    ) -> Result<(), StoreError>;

    /// A delivery failed for good: move it to the dead letters.
    async fn dead_letter(&mut self, pending: &Pending, reason: &str) -> Result<(), StoreError>;
}

/// One destination room's waiting deliveries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomBacklog {
    pub room: RoomKey,
    pub depth: u64,
    /// When the oldest waiting delivery's event was accepted (the embedded engine: the
    /// event's own time), if known.
    pub oldest: Option<Timestamp>,
}

/// A delivery that failed for good, kept for an operator to retry or discard.
#[derive(Clone, Debug)]
pub struct DeadLetter {
    /// Its id in the dead letters (the embedded engine's row, JetStream's stream sequence):
    /// what retry and discard take.
    pub id: u64,
    pub room: RoomKey,
    pub route: String,
    /// Why the destination refused it, as the connector said.
    pub reason: String,
    /// When it was moved to the dead letters.
    pub failed_at: Timestamp,
    pub event: Event,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub events: u64,
    pub pending: u64,
    pub dead_letters: u64,
    /// Transactions committed since the store was opened (embedded engine; 0 otherwise).
    pub commits: u64,
    /// Reads made since the store was opened, not counting this one (embedded engine).
    pub reads: u64,
}

#[cfg(test)]
mod dead_tests;
#[cfg(test)]
mod tests;
