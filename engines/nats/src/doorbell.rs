//! Waking a room's lane when a delivery for it is stored, without a consumer per room.
//!
//! JetStream caps the consumers of a stream (1,000 by default since nats-server 2.15), and
//! creating thousands at once times out. So a room holds a consumer only while it is busy
//! ([`crate::RoomConsumer`]); an idle room waits on its bell here. A work-queue stream admits no second consumer over the same
//! subjects, so the bell is rung two ways:
//! - the instance that stored a delivery publishes on the room's bell subject (core NATS,
//!   no acknowledgement; see [`Layout::bell_subject`]), which every instance of the site
//!   listens to: that is the fast path;
//! - with other sites, the outbox stream itself republishes each stored delivery's headers on
//!   its room's bell subject: a delivery sourced from another site is stored by the server, so
//!   only the server can ring for it once it is there;
//! - every [`POLL`], one request per outbox shard that holds a bell here lists the shard's
//!   subjects that hold deliveries, and their rooms' bells are rung: what a lost bell or a
//!   server restart left waiting is found within that time.
//!
//! A bell is a [`Notify`] permit: a ring while nobody waits is kept for the next wait, so a
//! room that checks the stream, finds nothing, then waits, cannot miss a delivery stored in
//! between.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_nats::jetstream;
use futures::StreamExt;
use tokio::sync::Notify;

use crate::error::BusError;
use crate::layout::{Layout, OUTBOX_SHARDS};

/// How often the outbox is searched for rooms with deliveries waiting.
pub const POLL: Duration = Duration::from_secs(1);

/// The bells of the rooms this instance delivers to, by outbox subject.
#[derive(Default)]
pub(crate) struct Doorbell {
    bells: Mutex<HashMap<String, Arc<Notify>>>,
}

impl Doorbell {
    /// Listen for the site's bells and start the poll; both run until the bus is dropped.
    pub(crate) async fn start(
        client: &async_nats::Client,
        js: &jetstream::Context,
        layout: &Layout,
        every: Duration,
    ) -> Result<Arc<Doorbell>, BusError> {
        let doorbell = Arc::new(Doorbell::default());
        let mut bells = client
            .subscribe(layout.bell_subjects())
            .await
            .map_err(|err| BusError::new("listening for the rooms' bells", err))?;
        let (weak, listen_layout) = (Arc::downgrade(&doorbell), layout.clone());
        tokio::spawn(async move {
            // The subscription outlives a server restart: the client subscribes again.
            while let Some(message) = bells.next().await {
                let Some(doorbell) = weak.upgrade() else {
                    return;
                };
                if let Some(subject) = listen_layout.outbox_of_bell(message.subject.as_str()) {
                    doorbell.ring(&subject);
                }
            }
        });
        tokio::spawn(poll(
            Arc::downgrade(&doorbell),
            js.clone(),
            layout.clone(),
            every,
        ));
        Ok(doorbell)
    }

    /// The bell of the room whose outbox subject is `subject`.
    pub(crate) fn register(&self, subject: &str) -> Arc<Notify> {
        let mut bells = self.bells.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(bells.entry(subject.to_owned()).or_default())
    }

    /// The room's lane is gone.
    pub(crate) fn unregister(&self, subject: &str) {
        let mut bells = self.bells.lock().unwrap_or_else(|p| p.into_inner());
        bells.remove(subject);
    }

    fn ring(&self, subject: &str) {
        let bells = self.bells.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(bell) = bells.get(subject) {
            bell.notify_one();
        }
    }

    /// The outbox shards of the rooms with a bell here, as bits.
    fn shards(&self, layout: &Layout) -> u32 {
        let bells = self.bells.lock().unwrap_or_else(|p| p.into_inner());
        bells
            .keys()
            .filter_map(|subject| layout.shard_of_subject(subject))
            .fold(0, |shards, shard| shards | 1 << shard)
    }
}

/// Every `every` ([`POLL`] unless the options say), ring the bells of the rooms whose outbox
/// subjects hold deliveries.
async fn poll(doorbell: Weak<Doorbell>, js: jetstream::Context, layout: Layout, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(bells) = doorbell.upgrade() else {
            return;
        };
        let shards = bells.shards(&layout);
        if shards == 0 {
            continue;
        }
        match waiting_subjects(&js, &layout, shards).await {
            Ok(subjects) => {
                for (subject, _) in subjects {
                    bells.ring(&subject);
                }
            }
            Err(err) => tracing::debug!("searching the outbox for waiting rooms: {err}"),
        }
    }
}

/// Every outbox shard, as bits for [`waiting_subjects`].
pub(crate) const ALL_SHARDS: u32 = u32::MAX >> (32 - OUTBOX_SHARDS);

/// The subjects of the outbox shards `shards` (bits) that hold at least one message, with
/// how many.
pub(crate) async fn waiting_subjects(
    js: &jetstream::Context,
    layout: &Layout,
    shards: u32,
) -> Result<Vec<(String, u64)>, BusError> {
    let mut out = Vec::new();
    for shard in (0..OUTBOX_SHARDS).filter(|shard| shards & 1 << shard != 0) {
        let stream = js
            .get_stream_no_info(layout.outbox_stream(shard))
            .await
            .map_err(|err| BusError::new("reading the outbox stream", err))?;
        let mut subjects = stream
            .info_with_subjects(layout.outbox_subjects(shard))
            .await
            .map_err(|err| BusError::new("reading the outbox subjects", err))?;
        while let Some(entry) = subjects.next().await {
            let (subject, count) =
                entry.map_err(|err| BusError::new("reading the outbox subjects", err))?;
            out.push((subject, count as u64));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_poll_asks_only_the_shards_of_rooms_with_a_bell() {
        let layout = Layout::new("pb");
        let doorbell = Doorbell::default();
        assert_eq!(doorbell.shards(&layout), 0);
        let rooms = [("irc.a", "#x"), ("irc.a", "#y"), ("matrix.b", "!r:h")];
        for (account, room) in rooms {
            doorbell.register(&layout.outbox_subject(account, room));
        }
        let expected = rooms
            .iter()
            .fold(0, |bits, (a, r)| bits | 1 << layout.outbox_shard(a, r));
        assert_eq!(doorbell.shards(&layout), expected);
        doorbell.unregister(&layout.outbox_subject("irc.a", "#x"));
        doorbell.unregister(&layout.outbox_subject("irc.a", "#y"));
        assert_eq!(
            doorbell.shards(&layout),
            1 << layout.outbox_shard("matrix.b", "!r:h")
        );
        assert_eq!(ALL_SHARDS.count_ones() as usize, OUTBOX_SHARDS);
    }
}
