//! What one connection may send: sizes, rates, counts. Pure; the session
//! applies these to every transport alike.

use std::time::{Duration, Instant};

/// Per-connection limits, from the serve flags.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest client message, in bytes (SDP included).
    pub max_message_bytes: usize,
    /// Sustained client messages per second per connection.
    pub messages_per_second: f64,
    /// Messages a connection may send at once above the sustained rate.
    pub message_burst: u32,
    /// ICE candidates one session may send in all.
    pub max_candidates: u32,
    /// A connection that has not joined by then is closed.
    pub join_timeout: Duration,
    /// How long a session whose connection dropped waits for a "resume".
    pub resume_grace: Duration,
    /// A long-poll session not polled for this long ends as if it had left.
    pub poll_timeout: Duration,
    /// How long one long-poll request is held open when nothing is there.
    pub poll_wait: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: 64 * 1024,
            messages_per_second: 50.0,
            message_burst: 100,
            max_candidates: 200,
            join_timeout: Duration::from_secs(10),
            resume_grace: Duration::from_secs(30),
            poll_timeout: Duration::from_secs(30),
            poll_wait: Duration::from_secs(25),
        }
    }
}

/// A token bucket: `burst` tokens, refilled at `rate` per second; each
/// message takes one.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(rate: f64, burst: u32, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        TokenBucket {
            rate: rate.max(0.0),
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Takes a token if there is one at `now`.
    pub fn try_take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
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
    use super::*;

    #[test]
    fn a_burst_passes_then_the_rate_holds() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(10.0, 5, t0);
        assert_eq!((0..5).filter(|_| bucket.try_take(t0)).count(), 5);
        assert!(!bucket.try_take(t0), "the burst is spent");
        // 10 per second: one token every 100 ms.
        assert!(!bucket.try_take(t0 + Duration::from_millis(50)));
        assert!(bucket.try_take(t0 + Duration::from_millis(100)));
        assert!(!bucket.try_take(t0 + Duration::from_millis(110)));
        // Over one second at most ~10 more get through, however many are sent.
        let passed = (0..1000)
            .filter(|i| bucket.try_take(t0 + Duration::from_millis(110 + i)))
            .count();
        assert!((9..=11).contains(&passed), "{passed}");
    }

    #[test]
    fn an_idle_bucket_refills_only_to_its_burst() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(100.0, 3, t0);
        let later = t0 + Duration::from_secs(60);
        assert_eq!((0..10).filter(|_| bucket.try_take(later)).count(), 3);
    }

    #[test]
    fn time_going_backwards_grants_nothing() {
        let t0 = Instant::now() + Duration::from_secs(5);
        let mut bucket = TokenBucket::new(10.0, 1, t0);
        assert!(bucket.try_take(t0));
        assert!(!bucket.try_take(t0 - Duration::from_secs(1)));
        assert!(!bucket.try_take(t0 + Duration::from_millis(50)));
        assert!(bucket.try_take(t0 + Duration::from_millis(100)));
    }
}
