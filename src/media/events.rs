//! What GStreamer threads tell a room task. Callbacks only post these; the
//! room task acts on them.

use crate::ids::ParticipantId;
use crate::media::peer::{Step, StepFailure};
use crate::media::sdp::MediaKind;
use crate::protocol::PeerConnection;
use gst::prelude::*;
use gst_webrtc::WebRTCPeerConnectionState;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::mpsc::UnboundedSender;

#[derive(Debug)]
pub enum MediaEvent {
    /// A local ICE candidate to trickle to the participant.
    IceCandidate {
        participant: ParticipantId,
        pc: PeerConnection,
        mline: u32,
        candidate: String,
    },
    ConnectionState {
        participant: ParticipantId,
        pc: PeerConnection,
        state: WebRTCPeerConnectionState,
    },
    /// A participant's published track started arriving, with the caps of
    /// its RTP (codec and payload type as the publisher negotiated them).
    TrackPublished {
        participant: ParticipantId,
        kind: MediaKind,
        caps: gst::Caps,
    },
    /// An MCU receiver's first picture of the rung it was moving to passed
    /// (media/encode_ladder.rs).
    RungReached {
        participant: ParticipantId,
        rung: usize,
    },
    /// A negotiation step of one peer connection came back (media/peer.rs).
    Negotiated {
        participant: ParticipantId,
        pc: PeerConnection,
        result: Result<Step, StepFailure>,
    },
}

/// Posts a webrtcbin's local ICE candidates and connection-state changes as
/// events for the room task, while `live` is set.
pub fn watch_connection(
    webrtc: &gst::Element,
    events: &UnboundedSender<MediaEvent>,
    participant: &ParticipantId,
    pc: PeerConnection,
    live: &Arc<AtomicBool>,
) {
    let sender = events.clone();
    let who = participant.clone();
    let posting = live.clone();
    crate::media::webrtc::on_ice_candidate(webrtc, move |mline, candidate| {
        if !posting.load(Ordering::Relaxed) {
            return;
        }
        let _ = sender.send(MediaEvent::IceCandidate {
            participant: who.clone(),
            pc,
            mline,
            candidate,
        });
    });
    let sender = events.clone();
    let who = participant.clone();
    let posting = live.clone();
    webrtc.connect_notify(Some("connection-state"), move |webrtc, _| {
        if !posting.load(Ordering::Relaxed) {
            return;
        }
        let state = webrtc.property::<WebRTCPeerConnectionState>("connection-state");
        let _ = sender.send(MediaEvent::ConnectionState {
            participant: who.clone(),
            pc,
            state,
        });
    });
}
