//! Token buckets per key (station, peer): pure arithmetic over a passed-in
//! clock reading, kept in memory by [`RateLimiter`].
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// One bucket: `rate` tokens per second up to `burst`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    tokens: f64,
    last: f64,
}

impl Bucket {
    pub fn full(burst: f64, now: f64) -> Self {
        Bucket {
            tokens: burst,
            last: now,
        }
    }

    /// Takes one token at time `now` (seconds). Err(ms to wait) when empty.
    pub fn take(&mut self, rate: f64, burst: f64, now: f64) -> Result<(), u64> {
        let elapsed = (now - self.last).max(0.0);
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - self.tokens) / rate;
            Err((wait * 1000.0).ceil() as u64)
        }
    }
}

/// Buckets by key. This instance's view only: a fleet of servers shares the
/// daily quota through the store, and each enforces its own rate.
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    start: Instant,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    pub fn new(rate_per_second: u32, burst: u32) -> Self {
        RateLimiter {
            rate: f64::from(rate_per_second.max(1)),
            burst: f64::from(burst.max(1)),
            start: Instant::now(),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Ok, or Err(milliseconds to wait).
    pub fn check(&self, key: &str) -> Result<(), u64> {
        let now = self.start.elapsed().as_secs_f64();
        let mut map = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let b = map
            .entry(key.to_string())
            .or_insert_with(|| Bucket::full(self.burst, now));
        b.take(self.rate, self.burst, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_rate() {
        let mut b = Bucket::full(3.0, 0.0);
        for _ in 0..3 {
            assert!(b.take(2.0, 3.0, 0.0).is_ok());
        }
        assert_eq!(b.take(2.0, 3.0, 0.0), Err(500));
        assert!(
            b.take(2.0, 3.0, 0.5).is_ok(),
            "half a second refills one token at 2/s"
        );
        assert!(b.take(2.0, 3.0, 0.5).is_err());
        assert!(b.take(2.0, 3.0, 100.0).is_ok());
    }

    #[test]
    fn keys_are_independent() {
        let l = RateLimiter::new(1, 1);
        assert!(l.check("a").is_ok());
        assert!(l.check("a").is_err());
        assert!(l.check("b").is_ok());
    }
}
