//! Per-session flood control: a token bucket.

use tokio::time::Instant;

/// `rate` tokens a second, at most `burst` saved up.
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    pub fn new(rate: u32, burst: u32) -> Self {
        Self {
            rate: f64::from(rate),
            burst: f64::from(burst),
            tokens: f64::from(burst),
            at: Instant::now(),
        }
    }

    /// Takes a token if there is one.
    pub fn take(&mut self) -> bool {
        self.take_at(Instant::now())
    }

    fn take_at(&mut self, now: Instant) -> bool {
        self.tokens = (self.tokens
            + now.saturating_duration_since(self.at).as_secs_f64() * self.rate)
            .min(self.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let mut bucket = TokenBucket::new(2, 3);
        let start = bucket.at;
        let taken = (0..5).filter(|_| bucket.take_at(start)).count();
        assert_eq!(taken, 3, "the burst");
        assert!(!bucket.take_at(start + Duration::from_millis(100)));
        assert!(
            bucket.take_at(start + Duration::from_millis(600)),
            "refilled at 2/s"
        );
        assert!(!bucket.take_at(start + Duration::from_millis(600)));
        let later = start + Duration::from_secs(60);
        let taken = (0..5).filter(|_| bucket.take_at(later)).count();
        assert_eq!(taken, 3, "never more than the burst saved up");
    }
}
