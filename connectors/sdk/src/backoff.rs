//! Exponential backoff with jitter: how long to wait before trying again.
//!
//! The one backoff of patchbay. The gateway waits with it between delivery attempts to a room
//! whose network is down, and every connector waits with it between connection attempts (see
//! [`crate::supervise`]). It is pure arithmetic: it never sleeps, so it can be tested without a
//! clock and used under any timer.
//!
//! Invariants: the waits, before jitter, go `first, 2·first, 4·first, …` and never exceed
//! `max`; each wait handed out is that base times a jitter factor in [0.8, 1.2), so many rooms
//! or bridges that failed together do not all retry in lockstep. [`Backoff::reset`] starts
//! again from `first`.

use std::time::Duration;

use rand::Rng;

/// The jitter, as a fraction of the base wait either way: ±20%.
const JITTER: f64 = 0.2;

/// Doubling waits from `first` up to `max`, with ±20% jitter.
#[derive(Clone, Debug)]
pub struct Backoff {
    /// The first wait, and the one after a [`reset`](Backoff::reset).
    first: Duration,
    /// The ceiling of the base wait; at least `first`.
    max: Duration,
    /// The base of the next wait, between `first` and `max`.
    next: Duration,
    /// The jitter fraction; [`JITTER`] except in tests that need exact waits.
    jitter: f64,
}

impl Backoff {
    /// Waits doubling from `first` up to `max` (a `max` below `first` counts as `first`).
    pub fn new(first: Duration, max: Duration) -> Self {
        Backoff {
            first,
            max: max.max(first),
            next: first,
            jitter: JITTER,
        }
    }

    /// The same waits without jitter, for tests that check exact times.
    #[cfg(test)]
    pub(crate) fn exact(first: Duration, max: Duration) -> Self {
        Backoff {
            jitter: 0.0,
            ..Backoff::new(first, max)
        }
    }

    /// The next wait, and double the one after it (up to `max`).
    pub fn next_wait(&mut self) -> Duration {
        let base = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        if self.jitter == 0.0 {
            return base;
        }
        let factor = rand::rng().random_range(1.0 - self.jitter..1.0 + self.jitter);
        base.mul_f64(factor)
    }

    /// The last attempt worked (or held long enough): the next wait is `first` again.
    pub fn reset(&mut self) {
        self.next = self.first;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_with_bounded_jitter() {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(8));
        let waits: Vec<Duration> = (0..6).map(|_| backoff.next_wait()).collect();
        for (wait, base) in waits.iter().zip([1, 2, 4, 8, 8, 8]) {
            let base = Duration::from_secs(base);
            assert!(
                *wait >= base.mul_f64(0.8) && *wait <= base.mul_f64(1.2),
                "{wait:?} vs {base:?}"
            );
        }
        backoff.reset();
        assert!(backoff.next_wait() <= Duration::from_millis(1200));
    }

    #[test]
    fn a_ceiling_below_the_first_wait_counts_as_the_first_wait() {
        let mut backoff = Backoff::exact(Duration::from_secs(5), Duration::from_secs(1));
        assert_eq!(backoff.next_wait(), Duration::from_secs(5));
        assert_eq!(backoff.next_wait(), Duration::from_secs(5));
    }

    #[test]
    fn many_doublings_stay_at_the_ceiling_without_overflow() {
        let mut backoff = Backoff::exact(Duration::from_millis(1), Duration::from_secs(60));
        for _ in 0..200 {
            assert!(backoff.next_wait() <= Duration::from_secs(60));
        }
        assert_eq!(backoff.next_wait(), Duration::from_secs(60));
    }

    #[test]
    fn jittered_waits_differ_so_bridges_do_not_retry_in_lockstep() {
        let waits: std::collections::HashSet<Duration> = (0..20)
            .map(|_| Backoff::new(Duration::from_secs(10), Duration::from_secs(10)).next_wait())
            .collect();
        assert!(waits.len() > 1, "{waits:?}");
    }
}
