//! Delivery: draining the outbox into the connectors.
//!
//! One lane per destination room takes that room's deliveries from its [`RoomOutbox`] in order
//! and hands them to the room's connector, one run at a time (one delivery, or up to the
//! connector's [`run_limit`](patchbay_sdk::Connector::run_limit) for connectors that merge a
//! burst). A lane whose network is down waits with backoff (or until the connector reports it
//! is up again) while every other lane goes on, so one slow or dead destination never delays
//! the others. A delivery leaves the outbox only when the connector said it was sent, or when
//! it failed for good and moved to the dead letters; nothing is dropped silently.
//!
//! Lanes run per account: [`Outbox::run_account`] starts an account's lanes and stops them
//! with its token, so an engine that moves accounts between instances (JetStream) starts and
//! stops them as it takes and loses an account.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use patchbay_sdk::{
    Connector, ConnectorState, Delivered, Delivery, DeliveryError, MessageRef, Timestamp,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::metrics::{GatewayEvent, Metrics};
use crate::router::{RoomKey, Router};
use crate::store::{Pending, RoomOutbox, Store};
pub use patchbay_sdk::Backoff;
use patchbay_sdk::sync::{lock, read, write};

mod outcomes;
use outcomes::{DeadLettered, DeliveryRetried};

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
    /// How many committed deliveries a room's lane holds in memory before it goes back to
    /// reading the store (embedded engine).
    pub lane_queue: usize,
}

impl Default for DeliveryPolicy {
    fn default() -> Self {
        DeliveryPolicy {
            retry_first: Duration::from_millis(500),
            retry_max: Duration::from_secs(60),
            lane_queue: crate::store::LANE_QUEUE,
        }
    }
}

/// The delivery side of the gateway.
pub struct Outbox {
    shared: Arc<Shared>,
}

struct Shared {
    store: Arc<dyn Store>,
    router: Arc<Router>,
    /// The accounts that take deliveries; a reload adds and removes them.
    destinations: RwLock<HashMap<String, Destination>>,
    policy: DeliveryPolicy,
    metrics: Arc<Metrics>,
    tracker: TaskTracker,
    /// Each account's running lanes, so that a reload can start lanes for rooms a new route
    /// names, and wait for an account's lanes to stop before it runs again: one lane per room
    /// at any time, or a room could get a delivery twice.
    running: Mutex<HashMap<String, AccountLanes>>,
}

/// One account's lanes while it runs.
struct AccountLanes {
    stop: CancellationToken,
    rooms: HashSet<RoomKey>,
    tracker: TaskTracker,
}

impl Outbox {
    pub fn new(
        store: Arc<dyn Store>,
        router: Arc<Router>,
        destinations: HashMap<String, Destination>,
        policy: DeliveryPolicy,
        metrics: Arc<Metrics>,
    ) -> Self {
        Outbox {
            shared: Arc::new(Shared {
                store,
                router,
                destinations: RwLock::new(destinations),
                policy,
                metrics,
                tracker: TaskTracker::new(),
                running: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Start the lanes of `account`: one for every room of it the routes deliver to, and one
    /// for every room of it with deliveries waiting from before. They run until `stop`.
    pub async fn run_account(
        &self,
        account: &str,
        stop: CancellationToken,
    ) -> Result<(), crate::store::StoreError> {
        let Some(destination) = self.destination(account) else {
            return Ok(());
        };
        let mut rooms: Vec<RoomKey> = self
            .shared
            .router
            .destination_rooms()
            .into_iter()
            .filter(|room| room.account == account)
            .collect();
        for room in self.shared.store.rooms_with_pending().await? {
            if room.account == account && !rooms.contains(&room) {
                rooms.push(room);
            }
        }
        let mut running = lock(&self.shared.running);
        let lanes = running
            .entry(account.to_owned())
            .or_insert_with(|| AccountLanes {
                stop: stop.clone(),
                rooms: HashSet::new(),
                tracker: TaskTracker::new(),
            });
        if lanes.stop.is_cancelled() {
            // The lanes of an earlier run were told to stop; they finish on their own tracker.
            *lanes = AccountLanes {
                stop: stop.clone(),
                rooms: HashSet::new(),
                tracker: TaskTracker::new(),
            };
        }
        for room in rooms {
            self.spawn_lane(lanes, room, &destination);
        }
        Ok(())
    }

    /// Start a lane for every room the routes now deliver to that has none yet, in every
    /// running account (after a reload put new routes in force).
    pub fn routes_changed(&self) {
        let rooms = self.shared.router.destination_rooms();
        let mut running = lock(&self.shared.running);
        for (account, lanes) in running.iter_mut() {
            if lanes.stop.is_cancelled() {
                continue;
            }
            let Some(destination) = self.destination(account) else {
                continue;
            };
            for room in rooms.iter().filter(|room| room.account == *account) {
                self.spawn_lane(lanes, room.clone(), &destination);
            }
        }
    }

    /// Take deliveries for `account` from now on (an account a reload added or restarted).
    pub fn add_destination(&self, account: &str, destination: Destination) {
        let mut destinations = write(&self.shared.destinations);
        destinations.insert(account.to_owned(), destination);
    }

    /// Take no more deliveries for `account` (a reload removed it); what waits stays in the
    /// outbox.
    pub fn remove_destination(&self, account: &str) {
        let mut destinations = write(&self.shared.destinations);
        destinations.remove(account);
    }

    /// Wait until the lanes of `account`, told to stop, have finished their delivery in hand,
    /// up to `timeout`. Returns false if some lane was still busy.
    pub async fn account_stopped(&self, account: &str, timeout: Duration) -> bool {
        let tracker = {
            let mut running = lock(&self.shared.running);
            match running.remove(account) {
                Some(lanes) => lanes.tracker,
                None => return true,
            }
        };
        tracker.close();
        tokio::time::timeout(timeout, tracker.wait()).await.is_ok()
    }

    fn destination(&self, account: &str) -> Option<Destination> {
        let destinations = read(&self.shared.destinations);
        destinations.get(account).cloned()
    }

    fn spawn_lane(&self, lanes: &mut AccountLanes, room: RoomKey, destination: &Destination) {
        if !lanes.rooms.insert(room.clone()) {
            return;
        }
        let shared = Arc::clone(&self.shared);
        let destination = destination.clone();
        let stop = lanes.stop.clone();
        let lane = lanes
            .tracker
            .track_future(async move { run_lane(shared, room, destination, stop).await });
        self.shared.tracker.spawn(lane);
    }

    /// Rooms whose deliveries wait for an account that is not configured: said once at start.
    pub async fn report_orphans(&self) -> Result<(), crate::store::StoreError> {
        for room in self.shared.store.rooms_with_pending().await? {
            if self.destination(&room.account).is_none() {
                tracing::warn!(room = %room, "deliveries wait for an account that is not configured; they stay in the outbox: add the account back to deliver them (`patchbay status` lists the rooms)");
            }
        }
        Ok(())
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

/// One room's lane: open its outbox, then deliver what it hands out, run by run, until `stop`.
async fn run_lane(
    shared: Arc<Shared>,
    room: RoomKey,
    destination: Destination,
    stop: CancellationToken,
) {
    let mut backoff = Backoff::new(shared.policy.retry_first, shared.policy.retry_max);
    let mut outbox = loop {
        match shared.store.open_room(&room).await {
            Ok(outbox) => break outbox,
            Err(err) => {
                tracing::error!(room = %room, "cannot open the outbox: {err}");
                if !pause(&stop, backoff.next_wait()).await {
                    return;
                }
            }
        }
    };
    let limit = destination.connector.run_limit().max(1);
    // Deliveries handed out by the outbox and not yet done, in order.
    let mut held: VecDeque<Pending> = VecDeque::new();
    loop {
        if held.is_empty() {
            let next = tokio::select! {
                next = outbox.next(limit) => next,
                _ = stop.cancelled() => return,
            };
            match next {
                Ok(batch) => held.extend(batch),
                Err(err) => {
                    tracing::error!(room = %room, "cannot read the outbox: {err}");
                    if !pause(&stop, backoff.next_wait()).await {
                        return;
                    }
                    continue;
                }
            }
        }
        // A rate limit's schedule: the run starts when its first delivery may go, and holds
        // only deliveries already due.
        if let Some(wait) = held.front().and_then(|p| due_in(p.not_before))
            && !pause(&stop, wait).await
        {
            return;
        }
        let due = held
            .iter()
            .take(limit)
            .take_while(|p| due_in(p.not_before).is_none())
            .count()
            .max(1);
        let run: Vec<Pending> = held.drain(..due).collect();
        let lane = Lane {
            shared: &shared,
            destination: &destination,
            stop: &stop,
        };
        if !lane.deliver(outbox.as_mut(), run, &mut backoff).await {
            return;
        }
    }
}

/// How long until `not_before`, if it is still ahead.
fn due_in(not_before: Option<Timestamp>) -> Option<Duration> {
    let wait = not_before?.0 - Timestamp::now().0;
    (wait > 0).then(|| Duration::from_millis(wait as u64))
}

/// What one lane delivers with.
struct Lane<'a> {
    shared: &'a Shared,
    destination: &'a Destination,
    stop: &'a CancellationToken,
}

impl Lane<'_> {
    /// Deliver a run, retrying what is left of it until every delivery succeeded or failed
    /// for good. Returns false when the lane is stopping; what is not done stays in the outbox.
    async fn deliver(
        &self,
        outbox: &mut dyn RoomOutbox,
        run: Vec<Pending>,
        backoff: &mut Backoff,
    ) -> bool {
        // The hop's steps at trace level (`RUST_LOG=patchbay::hop=trace`), for timing where a
        // relay's time goes (connectors/irc/BENCH.md); free when the level is off.
        tracing::trace!(target: "patchbay::hop", deliveries = run.len(), "lane took a run");
        let mut left: VecDeque<Pending> = run.into();
        let mut attempts = 0u32;
        while !left.is_empty() {
            if self.stop.is_cancelled() {
                return false;
            }
            attempts += 1;
            // Shaped afresh for each attempt rather than copied for a retry: a copy kept
            // would cost every delivery an event's clone, and a retry is rare (it also sees
            // ids recorded since the last attempt).
            let mut deliveries = Vec::with_capacity(left.len());
            for pending in &left {
                deliveries.push(prepare(self.shared, pending).await);
            }
            tracing::trace!(target: "patchbay::hop", attempt = attempts, "delivery call");
            let attempt = tokio::time::timeout(
                ATTEMPT_TIMEOUT,
                self.destination.connector.deliver_run(deliveries),
            );
            let results = attempt.await.unwrap_or_else(|_| {
                vec![Err(DeliveryError::retryable(format!(
                    "no answer within {}s",
                    ATTEMPT_TIMEOUT.as_secs()
                )))]
            });
            let answered = results.len();
            let mut retry = None;
            for result in results {
                let Some(entry) = left.pop_front() else {
                    break;
                };
                match result {
                    Ok(delivered) => {
                        backoff.reset();
                        attempts = 0;
                        self.completed(outbox, &entry, delivered).await;
                    }
                    Err(DeliveryError::Permanent { reason }) => {
                        if !self.dead_letter(outbox, &entry, &reason).await {
                            return false;
                        }
                    }
                    Err(DeliveryError::Retryable {
                        reason,
                        retry_after,
                    }) => {
                        left.push_front(entry);
                        retry = Some((reason, retry_after));
                        break;
                    }
                }
            }
            if retry.is_none() && answered == 0 && !left.is_empty() {
                retry = Some(("the connector answered nothing".into(), None));
            }
            if let Some((reason, retry_after)) = retry {
                let Some(pending) = left.front() else {
                    break;
                };
                let wait = retry_after.unwrap_or_else(|| backoff.next_wait());
                DeliveryRetried {
                    pending,
                    attempts,
                    wait,
                    reason: &reason,
                }
                .emit(&self.shared.metrics);
                if !wait_for_retry(self.stop, self.destination.state.clone(), wait).await {
                    return false;
                }
            }
        }
        true
    }

    async fn completed(&self, outbox: &mut dyn RoomOutbox, pending: &Pending, done: Delivered) {
        self.shared
            .metrics
            .delivered(&pending.room, &pending.route, &pending.event);
        if let Err(err) = outbox.complete(pending, done.remote_id).await {
            tracing::error!(room = %pending.room, "cannot record a delivery as done: {err}");
        }
    }

    /// Returns false if the dead letter could not be recorded (the delivery stays).
    async fn dead_letter(
        &self,
        outbox: &mut dyn RoomOutbox,
        pending: &Pending,
        reason: &str,
    ) -> bool {
        DeadLettered { pending, reason }.emit(&self.shared.metrics);
        if let Err(err) = outbox.dead_letter(pending, reason).await {
            tracing::error!(room = %pending.room, "cannot record a dead letter; it stays in the outbox: {err}");
            return false;
        }
        true
    }
}

/// Shape a pending delivery for its connector: translate message references into the
/// destination's ids, look up the quoted message of a reply, format the nick.
async fn prepare(shared: &Shared, pending: &Pending) -> Delivery {
    let mut event = (*pending.event).clone();
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

/// Sleep for `wait`; false if `stop` came first.
async fn pause(stop: &CancellationToken, wait: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(wait) => true,
        _ = stop.cancelled() => false,
    }
}

/// Wait before retrying: `wait`, or less if the connector comes back up in the meantime.
async fn wait_for_retry(
    stop: &CancellationToken,
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
        _ = stop.cancelled() => false,
    }
}

#[cfg(test)]
mod tests;
