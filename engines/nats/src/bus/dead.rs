//! Stream `P_dead`: reading, retrying and discarding the deliveries that failed for good.
//!
//! A dead letter is the outbox message it was, on `P.dead.<account>.<room>`, with its reason
//! in the `Patchbay-Reason` header. A retry publishes the payload back on the room's outbox
//! subject, waits for JetStream to store it, and only then deletes the dead letter: a crash in
//! between leaves it in both places, and retrying it again within the outbox's duplicate
//! window stores nothing twice (the publish carries `Nats-Msg-Id: dead.<seq>`).

use async_nats::jetstream::message::StreamMessage;
use async_nats::jetstream::stream::{RawMessageErrorKind, Stream};
use bytes::Bytes;

use super::{Bus, BusError};
use crate::token::untoken;

/// One dead letter as stored.
#[derive(Clone, Debug)]
pub struct DeadMessage {
    /// Its sequence in `P_dead`: what retry and discard take.
    pub seq: u64,
    pub account: String,
    pub room: String,
    pub reason: String,
    /// When it was stored, in milliseconds since the Unix epoch.
    pub time_ms: i64,
    /// The outbox message it was.
    pub payload: Bytes,
}

/// Milliseconds since the Unix epoch of a stored message.
fn stored_ms(message: &StreamMessage) -> i64 {
    (message.time.unix_timestamp_nanos() / 1_000_000) as i64
}

impl Bus {
    async fn stream_named(&self, name: String) -> Result<Stream<()>, BusError> {
        self.js
            .get_stream_no_info(&name)
            .await
            .map_err(|err| BusError::new(format!("opening the stream {name}"), err))
    }

    /// The dead letter a stored message is; `None` for a subject not of the dead letters'
    /// shape (`….dead.<account>.<room>`: the last two tokens name the room).
    fn dead_message(message: StreamMessage) -> Option<DeadMessage> {
        let subject = message.subject.as_str().to_owned();
        let mut tokens = subject.rsplitn(3, '.');
        let room = untoken(tokens.next()?)?;
        let account = untoken(tokens.next()?)?;
        let reason = message
            .headers
            .get("Patchbay-Reason")
            .map(|v| v.as_str().to_owned())
            .unwrap_or_default();
        Some(DeadMessage {
            seq: message.sequence,
            account,
            room,
            reason,
            time_ms: stored_ms(&message),
            payload: message.payload,
        })
    }

    /// Up to `limit` dead letters, oldest first.
    pub async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadMessage>, BusError> {
        let stream = self.stream_named(self.layout.dead_stream()).await?;
        // Every dead subject: a room's, less its account and room tokens, then `>`.
        let sample = self.layout.dead_subject("a", "r");
        let all = match sample.rsplitn(3, '.').nth(2) {
            Some(root) => format!("{root}.>"),
            None => return Ok(Vec::new()),
        };
        let mut out = Vec::new();
        let mut next = 1;
        while out.len() < limit {
            let found = stream
                .raw_message_builder()
                .sequence(next)
                .next_by_subject(all.clone())
                .send()
                .await;
            let message = match found {
                Ok(message) => message,
                Err(err) if err.kind() == RawMessageErrorKind::NoMessageFound => break,
                Err(err) => return Err(BusError::new("reading the dead letters", err)),
            };
            next = message.sequence + 1;
            if let Some(dead) = Self::dead_message(message) {
                out.push(dead);
            }
        }
        Ok(out)
    }

    /// Dead letter `seq`, if there is one.
    pub async fn dead_letter_get(&self, seq: u64) -> Result<Option<DeadMessage>, BusError> {
        let stream = self.stream_named(self.layout.dead_stream()).await?;
        match stream.get_raw_message(seq).await {
            Ok(message) => Ok(Self::dead_message(message)),
            Err(err) if err.kind() == RawMessageErrorKind::NoMessageFound => Ok(None),
            Err(err) => Err(BusError::new("reading a dead letter", err)),
        }
    }

    /// Put dead letter `seq` back on its room's outbox subject, then delete it. `false` when
    /// there is no such dead letter.
    pub async fn dead_letter_retry(&self, seq: u64) -> Result<bool, BusError> {
        let Some(dead) = self.dead_letter_get(seq).await? else {
            return Ok(false);
        };
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", format!("dead.{seq}").as_str());
        self.js
            .publish_with_headers(
                self.layout.outbox_subject(&dead.account, &dead.room),
                headers,
                dead.payload,
            )
            .await
            .map_err(|err| BusError::new("publishing a retried dead letter", err))?
            .await
            .map_err(|err| BusError::new("storing a retried dead letter", err))?;
        self.dead_letter_discard(seq).await?;
        Ok(true)
    }

    /// Delete dead letter `seq`. `false` when there is no such dead letter.
    pub async fn dead_letter_discard(&self, seq: u64) -> Result<bool, BusError> {
        if self.dead_letter_get(seq).await?.is_none() {
            return Ok(false);
        }
        let stream = self.stream_named(self.layout.dead_stream()).await?;
        stream
            .delete_message(seq)
            .await
            .map_err(|err| BusError::new("deleting a dead letter", err))
    }

    /// When the oldest delivery waiting for `room` of `account` was stored, in milliseconds
    /// since the Unix epoch; `None` when none waits.
    pub async fn outbox_oldest(&self, account: &str, room: &str) -> Result<Option<i64>, BusError> {
        let shard = self.layout.outbox_shard(account, room);
        let stream = self.stream_named(self.layout.outbox_stream(shard)).await?;
        match stream
            .get_first_raw_message_by_subject(self.layout.outbox_subject(account, room), 1)
            .await
        {
            Ok(message) => Ok(Some(stored_ms(&message))),
            Err(err) if err.kind() == RawMessageErrorKind::NoMessageFound => Ok(None),
            Err(err) => Err(BusError::new("reading the outbox", err)),
        }
    }
}
