//! Rate limiting of keyframe requests to a shared encoder. Pure: no GStreamer.
//!
//! Every receiver of the MCU composite can ask for a keyframe (PLI/FIR, or a
//! new viewer joining). Passing each request to the one shared encoder would
//! let twenty receivers cause a keyframe storm, so requests closer together
//! than `min_interval` are held back and answered together by one keyframe at
//! the end of the interval: nobody's request is lost, and the encoder forces
//! at most one keyframe per interval.

use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct KeyframeLimiter {
    min_interval: Duration,
    last_forced: Option<Instant>,
    pending: bool,
}

/// What to do with a request right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyframeDecision {
    /// Force a keyframe now.
    Force,
    /// One was forced recently; a deferred one will follow (see `poll`).
    Deferred,
}

impl KeyframeLimiter {
    pub fn new(min_interval: Duration) -> Self {
        Self {
            min_interval,
            last_forced: None,
            pending: false,
        }
    }

    pub fn request(&mut self, now: Instant) -> KeyframeDecision {
        match self.last_forced {
            Some(t) if now.duration_since(t) < self.min_interval => {
                self.pending = true;
                KeyframeDecision::Deferred
            }
            _ => {
                self.last_forced = Some(now);
                self.pending = false;
                KeyframeDecision::Force
            }
        }
    }

    /// Called periodically: true when a deferred request is now due.
    pub fn poll(&mut self, now: Instant) -> bool {
        if self.pending && self.request(now) == KeyframeDecision::Force {
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn first_request_forces_at_once() {
        let mut l = KeyframeLimiter::new(500 * MS);
        assert_eq!(l.request(Instant::now()), KeyframeDecision::Force);
    }

    #[test]
    fn a_storm_of_requests_forces_one_now_and_one_deferred() {
        let t0 = Instant::now();
        let mut l = KeyframeLimiter::new(500 * MS);
        assert_eq!(l.request(t0), KeyframeDecision::Force);
        for i in 1..50 {
            assert_eq!(l.request(t0 + i * 5 * MS), KeyframeDecision::Deferred);
        }
        assert!(!l.poll(t0 + 400 * MS), "deferred request fired too early");
        assert!(l.poll(t0 + 500 * MS), "deferred request was lost");
        assert!(!l.poll(t0 + 600 * MS), "one deferred request fired twice");
        assert!(!l.poll(t0 + 5000 * MS));
    }

    #[test]
    fn requests_spaced_wider_than_the_interval_all_force() {
        let t0 = Instant::now();
        let mut l = KeyframeLimiter::new(500 * MS);
        for i in 0..5 {
            assert_eq!(l.request(t0 + i * 600 * MS), KeyframeDecision::Force);
        }
    }
}
