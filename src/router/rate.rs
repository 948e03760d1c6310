//! Per-room rate limits as a schedule: an event over the limit is not dropped but given the
//! earliest time it may be delivered (GCRA, the generic cell rate algorithm).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{RateLimit, RoomKey};
use patchbay_sdk::sync::lock;

#[derive(Default)]
pub(super) struct Limiter {
    /// The theoretical arrival time of the next event, per route and room.
    next: Mutex<HashMap<(String, RoomKey), Instant>>,
}

impl Limiter {
    /// Admit one event; returns when it may be delivered if that is later than now.
    pub(super) fn admit(&self, route: &str, room: &RoomKey, limit: RateLimit) -> Option<Instant> {
        self.admit_at(route, room, limit, Instant::now())
    }

    fn admit_at(
        &self,
        route: &str,
        room: &RoomKey,
        limit: RateLimit,
        now: Instant,
    ) -> Option<Instant> {
        let interval = limit.per / limit.messages.max(1);
        let tolerance = limit.per.saturating_sub(interval);
        let mut next = lock(&self.next);
        let tat = next.entry((route.to_owned(), room.clone())).or_insert(now);
        let arrival = (*tat).max(now);
        let allowed = arrival.checked_sub(tolerance).unwrap_or(now).max(now);
        *tat = arrival + interval;
        (allowed > now + Duration::from_millis(1)).then_some(allowed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_up_to_the_limit_passes_then_events_are_spaced() {
        let limiter = Limiter::default();
        let room = RoomKey::new("irc.a", "#x");
        let limit = RateLimit {
            messages: 3,
            per: Duration::from_secs(3),
        };
        let now = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.admit_at("r", &room, limit, now), None);
        }
        let fourth = limiter.admit_at("r", &room, limit, now).expect("delayed");
        assert_eq!(fourth - now, Duration::from_secs(1));
        let fifth = limiter.admit_at("r", &room, limit, now).expect("delayed");
        assert_eq!(fifth - now, Duration::from_secs(2));
    }
}
