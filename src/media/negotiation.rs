//! Offer coalescing for a connection where the server is always the offerer
//! (the SFU subscribe connection). Pure: no GStreamer.
//!
//! Only one offer is in flight at a time. Changes (tracks added or removed)
//! that happen while an offer waits for its answer are remembered and become
//! one more offer once the answer arrives: no glare, no negotiation storms.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OfferState {
    /// Nothing outstanding, nothing to send.
    #[default]
    Stable,
    /// An offer was sent; `changed` records whether the tracks changed since.
    AwaitingAnswer { changed: bool },
}

/// What the caller should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep {
    /// Create and send an offer now.
    SendOffer,
    /// Nothing to do (an offer is outstanding, or all is up to date).
    Wait,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoOfferOutstanding;

#[derive(Debug, Clone, Default)]
pub struct OfferNegotiation {
    state: OfferState,
}

impl OfferNegotiation {
    pub fn state(&self) -> OfferState {
        self.state
    }

    /// The set of tracks changed.
    pub fn changed(&mut self) -> NextStep {
        match self.state {
            OfferState::Stable => {
                self.state = OfferState::AwaitingAnswer { changed: false };
                NextStep::SendOffer
            }
            OfferState::AwaitingAnswer { .. } => {
                self.state = OfferState::AwaitingAnswer { changed: true };
                NextStep::Wait
            }
        }
    }

    /// The answer to the outstanding offer arrived. An error when no offer
    /// was outstanding (the caller reports it to the client).
    pub fn answered(&mut self) -> Result<NextStep, NoOfferOutstanding> {
        match self.state {
            OfferState::Stable => Err(NoOfferOutstanding),
            OfferState::AwaitingAnswer { changed: false } => {
                self.state = OfferState::Stable;
                Ok(NextStep::Wait)
            }
            OfferState::AwaitingAnswer { changed: true } => {
                self.state = OfferState::AwaitingAnswer { changed: false };
                Ok(NextStep::SendOffer)
            }
        }
    }

    /// Creating or applying the offer failed: forget it so that the next
    /// change starts afresh.
    pub fn failed(&mut self) {
        self.state = OfferState::Stable;
    }

    pub fn awaiting_answer(&self) -> bool {
        matches!(self.state, OfferState::AwaitingAnswer { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_when_stable_sends_an_offer() {
        let mut n = OfferNegotiation::default();
        assert_eq!(n.changed(), NextStep::SendOffer);
        assert!(n.awaiting_answer());
        assert_eq!(n.answered(), Ok(NextStep::Wait));
        assert_eq!(n.state(), OfferState::Stable);
    }

    #[test]
    fn changes_during_an_offer_coalesce_into_one_more_offer() {
        let mut n = OfferNegotiation::default();
        assert_eq!(n.changed(), NextStep::SendOffer);
        for _ in 0..5 {
            assert_eq!(n.changed(), NextStep::Wait);
        }
        assert_eq!(n.answered(), Ok(NextStep::SendOffer));
        assert_eq!(n.answered(), Ok(NextStep::Wait));
        assert_eq!(n.state(), OfferState::Stable);
    }

    #[test]
    fn an_answer_without_an_offer_is_refused() {
        let mut n = OfferNegotiation::default();
        assert_eq!(n.answered(), Err(NoOfferOutstanding));
        n.changed();
        n.answered().unwrap();
        assert_eq!(n.answered(), Err(NoOfferOutstanding));
    }

    #[test]
    fn a_failure_resets_to_stable() {
        let mut n = OfferNegotiation::default();
        n.changed();
        n.changed();
        n.failed();
        assert_eq!(n.state(), OfferState::Stable);
        assert_eq!(n.changed(), NextStep::SendOffer);
    }
}
