//! One SFU subscriber's subscribe connection: the webrtcbin the server
//! offers on, the forwards that feed its m-lines, and the m-lines of
//! publishers who left.
//!
//! A departed publisher's m-lines go inactive and stay: webrtcbin 1.22
//! refuses to take an inactive m-line back into use ("transceiver direction
//! changes are not implemented", on the offerer applying the answer and on
//! a webrtcbin answerer alike) and cannot stop a transceiver to free it. So
//! once the ended m-lines are at least `RENEW_AFTER_ENDED` and as many as
//! the live ones, the router gives the subscriber a fresh subscription
//! (sfu.rs): a new webrtcbin with the current tracks only, whose first offer
//! tells the client to answer it on a new peer connection, while the old
//! one goes on forwarding until the new one is connected. A subscriber's
//! SDP therefore stays within about twice what it needs, however many
//! publishers come and go.

use crate::ids::ParticipantId;
use crate::media::backend::MediaOutput;
use crate::media::events::MediaEvent;
use crate::media::forward::ForwardGate;
use crate::media::members::{self, Owners};
use crate::media::peer::{Peer, Role};
use crate::media::sdp::{Direction, MID_EXTENSION, MediaKind, OfferSummary, TrackLabel};
use crate::media::webrtc::{self, WebrtcSettings};
use crate::protocol::PeerConnection;
use anyhow::Result;
use gst::prelude::*;
use gst_webrtc::{WebRTCRTPTransceiver, WebRTCRTPTransceiverDirection};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::mpsc::UnboundedSender;

/// Ended m-lines a subscription carries before it may be renewed (four
/// departed publishers' audio and video): fewer are not worth a new
/// ICE and DTLS handshake.
pub const RENEW_AFTER_ENDED: usize = 8;

/// One publisher's track going to one subscriber.
pub struct Forward {
    pub publisher: ParticipantId,
    pub kind: MediaKind,
    /// Its m-line on the subscription.
    pub mline: u32,
    /// The publisher's SSRC, from the caps of the published track.
    pub ssrc: Option<u32>,
    pub tee_pad: gst::Pad,
    /// Between the publisher's tee and the subscriber's webrtcbin: drops
    /// until negotiated and connected, rewrites payload types, writes the
    /// MID header extension, keeps refusals here.
    pub gate: ForwardGate,
    pub transceiver: WebRTCRTPTransceiver,
    /// Whether the outstanding (or last) subscribe offer has this track:
    /// the answer to it opens the gate.
    pub offered: bool,
    /// Its m-line's a=mid in that offer.
    pub mid: Option<String>,
}

impl Forward {
    pub fn label(&self) -> TrackLabel {
        TrackLabel {
            mline: self.mline,
            stream: self.publisher.to_string(),
            track: format!("{}-{}", self.publisher, self.kind.name()),
            ssrc: self.ssrc,
        }
    }
}

pub struct Subscription {
    /// The server offers; the client answers.
    pub peer: Peer,
    /// 0 for a subscriber's first subscription, then one more for each
    /// that replaced the one before.
    pub generation: u32,
    /// Whether the connection is up (ICE and DTLS): until then the gates
    /// to it drop what they get.
    pub connected: Arc<AtomicBool>,
    pub forwards: Vec<Forward>,
    /// Inactive m-lines of publishers who left, still labelled with whose
    /// they were.
    pub ended: Vec<TrackLabel>,
    /// m-lines made so far; each new forward gets the next one.
    pub next_mline: u32,
    /// How many m-lines the outstanding offer has: its answer must have as
    /// many (forwards added since wait for the next offer).
    pub offered_mlines: usize,
    /// The answer being applied, read.
    pub pending_answer: Option<OfferSummary>,
    /// Offers sent on this connection so far.
    pub offers_sent: u32,
    /// The server's candidates gathered before the first offer went out:
    /// sent after it, when the client has a connection to add them to.
    pub held_candidates: Vec<MediaOutput>,
}

impl Subscription {
    /// A new subscribe webrtcbin for `subscriber`, in the pipeline and
    /// owned by them; the caller starts it.
    pub fn new(
        pipeline: &gst::Pipeline,
        owners: &Owners,
        settings: &WebrtcSettings,
        subscriber: &ParticipantId,
        generation: u32,
        events: &UnboundedSender<MediaEvent>,
    ) -> Result<Subscription> {
        let name = match generation {
            0 => format!("{subscriber}/subscribe"),
            n => format!("{subscriber}/subscribe-{n}"),
        };
        let peer = Peer::new(
            &name,
            settings,
            subscriber,
            PeerConnection::Subscribe,
            Role::Offerer,
            events,
        )?;
        webrtc::send_without_clock_waits(peer.element());
        let connected = Arc::new(AtomicBool::new(false));
        let up = connected.clone();
        peer.element()
            .connect_notify(Some("connection-state"), move |webrtc, _| {
                up.store(webrtc::is_connected(webrtc), Ordering::Relaxed);
            });
        // The subscribe connection only sends; anything it receives is dropped.
        let pad_owners = owners.clone();
        let owner = subscriber.clone();
        peer.element().connect_pad_added(move |webrtc, pad| {
            if pad.direction() == gst::PadDirection::Src {
                members::discard_pad(webrtc, pad, Some((&pad_owners, &owner)));
            }
        });
        owners.add(
            pipeline.upcast_ref(),
            subscriber,
            std::slice::from_ref(peer.element()),
        )?;
        Ok(Subscription {
            peer,
            generation,
            connected,
            forwards: Vec::new(),
            ended: Vec::new(),
            next_mline: 0,
            offered_mlines: 0,
            pending_answer: None,
            offers_sent: 0,
            held_candidates: Vec::new(),
        })
    }

    /// The name of the gate from `publisher`'s `kind` track on this
    /// subscription (a replaced one's gates are still there meanwhile).
    pub fn gate_name(
        &self,
        subscriber: &ParticipantId,
        publisher: &ParticipantId,
        kind: MediaKind,
    ) -> String {
        let track = format!("{subscriber}/from-{publisher}-{}", kind.name());
        match self.generation {
            0 => track,
            n => format!("{track}-{n}"),
        }
    }

    /// Whether the m-lines of publishers who left have piled up enough for
    /// a fresh subscription to be worth its handshake.
    pub fn worn(&self) -> bool {
        self.ended.len() >= RENEW_AFTER_ENDED.max(self.forwards.len())
    }

    /// Whether an offer made now is this connection's first on a
    /// subscriber that had one before: the client answers it on a new peer
    /// connection, in place of the old.
    pub fn opens_new_connection(&self) -> bool {
        self.generation > 0 && self.offers_sent == 0
    }

    /// Whether no offer is being made, waiting for its answer or having
    /// its answer applied.
    pub fn settled(&self) -> bool {
        !self.peer.negotiating()
    }

    /// An offer went out: which forwards it carries are those whose m-line
    /// it sends on (one linked while the offer was being made may have
    /// missed it, and waits for the next offer).
    pub fn offered(&mut self, offer: Option<&OfferSummary>, mlines: usize) {
        self.offers_sent += 1;
        self.offered_mlines = mlines;
        let Some(offer) = offer else {
            return;
        };
        for forward in &mut self.forwards {
            if let Some(line) = offer.media.get(forward.mline as usize)
                && line.direction == Direction::SendOnly
            {
                forward.offered = true;
                forward.mid = line.mid.clone();
            }
        }
    }

    /// The labels of every m-line, live and ended: the stream id of each is
    /// its publisher's id.
    pub fn labels(&self) -> Vec<TrackLabel> {
        self.forwards
            .iter()
            .map(Forward::label)
            .chain(self.ended.iter().cloned())
            .collect()
    }

    /// The forwards whose m-line the subscriber's answer refused (port 0).
    pub fn take_refused(&mut self, answer: &OfferSummary) -> Vec<Forward> {
        let (refused, kept): (Vec<Forward>, Vec<Forward>) = std::mem::take(&mut self.forwards)
            .into_iter()
            .partition(|f| {
                f.offered
                    && answer
                        .media
                        .get(f.mline as usize)
                        .is_some_and(|line| line.rejected)
            });
        self.forwards = kept;
        refused
    }

    /// The subscriber answered: every forward its offer carried opens, at
    /// the payload type the answer chose (`default_pt` of its kind if it
    /// says none) and with the MID header extension where the answer took
    /// it.
    pub fn open_answered(&self, answer: &OfferSummary, default_pt: fn(MediaKind) -> u8) {
        for forward in self.forwards.iter().filter(|f| f.offered) {
            let Some(line) = answer.media.get(forward.mline as usize) else {
                continue;
            };
            let pt = line.payload_type.unwrap_or(default_pt(forward.kind));
            let mid_extension = line
                .extmap_id(MID_EXTENSION)
                .zip(forward.mid.clone())
                .map(|(id, mid)| (id, mid.into_bytes()));
            forward.gate.state.set_negotiated(pt, mid_extension);
        }
    }

    /// The forwards from `publisher`, taken out.
    pub fn take_from(&mut self, publisher: &ParticipantId) -> Vec<Forward> {
        let (gone, kept): (Vec<Forward>, Vec<Forward>) = std::mem::take(&mut self.forwards)
            .into_iter()
            .partition(|f| &f.publisher == publisher);
        self.forwards = kept;
        gone
    }

    /// A forward that ends (its publisher left, or the subscriber refused
    /// it): it leaves its publisher's tee, its m-line goes inactive and
    /// keeps its label; its gate leaves the pipeline and is returned, to be
    /// stopped off the room's task.
    pub fn retire(
        &mut self,
        forward: Forward,
        owners: &Owners,
        pipeline: &gst::Pipeline,
    ) -> gst::Element {
        forward
            .transceiver
            .set_direction(WebRTCRTPTransceiverDirection::Inactive);
        self.ended.push(forward.label());
        unlink(forward, owners, pipeline)
    }

    /// Ends the whole connection: its forwards leave their publishers'
    /// tees, its gates and its webrtcbin leave the pipeline, and are
    /// returned to be stopped off the room's task. Its events are no longer
    /// posted: what the old connection does from now on is not the
    /// subscriber's state.
    pub fn close(self, owners: &Owners, pipeline: &gst::Pipeline) -> Vec<gst::Element> {
        self.peer.mute();
        let mut removed: Vec<gst::Element> = self
            .forwards
            .into_iter()
            .map(|forward| unlink(forward, owners, pipeline))
            .collect();
        let webrtc = self.peer.element().clone();
        owners.forget(&webrtc);
        let _ = pipeline.remove(&webrtc);
        removed.push(webrtc);
        members::sort_for_stopping(&mut removed);
        removed
    }
}

/// Takes a forward off its publisher's tee and its gate out of the
/// pipeline; returns the gate.
fn unlink(forward: Forward, owners: &Owners, pipeline: &gst::Pipeline) -> gst::Element {
    if let Some(tee) = forward.tee_pad.parent_element() {
        tee.release_request_pad(&forward.tee_pad);
    }
    owners.forget(&forward.gate.element);
    let _ = pipeline.remove(&forward.gate.element);
    forward.gate.element
}
