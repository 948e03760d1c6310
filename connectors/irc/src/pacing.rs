//! Flood control: a token bucket that delays lines, never drops them.
//!
//! Servers disconnect clients that send too fast ("Excess Flood"). The bucket holds up to
//! `burst` tokens, refills at `rate` per second, and every paced line takes one, waiting for it
//! when the bucket is empty. The default (5 at once, then 2 per second) stays under what common
//! servers tolerate while keeping a relay conversational.

use std::time::Duration;

use patchbay_sdk::{Signal, health_events};
use tokio::time::Instant;

use crate::config::Flood;

health_events! {
    /// The bucket held a delivery's line for `wait` before it went out. Counted so that an
    /// account whose relay lags behind its flood limit shows it in `/metrics`; logged at debug,
    /// since a burst holds every line after the first few.
    pub struct LinePaced { pub wait: Duration }
        => Signal::Paced, |account| tracing::debug!(account = %account, wait = ?wait, "held a line under the flood limit");
}

#[derive(Debug)]
pub struct TokenBucket {
    flood: Flood,
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    pub fn new(flood: Flood) -> Self {
        TokenBucket {
            flood,
            tokens: f64::from(flood.burst),
            updated: Instant::now(),
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.flood.rate).min(f64::from(self.flood.burst));
        self.updated = now;
    }

    /// How long to wait before one more line may go, taking its token when that is zero.
    pub fn try_take(&mut self, now: Instant) -> Duration {
        if !self.flood.enabled {
            return Duration::ZERO;
        }
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - self.tokens) / self.flood.rate)
        }
    }

    /// Wait until a line may go, then take its token. Returns how long the line was held
    /// (zero when a token was there), for the connector's `paced` count.
    pub async fn take(&mut self) -> Duration {
        let start = Instant::now();
        // Zero until the line has slept: one that found its token was not held, and the
        // call's own time would count every line of an unpaced account as "paced".
        let mut held = Duration::ZERO;
        loop {
            let wait = self.try_take(Instant::now());
            if wait.is_zero() {
                return held;
            }
            tokio::time::sleep(wait).await;
            held = start.elapsed();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_rate() {
        let flood = Flood {
            enabled: true,
            burst: 3,
            rate: 2.0,
        };
        let mut bucket = TokenBucket::new(flood);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(bucket.try_take(t0), Duration::ZERO);
        }
        let wait = bucket.try_take(t0);
        assert!(wait > Duration::from_millis(490) && wait <= Duration::from_millis(500));
        assert_eq!(
            bucket.try_take(t0 + Duration::from_millis(500)),
            Duration::ZERO
        );
        // A long pause refills only up to the burst.
        let later = t0 + Duration::from_secs(100);
        for _ in 0..3 {
            assert_eq!(bucket.try_take(later), Duration::ZERO);
        }
        assert!(bucket.try_take(later) > Duration::ZERO);
    }

    #[test]
    fn disabled_never_waits() {
        let mut bucket = TokenBucket::new(Flood {
            enabled: false,
            burst: 1,
            rate: 0.1,
        });
        let t0 = Instant::now();
        for _ in 0..100 {
            assert_eq!(bucket.try_take(t0), Duration::ZERO);
        }
    }

    #[tokio::test]
    async fn take_queues_lines_in_time() {
        let mut bucket = TokenBucket::new(Flood {
            enabled: true,
            burst: 2,
            rate: 50.0,
        });
        let t0 = Instant::now();
        let mut held = Vec::new();
        for _ in 0..12 {
            held.push(bucket.take().await);
        }
        // Ten lines past the burst at 50 per second; the burst's two were not held.
        let elapsed = t0.elapsed();
        assert!(elapsed >= Duration::from_millis(195), "{elapsed:?}");
        assert_eq!(held[..2], [Duration::ZERO; 2]);
        assert!(held[2..].iter().all(|w| !w.is_zero()), "{held:?}");
    }

    #[tokio::test]
    async fn an_unpaced_account_holds_no_line() {
        let mut bucket = TokenBucket::new(Flood {
            enabled: false,
            burst: 1,
            rate: 0.1,
        });
        for _ in 0..10 {
            assert_eq!(bucket.take().await, Duration::ZERO);
        }
    }
}
