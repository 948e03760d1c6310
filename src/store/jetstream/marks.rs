//! The rooms' newest-event marks, written behind the accepts.
//!
//! Marks used to be written with every gathering, and with many busy rooms a gathering holds
//! events of as many rooms as events: a stored map entry per event, beside its outbox message
//! and its quote.
//!
//! A mark is where a new holder of the room's account starts its catch-up
//! ([`crate::store::Store::last_origin`]). It must never run ahead of what is stored, and it
//! does not: it is noted once the run's deliveries are. A room's first mark on an instance is
//! written with the accept (a new holder that found none would not catch up at all); later
//! ones every [`MARKS_EVERY`] (and at close), the newest of each room. So after a crash it can
//! lag that much behind, and the new holder's catch-up reads that much again: what it reads
//! again carries its network id and is a duplicate (the origin ids are written with the
//! accept, not behind).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use patchbay_nats::Bus;

/// How often the marks noted since the last write are written.
pub(super) const MARKS_EVERY: Duration = Duration::from_millis(250);

/// The newest-event marks noted and not yet written.
#[derive(Default)]
pub(super) struct Marks(Mutex<Noted>);

#[derive(Default)]
struct Noted {
    /// By map key, the newest of each.
    marks: HashMap<String, Vec<u8>>,
    /// The keys this instance has written a mark of: a room's first mark is written with its
    /// accept, so that a new holder never finds none where there was history to catch up.
    written: HashSet<String>,
}

impl Marks {
    /// Start writing the marks noted every [`MARKS_EVERY`], until the store is dropped.
    pub(super) fn start(bus: Bus) -> Arc<Marks> {
        let marks = Arc::new(Marks::default());
        tokio::spawn(write_every(Arc::downgrade(&marks), bus));
        marks
    }

    /// `value` is the newest mark of the map key `key`: given back to write now when this
    /// instance has written none of `key` yet, else noted to write behind.
    pub(super) fn note(&self, key: String, value: Vec<u8>) -> Option<(String, Vec<u8>)> {
        let mut noted = self.lock();
        if noted.written.insert(key.clone()) {
            return Some((key, value));
        }
        noted.marks.insert(key, value);
        None
    }

    /// These marks could not be written: write them behind, unless a newer one was noted.
    pub(super) fn unwritten(&self, marks: Vec<(String, Vec<u8>)>) {
        let mut noted = self.lock();
        for (key, value) in marks {
            noted.marks.entry(key).or_insert(value);
        }
    }

    /// The mark noted for `key` and not written yet.
    pub(super) fn noted(&self, key: &str) -> Option<Vec<u8>> {
        self.lock().marks.get(key).cloned()
    }

    /// Write what is noted; on a failure it stays noted for the next write.
    pub(super) async fn write(&self, bus: &Bus) {
        let entries: Vec<(String, Vec<u8>)> =
            std::mem::take(&mut self.lock().marks).into_iter().collect();
        if entries.is_empty() {
            return;
        }
        if let Err(err) = super::put_all(bus, entries.clone()).await {
            tracing::debug!("writing the rooms' newest-event marks, again later: {err}");
            self.unwritten(entries);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Noted> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

async fn write_every(marks: Weak<Marks>, bus: Bus) {
    let mut ticks = tokio::time::interval(MARKS_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(marks) = marks.upgrade() else {
            return;
        };
        marks.write(&bus).await;
    }
}
