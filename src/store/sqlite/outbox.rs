//! A room's outbox in the embedded store: committed deliveries reach the room's lane from
//! memory, and from the database only when memory could not hold them.
//!
//! The writer thread pushes every delivery it commits into the queue of its room's lane, if
//! that room is open, in commit order (which is seq order). A lane normally takes its work
//! from that queue, so steady-state delivery never reads the database. At start, and whenever
//! its queue overflowed (a room whose network is down while traffic keeps coming), the lane
//! reads the database in seq order instead, until a read comes back short (it saw all there
//! was) with no overflow meanwhile; deliveries seen both ways are skipped by their seq. Nothing committed is missed:
//! what the read did not see was committed after it, so it is in the queue (or the overflow
//! flag is up and the lane reads again).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::Notify;

use super::SqliteStore;
use crate::router::RoomKey;
use crate::store::{Pending, RoomOutbox, StoreError};
use patchbay_sdk::sync::lock;

/// The open rooms' queues, by room: the writer thread pushes, each lane takes.
#[derive(Default)]
pub(super) struct Lanes {
    queues: Mutex<HashMap<RoomKey, Arc<LaneQueue>>>,
}

impl Lanes {
    /// Hand freshly committed deliveries (in seq order) to their rooms' queues.
    pub(super) fn push(&self, committed: Vec<Pending>, capacity: usize) {
        let queues = lock(&self.queues);
        for pending in committed {
            if let Some(queue) = queues.get(&pending.room) {
                queue.push(pending, capacity);
            }
        }
    }

    fn open(&self, room: &RoomKey) -> Arc<LaneQueue> {
        let mut queues = lock(&self.queues);
        Arc::clone(queues.entry(room.clone()).or_default())
    }
}

/// What the writer has committed for one room since the lane last looked.
#[derive(Default)]
struct LaneQueue {
    state: Mutex<QueueState>,
    notify: Notify,
}

#[derive(Default)]
struct QueueState {
    queue: VecDeque<Pending>,
    /// The queue dropped deliveries because it was full: they are only in the database.
    overflowed: bool,
}

impl LaneQueue {
    fn push(&self, pending: Pending, capacity: usize) {
        {
            let mut state = lock(&self.state);
            if state.overflowed {
                // Already reading the database: it has this one too.
            } else if state.queue.len() >= capacity {
                tracing::debug!(room = %pending.room, "lane queue full; the lane reads the store until it catches up");
                state.queue.clear();
                state.overflowed = true;
            } else {
                state.queue.push_back(pending);
            }
        }
        self.notify.notify_one();
    }
}

/// How many deliveries a lane reads from the database at a time.
const READ_BATCH: usize = 256;

/// [`RoomOutbox`] of the embedded store.
pub(super) struct SqliteRoom {
    store: SqliteStore,
    room: RoomKey,
    queue: Arc<LaneQueue>,
    /// True while the lane reads the database rather than its queue.
    reading_store: bool,
    /// Read from the database and not handed out yet (a lane may take fewer at a time than a
    /// read brings), oldest first.
    ahead: VecDeque<Pending>,
    /// The seq of the last delivery read or taken from the queue; everything at or below it
    /// is the lane's.
    cursor: i64,
}

impl SqliteRoom {
    pub(super) fn open(store: SqliteStore, room: &RoomKey) -> Self {
        let queue = store.lanes.open(room);
        SqliteRoom {
            store,
            room: room.clone(),
            queue,
            reading_store: true,
            ahead: VecDeque::new(),
            cursor: 0,
        }
    }

    fn hand_out(&mut self, batch: Vec<Pending>) -> Vec<Pending> {
        if let Some(last) = batch.last() {
            self.cursor = self.cursor.max(last.seq);
        }
        batch
    }

    fn take_ahead(&mut self, max: usize) -> Vec<Pending> {
        let take = self.ahead.len().min(max);
        self.ahead.drain(..take).collect()
    }
}

#[async_trait]
impl RoomOutbox for SqliteRoom {
    async fn next(&mut self, max: usize) -> Result<Vec<Pending>, StoreError> {
        let max = max.max(1);
        loop {
            if !self.ahead.is_empty() {
                return Ok(self.take_ahead(max));
            }
            if self.reading_store {
                let limit = READ_BATCH;
                let batch = self.store.pending(&self.room, self.cursor, limit).await?;
                {
                    let mut state = lock(&self.queue.state);
                    if state.overflowed {
                        // More came than the queue holds while we read: the database has it
                        // all, and the queue starts afresh for the next read to catch up with.
                        state.overflowed = false;
                        state.queue.clear();
                    } else if batch.len() < limit {
                        // A short read saw everything committed before it, and the queue,
                        // which did not overflow, holds everything committed since: go on
                        // from the queue. Waiting for an empty read instead could keep a
                        // lane reading the database for as long as traffic keeps coming.
                        self.reading_store = false;
                    }
                }
                if !batch.is_empty() {
                    let read = self.hand_out(batch);
                    self.ahead.extend(read);
                    return Ok(self.take_ahead(max));
                }
                if self.reading_store {
                    continue;
                }
            }
            let queue = Arc::clone(&self.queue);
            // Register for a wake-up before looking, so a push in between is not missed.
            let notified = queue.notify.notified();
            let batch: Vec<Pending> = {
                let mut state = lock(&self.queue.state);
                if state.overflowed {
                    state.overflowed = false;
                    state.queue.clear();
                    self.reading_store = true;
                    continue;
                }
                let cursor = self.cursor;
                while state.queue.front().is_some_and(|p| p.seq <= cursor) {
                    state.queue.pop_front();
                }
                let take = state.queue.len().min(max);
                state.queue.drain(..take).collect()
            };
            if !batch.is_empty() {
                return Ok(self.hand_out(batch));
            }
            notified.await;
        }
    }

    async fn complete(
        &mut self,
        pending: &Pending,
        remote_id: Option<String>,
    ) -> Result<(), StoreError> {
        self.store.complete(pending, remote_id).await
    }

    async fn dead_letter(&mut self, pending: &Pending, reason: &str) -> Result<(), StoreError> {
        self.store.dead_letter(pending, reason).await
    }
}
