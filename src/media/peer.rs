//! One peer connection: a webrtcbin and everything about negotiating it.
//!
//! A `Peer` is either the answerer (the client's publish connection: the
//! client offers) or the offerer (the SFU's subscribe connection: the server
//! offers, one offer in flight, changes coalesced). Each step that waits on
//! webrtcbin (set a description, create an offer or answer) runs in a task
//! of its own and comes back as a `MediaEvent::Negotiated`, so a slow or
//! stuck negotiation (webrtcbin's promises time out after 10 s) holds up no
//! one: the room goes on handling everything else meanwhile. The room's
//! media code hands the event back to `step_done`, which moves the peer on
//! (remote candidates held until the remote description is set are applied
//! then; an offer that came in meanwhile is taken up; a change made while
//! an offer was out is offered next).

use crate::ids::ParticipantId;
use crate::media::candidates::RemoteCandidates;
use crate::media::events::{MediaEvent, watch_connection};
use crate::media::negotiation::{NextStep, OfferNegotiation};
use crate::media::webrtc::{self, WebrtcSettings};
use crate::protocol::{ErrorCode, PeerConnection, ProtocolError};
use anyhow::Result;
use gst_webrtc::{WebRTCSDPType, WebRTCSessionDescription};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::mpsc::UnboundedSender;

/// Which side of offer/answer the server is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The client offers (publish connections).
    Answerer,
    /// The server offers (subscribe connections).
    Offerer,
}

/// A negotiation step that came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Answerer: the client's offer is set. The media code attaches what it
    /// sends and receives, then calls `answer`.
    OfferApplied,
    /// Answerer: the answer is made and set; it goes to the client.
    Answered(String),
    /// Offerer: an offer is made and set; it goes to the client.
    Offered(String),
    /// Offerer: the client's answer is set.
    AnswerApplied,
}

/// A negotiation step that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepFailure {
    /// webrtcbin refused what the client sent (its fault: `bad-sdp`, and the
    /// connection stays as it was); otherwise the server failed.
    pub refused: bool,
    pub message: String,
}

impl StepFailure {
    /// What the client is told.
    pub fn to_error(&self) -> ProtocolError {
        if self.refused {
            ProtocolError::new(ErrorCode::BadSdp, format!("{} was refused.", self.message))
        } else {
            ProtocolError::new(
                ErrorCode::MediaFailed,
                format!(
                    "Negotiating your media failed ({}). You have been removed from the room.",
                    self.message
                ),
            )
        }
    }
}

/// Where an answerer is.
#[derive(Debug)]
enum AnswerStep {
    Idle,
    /// Setting the client's offer.
    Applying,
    /// The offer is set; waiting for the media code to call `answer`.
    OfferSet,
    /// Making and setting the answer.
    Answering,
}

pub struct Peer {
    participant: ParticipantId,
    pc: PeerConnection,
    webrtc: gst::Element,
    settings: WebrtcSettings,
    events: UnboundedSender<MediaEvent>,
    candidates: RemoteCandidates,
    role: Role,
    answering: AnswerStep,
    /// Answerer: an offer that came during a negotiation (the newest wins).
    queued_offer: Option<WebRTCSessionDescription>,
    /// Offerer: one offer out at a time, later changes coalesced.
    offers: OfferNegotiation,
    /// Offerer: applying the client's answer.
    applying_answer: bool,
    /// Cleared when the peer is replaced: nothing it does is posted after.
    live: Arc<AtomicBool>,
}

impl Peer {
    /// A new webrtcbin named `name` for `participant`'s `pc` connection.
    /// Its candidates and connection state are posted as events.
    pub fn new(
        name: &str,
        settings: &WebrtcSettings,
        participant: &ParticipantId,
        pc: PeerConnection,
        role: Role,
        events: &UnboundedSender<MediaEvent>,
    ) -> Result<Peer> {
        let webrtc = webrtc::make_webrtcbin(name, settings)?;
        let live = Arc::new(AtomicBool::new(true));
        watch_connection(&webrtc, events, participant, pc, &live);
        Ok(Peer {
            participant: participant.clone(),
            pc,
            webrtc,
            settings: settings.clone(),
            events: events.clone(),
            candidates: RemoteCandidates::default(),
            role,
            answering: AnswerStep::Idle,
            queued_offer: None,
            offers: OfferNegotiation::default(),
            applying_answer: false,
            live,
        })
    }

    pub fn element(&self) -> &gst::Element {
        &self.webrtc
    }

    /// Whether a remote description was ever set (the connection exists
    /// for the client).
    pub fn has_remote(&self) -> bool {
        self.candidates.is_ready()
    }

    /// Answerer: takes the client's offer (already checked); it is applied
    /// now, or after the negotiation under way.
    pub fn receive_offer(&mut self, sdp: &str) -> Result<(), ProtocolError> {
        if self.role != Role::Answerer {
            return Err(ProtocolError::new(
                ErrorCode::BadState,
                "The server makes the offers on this connection.",
            ));
        }
        let description = webrtc::parse_description(WebRTCSDPType::Offer, sdp).map_err(|e| {
            ProtocolError::new(
                ErrorCode::BadSdp,
                format!("The offer is not valid SDP: {e:#}."),
            )
        })?;
        match self.answering {
            AnswerStep::Idle => self.apply_offer(description),
            _ => self.queued_offer = Some(description),
        }
        Ok(())
    }

    /// Answerer: the offer is set and the media attached; answer it.
    pub fn answer(&mut self) {
        self.answering = AnswerStep::Answering;
        let webrtc = self.webrtc.clone();
        let settings = self.settings.clone();
        self.run(async move {
            let answer = webrtc::create_answer(&webrtc, &settings)
                .await
                .map_err(|e| server_failure(&e))?;
            webrtc::set_local_description(&webrtc, &answer)
                .await
                .map_err(|e| server_failure(&e))?;
            Ok(Step::Answered(webrtc::description_text(&answer)))
        });
    }

    /// Offerer: what the connection carries changed; an offer goes out now,
    /// or after the answer to the one outstanding.
    pub fn changed(&mut self) {
        if self.offers.changed() == NextStep::SendOffer {
            self.make_offer();
        }
    }

    /// Whether a step is under way or an offer waits for its answer.
    pub fn negotiating(&self) -> bool {
        self.offers.awaiting_answer()
            || self.applying_answer
            || !matches!(self.answering, AnswerStep::Idle)
    }

    /// From now on nothing this peer's webrtcbin does is posted as an
    /// event: it is on its way out, and another peer of the same
    /// participant and connection stands for them.
    pub fn mute(&self) {
        self.live.store(false, Ordering::Relaxed);
    }

    /// Offerer: whether an offer is out waiting for its answer.
    pub fn awaiting_answer(&self) -> bool {
        self.offers.awaiting_answer() && !self.applying_answer
    }

    /// Offerer: takes the client's answer (already checked) to the offer
    /// outstanding.
    pub fn receive_answer(&mut self, sdp: &str) -> Result<(), ProtocolError> {
        if !self.awaiting_answer() {
            return Err(ProtocolError::new(
                ErrorCode::BadState,
                "There is no subscribe offer outstanding to answer.",
            ));
        }
        let description = webrtc::parse_description(WebRTCSDPType::Answer, sdp).map_err(|e| {
            ProtocolError::new(
                ErrorCode::BadSdp,
                format!("The answer is not valid SDP: {e:#}."),
            )
        })?;
        self.applying_answer = true;
        let webrtc = self.webrtc.clone();
        self.run(async move {
            webrtc::set_remote_description(&webrtc, &description)
                .await
                .map_err(|e| refusal("The answer", &e))?;
            Ok(Step::AnswerApplied)
        });
        Ok(())
    }

    /// A remote candidate: applied once the remote description is set.
    pub fn add_candidate(&mut self, mline: u32, candidate: String) -> Result<(), ProtocolError> {
        if let Some((mline, candidate)) = self.candidates.add(mline, candidate)? {
            webrtc::add_ice_candidate(&self.webrtc, mline, &candidate);
        }
        Ok(())
    }

    /// A step this peer started came back: moves the peer on and returns
    /// the step for the media code to act on.
    pub fn step_done(&mut self, result: Result<Step, StepFailure>) -> Result<Step, StepFailure> {
        match &result {
            Ok(Step::OfferApplied) => {
                self.answering = AnswerStep::OfferSet;
                self.remote_set();
            }
            Ok(Step::Answered(_)) => {
                self.answering = AnswerStep::Idle;
                if let Some(offer) = self.queued_offer.take() {
                    self.apply_offer(offer);
                }
            }
            Ok(Step::Offered(_)) => {}
            Ok(Step::AnswerApplied) => {
                self.applying_answer = false;
                self.remote_set();
                if self.offers.answered() == Ok(NextStep::SendOffer) {
                    self.make_offer();
                }
            }
            Err(_) => {
                self.answering = AnswerStep::Idle;
                self.applying_answer = false;
                self.offers.failed();
                // A refused offer leaves the connection as it was; one that
                // came meanwhile is tried in its turn.
                if let Some(offer) = self.queued_offer.take() {
                    self.apply_offer(offer);
                }
            }
        }
        result
    }

    fn apply_offer(&mut self, description: WebRTCSessionDescription) {
        self.answering = AnswerStep::Applying;
        let webrtc = self.webrtc.clone();
        self.run(async move {
            webrtc::set_remote_description(&webrtc, &description)
                .await
                .map_err(|e| refusal("The offer", &e))?;
            Ok(Step::OfferApplied)
        });
    }

    fn make_offer(&mut self) {
        let webrtc = self.webrtc.clone();
        let settings = self.settings.clone();
        self.run(async move {
            let offer = create_offer_once_caps_are_set(&webrtc, &settings)
                .await
                .map_err(|e| server_failure(&e))?;
            webrtc::set_local_description(&webrtc, &offer)
                .await
                .map_err(|e| server_failure(&e))?;
            Ok(Step::Offered(webrtc::description_text(&offer)))
        });
    }

    /// The remote description is set: candidates held until now go in.
    fn remote_set(&mut self) {
        for (mline, candidate) in self.candidates.ready() {
            webrtc::add_ice_candidate(&self.webrtc, mline, &candidate);
        }
    }

    /// Runs one step off the room's task; its outcome comes back as an event.
    fn run(
        &self,
        step: impl std::future::Future<Output = Result<Step, StepFailure>> + Send + 'static,
    ) {
        let events = self.events.clone();
        let participant = self.participant.clone();
        let pc = self.pc;
        let live = self.live.clone();
        tokio::spawn(async move {
            let result = step.await;
            if !live.load(Ordering::Relaxed) {
                return;
            }
            let _ = events.send(MediaEvent::Negotiated {
                participant,
                pc,
                result,
            });
        });
    }
}

/// How often, and how far apart, an offer is made again while a new
/// transceiver has no codec preferences yet.
const OFFER_RETRIES: u32 = 5;
const OFFER_RETRY_DELAY: std::time::Duration = std::time::Duration::from_millis(20);

/// Creates an offer, again if webrtcbin 1.22 refused it because a
/// transceiver it has just made for a requested sink pad has no caps yet
/// ("... a transceiver with a locked mline for this line which doesn't have
/// caps"). The room task gives it its codec preferences right after
/// requesting the pad, but this runs off the room's task and can come in
/// between; the SFU removed a late joiner for it in 2 of 5 suite runs.
async fn create_offer_once_caps_are_set(
    webrtc: &gst::Element,
    settings: &WebrtcSettings,
) -> Result<WebRTCSessionDescription> {
    let mut attempt = 0;
    loop {
        match webrtc::create_offer(webrtc, settings).await {
            Err(e) if attempt < OFFER_RETRIES && format!("{e:#}").contains("locked mline") => {
                attempt += 1;
                tracing::debug!("offer made before a transceiver had its caps ({e:#}); again");
                tokio::time::sleep(OFFER_RETRY_DELAY).await;
            }
            made => return made,
        }
    }
}

fn refusal(what: &str, e: &anyhow::Error) -> StepFailure {
    StepFailure {
        refused: true,
        message: format!("{what} ({e:#})"),
    }
}

fn server_failure(e: &anyhow::Error) -> StepFailure {
    StepFailure {
        refused: false,
        message: format!("{e:#}"),
    }
}
