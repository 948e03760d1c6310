//! The live feed: recent activity (deliveries, dead letters, account state changes) for the
//! status page.
//!
//! Bounded, and never waits for a reader: the last [`FEED_KEEP`] activities are kept for a
//! reader that starts now, and new ones go to live readers through a broadcast channel of
//! [`FEED_LAG`] slots. A reader that falls further behind (a slow browser on an SSE stream)
//! loses the oldest and is told how many it skipped; the gateway holds no more for it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use patchbay_sdk::sync::lock;
use patchbay_sdk::{Event, RoomKey};
use serde::Serialize;
use tokio::sync::broadcast;

/// How many recent activities the feed keeps for a reader that starts now.
pub const FEED_KEEP: usize = 200;

/// How many activities a live reader may fall behind before it skips ahead.
pub const FEED_LAG: usize = 256;

/// The longest text preview an activity carries, in characters.
const PREVIEW_CHARS: usize = 140;

/// The longest reason a dead-letter activity carries, in characters.
pub(super) const REASON_CHARS: usize = 4 * PREVIEW_CHARS;

/// One thing that happened, as the live feed shows it.
#[derive(Clone, Debug, Serialize)]
pub struct Activity {
    /// Increases by one per activity, from 1: a reader that saw `seq` asks for what follows.
    pub seq: u64,
    pub at_ms: i64,
    #[serde(flatten)]
    pub what: What,
}

/// What an [`Activity`] is; `kind` in JSON.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum What {
    /// An event reached a destination room.
    Delivered {
        #[serde(flatten)]
        relay: Relay,
        /// From the event to its delivery.
        latency_ms: i64,
    },
    /// A destination refused an event for good.
    DeadLettered {
        #[serde(flatten)]
        relay: Relay,
        reason: String,
    },
    /// An account's connector changed state.
    State {
        account: String,
        /// `connecting`, `up` or `down`.
        state: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
}

/// The event of a delivery activity, in short.
#[derive(Clone, Debug, Serialize)]
pub struct Relay {
    pub route: String,
    /// `ACCOUNT/ROOM` it came from.
    pub origin: String,
    /// `ACCOUNT/ROOM` it went to.
    pub room: String,
    pub author: String,
    /// `message`, `join`, ...
    pub event_kind: &'static str,
    /// The start of its text as plain text, at most [`PREVIEW_CHARS`] characters.
    pub preview: String,
}

impl Relay {
    pub(super) fn of(room: &RoomKey, route: &str, event: &Event) -> Relay {
        Relay {
            route: route.to_owned(),
            origin: format!("{}/{}", event.origin.account, event.origin.room),
            room: room.to_string(),
            author: preview(&event.author.name, 64),
            event_kind: event.kind.name(),
            preview: event
                .kind
                .body()
                .map(|body| preview(&body.to_plain(), PREVIEW_CHARS))
                .unwrap_or_default(),
        }
    }
}

/// `text` on one line, cut to `max` characters with an ellipsis.
pub(super) fn preview(text: &str, max: usize) -> String {
    let line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let line = line.trim();
    match line.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line.to_owned(),
    }
}

/// The recent activities and the live readers.
pub struct Feed {
    ring: Mutex<Ring>,
    live: broadcast::Sender<Arc<Activity>>,
}

#[derive(Default)]
struct Ring {
    recent: VecDeque<Arc<Activity>>,
    last_seq: u64,
}

impl Default for Feed {
    fn default() -> Self {
        Feed {
            ring: Mutex::default(),
            live: broadcast::channel(FEED_LAG).0,
        }
    }
}

impl Feed {
    fn ring(&self) -> std::sync::MutexGuard<'_, Ring> {
        lock(&self.ring)
    }

    /// Record an activity and hand it to the live readers. Never waits: the broadcast
    /// channel overwrites what a slow reader has not taken.
    pub fn push(&self, at_ms: i64, what: What) {
        let mut ring = self.ring();
        ring.last_seq += 1;
        let activity = Arc::new(Activity {
            seq: ring.last_seq,
            at_ms,
            what,
        });
        if ring.recent.len() == FEED_KEEP {
            ring.recent.pop_front();
        }
        ring.recent.push_back(Arc::clone(&activity));
        // Sent under the ring's lock, so that readers see activities in `seq` order and a
        // new reader's backlog ends exactly where its live part begins. An error only means
        // that nobody listens.
        let _ = self.live.send(activity);
    }

    /// The kept activities after `after` (all of them if `None`), oldest first.
    pub fn recent(&self, after: Option<u64>) -> Vec<Arc<Activity>> {
        let ring = self.ring();
        let after = after.unwrap_or(0);
        ring.recent
            .iter()
            .filter(|a| a.seq > after)
            .cloned()
            .collect()
    }

    /// The kept activities after `after` and a receiver for every later one, with no gap
    /// and no overlap between the two.
    pub fn subscribe(
        &self,
        after: Option<u64>,
    ) -> (Vec<Arc<Activity>>, broadcast::Receiver<Arc<Activity>>) {
        let ring = self.ring();
        let receiver = self.live.subscribe();
        let after = after.unwrap_or(0);
        let backlog = ring
            .recent
            .iter()
            .filter(|a| a.seq > after)
            .cloned()
            .collect();
        (backlog, receiver)
    }

    /// The `seq` of the newest activity (0 before the first).
    pub fn last_seq(&self) -> u64 {
        self.ring().last_seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_that_never_reads_costs_a_bounded_buffer_and_learns_what_it_skipped() {
        let feed = Feed::default();
        let (_, mut slow) = feed.subscribe(None);
        for n in 0..10 * FEED_LAG {
            feed.push(
                n as i64,
                What::State {
                    account: "irc.net".into(),
                    state: "up",
                    reason: None,
                },
            );
        }
        assert_eq!(feed.recent(None).len(), FEED_KEEP);
        match slow.try_recv() {
            Err(broadcast::error::TryRecvError::Lagged(skipped)) => {
                assert_eq!(skipped as usize, 10 * FEED_LAG - FEED_LAG)
            }
            other => panic!("expected a lag, got {other:?}"),
        }
        // It goes on from the oldest activity still held.
        let next = slow.try_recv().expect("next");
        assert_eq!(next.seq as usize, 10 * FEED_LAG - FEED_LAG + 1);
    }

    #[test]
    fn a_new_reader_gets_the_backlog_then_the_rest_without_a_gap() {
        let feed = Feed::default();
        let state = || What::State {
            account: "a".into(),
            state: "down",
            reason: Some("gone".into()),
        };
        feed.push(1, state());
        feed.push(2, state());
        let (backlog, mut live) = feed.subscribe(Some(1));
        feed.push(3, state());
        let seqs: Vec<u64> = backlog.iter().map(|a| a.seq).collect();
        assert_eq!(seqs, [2]);
        assert_eq!(live.try_recv().expect("live").seq, 3);
    }

    #[test]
    fn previews_are_one_line_and_cut() {
        assert_eq!(preview("a\nb", 10), "a b");
        assert_eq!(preview("abcdef", 3), "abc…");
        assert_eq!(preview("é😀x", 2), "é😀…");
    }
}
