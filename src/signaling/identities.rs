//! Who is in which room under which token identity, so that one token
//! cannot fill a room: with a cap of N connections per identity, the N+1th
//! join takes over from the oldest, which is told (`replaced`) and let go.
//! Taking over, not refusing: a person who reloads the page or moves to
//! another device is the newest join, and must not wait for the old
//! session's resume grace to run out.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

type Key = (String, String);

#[derive(Default)]
struct Claims {
    next: u64,
    /// Oldest first.
    by_identity: HashMap<Key, VecDeque<(u64, oneshot::Sender<()>)>>,
}

#[derive(Default, Clone)]
pub struct IdentityTable {
    claims: Arc<Mutex<Claims>>,
}

/// A session's place under its identity; given up when dropped.
pub struct IdentityClaim {
    table: IdentityTable,
    key: Key,
    number: u64,
    /// Fires when a newer join takes over.
    pub replaced: oneshot::Receiver<()>,
}

impl IdentityTable {
    /// Claims a place for `identity` in `room`; if that makes more than
    /// `cap`, the oldest claims are told they were replaced.
    pub fn claim(&self, room: &str, identity: &str, cap: usize) -> IdentityClaim {
        let key = (room.to_owned(), identity.to_owned());
        let (tell, replaced) = oneshot::channel();
        let mut claims = self.claims.lock().unwrap_or_else(|e| e.into_inner());
        claims.next += 1;
        let number = claims.next;
        let held = claims.by_identity.entry(key.clone()).or_default();
        held.push_back((number, tell));
        while held.len() > cap.max(1) {
            if let Some((_, oldest)) = held.pop_front() {
                let _ = oldest.send(());
            }
        }
        IdentityClaim {
            table: self.clone(),
            key,
            number,
            replaced,
        }
    }

    /// How many sessions hold a place for `identity` in `room`.
    pub fn held(&self, room: &str, identity: &str) -> usize {
        let claims = self.claims.lock().unwrap_or_else(|e| e.into_inner());
        claims
            .by_identity
            .get(&(room.to_owned(), identity.to_owned()))
            .map_or(0, VecDeque::len)
    }
}

impl Drop for IdentityClaim {
    fn drop(&mut self) {
        let mut claims = self.table.claims.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(held) = claims.by_identity.get_mut(&self.key) {
            held.retain(|(n, _)| *n != self.number);
            if held.is_empty() {
                claims.by_identity.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newer_join_takes_over_from_the_oldest() {
        let table = IdentityTable::default();
        let mut first = table.claim("r", "alice", 1);
        let mut second = table.claim("r", "alice", 1);
        assert!(first.replaced.try_recv().is_ok(), "the first was told");
        assert!(second.replaced.try_recv().is_err());
        assert_eq!(table.held("r", "alice"), 1);
        // Another room or another identity is someone else.
        let _other_room = table.claim("s", "alice", 1);
        let _bob = table.claim("r", "bob", 1);
        assert!(second.replaced.try_recv().is_err());
        drop(first);
        assert_eq!(
            table.held("r", "alice"),
            1,
            "the replaced one had no place left"
        );
        drop(second);
        assert_eq!(table.held("r", "alice"), 0);
    }

    #[test]
    fn a_cap_of_two_keeps_two() {
        let table = IdentityTable::default();
        let mut a = table.claim("r", "x", 2);
        let mut b = table.claim("r", "x", 2);
        assert!(a.replaced.try_recv().is_err() && b.replaced.try_recv().is_err());
        let _c = table.claim("r", "x", 2);
        assert!(a.replaced.try_recv().is_ok());
        assert!(b.replaced.try_recv().is_err());
        assert_eq!(table.held("r", "x"), 2);
    }
}
