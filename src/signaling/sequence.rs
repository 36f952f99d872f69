//! Numbered server messages kept until the client has them. Pure.
//!
//! The long-poll transport keeps each message until a later poll's `after`
//! acknowledges it, so a poll whose response was lost is answered again with
//! the same messages. A session keeps the last few messages it handed to a
//! WebSocket, so a client that resumes after a drop gets those it missed.

use std::collections::VecDeque;

/// The buffer is full: the client is not taking its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overflow;

/// The client asked for messages from before the oldest one kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    pub oldest_kept: u64,
}

#[derive(Debug, Clone)]
pub struct SeqBuffer<T> {
    /// In order, numbered consecutively; the first message is number 1.
    items: VecDeque<(u64, T)>,
    last: u64,
    capacity: usize,
}

impl<T: Clone> SeqBuffer<T> {
    pub fn new(capacity: usize) -> Self {
        SeqBuffer {
            items: VecDeque::new(),
            last: 0,
            capacity: capacity.max(1),
        }
    }

    /// Numbers and keeps `item`; refuses it when full.
    pub fn push(&mut self, item: T) -> Result<u64, Overflow> {
        if self.items.len() >= self.capacity {
            return Err(Overflow);
        }
        self.last += 1;
        self.items.push_back((self.last, item));
        Ok(self.last)
    }

    /// The number of the newest message (0 before the first).
    pub fn last_seq(&self) -> u64 {
        self.last
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The client has every message up to `seq`: forget them.
    pub fn acknowledge(&mut self, seq: u64) {
        while self.items.front().is_some_and(|(s, _)| *s <= seq) {
            self.items.pop_front();
        }
    }

    /// Keeps at most `keep` of the messages numbered up to `delivered`
    /// (the newest of them), and every later one.
    pub fn trim_delivered(&mut self, delivered: u64, keep: usize) {
        let delivered_count = self
            .items
            .iter()
            .take_while(|(s, _)| *s <= delivered)
            .count();
        for _ in 0..delivered_count.saturating_sub(keep) {
            self.items.pop_front();
        }
    }

    /// The kept message numbered `seq`.
    pub fn get(&self, seq: u64) -> Option<&T> {
        let first = self.items.front()?.0;
        let index = usize::try_from(seq.checked_sub(first)?).ok()?;
        self.items.get(index).map(|(_, item)| item)
    }

    /// How many messages a client that has received everything up to
    /// `received` is owed, if they are all still kept. A count beyond the
    /// newest message is a client's mistake, refused like a gap.
    pub fn owed_after(&self, received: u64) -> Result<usize, Gap> {
        let oldest = self.items.front().map_or(self.last + 1, |(s, _)| *s);
        if received > self.last || received.saturating_add(1) < oldest {
            return Err(Gap {
                oldest_kept: oldest,
            });
        }
        Ok((self.last - received) as usize)
    }

    /// Every kept message numbered after `after`, in order. A gap (messages
    /// after `after` already forgotten) is an error: the caller cannot give
    /// the client a complete sequence.
    pub fn since(&self, after: u64) -> Result<Vec<(u64, T)>, Gap> {
        let oldest = self.items.front().map_or(self.last + 1, |(s, _)| *s);
        // `after` is the client's number: it may be anything up to u64::MAX.
        if after.saturating_add(1) < oldest {
            return Err(Gap {
                oldest_kept: oldest,
            });
        }
        Ok(self
            .items
            .iter()
            .filter(|(s, _)| *s > after)
            .cloned()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seqs(items: &[(u64, char)]) -> Vec<u64> {
        items.iter().map(|(s, _)| *s).collect()
    }

    #[test]
    fn a_repeated_poll_gets_the_same_messages_and_a_later_one_only_new_ones() {
        let mut buf = SeqBuffer::new(10);
        for c in ['a', 'b', 'c'] {
            buf.push(c).unwrap();
        }
        let first = buf.since(0).unwrap();
        assert_eq!(seqs(&first), [1, 2, 3]);
        // The response was lost: the client asks again from 0 and gets the same.
        assert_eq!(buf.since(0).unwrap(), first);
        buf.acknowledge(0);
        buf.push('d').unwrap();
        // The client got 1..=3 and asks after 3: it acknowledges them.
        buf.acknowledge(3);
        assert_eq!(buf.since(3).unwrap(), vec![(4, 'd')]);
        assert_eq!(buf.len(), 1);
        // Asking again after 3 still works (the answer to that was lost too).
        assert_eq!(buf.since(3).unwrap(), vec![(4, 'd')]);
    }

    #[test]
    fn asking_for_forgotten_messages_is_a_gap() {
        let mut buf = SeqBuffer::new(10);
        for c in ['a', 'b', 'c'] {
            buf.push(c).unwrap();
        }
        buf.acknowledge(2);
        assert_eq!(buf.get(2), None);
        assert_eq!(buf.get(3), Some(&'c'));
        assert_eq!(buf.get(4), None);
        assert_eq!(buf.since(1), Err(Gap { oldest_kept: 3 }));
        assert_eq!(buf.since(2).unwrap(), vec![(3, 'c')]);
        assert_eq!(buf.since(3).unwrap(), vec![]);
        // Beyond the newest: nothing, not an error.
        assert_eq!(buf.since(9).unwrap(), vec![]);
        buf.acknowledge(3);
        assert!(buf.is_empty());
        assert_eq!(buf.since(3).unwrap(), vec![]);
        assert_eq!(buf.since(1), Err(Gap { oldest_kept: 4 }));
    }

    #[test]
    fn a_full_buffer_refuses_more_until_acknowledged() {
        let mut buf = SeqBuffer::new(2);
        buf.push('a').unwrap();
        buf.push('b').unwrap();
        assert_eq!(buf.push('c'), Err(Overflow));
        buf.acknowledge(1);
        assert_eq!(buf.push('c'), Ok(3));
        assert_eq!(buf.last_seq(), 3);
    }

    #[test]
    fn a_resuming_client_is_owed_what_came_after_its_count_if_still_kept() {
        let mut buf = SeqBuffer::new(100);
        for i in 0..10 {
            buf.push(i).unwrap();
        }
        buf.trim_delivered(10, 4);
        assert_eq!(buf.owed_after(10), Ok(0));
        assert_eq!(buf.owed_after(6), Ok(4));
        assert_eq!(buf.owed_after(5), Err(Gap { oldest_kept: 7 }));
        assert_eq!(buf.owed_after(11), Err(Gap { oldest_kept: 7 }));
        let empty: SeqBuffer<u8> = SeqBuffer::new(4);
        assert_eq!(empty.owed_after(0), Ok(0));
    }

    #[test]
    fn trimming_keeps_the_newest_delivered_and_everything_undelivered() {
        let mut buf = SeqBuffer::new(100);
        for i in 0..10 {
            buf.push(i).unwrap();
        }
        buf.trim_delivered(8, 3);
        assert_eq!(
            buf.since(5)
                .unwrap()
                .iter()
                .map(|(s, _)| *s)
                .collect::<Vec<_>>(),
            [6, 7, 8, 9, 10]
        );
        assert!(buf.since(4).is_err());
        buf.trim_delivered(10, 0);
        assert!(buf.is_empty());
        assert_eq!(buf.since(10).unwrap(), vec![]);
    }

    proptest::proptest! {
        /// Whatever numbers a client sends, the buffer answers without
        /// overflowing, and never hands out a message the client said it has.
        #[test]
        fn any_client_number_is_answered(
            pushed in 0usize..20,
            acknowledged in proptest::prelude::any::<u64>(),
            asked in proptest::prelude::any::<u64>(),
        ) {
            let mut buf = SeqBuffer::new(32);
            for i in 0..pushed {
                buf.push(i).unwrap();
            }
            buf.acknowledge(acknowledged);
            buf.trim_delivered(asked, 4);
            if let Ok(messages) = buf.since(asked) {
                proptest::prop_assert!(messages.iter().all(|(seq, _)| *seq > asked));
            }
            let _ = buf.owed_after(asked);
            let _ = buf.get(asked);
        }
    }
}
