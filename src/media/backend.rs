//! What a room's media is to the room (room/core.rs drives it): one trait,
//! three implementations. The MCU decodes, composites, mixes and encodes
//! (mcu.rs); the SFU forwards (sfu.rs); a mesh room has no media at all
//! (`NoMedia`): its peers send to each other and the room relays their
//! signaling. The room hands signals in and takes outputs out; what happens
//! on GStreamer's threads comes in as `MediaEvent`s.

use crate::ids::ParticipantId;
use crate::media::events::MediaEvent;
use crate::media::layout::Placement;
use crate::media::program::Feeds;
use crate::media::sdp::CheckedOffer;
use crate::protocol::{
    ErrorCode, IceCandidate, PeerConnection, ProtocolError, Quality, ServerMessage,
};
use gst_webrtc::WebRTCPeerConnectionState;

/// A client's signaling for the media of its room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaSignal {
    /// An offer on the publish connection, read and checked.
    PublishOffer(CheckedOffer),
    /// An answer to the server's offer on the subscribe connection.
    SubscribeAnswer(String),
    /// A remote ICE candidate for one of its connections.
    Candidate {
        pc: PeerConnection,
        mline: u32,
        candidate: String,
    },
    /// The best encoding of the composite the client wants (MCU rooms).
    Quality(Quality),
}

/// The refusal of `quality` outside an MCU room (the room refuses it
/// before an SFU's media would see it).
pub fn quality_needs_mcu() -> ProtocolError {
    ProtocolError::new(
        ErrorCode::BadState,
        "quality applies to MCU rooms: in SFU and mesh rooms each stream is sent as its sender encoded it.",
    )
}

/// What the media has for the room to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaOutput {
    /// A message for one participant: an answer, an offer, a candidate, an
    /// error about what it sent.
    Send(ParticipantId, ServerMessage),
    /// A participant's media failed: the room removes it, telling it this.
    Failed(ParticipantId, ProtocolError),
}

/// Which encoding of the composite an MCU receiver gets.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ReceiverRung {
    pub participant: String,
    /// The rung it receives, as `--ladder` writes it (`640x360@500`);
    /// none before its first picture.
    pub rung: Option<String>,
    /// The rung it is moving to, until that rung's next keyframe.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub moving_to: Option<String>,
    /// The best it asked for.
    pub quality: Quality,
    /// What its link was last seen to carry, in kbit/s, while that holds
    /// it below the rung it asked for.
    pub estimated_kbps: Option<u32>,
    /// Why it was last moved to another rung.
    pub last_switch: Option<String>,
    /// From its latest receiver report: the share of the video lost, the
    /// round trip, and what the server sent it (video, kbit/s).
    pub loss_percent: Option<f64>,
    pub rtt_ms: Option<u64>,
    pub sent_kbps: Option<u32>,
}

pub trait RoomMedia: Send {
    /// Gives a new participant everything it needs before it negotiates;
    /// `name` is what captions write on its tile.
    fn add_participant(&mut self, id: &ParticipantId, name: &str) -> anyhow::Result<()>;
    /// Takes a participant out of the media (its elements are stopped off
    /// the room's task).
    fn remove_participant(&mut self, id: &ParticipantId);
    /// A participant's signaling; errors are its own (bad SDP, bad state).
    fn signal(&mut self, id: &ParticipantId, signal: MediaSignal) -> Result<(), ProtocolError>;
    /// Something GStreamer's threads posted.
    fn on_event(&mut self, event: MediaEvent);
    /// Called every room tick (keyframe requests held back, due offers).
    fn tick(&mut self);
    /// What the media has for the room since it was last asked.
    fn take_outputs(&mut self) -> Vec<MediaOutput>;
    /// The room's pipeline (none for a mesh room).
    fn pipeline(&self) -> Option<&gst::Pipeline>;
    /// The participant a pipeline element belongs to.
    fn owner_of(&self, source: &gst::Object) -> Option<ParticipantId>;
    /// What recordings tap; built if no recording runs yet.
    fn recording_feeds(&mut self) -> anyhow::Result<Feeds>;
    /// The last recording ended: what fed recordings goes.
    fn close_recording_feeds(&mut self);
    /// Moves the composite's tiles: each participant in `placements` where
    /// it says, everyone else off the composite (MCU rooms).
    fn arrange(&mut self, _placements: &[Placement<ParticipantId>]) {}
    /// Mixes exactly these participants' voices (MCU rooms, top-k audio).
    fn mix(&mut self, _mixed: &[ParticipantId]) {}
    /// Whether the server writes names on the composite's tiles (MCU
    /// rooms; an SFU room's recordings always have them).
    fn show_captions(&mut self, _shown: bool) {}
    /// Video encoders of the call running now (the MCU's composite; not a
    /// recording's own).
    fn call_encoders_running(&self) -> usize {
        0
    }
    /// Each receiver's rung of the encode ladder (MCU rooms).
    fn receiver_rungs(&self) -> Vec<ReceiverRung> {
        Vec::new()
    }
    /// Participants' videos being decoded now (MCU rooms).
    fn videos_decoded(&self) -> usize {
        0
    }
    /// Participants' voices being decoded now (MCU rooms).
    fn audio_decoded(&self) -> usize {
        0
    }
}

/// A mesh room's media: none. Peers send to each other.
pub struct NoMedia;

impl RoomMedia for NoMedia {
    fn add_participant(&mut self, _: &ParticipantId, _: &str) -> anyhow::Result<()> {
        Ok(())
    }

    fn remove_participant(&mut self, _: &ParticipantId) {}

    fn signal(&mut self, _: &ParticipantId, _: MediaSignal) -> Result<(), ProtocolError> {
        Err(ProtocolError::new(
            ErrorCode::BadState,
            "A mesh room carries no media: signaling goes to a peer, named by \"to\".",
        ))
    }

    fn on_event(&mut self, _: MediaEvent) {}

    fn tick(&mut self) {}

    fn take_outputs(&mut self) -> Vec<MediaOutput> {
        Vec::new()
    }

    fn pipeline(&self) -> Option<&gst::Pipeline> {
        None
    }

    fn owner_of(&self, _: &gst::Object) -> Option<ParticipantId> {
        None
    }

    fn recording_feeds(&mut self) -> anyhow::Result<Feeds> {
        Err(anyhow::anyhow!("a mesh room has no media to record"))
    }

    fn close_recording_feeds(&mut self) {}
}

/// What every media does with an event about one connection: a local
/// candidate goes to its client; a failed connection removes its
/// participant. None for other events.
pub fn connection_output(event: &MediaEvent) -> Option<MediaOutput> {
    match event {
        MediaEvent::IceCandidate {
            participant,
            pc,
            mline,
            candidate,
        } => Some(MediaOutput::Send(
            participant.clone(),
            ServerMessage::Ice(IceCandidate {
                candidate: candidate.clone(),
                sdp_mline_index: *mline,
                sdp_mid: None,
                pc: *pc,
                to: None,
                from: None,
            }),
        )),
        MediaEvent::ConnectionState {
            participant,
            state: WebRTCPeerConnectionState::Failed,
            ..
        } => Some(MediaOutput::Failed(
            participant.clone(),
            ProtocolError::new(
                ErrorCode::ConnectionFailed,
                "Your media connection failed (ICE/DTLS); you have been removed from the room.",
            ),
        )),
        _ => None,
    }
}
