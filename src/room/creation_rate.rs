//! How many rooms each client address has opened in the last minute: a
//! sliding window per address, so one address cannot open and close rooms
//! (each MCU room builds a compositor and an encoder) as fast as it likes.
//! Pure: the caller passes the time.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

pub const WINDOW: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub struct CreationRate {
    max_per_window: usize,
    /// When each address opened its rooms within the window, oldest first
    /// (at most `max_per_window` each; addresses with none are dropped).
    opened: HashMap<IpAddr, VecDeque<Instant>>,
}

impl CreationRate {
    pub fn new(max_per_window: usize) -> Self {
        CreationRate {
            max_per_window: max_per_window.max(1),
            opened: HashMap::new(),
        }
    }

    pub fn max_per_window(&self) -> usize {
        self.max_per_window
    }

    /// Whether `ip` may open a room at `now`; if so, it is counted.
    pub fn try_open(&mut self, ip: IpAddr, now: Instant) -> bool {
        self.forget_before(now);
        let times = self.opened.entry(ip).or_default();
        if times.len() >= self.max_per_window {
            return false;
        }
        times.push_back(now);
        true
    }

    fn forget_before(&mut self, now: Instant) {
        self.opened.retain(|_, times| {
            while times
                .front()
                .is_some_and(|&t| now.saturating_duration_since(t) >= WINDOW)
            {
                times.pop_front();
            }
            !times.is_empty()
        });
    }

    /// Addresses with a room opened within the window (for tests).
    #[cfg(test)]
    fn addresses(&self) -> usize {
        self.opened.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_opens_at_most_its_share_a_minute_and_others_are_not_held_back() {
        let mut rate = CreationRate::new(3);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert!(rate.try_open(a, at(0)));
        assert!(rate.try_open(a, at(10)));
        assert!(rate.try_open(a, at(20)));
        assert!(!rate.try_open(a, at(30)), "a fourth within the minute");
        assert!(rate.try_open(b, at(30)), "another address is not held back");
        // A refusal is not counted: the first slot frees at 60 s exactly.
        assert!(!rate.try_open(a, at(59)));
        assert!(rate.try_open(a, at(60)));
        assert!(!rate.try_open(a, at(61)));
        // Addresses whose rooms are all older than the window are forgotten.
        assert!(rate.try_open(b, at(200)));
        assert_eq!(rate.addresses(), 1);
    }
}
