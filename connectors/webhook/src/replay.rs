//! Timed signatures already accepted, so that a copy replayed inside its window is refused.
//!
//! A timed signature (Slack `v0`, patchbay `v1`) outside `signature_max_age` is refused
//! as stale by `auth`; inside it, this set refuses a second use. A signature is claimed when
//! it is verified — so two copies racing each other cannot both pass — and released again when
//! the event could not be recorded, so the sender's retry of that same request still works.
//! Entries are forgotten once their timestamp is out of the window (the stale check covers
//! them from then on). The set lives in memory; across a restart the event's `remote_id`
//! (the signature) lets the gateway's message-id map drop the copy instead.

use patchbay_sdk::sync::lock;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// The most signatures remembered at once. Only verified signatures are entered, so this is
/// reached only by a sender with the secret sending this many requests inside one window
/// (beyond any rate limit a hook would have); past it, timed requests get a 503.
pub const MAX_REMEMBERED: usize = 100_000;

/// What a claim found.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// First use: go on.
    Fresh,
    /// Seen inside its window: a replay.
    Replayed,
    /// [`MAX_REMEMBERED`] signatures are in their window already.
    Full,
}

/// A hook room and a signature's MAC.
type Key = (String, Vec<u8>);

/// When a signature was made (Unix seconds) and how long either side of that it is valid.
type Validity = (i64, Duration);

/// Accepted signatures by hook room.
#[derive(Default)]
pub struct Seen {
    entries: Mutex<HashMap<Key, Validity>>,
}

impl Seen {
    /// Claim `mac` for `room`, signed at `timestamp` and valid for `window` either side of it,
    /// at Unix time `now`.
    pub fn claim(
        &self,
        room: &str,
        mac: &[u8],
        timestamp: i64,
        window: Duration,
        now: i64,
    ) -> Claim {
        let mut entries = self.lock();
        // Forgetting as we go keeps the set to one window of traffic.
        entries.retain(|_, (signed_at, window)| in_window(*signed_at, *window, now));
        let key = (room.to_owned(), mac.to_vec());
        if entries.contains_key(&key) {
            return Claim::Replayed;
        }
        if entries.len() >= MAX_REMEMBERED {
            return Claim::Full;
        }
        entries.insert(key, (timestamp, window));
        Claim::Fresh
    }

    /// Forget a claim whose request was not recorded: the sender may retry it as it is.
    pub fn release(&self, room: &str, mac: &[u8]) {
        self.lock().remove(&(room.to_owned(), mac.to_vec()));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Validity>> {
        lock(&self.entries)
    }
}

fn in_window(signed_at: i64, window: Duration, now: i64) -> bool {
    now.saturating_sub(signed_at).unsigned_abs() <= window.as_secs()
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(300);

    #[test]
    fn a_signature_is_fresh_once_per_room_until_released() {
        let seen = Seen::default();
        assert_eq!(seen.claim("a", b"mac", 1000, WINDOW, 1000), Claim::Fresh);
        assert_eq!(seen.claim("a", b"mac", 1000, WINDOW, 1001), Claim::Replayed);
        assert_eq!(seen.claim("b", b"mac", 1000, WINDOW, 1001), Claim::Fresh);
        seen.release("a", b"mac");
        assert_eq!(seen.claim("a", b"mac", 1000, WINDOW, 1002), Claim::Fresh);
    }

    #[test]
    fn entries_out_of_their_window_are_forgotten() {
        let seen = Seen::default();
        seen.claim("a", b"old", 1000, WINDOW, 1000);
        seen.claim("a", b"new", 1200, WINDOW, 1200);
        assert_eq!(seen.claim("a", b"new", 1200, WINDOW, 1301), Claim::Replayed);
        assert_eq!(seen.len(), 1);
    }
}
