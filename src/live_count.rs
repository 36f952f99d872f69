//! How many of something are alive now, counted by guards the things hold:
//! a count that a panic, an early return or a task dropped unfinished cannot
//! leave wrong. Depends on nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A count of live things; clones share it.
#[derive(Debug, Clone, Default)]
pub struct LiveCount(Arc<AtomicUsize>);

impl LiveCount {
    pub fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    /// Counts one more until the returned guard is dropped.
    pub fn hold(&self) -> Held {
        self.0.fetch_add(1, Ordering::Relaxed);
        Held(self.0.clone())
    }
}

/// One thing counted by a `LiveCount`, for as long as it is kept.
#[derive(Debug)]
pub struct Held(Arc<AtomicUsize>);

impl Drop for Held {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thing_counts_while_its_guard_lives() {
        let count = LiveCount::default();
        let a = count.hold();
        let b = count.clone().hold();
        assert_eq!(count.get(), 2);
        drop(a);
        assert_eq!(count.get(), 1);
        let moved = std::thread::spawn(move || drop(b));
        moved.join().unwrap();
        assert_eq!(count.get(), 0);
    }
}
