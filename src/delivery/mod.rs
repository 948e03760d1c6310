//! Delivery: draining the outbox into the connectors.
//!
//! One lane per destination room pulls that room's deliveries from the store in order and hands
//! them to the room's connector one at a time. A lane whose network is down waits with
//! backoff (or until the connector reports it is up again) while every other lane goes on, so
//! one slow or dead destination never delays the others. A permanent failure moves the
//! delivery to the dead-letter table; nothing is dropped silently.

mod backoff;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use patchbay_sdk::{Connector, ConnectorState, Delivery, DeliveryError, MessageRef, Timestamp};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::metrics::Metrics;
use crate::router::{RoomKey, Router};
use crate::store::{Pending, Store};
use backoff::Backoff;

/// How many deliveries a lane reads from the store at a time.
const BATCH: usize = 256;
/// How long one delivery attempt may take before it counts as a retryable failure.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(60);

/// A destination account: its connector and its state.
#[derive(Clone)]
pub struct Destination {
    pub connector: Arc<dyn Connector>,
    pub state: watch::Receiver<ConnectorState>,
}

/// Retry timing and lane sizes.
#[derive(Clone, Copy, Debug)]
pub struct DeliveryPolicy {
    /// The first wait after a retryable failure; it doubles from there.
    pub retry_first: Duration,
    /// The longest wait between two attempts.
    pub retry_max: Duration,
    /// How many deliveries a lane holds in memory before it goes back to reading the store.
    pub lane_queue: usize,
}

impl Default for DeliveryPolicy {
    fn default() -> Self {
        DeliveryPolicy {
            retry_first: Duration::from_millis(500),
            retry_max: Duration::from_secs(60),
            lane_queue: 4096,
        }
    }
}

/// The delivery side of the gateway.
pub struct Outbox {
    shared: Arc<Shared>,
    lanes: Mutex<HashMap<RoomKey, Arc<Lane>>>,
}

struct Shared {
    store: Arc<dyn Store>,
    router: Arc<Router>,
    destinations: HashMap<String, Destination>,
    policy: DeliveryPolicy,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

/// One destination room's queue.
///
/// A lane is fed in one of two ways. Normally the outbox pushes each committed delivery into
/// its in-memory queue straight from the store's feed, so steady-state delivery never reads the
/// store. At start, and whenever its queue overflowed (a room whose network is down while
/// traffic keeps coming), the lane instead reads its deliveries from the store in order until
/// it has caught up, then switches back. The switch happens under the lane's lock, so nothing
/// committed in between is missed, and deliveries seen twice are skipped by their seq.
struct Lane {
    state: tokio::sync::Mutex<LaneState>,
    notify: Notify,
}

struct LaneState {
    /// True while the lane reads the store; the outbox leaves deliveries there meanwhile.
    reading_store: bool,
    queue: std::collections::VecDeque<Pending>,
}

impl Lane {
    fn new() -> Self {
        Lane {
            state: tokio::sync::Mutex::new(LaneState {
                reading_store: true,
                queue: Default::default(),
            }),
            notify: Notify::new(),
        }
    }
}

impl Outbox {
    pub fn new(
        store: Arc<dyn Store>,
        router: Arc<Router>,
        destinations: HashMap<String, Destination>,
        policy: DeliveryPolicy,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) -> Self {
        Outbox {
            shared: Arc::new(Shared {
                store,
                router,
                destinations,
                policy,
                metrics,
                shutdown,
                tracker: TaskTracker::new(),
            }),
            lanes: Mutex::new(HashMap::new()),
        }
    }

    /// Start delivering: a lane for every room with deliveries waiting from before, and the
    /// dispatcher that hands newly committed deliveries to their lanes.
    pub async fn start(self: &Arc<Self>) -> Result<(), crate::store::StoreError> {
        let feed = self.shared.store.take_feed();
        for room in self.shared.store.rooms_with_pending().await? {
            self.lane(&room);
        }
        if let Some(mut feed) = feed {
            let outbox = Arc::clone(self);
            let shutdown = self.shared.shutdown.clone();
            self.shared.tracker.spawn(async move {
                loop {
                    let batch = tokio::select! {
                        batch = feed.recv() => batch,
                        _ = shutdown.cancelled() => return,
                    };
                    let Some(batch) = batch else { return };
                    for pending in batch {
                        outbox.dispatch(pending).await;
                    }
                }
            });
        }
        Ok(())
    }

    /// Hand one committed delivery to its lane.
    async fn dispatch(&self, pending: Pending) {
        let lane = self.lane(&pending.room);
        let mut state = lane.state.lock().await;
        if state.reading_store {
            // The lane will read it from the store.
        } else if state.queue.len() >= self.shared.policy.lane_queue {
            tracing::debug!(room = %pending.room, "lane queue full; the lane reads the store until it catches up");
            state.queue.clear();
            state.reading_store = true;
        } else {
            state.queue.push_back(pending);
        }
        drop(state);
        lane.notify.notify_one();
    }

    /// The lane of `room`, started if it was not running.
    fn lane(&self, room: &RoomKey) -> Arc<Lane> {
        let mut lanes = self.lanes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(lane) = lanes.get(room) {
            return Arc::clone(lane);
        }
        let lane = Arc::new(Lane::new());
        lanes.insert(room.clone(), Arc::clone(&lane));
        let shared = Arc::clone(&self.shared);
        let room = room.clone();
        let running = Arc::clone(&lane);
        self.shared
            .tracker
            .spawn(async move { run_lane(shared, room, running).await });
        lane
    }

    /// Wait for every lane to finish its in-flight delivery and stop, up to `timeout`.
    /// Returns false if some lane was still busy when the time ran out.
    pub async fn drain(&self, timeout: Duration) -> bool {
        self.shared.tracker.close();
        tokio::time::timeout(timeout, self.shared.tracker.wait())
            .await
            .is_ok()
    }
}

async fn run_lane(shared: Arc<Shared>, room: RoomKey, lane: Arc<Lane>) {
    let Some(destination) = shared.destinations.get(&room.account).cloned() else {
        tracing::warn!(room = %room, "deliveries wait for an account that is not configured; they stay in the outbox");
        return;
    };
    // The seq of the last delivery done (or given up on); everything at or below it is done.
    let mut cursor = 0;
    let mut backoff = Backoff::new(shared.policy.retry_first, shared.policy.retry_max);
    loop {
        if shared.shutdown.is_cancelled() {
            return;
        }
        let next = {
            let mut state = lane.state.lock().await;
            if state.reading_store {
                // Catch up from the store; switch to the queue once nothing is left, deciding
                // under the lock so the dispatcher cannot slip a delivery in between.
                match shared.store.pending(&room, cursor, BATCH).await {
                    Ok(batch) if batch.is_empty() => {
                        state.reading_store = false;
                        state.queue.clear();
                        continue;
                    }
                    Ok(batch) => Next::Batch(batch),
                    Err(err) => {
                        tracing::error!(room = %room, "cannot read the outbox: {err}");
                        Next::Pause
                    }
                }
            } else {
                // Take everything queued: one lock per burst, not per delivery.
                if state.queue.is_empty() {
                    Next::Wait
                } else {
                    Next::Batch(state.queue.drain(..).collect())
                }
            }
        };
        match next {
            Next::Batch(batch) => {
                for pending in batch {
                    if pending.seq <= cursor {
                        continue;
                    }
                    if shared.shutdown.is_cancelled()
                        || !deliver_one(&shared, &destination, &pending, &mut backoff).await
                    {
                        return;
                    }
                    cursor = pending.seq;
                }
            }
            Next::Wait => {
                tokio::select! {
                    _ = lane.notify.notified() => {}
                    _ = shared.shutdown.cancelled() => return,
                }
            }
            Next::Pause => {
                if !pause(&shared.shutdown, backoff.next_wait()).await {
                    return;
                }
            }
        }
    }
}

enum Next {
    Batch(Vec<Pending>),
    Wait,
    Pause,
}

/// Deliver one item, retrying until it succeeds or fails for good. Returns false when the
/// gateway is shutting down and the item is left in the outbox.
async fn deliver_one(
    shared: &Shared,
    destination: &Destination,
    pending: &Pending,
    backoff: &mut Backoff,
) -> bool {
    if let Some(not_before) = pending.not_before {
        let wait = not_before.0 - Timestamp::now().0;
        if wait > 0 && !pause(&shared.shutdown, Duration::from_millis(wait as u64)).await {
            return false;
        }
    }
    let delivery = prepare(shared, pending).await;
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let attempt = tokio::time::timeout(
            ATTEMPT_TIMEOUT,
            destination.connector.deliver(delivery.clone()),
        );
        let result = attempt.await.unwrap_or_else(|_| {
            Err(DeliveryError::retryable(format!(
                "no answer within {}s",
                ATTEMPT_TIMEOUT.as_secs()
            )))
        });
        match result {
            Ok(delivered) => {
                backoff.reset();
                shared
                    .metrics
                    .delivered(&pending.room.account, &pending.route, pending.event.time);
                if let Err(err) = shared.store.complete(pending, delivered.remote_id).await {
                    tracing::error!(room = %pending.room, "cannot record a delivery as done: {err}");
                }
                return true;
            }
            Err(DeliveryError::Permanent { reason }) => {
                tracing::error!(
                    room = %pending.room, event = %pending.event.id, route = %pending.route,
                    "delivery failed for good, moved to the dead letters: {reason}"
                );
                shared.metrics.failed(&pending.room.account, &pending.route);
                if let Err(err) = shared.store.dead_letter(pending, &reason).await {
                    tracing::error!(room = %pending.room, "cannot record a dead letter; it stays in the outbox: {err}");
                    return false;
                }
                return true;
            }
            Err(DeliveryError::Retryable {
                reason,
                retry_after,
            }) => {
                let wait = retry_after.unwrap_or_else(|| backoff.next_wait());
                if attempts == 1 || attempts.is_power_of_two() {
                    tracing::warn!(
                        room = %pending.room, event = %pending.event.id, attempts,
                        "delivery failed, retrying in {:.1}s: {reason}", wait.as_secs_f64()
                    );
                }
                if !wait_for_retry(&shared.shutdown, destination.state.clone(), wait).await {
                    return false;
                }
            }
        }
    }
}

/// Shape a pending delivery for its connector: translate message references into the
/// destination's ids, look up the quoted message of a reply, format the nick.
async fn prepare(shared: &Shared, pending: &Pending) -> Delivery {
    let mut event = pending.event.clone();
    let mut quote = None;
    if let Some(MessageRef::Gateway(id)) = event.reply_to.clone() {
        quote = shared.store.quote(id).await.ok().flatten();
        event.reply_to = Some(native(shared, id, &pending.room).await);
    }
    if let Some(target) = event.kind.target_mut()
        && let MessageRef::Gateway(id) = target.clone()
    {
        *target = native(shared, id, &pending.room).await;
    }
    let nick = shared
        .router
        .prepare(&pending.route, &pending.room, &mut event);
    Delivery {
        room: pending.room.room.clone(),
        event,
        nick,
        route: pending.route.clone(),
        quote,
    }
}

async fn native(shared: &Shared, id: patchbay_sdk::EventId, room: &RoomKey) -> MessageRef {
    match shared.store.native_id(id, room).await {
        Ok(Some(remote)) => MessageRef::Native(remote),
        _ => MessageRef::Gateway(id),
    }
}

/// Sleep for `wait`; false if shutdown came first.
async fn pause(shutdown: &CancellationToken, wait: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(wait) => true,
        _ = shutdown.cancelled() => false,
    }
}

/// Wait before retrying: `wait`, or less if the connector comes back up in the meantime.
async fn wait_for_retry(
    shutdown: &CancellationToken,
    mut state: watch::Receiver<ConnectorState>,
    wait: Duration,
) -> bool {
    let was_up = *state.borrow_and_update() == ConnectorState::Up;
    let back_up = async {
        if was_up {
            return std::future::pending::<()>().await;
        }
        while state.changed().await.is_ok() {
            if *state.borrow() == ConnectorState::Up {
                return;
            }
        }
        std::future::pending::<()>().await
    };
    tokio::select! {
        _ = tokio::time::sleep(wait) => true,
        _ = back_up => true,
        _ = shutdown.cancelled() => false,
    }
}

#[cfg(test)]
mod tests;
