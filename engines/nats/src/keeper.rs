//! One keeper message in each busy outbox shard, so that its newest block file never empties.
//!
//! nats-server's file store removes a message block's file once its last message is removed,
//! and when that block was the one being written it creates a new file for the next message.
//! An outbox shard whose rooms' lanes keep up drains empty many times a second, so without a
//! keeper the server spent a quarter of its CPU deleting and re-creating those files (profiled
//! with 100 busy rooms over 16 shards: `removeMsgBlock` 16%, `newMsgBlockForWrite` 11%).
//!
//! The keeper is a message on a subject no room's consumer takes, `P.out<k>._keep` (a room's
//! subject has two tokens after `out<k>`), published with `Nats-Rollup: sub` so each one
//! replaces the last. An instance republishes it at most every [`EVERY`] for the shards it
//! published deliveries into since, which keeps a keeper in the block being written while a
//! shard is busy; an idle shard costs nothing. Counts of waiting deliveries leave it out.

use std::sync::Arc;
use std::sync::Weak;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_nats::jetstream;

use crate::layout::{Layout, OUTBOX_SHARDS};

/// How often at most a busy shard's keeper is published again.
pub const EVERY: Duration = Duration::from_millis(250);

const _: () = assert!(OUTBOX_SHARDS <= 32, "the shards touched are one u32's bits");

/// The shards given deliveries since the last round of keepers.
#[derive(Default)]
pub(crate) struct Keeper {
    touched: AtomicU32,
}

impl Keeper {
    /// Start publishing keepers; the task ends when the keeper is dropped.
    pub(crate) fn start(js: &jetstream::Context, layout: &Layout) -> Arc<Keeper> {
        let keeper = Arc::new(Keeper::default());
        tokio::spawn(publish(Arc::downgrade(&keeper), js.clone(), layout.clone()));
        keeper
    }

    /// A delivery was published into outbox shard `shard`.
    pub(crate) fn touch(&self, shard: usize) {
        self.touched.fetch_or(1 << shard, Ordering::Relaxed);
    }
}

async fn publish(keeper: Weak<Keeper>, js: jetstream::Context, layout: Layout) {
    let mut ticks = tokio::time::interval(EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(keeper) = keeper.upgrade() else {
            return;
        };
        let touched = keeper.touched.swap(0, Ordering::Relaxed);
        drop(keeper);
        for shard in (0..OUTBOX_SHARDS).filter(|shard| touched & (1 << shard) != 0) {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Rollup", "sub");
            let stored = match js
                .publish_with_headers(layout.keeper_subject(shard), headers, Default::default())
                .await
            {
                Ok(ack) => ack.await.map(|_| ()).map_err(|err| err.to_string()),
                Err(err) => Err(err.to_string()),
            };
            // A keeper missed costs only the server's work until the next one.
            if let Err(err) = stored {
                tracing::debug!("publishing outbox shard {shard}'s keeper: {err}");
            }
        }
    }
}
