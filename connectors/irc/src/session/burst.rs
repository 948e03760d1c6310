//! Live lines read in one go, handed to the gateway as one run.
//!
//! A busy channel's lines arrive many to a read. Emitted one by one, each waits for its own
//! durable commit before the next line is even parsed, which holds one channel to one commit
//! round trip per line. While the reader has whole lines buffered, the session gathers what
//! they relay here and hands them over with one `emit_many`: one commit for the run, the same
//! order, and the history marks move over the run only once it is durable (before the next
//! read, and before any mark is saved). Only done while no channel is being caught up, where
//! a refused line must stop the catch-up at once.

use patchbay_sdk::Inbound;
use tracing::warn;

use super::Session;
use crate::parse::MsgTags;

/// The most lines gathered into one run.
pub(super) const BURST_MAX: usize = 256;

/// What a burst of read lines relays, waiting to go to the gateway together.
#[derive(Default)]
pub(super) struct Burst {
    /// Whether relays are gathered now (the reader has more lines buffered).
    pub gathering: bool,
    /// Channel and tags (for the history mark) with the event, in the server's order.
    lines: Vec<(String, MsgTags, Inbound)>,
}

impl Burst {
    pub fn len(&self) -> usize {
        self.lines.len()
    }
}

impl Session<'_> {
    /// Gather `inbound` into the burst, if one is being gathered; otherwise give it back.
    pub(super) fn gather(
        &mut self,
        channel: &str,
        tags: &MsgTags,
        inbound: Inbound,
    ) -> Option<Inbound> {
        if !self.burst.gathering || self.catchup.running() > 0 {
            return Some(inbound);
        }
        self.burst
            .lines
            .push((channel.to_owned(), tags.clone(), inbound));
        None
    }

    /// Hand the gathered lines to the gateway as one run and move their marks once durable.
    pub(super) async fn flush_burst(&mut self) {
        let lines = std::mem::take(&mut self.burst.lines);
        if lines.is_empty() {
            return;
        }
        let count = lines.len();
        let (marks, inbounds): (Vec<_>, Vec<_>) = lines
            .into_iter()
            .map(|(channel, tags, inbound)| ((channel, tags), inbound))
            .unzip();
        match self.ctx.sink.emit_many(inbounds).await {
            Ok(_) => {
                for (channel, tags) in marks {
                    self.history.relayed(&channel, &tags);
                }
            }
            Err(e) => {
                warn!(account = %self.ctx.account, "could not hand {count} events to the gateway: {e}; these lines are not relayed (the gateway is stopping, or its store failed: see its errors)");
            }
        }
    }
}
