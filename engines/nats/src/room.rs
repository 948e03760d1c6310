//! One destination room's outbox as a durable pull consumer of its subject, held only while
//! the room has deliveries waiting.
//!
//! The work-queue stream keeps a delivery until it is acknowledged, so the consumer's state is
//! only "what is handed out and not yet acknowledged". A new holder of the room replaces the
//! consumer: JetStream then hands everything still waiting out again from the oldest, in stream
//! order, without waiting for the dead holder's acknowledgement timeout.
//!
//! A room that wakes reads its first deliveries straight from the stream, without a consumer,
//! and removes each once it is done; only a room that keeps finding more ([`READ_AHEAD`] in a
//! row) creates its consumer, which then hands deliveries out ahead. Creating and deleting a
//! consumer was most of nats-server's work with ten thousand quiet rooms, each woken for one
//! delivery. A room with nothing waiting and nothing held gives its consumer back after
//! [`IDLE`] and waits on its bell ([`crate::doorbell`]) instead, so a gateway keeps consumers
//! only for its busy rooms: JetStream limits the consumers of a stream.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::response::Response;
use async_nats::jetstream::stream::{DeleteStatus, DirectGetErrorKind};
use async_nats::jetstream::{self, consumer::pull};
use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use pull::MessagesErrorKind;
use tokio::sync::{Notify, Semaphore};

use crate::doorbell::Doorbell;
use crate::error::BusError;
use crate::layout::Layout;
use crate::token::short_hash;

/// How long a handed-out delivery stays ours before JetStream offers it again. Long: a lane
/// retrying a down network keeps its delivery; redeliveries that come anyway are skipped.
const ACK_WAIT: Duration = Duration::from_secs(600);

/// How long a room keeps its consumer with nothing to hand out.
pub const IDLE: Duration = Duration::from_secs(30);

/// How many deliveries in a row a room reads without a consumer before it creates one.
const READ_AHEAD: usize = 4;

/// A delivery handed out and not yet acknowledged, and how it is acknowledged.
// The map held the consumer's messages before there was a second kind; boxing them would add
// an allocation per delivery to save the bytes of a few held ones.
#[allow(clippy::large_enum_variant)]
enum Held {
    /// Handed out by the room's consumer: acknowledged through it.
    Pulled(jetstream::Message),
    /// Read from the stream: removed from it.
    Read,
}

/// A room's waiting deliveries, in order.
pub struct RoomConsumer {
    js: jetstream::Context,
    stream_name: String,
    subject: String,
    /// The durable consumer's name, one per room, whichever instance holds it.
    name: String,
    max: usize,
    doorbell: Arc<Doorbell>,
    bell: Arc<Notify>,
    /// Shared by every room of the instance: how many consumers may be created at once.
    attaching: Arc<Semaphore>,
    /// The consumer's message stream, while the room has one.
    messages: Option<pull::Stream>,
    /// Handed out and not yet acknowledged, by stream sequence.
    held: HashMap<u64, Held>,
    /// The highest stream sequence handed out.
    cursor: u64,
    /// Deliveries read in a row without a consumer (see [`READ_AHEAD`]).
    read: usize,
    /// An acknowledgement failed for good: the next read starts from the stream's first
    /// delivery for the room, to remove the one left behind.
    rewind: bool,
    /// Whether an earlier holder's consumer was replaced already: only the first attach
    /// must, later ones follow this holder's own detach.
    replaced: bool,
    /// The last acknowledgement sent, until the server confirms it (see [`RoomConsumer::ack`]).
    confirming: Option<Confirming>,
}

/// An acknowledgement on its way: the delivery's stream sequence and the server's answer.
struct Confirming {
    seq: u64,
    answer: tokio::task::JoinHandle<Result<(), String>>,
}

impl Drop for RoomConsumer {
    fn drop(&mut self) {
        self.doorbell.unregister(&self.subject);
    }
}

impl RoomConsumer {
    /// The room's outbox. Asks nothing of the server: the first [`RoomConsumer::next`] reads
    /// what waits, a dead holder's unacknowledged deliveries first.
    pub(crate) fn open(
        js: &jetstream::Context,
        layout: &Layout,
        doorbell: &Arc<Doorbell>,
        attaching: &Arc<Semaphore>,
        account: &str,
        room: &str,
        max: usize,
    ) -> Self {
        let subject = layout.outbox_subject(account, room);
        RoomConsumer {
            js: js.clone(),
            stream_name: layout.outbox_stream(layout.outbox_shard(account, room)),
            name: format!("room_{}", short_hash(&subject)),
            bell: doorbell.register(&subject),
            doorbell: Arc::clone(doorbell),
            attaching: Arc::clone(attaching),
            subject,
            max,
            messages: None,
            held: HashMap::new(),
            cursor: 0,
            read: 0,
            rewind: false,
            replaced: false,
            confirming: None,
        }
    }

    /// The room's next delivery after those handed out, read from the stream; `None` when
    /// there is none. A delivery below the cursor that is not held was done and its
    /// acknowledgement lost: removed on the way.
    async fn read_next(&mut self) -> Result<Option<(u64, Bytes)>, BusError> {
        let stream = self.stream().await?;
        let mut from = if self.rewind { 1 } else { self.cursor + 1 };
        loop {
            let message = match stream
                .direct_get_next_for_subject(self.subject.as_str(), Some(from))
                .await
            {
                Ok(message) => message,
                Err(err) if err.kind() == DirectGetErrorKind::NotFound => {
                    self.rewind = false;
                    return Ok(None);
                }
                Err(err) => return Err(BusError::new("reading a room's deliveries", err)),
            };
            let seq = message.sequence;
            if seq > self.cursor {
                self.rewind = false;
                self.cursor = seq;
                self.held.insert(seq, Held::Read);
                return Ok(Some((seq, message.payload)));
            }
            if !self.held.contains_key(&seq)
                && let Err(err) = remove(&self.js, &self.stream_name, seq).await
            {
                tracing::debug!("removing a delivery done before: {err}");
            }
            from = seq + 1;
        }
    }

    async fn stream(&self) -> Result<jetstream::stream::Stream<()>, BusError> {
        self.js
            .get_stream_no_info(&self.stream_name)
            .await
            .map_err(|err| BusError::new("reading the outbox stream", err))
    }

    /// Create the room's consumer, replacing any earlier one: that is what makes a takeover
    /// immediate; a missing one is fine.
    async fn attach(&mut self) -> Result<(), BusError> {
        // Thousands of rooms waking at once would time the server's API out.
        let _turn = self
            .attaching
            .acquire()
            .await
            .map_err(|err| BusError::new("creating a room's consumer", err))?;
        let stream = self.stream().await?;
        if !self.replaced {
            let _ = stream.delete_consumer(&self.name).await;
            self.replaced = true;
        }
        let consumer = stream
            .create_consumer(pull::Config {
                durable_name: Some(self.name.clone()),
                filter_subject: self.subject.clone(),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ack_wait: ACK_WAIT,
                max_ack_pending: (self.max.max(1) as i64) * 4,
                deliver_policy: jetstream::consumer::DeliverPolicy::All,
                // In memory: a consumer on file rewrote its state file on every acknowledgement
                // (a tenth of nats-server's CPU with 100 busy rooms). A server restart forgets
                // it, which loses nothing: the work queue keeps every delivery not yet
                // acknowledged, and the pull notices and attaches again (see `pull`).
                memory_storage: true,
                // Left behind by an instance that died, it goes by itself.
                inactive_threshold: ACK_WAIT,
                ..Default::default()
            })
            .await
            .map_err(|err| BusError::new("creating a room's consumer", err))?;
        let messages = consumer
            .messages()
            .await
            .map_err(|err| BusError::new("pulling a room's deliveries", err))?;
        self.messages = Some(messages);
        Ok(())
    }

    /// Give the consumer back: nothing is held, so nothing is handed out again.
    async fn detach(&mut self) {
        self.messages = None;
        if let Ok(stream) = self.stream().await {
            let _ = stream.delete_consumer(&self.name).await;
        }
    }

    /// Up to `max` deliveries after those handed out before, as (stream sequence, payload);
    /// waits for at least one. Cancel-safe.
    pub async fn next(&mut self, max: usize) -> Result<Vec<(u64, Bytes)>, BusError> {
        loop {
            if self.messages.is_none() {
                if self.read < READ_AHEAD {
                    // A ring before this read is for what it finds; one after it is kept
                    // for the wait below.
                    let _ = self.bell.notified().now_or_never();
                    if let Some(read) = self.read_next().await? {
                        self.read += 1;
                        return Ok(vec![read]);
                    }
                    self.read = 0;
                    self.settle().await?;
                    // Rung once a delivery is stored (and by the doorbell's poll, for one
                    // that waits).
                    self.bell.notified().await;
                    continue;
                }
                // Busy: the consumer hands deliveries out ahead. What was read is
                // confirmed first, so that the consumer does not hold it too.
                self.settle().await?;
                self.attach().await?;
            }
            // The acknowledgement still on its way holds no delivery back.
            let unconfirmed = usize::from(self.confirming.is_some());
            if self.held.len() > unconfirmed {
                return self.pull(max).await;
            }
            match tokio::time::timeout(IDLE, self.pull(max)).await {
                Ok(pulled) => return pulled,
                Err(_) => {
                    self.settle().await?;
                    if self.held.is_empty() {
                        self.detach().await;
                        self.read = 0;
                    }
                }
            }
        }
    }

    /// Up to `max` deliveries from the consumer; waits for at least one. Cancel-safe.
    async fn pull(&mut self, max: usize) -> Result<Vec<(u64, Bytes)>, BusError> {
        let Some(messages) = self.messages.as_mut() else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        loop {
            let message = if out.is_empty() {
                messages.next().await
            } else {
                match messages.next().now_or_never() {
                    Some(message) => message,
                    None => return Ok(out),
                }
            };
            let message = match message {
                Some(Ok(message)) => message,
                Some(Err(err)) => {
                    if consumer_lost(err.kind()) {
                        // A restarted server forgot the consumer (or another holder took it):
                        // attached again on the next call, from the oldest delivery waiting.
                        tracing::debug!("pulling a room's deliveries: {err}; attaching again");
                        self.messages = None;
                        return Ok(out);
                    }
                    tracing::debug!("pulling a room's deliveries: {err}");
                    if out.is_empty() {
                        continue;
                    }
                    return Ok(out);
                }
                None => {
                    // Opened again on the next call.
                    self.messages = None;
                    return Err(BusError::new(
                        "pulling a room's deliveries",
                        "the consumer's stream ended",
                    ));
                }
            };
            let seq = match message.info() {
                Ok(info) => info.stream_sequence,
                Err(err) => {
                    tracing::warn!("a delivery without JetStream metadata, skipped: {err}");
                    continue;
                }
            };
            if seq <= self.cursor {
                // Offered again while we still hold it: answer on the newest offer.
                if let Some(held) = self.held.get_mut(&seq) {
                    *held = Held::Pulled(message);
                } else if let Err(err) = message.double_ack().await {
                    // Done already, and its acknowledgement did not reach the server (or a
                    // restarted server lost it): acknowledged now; if that fails, the next
                    // offer tries again.
                    tracing::debug!("acknowledging a delivery offered again: {err}");
                }
                continue;
            }
            self.cursor = seq;
            out.push((seq, message.payload.clone()));
            self.held.insert(seq, Held::Pulled(message));
            if out.len() >= max {
                return Ok(out);
            }
        }
    }

    /// The delivery at `seq` is done: remove it from the stream. Returns once the server
    /// confirmed the acknowledgement before this one; this one's confirmation is waited for
    /// by the next call (or [`RoomConsumer::settle`]), so the lane sends its next delivery
    /// while the server answers. A kill therefore leaves at most two deliveries of a room
    /// unconfirmed (this one, and the one the lane sends next), and those are handed out again
    /// to the next holder; one confirmed is never handed out again.
    pub async fn ack(&mut self, seq: u64) -> Result<(), BusError> {
        let previous = self.confirming.take();
        let answer = match self.held.get(&seq) {
            Some(Held::Pulled(message)) => message.reply.clone().map(|reply| {
                let client = self.js.client();
                tokio::spawn(async move {
                    let acked = client.request(reply, Bytes::from_static(b"+ACK")).await;
                    acked.map(drop).map_err(|err| err.to_string())
                })
            }),
            Some(Held::Read) => {
                let (js, stream) = (self.js.clone(), self.stream_name.clone());
                Some(tokio::spawn(async move { remove(&js, &stream, seq).await }))
            }
            None => None,
        };
        if let Some(answer) = answer {
            self.confirming = Some(Confirming { seq, answer });
        }
        match previous {
            Some(previous) => self.confirm(previous).await,
            None => Ok(()),
        }
    }

    /// Wait until the server confirmed every acknowledgement sent. Cancel-safe.
    pub async fn settle(&mut self) -> Result<(), BusError> {
        let Some(confirming) = self.confirming.as_mut() else {
            return Ok(());
        };
        let answer = (&mut confirming.answer).await;
        let seq = confirming.seq;
        self.confirming = None;
        self.confirmed(seq, answer).await
    }

    async fn confirm(&mut self, confirming: Confirming) -> Result<(), BusError> {
        let answer = confirming.answer.await;
        self.confirmed(confirming.seq, answer).await
    }

    /// The server's answer to the acknowledgement of `seq`; one that did not come (a server
    /// restart) is sent once more and waited for, since an acknowledgement is idempotent. One
    /// that fails twice leaves the delivery in the stream, no longer held: acknowledged when a
    /// consumer offers it again (see `pull`).
    async fn confirmed(
        &mut self,
        seq: u64,
        answer: Result<Result<(), String>, tokio::task::JoinError>,
    ) -> Result<(), BusError> {
        let failed = match answer {
            Ok(Ok(())) => None,
            Ok(Err(err)) => Some(err),
            Err(err) => Some(err.to_string()),
        };
        let held = self.held.remove(&seq);
        let (Some(err), Some(held)) = (failed, held) else {
            return Ok(());
        };
        tracing::debug!("acknowledging a delivery, sending it again: {err}");
        // On failure (the consumer it came from is gone: a server restart), it is
        // acknowledged when the next consumer offers it again (see `pull`), or removed by the
        // next read.
        self.rewind = true;
        match held {
            Held::Pulled(message) => message.double_ack().await.map_err(|err| err.to_string()),
            Held::Read => remove(&self.js, &self.stream_name, seq).await,
        }
        .map_err(|err| BusError::new("acknowledging a delivery", err))
    }
}

/// Remove the delivery at `seq` from the stream: how one read without a consumer is
/// acknowledged. Its record is dropped, not overwritten (`no_erase`): a delivery is no secret
/// once it was sent. One removed already counts as removed.
async fn remove(js: &jetstream::Context, stream: &str, seq: u64) -> Result<(), String> {
    #[derive(serde::Serialize)]
    struct Remove {
        seq: u64,
        no_erase: bool,
    }
    let request = Remove {
        seq,
        no_erase: true,
    };
    let answer: Response<DeleteStatus> = js
        .request(format!("STREAM.MSG.DELETE.{stream}"), &request)
        .await
        .map_err(|err| err.to_string())?;
    match answer {
        Response::Ok(_) => Ok(()),
        Response::Err { error } => {
            // Gone already (removed by an earlier try whose answer was lost)?
            let gone = js
                .get_stream_no_info(stream)
                .await
                .map_err(|err| err.to_string())?
                .direct_get(seq)
                .await
                .is_err_and(|err| err.kind() == DirectGetErrorKind::NotFound);
            if gone { Ok(()) } else { Err(error.to_string()) }
        }
    }
}

/// Whether a pull's error means the consumer is gone (or cannot be reached), so that the stream
/// of its messages would never hand out anything again.
fn consumer_lost(kind: MessagesErrorKind) -> bool {
    matches!(
        kind,
        MessagesErrorKind::ConsumerDeleted
            | MessagesErrorKind::NoResponders
            | MessagesErrorKind::Pull
            | MessagesErrorKind::MissingHeartbeat
    )
}
