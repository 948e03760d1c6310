//! What the SSH mode's parts share: each room's send queue ([`RoomQueue`]) and the names the
//! account's sessions go by ([`OwnNames`]). `ssh` makes them and hands them to every room's
//! session, `session` fills and drains them; both import them from here, so neither imports
//! the other.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use patchbay_sdk::EventSink;
use tokio::sync::Notify;

use crate::send::SendQueue;
use patchbay_sdk::sync::lock;

/// A room's send queue, shared between `deliver_run` and the room's session.
#[derive(Default)]
pub struct RoomQueue {
    queue: Mutex<SendQueue>,
    /// Woken when a run is queued or the session entered its room.
    pub notify: Notify,
}

impl RoomQueue {
    pub fn lock(&self) -> MutexGuard<'_, SendQueue> {
        lock(&self.queue)
    }
}

/// The names the account's sessions go by now, one per room session.
pub struct OwnNames {
    network: String,
    by_room: Mutex<BTreeMap<String, String>>,
}

impl OwnNames {
    pub fn new(network: String) -> Self {
        OwnNames {
            network,
            by_room: Mutex::new(BTreeMap::new()),
        }
    }

    /// The session for `room` goes by `name` now: remember it and tell the gateway, before
    /// anything is typed under it.
    pub fn set(&self, room: &str, name: &str, sink: &EventSink) {
        let names = {
            let mut by_room = lock(&self.by_room);
            if by_room.get(room).is_some_and(|n| n == name) {
                return;
            }
            by_room.insert(room.to_owned(), name.to_owned());
            let mut names: Vec<String> = by_room.values().cloned().collect();
            names.sort();
            names.dedup();
            names
        };
        tracing::debug!(account = %sink.account(), network = %self.network, ?names, "announcing own names");
        sink.announce(self.network.clone(), names);
    }

    pub fn contains(&self, name: &str) -> bool {
        lock(&self.by_room).values().any(|n| n == name)
    }
}
