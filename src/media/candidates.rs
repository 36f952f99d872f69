//! A connection's remote ICE candidates: webrtcbin takes them only after the
//! remote description is set, so earlier ones wait here. Pure: no GStreamer.

use crate::protocol::{ErrorCode, ProtocolError};

/// Most candidates held for one connection before its remote description.
pub const MAX_EARLY_CANDIDATES: usize = 64;

/// (m-line index, candidate line)
pub type Candidate = (u32, String);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteCandidates {
    /// No remote description yet: candidates wait.
    Waiting(Vec<Candidate>),
    /// The remote description is set: candidates go straight to webrtcbin.
    Ready,
}

impl Default for RemoteCandidates {
    fn default() -> Self {
        RemoteCandidates::Waiting(Vec::new())
    }
}

impl RemoteCandidates {
    /// Takes a candidate: returns it when it can be applied now, keeps it
    /// otherwise, refuses it when too many are waiting.
    pub fn add(
        &mut self,
        mline: u32,
        candidate: String,
    ) -> Result<Option<Candidate>, ProtocolError> {
        match self {
            RemoteCandidates::Ready => Ok(Some((mline, candidate))),
            RemoteCandidates::Waiting(early) if early.len() >= MAX_EARLY_CANDIDATES => {
                Err(ProtocolError::new(
                    ErrorCode::BadState,
                    format!(
                        "Too many ICE candidates ({MAX_EARLY_CANDIDATES}) before the remote description."
                    ),
                ))
            }
            RemoteCandidates::Waiting(early) => {
                early.push((mline, candidate));
                Ok(None)
            }
        }
    }

    /// The remote description is set: returns the candidates to apply now.
    pub fn ready(&mut self) -> Vec<Candidate> {
        match std::mem::replace(self, RemoteCandidates::Ready) {
            RemoteCandidates::Waiting(early) => early,
            RemoteCandidates::Ready => Vec::new(),
        }
    }

    pub fn is_ready(&self) -> bool {
        matches!(self, RemoteCandidates::Ready)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn early_candidates_wait_and_are_released_once_in_order() {
        let mut c = RemoteCandidates::default();
        assert_eq!(c.add(0, "a".into()), Ok(None));
        assert_eq!(c.add(1, "b".into()), Ok(None));
        assert!(!c.is_ready());
        assert_eq!(c.ready(), vec![(0, "a".to_owned()), (1, "b".to_owned())]);
        assert!(c.is_ready());
        assert_eq!(c.ready(), Vec::new());
        assert_eq!(c.add(2, "c".into()), Ok(Some((2, "c".to_owned()))));
    }

    #[test]
    fn too_many_early_candidates_are_refused() {
        let mut c = RemoteCandidates::default();
        for i in 0..MAX_EARLY_CANDIDATES {
            c.add(0, format!("{i}")).unwrap();
        }
        assert_eq!(c.add(0, "x".into()).unwrap_err().code, ErrorCode::BadState);
        assert_eq!(c.ready().len(), MAX_EARLY_CANDIDATES);
    }
}
