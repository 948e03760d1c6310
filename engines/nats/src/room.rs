//! One destination room's outbox as a durable pull consumer of its subject.
//!
//! The work-queue stream keeps a delivery until it is acknowledged, so the consumer's state is
//! only "what is handed out and not yet acknowledged". A new holder of the room replaces the
//! consumer: JetStream then hands everything still waiting out again from the oldest, in stream
//! order, without waiting for the dead holder's acknowledgement timeout.

use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull};
use bytes::Bytes;
use futures::{FutureExt, StreamExt};

use crate::bus::BusError;
use crate::layout::Layout;
use crate::token::short_hash;

/// How long a handed-out delivery stays ours before JetStream offers it again. Long: a lane
/// retrying a down network keeps its delivery; redeliveries that come anyway are skipped.
const ACK_WAIT: Duration = Duration::from_secs(600);

/// A room's waiting deliveries, in order.
pub struct RoomConsumer {
    messages: pull::Stream,
    /// Handed out and not yet acknowledged, by stream sequence.
    held: HashMap<u64, jetstream::Message>,
    /// The highest stream sequence handed out.
    cursor: u64,
}

impl RoomConsumer {
    pub(crate) async fn open(
        js: &jetstream::Context,
        layout: &Layout,
        account: &str,
        room: &str,
        max: usize,
    ) -> Result<Self, BusError> {
        let subject = layout.outbox_subject(account, room);
        let name = format!("room_{}", short_hash(&subject));
        let stream = js
            .get_stream(layout.outbox_stream())
            .await
            .map_err(|err| BusError::new("reading the outbox stream", err))?;
        // Replacing it is what makes a takeover immediate; a missing one is fine.
        let _ = stream.delete_consumer(&name).await;
        let consumer = stream
            .create_consumer(pull::Config {
                durable_name: Some(name),
                filter_subject: subject,
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ack_wait: ACK_WAIT,
                max_ack_pending: (max.max(1) as i64) * 4,
                deliver_policy: jetstream::consumer::DeliverPolicy::All,
                ..Default::default()
            })
            .await
            .map_err(|err| BusError::new("creating a room's consumer", err))?;
        let messages = consumer
            .messages()
            .await
            .map_err(|err| BusError::new("pulling a room's deliveries", err))?;
        Ok(RoomConsumer {
            messages,
            held: HashMap::new(),
            cursor: 0,
        })
    }

    /// Up to `max` deliveries after those handed out before, as (stream sequence, payload);
    /// waits for at least one. Cancel-safe.
    pub async fn next(&mut self, max: usize) -> Result<Vec<(u64, Bytes)>, BusError> {
        let mut out = Vec::new();
        loop {
            let message = if out.is_empty() {
                self.messages.next().await
            } else {
                match self.messages.next().now_or_never() {
                    Some(message) => message,
                    None => return Ok(out),
                }
            };
            let message = match message {
                Some(Ok(message)) => message,
                Some(Err(err)) => {
                    // Missed heartbeats and the like while a server restarts: the stream
                    // goes on pulling once it is back.
                    tracing::debug!("pulling a room's deliveries: {err}");
                    if out.is_empty() {
                        continue;
                    }
                    return Ok(out);
                }
                None => {
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
                if self.held.contains_key(&seq) {
                    self.held.insert(seq, message);
                }
                continue;
            }
            self.cursor = seq;
            out.push((seq, message.payload.clone()));
            self.held.insert(seq, message);
            if out.len() >= max {
                return Ok(out);
            }
        }
    }

    /// The delivery at `seq` is done: remove it from the stream, confirmed by the server.
    pub async fn ack(&mut self, seq: u64) -> Result<(), BusError> {
        let Some(message) = self.held.get(&seq) else {
            return Ok(());
        };
        message
            .double_ack()
            .await
            .map_err(|err| BusError::new("acknowledging a delivery", err))?;
        self.held.remove(&seq);
        Ok(())
    }
}
