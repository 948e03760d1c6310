//! The scale-out store: NATS JetStream, shared by every instance on one config.
//!
//! - accept: one outbox message per delivery (subject of the destination room, carrying the
//!   event), then the event's quote and its origin id in the message-id map; only when
//!   JetStream has acknowledged all of them is the event accepted. A failure part way leaves
//!   the source unacknowledged, so it sends again; when the origin has a network id the
//!   messages carry a `Nats-Msg-Id` derived from it, so a resend within JetStream's duplicate
//!   window stores nothing twice, and a resend after the origin id was recorded is a duplicate.
//! - deliver: each room's lane reads its subject ([`patchbay_nats::RoomConsumer`]: straight
//!   from the stream while the room is quiet, through a durable consumer while it is busy);
//!   complete records the destination's id in the map, then acknowledges (removes) the delivery; the server's confirmation is waited for by the next
//!   complete, so the lane sends the next delivery meanwhile. A holder killed leaves the
//!   delivery in flight and the one before it (its acknowledgement unconfirmed) to be sent
//!   once more by the next holder: at most two per room per kill with the default run limit
//!   (two runs with a connector's `run_limit`).
//! - map: bucket `P_map`, aged out by the bucket after the retention: `r.<acct>.<room>.<id>`
//!   (a network id to the gateway id, for origins and deliveries alike), `n.<event>.<acct>.
//!   <room>` (the id the event has in a room: its origin's, or what a delivery got),
//!   `q.<event>` (author and text, for quotes), `l.<acct>.<room>` (the newest event accepted
//!   from a room, where a new holder's catch-up starts; written behind, see [`marks`]).
//! - sites: each site has its own map. A delivery into another site's room is published to
//!   this site's export (see [`patchbay_nats::layout`]); the site that delivers it records the
//!   ids it got and the event's quote in its own map, so edits, deletes and replies resolve at
//!   the site that handles them.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use patchbay_nats::token::token;
use patchbay_nats::{Bus, BusError, Publish, RoomConsumer};
use patchbay_sdk::{Event, EventId, Quote, Seen, Timestamp};
use serde::{Deserialize, Serialize};

use super::{
    Accepted, AccountNames, DeadLetter, NewEvent, Pending, RoomBacklog, RoomOutbox, Store,
    StoreError, StoreStats,
};
use crate::router::RoomKey;

/// How many deliveries a room's consumer hands out ahead of the lane.
const PULL_AHEAD: usize = 64;

/// One delivery as it travels in the outbox stream.
#[derive(Serialize, Deserialize)]
struct OutboxMessage {
    route: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    not_before: Option<Timestamp>,
    event: Event,
}

/// An [`OutboxMessage`] to write, borrowing the event a fan-out shares.
#[derive(Serialize)]
struct OutboxMessageRef<'a> {
    route: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    not_before: Option<Timestamp>,
    event: &'a Event,
}

mod gather;
mod marks;

/// [`Store`] on JetStream.
pub struct JetStreamStore {
    bus: Bus,
    /// Accepts go through it, gathered (see [`gather`]).
    gather: gather::Gather,
    marks: Arc<marks::Marks>,
}

/// What every accept uses.
struct Accepting {
    bus: Bus,
    marks: Arc<marks::Marks>,
}

impl From<BusError> for StoreError {
    fn from(err: BusError) -> Self {
        StoreError::Unavailable(err.to_string())
    }
}

fn remote_key(room: &RoomKey, remote_id: &str) -> String {
    format!(
        "r.{}.{}.{}",
        token(&room.account),
        token(&room.room),
        token(remote_id)
    )
}

fn native_key(id: EventId, room: &RoomKey) -> String {
    format!("n.{id}.{}.{}", token(&room.account), token(&room.room))
}

/// The newest event accepted from a room (see [`Store::last_origin`]).
fn last_key(room: &RoomKey) -> String {
    format!("l.{}.{}", token(&room.account), token(&room.room))
}

#[derive(Serialize, Deserialize)]
struct SeenRecord {
    time: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    remote_id: Option<String>,
}

fn quote_key(id: EventId) -> String {
    format!("q.{id}")
}

fn quote_of(event: &Event) -> Quote {
    Quote {
        author: event.author.name.clone(),
        text: event.kind.body().map(|b| b.to_plain()).unwrap_or_default(),
    }
}

impl JetStreamStore {
    pub fn new(bus: Bus) -> Self {
        let marks = marks::Marks::start(bus.clone());
        let gather = gather::Gather::start(Accepting {
            bus: bus.clone(),
            marks: Arc::clone(&marks),
        });
        JetStreamStore { bus, gather, marks }
    }
}

/// Write map entries concurrently: one round trip for all of them.
async fn put_all(bus: &Bus, entries: Vec<(String, Vec<u8>)>) -> Result<(), StoreError> {
    futures::future::try_join_all(
        entries
            .into_iter()
            .map(|(key, value)| async move { bus.map_put(&key, value.into()).await }),
    )
    .await?;
    Ok(())
}

/// The map key of an event's origin network id, when it has one.
fn origin_key(new: &NewEvent) -> Option<String> {
    let origin = &new.event.origin;
    let room = RoomKey::new(&origin.account, &origin.room);
    origin
        .remote_id
        .as_deref()
        .map(|remote| remote_key(&room, remote))
}

/// Record a run (gathered from one or more sources; see [`gather`]) and answer for each event.
async fn accept_now(
    accepting: &Accepting,
    run: Vec<NewEvent>,
) -> Result<Vec<Accepted>, StoreError> {
    // Three round trips for the whole run, whatever its length (two without network ids):
    // the duplicate checks; the outbox messages with the quotes; last the origin ids. Each
    // step's requests go out together; the server keeps their order within a subject. Most
    // marks follow (see [`marks`]).
    let bus = &accepting.bus;
    let origin_keys: Vec<Option<String>> = run.iter().map(origin_key).collect();
    let known = futures::future::try_join_all(origin_keys.iter().map(|key| async move {
        match key {
            Some(key) => Ok::<_, StoreError>(bus.map_get(key).await?.is_some()),
            None => Ok(false),
        }
    }))
    .await?;
    let mut answers = Vec::with_capacity(run.len());
    let mut seen_in_run = std::collections::HashSet::new();
    let mut recorded = Vec::new();
    for ((new, key), known) in run.into_iter().zip(origin_keys).zip(known) {
        // A run may carry the same network message twice (a replayed history): the second
        // is a duplicate as if the first had been recorded alone.
        let repeated = key
            .as_ref()
            .is_some_and(|key| !seen_in_run.insert(key.clone()));
        if known || repeated {
            answers.push(Accepted::Duplicate);
        } else {
            answers.push(Accepted::Recorded);
            recorded.push((new, key));
        }
    }
    if recorded.is_empty() {
        return Ok(answers);
    }
    let layout = bus.layout();
    let mut messages = Vec::new();
    for (NewEvent { event, deliveries }, key) in &recorded {
        for (i, delivery) in deliveries.iter().enumerate() {
            let payload = serde_json::to_vec(&OutboxMessageRef {
                route: &delivery.route,
                not_before: delivery.not_before,
                event,
            })?;
            messages.push(Publish {
                subject: layout.delivery_subject(&delivery.room.account, &delivery.room.room),
                msg_id: Some(match key {
                    Some(key) => format!("{key}#{i}"),
                    None => format!("{}#{i}", event.id),
                }),
                payload: payload.into(),
            });
        }
    }
    // With the outbox messages: quotes and the origin room's own id of each event (for a
    // reply or an edit delivered back there). Written early they harm nothing: an event
    // whose outbox publish fails is sent again under a new gateway id.
    let mut early: Vec<(String, Vec<u8>)> = Vec::new();
    for (NewEvent { event, .. }, _) in &recorded {
        let origin = RoomKey::new(&event.origin.account, &event.origin.room);
        early.push((quote_key(event.id), serde_json::to_vec(&quote_of(event))?));
        if let Some(remote) = &event.origin.remote_id {
            early.push((native_key(event.id, &origin), remote.clone().into_bytes()));
        }
    }
    futures::future::try_join(
        async { Ok::<_, StoreError>(bus.publish_all(messages).await?) },
        put_all(bus, early),
    )
    .await?;
    // Stored: wake the lanes of rooms that were idle.
    let rooms: std::collections::BTreeSet<&RoomKey> = recorded
        .iter()
        .flat_map(|(new, _)| new.deliveries.iter().map(|d| &d.room))
        .collect();
    for room in rooms {
        bus.ring(&room.account, &room.room).await;
    }
    // Only once the deliveries are stored: the origin ids (until they are written, a resend
    // is not yet a duplicate) and the newest event per origin room (where a new holder's
    // catch-up starts, so it must not run ahead of what is stored; only the run's last
    // counts; most are written behind, see [`marks`]).
    let mut late: Vec<(String, Vec<u8>)> = recorded
        .iter()
        .filter_map(|(NewEvent { event, .. }, key)| {
            Some((key.clone()?, event.id.to_string().into_bytes()))
        })
        .collect();
    let mut newest: BTreeMap<RoomKey, &Event> = BTreeMap::new();
    for (NewEvent { event, .. }, _) in &recorded {
        newest.insert(
            RoomKey::new(&event.origin.account, &event.origin.room),
            event,
        );
    }
    let mut first_marks = Vec::new();
    for (origin, event) in newest {
        let seen = SeenRecord {
            time: event.time,
            remote_id: event.origin.remote_id.clone(),
        };
        let value = serde_json::to_vec(&seen)?;
        if let Some(first) = accepting.marks.note(last_key(&origin), value) {
            first_marks.push(first);
        }
    }
    late.extend(first_marks.iter().cloned());
    if let Err(err) = put_all(bus, late).await {
        accepting.marks.unwritten(first_marks);
        return Err(err);
    }
    Ok(answers)
}

#[async_trait]
impl Store for JetStreamStore {
    async fn accept_many(&self, run: Vec<NewEvent>) -> Result<Vec<Accepted>, StoreError> {
        self.gather.accept(run).await
    }

    async fn open_room(&self, room: &RoomKey) -> Result<Box<dyn RoomOutbox>, StoreError> {
        let consumer = self
            .bus
            .room_consumer(&room.account, &room.room, PULL_AHEAD);
        Ok(Box::new(JetStreamRoom {
            bus: self.bus.clone(),
            room: room.clone(),
            consumer,
        }))
    }

    async fn resolve(
        &self,
        room: &RoomKey,
        remote_id: &str,
    ) -> Result<Option<EventId>, StoreError> {
        let value = self.bus.map_get(&remote_key(room, remote_id)).await?;
        Ok(value.and_then(|v| std::str::from_utf8(&v).ok()?.parse().ok()))
    }

    async fn native_id(&self, id: EventId, room: &RoomKey) -> Result<Option<String>, StoreError> {
        let value = self.bus.map_get(&native_key(id, room)).await?;
        Ok(value.and_then(|v| String::from_utf8(v.to_vec()).ok()))
    }

    async fn quote(&self, id: EventId) -> Result<Option<Quote>, StoreError> {
        match self.bus.map_get(&quote_key(id)).await? {
            Some(value) => Ok(Some(serde_json::from_slice(&value)?)),
            None => Ok(None),
        }
    }

    async fn last_origin(&self, room: &RoomKey) -> Result<Option<Seen>, StoreError> {
        let key = last_key(room);
        let value = match self.marks.noted(&key) {
            Some(noted) => Some(noted.into()),
            None => self.bus.map_get(&key).await?,
        };
        match value {
            Some(value) => {
                let record: SeenRecord = serde_json::from_slice(&value)?;
                Ok(Some(Seen {
                    time: record.time,
                    remote_id: record.remote_id,
                }))
            }
            None => Ok(None),
        }
    }

    async fn rooms_with_pending(&self) -> Result<Vec<RoomKey>, StoreError> {
        Ok(self.room_depths().await?.into_keys().collect())
    }

    async fn prune(&self, _before: Timestamp) -> Result<usize, StoreError> {
        // The map bucket ages its entries out by itself; acknowledged deliveries are gone.
        Ok(0)
    }

    async fn room_depths(&self) -> Result<BTreeMap<RoomKey, u64>, StoreError> {
        Ok(self
            .bus
            .outbox_depths()
            .await?
            .into_iter()
            .filter(|(_, depth)| *depth > 0)
            .map(|((account, room), depth)| (RoomKey::new(account, room), depth))
            .collect())
    }

    fn engine(&self) -> &'static str {
        "nats"
    }

    async fn room_backlogs(&self) -> Result<Vec<RoomBacklog>, StoreError> {
        let mut out = Vec::new();
        for (room, depth) in self.room_depths().await? {
            let oldest = self
                .bus
                .outbox_oldest(&room.account, &room.room)
                .await?
                .map(Timestamp);
            out.push(RoomBacklog {
                room,
                depth,
                oldest,
            });
        }
        Ok(out)
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, StoreError> {
        let mut out = Vec::new();
        for dead in self.bus.dead_letters(limit).await? {
            // One unreadable (written by a newer version?) is left in the stream, unlisted.
            let (route, event) = match serde_json::from_slice::<OutboxMessage>(&dead.payload) {
                Ok(message) => (message.route, message.event),
                Err(err) => {
                    tracing::warn!(
                        dead_letter = dead.seq,
                        "a dead letter is unreadable (written by a newer patchbay?): {err}; it stays in the stream, unlisted"
                    );
                    continue;
                }
            };
            out.push(DeadLetter {
                id: dead.seq,
                room: RoomKey::new(dead.account, dead.room),
                route,
                reason: dead.reason,
                failed_at: Timestamp(dead.time_ms),
                event,
            });
        }
        Ok(out)
    }

    async fn retry_dead_letter(&self, id: u64) -> Result<bool, StoreError> {
        Ok(self.bus.dead_letter_retry(id).await?)
    }

    async fn discard_dead_letter(&self, id: u64) -> Result<bool, StoreError> {
        Ok(self.bus.dead_letter_discard(id).await?)
    }

    async fn share_names(&self, account: &str, names: &AccountNames) -> Result<(), StoreError> {
        let value = serde_json::to_vec(names)?;
        Ok(self.bus.names_put(account, value.into()).await?)
    }

    async fn shared_names(
        &self,
    ) -> Result<Option<tokio::sync::mpsc::Receiver<(String, AccountNames)>>, StoreError> {
        let mut raw = self.bus.names_watch().await?;
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            while let Some((account, value)) = raw.recv().await {
                match serde_json::from_slice::<AccountNames>(&value) {
                    Ok(names) => {
                        if tx.send((account, names)).await.is_err() {
                            return;
                        }
                    }
                    Err(err) => {
                        tracing::warn!(account, "an account's shared names are unreadable: {err}")
                    }
                }
            }
        });
        Ok(Some(rx))
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        let (pending, dead_letters) = self.bus.counts().await?;
        Ok(StoreStats {
            // Events live only inside their deliveries and the map: not counted here.
            events: 0,
            pending,
            dead_letters,
            ..StoreStats::default()
        })
    }

    async fn close(&self) {
        self.marks.write(&self.bus).await;
        self.bus.flush().await;
    }
}

/// One room's outbox on JetStream.
struct JetStreamRoom {
    bus: Bus,
    room: RoomKey,
    consumer: RoomConsumer,
}

#[async_trait]
impl RoomOutbox for JetStreamRoom {
    async fn next(&mut self, max: usize) -> Result<Vec<Pending>, StoreError> {
        loop {
            let mut out = Vec::new();
            for (seq, payload) in self.consumer.next(max).await? {
                match serde_json::from_slice::<OutboxMessage>(&payload) {
                    Ok(message) => out.push(Pending {
                        seq: seq as i64,
                        room: self.room.clone(),
                        route: message.route,
                        not_before: message.not_before,
                        event: Arc::new(message.event),
                    }),
                    Err(err) => {
                        // Unreadable (written by a newer version?): kept as a dead letter.
                        let reason = format!("unreadable outbox message: {err}");
                        tracing::error!(room = %self.room, "{reason}");
                        self.bus
                            .dead_letter(&self.room.account, &self.room.room, &reason, payload)
                            .await?;
                        self.consumer.ack(seq).await?;
                    }
                }
            }
            if !out.is_empty() {
                return Ok(out);
            }
        }
    }

    async fn complete(
        &mut self,
        pending: &Pending,
        remote_id: Option<String>,
    ) -> Result<(), StoreError> {
        let id = pending.event.id;
        // Written together (one round trip), and before the acknowledgement: a delivery
        // acknowledged has its ids in the map, and the lane prepares its next delivery (an
        // edit of this one, say) only once they are.
        let mut puts: Vec<(String, Vec<u8>)> = Vec::new();
        if self
            .bus
            .layout()
            .remote_site(&pending.event.origin.account)
            .is_some()
        {
            // Accepted at another site, whose map this one does not read: keep what a reply
            // here quotes (the ids are recorded below, as for any delivery).
            puts.push((
                quote_key(id),
                serde_json::to_vec(&quote_of(&pending.event))?,
            ));
        }
        if let Some(remote) = remote_id {
            puts.push((remote_key(&self.room, &remote), id.to_string().into_bytes()));
            puts.push((native_key(id, &self.room), remote.into_bytes()));
        }
        if !puts.is_empty() {
            put_all(&self.bus, puts).await?;
        }
        self.consumer.ack(pending.seq as u64).await?;
        Ok(())
    }

    async fn dead_letter(&mut self, pending: &Pending, reason: &str) -> Result<(), StoreError> {
        let payload = serde_json::to_vec(&OutboxMessage {
            route: pending.route.clone(),
            not_before: pending.not_before,
            event: (*pending.event).clone(),
        })?;
        self.bus
            .dead_letter(&self.room.account, &self.room.room, reason, payload.into())
            .await?;
        self.consumer.ack(pending.seq as u64).await?;
        Ok(())
    }
}
