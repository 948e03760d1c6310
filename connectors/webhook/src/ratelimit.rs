//! A token bucket per hook: `burst` requests at once, refilled at `per_minute`.

use patchbay_sdk::sync::lock;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Buckets by hook (room) name.
#[derive(Debug)]
pub struct RateLimiter {
    per_minute: u32,
    burst: u32,
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateLimiter {
    /// `per_minute = 0` lets everything through.
    pub fn new(per_minute: u32, burst: u32) -> Self {
        RateLimiter {
            per_minute,
            burst: burst.max(1),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Take a token for `hook`, or say how long until one is there.
    pub fn take(&self, hook: &str) -> Result<(), Duration> {
        self.take_at(hook, Instant::now())
    }

    fn take_at(&self, hook: &str, now: Instant) -> Result<(), Duration> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let rate = f64::from(self.per_minute) / 60.0;
        let mut buckets = lock(&self.buckets);
        // Forget idle hooks so that requests to made-up room names cannot grow the map forever.
        if buckets.len() > 10_000 {
            let full = f64::from(self.burst) / rate;
            buckets.retain(|_, b| now.duration_since(b.at).as_secs_f64() < full);
        }
        let bucket = buckets.entry(hook.to_owned()).or_insert(Bucket {
            tokens: f64::from(self.burst),
            at: now,
        });
        let elapsed = now.duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(f64::from(self.burst));
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill() {
        let limiter = RateLimiter::new(60, 2);
        let start = Instant::now();
        assert!(limiter.take_at("a", start).is_ok());
        assert!(limiter.take_at("a", start).is_ok());
        let wait = limiter.take_at("a", start).expect_err("limited");
        assert!(wait > Duration::from_millis(900) && wait <= Duration::from_secs(1));
        // Other hooks have their own bucket.
        assert!(limiter.take_at("b", start).is_ok());
        assert!(limiter.take_at("a", start + Duration::from_secs(1)).is_ok());
    }
}
