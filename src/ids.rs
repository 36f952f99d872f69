//! Identifier newtypes shared by every layer. Depends on nothing.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// A participant's id: unique within this server process, and safe to use in
/// GStreamer element names (no '/').
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ParticipantId(String);

impl ParticipantId {
    /// A fresh id: "p" plus a process-wide counter plus a few random-ish bits,
    /// so ids are not reused across rooms while the process lives.
    pub fn fresh() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let salt = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        ParticipantId(format!("p{n}-{:04x}", salt & 0xffff))
    }

    /// An id read back from somewhere gridmix wrote it (element names).
    pub fn from_existing(s: &str) -> Self {
        ParticipantId(s.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ParticipantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A room's id, as the client named it (validated by `RoomId::parse`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomId(String);

pub const MAX_ID_LEN: usize = 64;

impl RoomId {
    /// Room ids are 1-64 characters of letters, digits, '-', '_' and '.'.
    pub fn parse(s: &str) -> Option<RoomId> {
        let ok = !s.is_empty()
            && s.len() <= MAX_ID_LEN
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        ok.then(|| RoomId(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RoomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_participant_ids_differ() {
        assert_ne!(ParticipantId::fresh(), ParticipantId::fresh());
        assert!(!ParticipantId::fresh().as_str().contains('/'));
    }

    #[test]
    fn room_ids_are_validated() {
        assert!(RoomId::parse("standup-2.b_c").is_some());
        for bad in ["", "a/b", "a b", "é", &"x".repeat(65)] {
            assert!(RoomId::parse(bad).is_none(), "{bad:?}");
        }
    }
}
