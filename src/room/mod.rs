//! Rooms: one tokio task per room owns its media; everything else talks to it
//! through `RoomCommand`s on a bounded channel.

mod bus;
pub mod core;
mod creation_rate;
mod recording_control;
mod recordings;
pub mod registry;
mod task;

use crate::ids::{ParticipantId, RoomId};
use crate::media::mcu::McuSettings;
use crate::protocol::IceServer;
use crate::protocol::{ClientMessage, Mode, ProtocolError, ServerMessage};
use crate::recording::{Format, RecordingError, RecordingId, RecordingInfo};
use crate::turn::TurnSettings;
use std::path::PathBuf;
use tokio::sync::{mpsc, oneshot};

#[derive(Debug, Clone)]
pub struct RoomSettings {
    pub mcu: McuSettings,
    pub max_participants: usize,
    /// Most rooms open at once on this server.
    pub max_rooms: usize,
    /// Most rooms open at once that one client address opened.
    pub max_rooms_per_ip: usize,
    /// Most rooms one client address may open a minute.
    pub room_creations_per_ip: usize,
    /// Sent to clients in "joined", in RTCIceServer form.
    pub ice_servers: Vec<IceServer>,
    pub recording: RecordingSettings,
    /// A TURN server: each participant gets its own short-lived
    /// credentials in "joined".
    pub turn: Option<TurnSettings>,
}

#[derive(Debug, Clone)]
pub struct RecordingSettings {
    /// Where recordings are written (and served from, at /recordings/).
    pub dir: PathBuf,
    /// Record every room from its first participant to its last, in this format.
    pub auto: Option<Format>,
}

/// Where a room sends one participant's messages. Bounded: a client that
/// stops reading is removed rather than allowed to hold up the room.
pub type Outbox = mpsc::Sender<ServerMessage>;

pub const OUTBOX_CAPACITY: usize = 256;

#[derive(Debug)]
pub enum RoomCommand {
    Join {
        name: String,
        /// False for a viewer's token: offers that send media are refused.
        can_publish: bool,
        outbox: Outbox,
        reply: oneshot::Sender<Result<ParticipantId, ProtocolError>>,
    },
    Signal {
        participant: ParticipantId,
        message: ClientMessage,
    },
    Leave {
        participant: ParticipantId,
    },
    /// What the room holds now, for the HTTP API and tests.
    Describe {
        reply: oneshot::Sender<RoomSnapshot>,
    },
    StartRecording {
        format: Format,
        reply: oneshot::Sender<Result<RecordingInfo, RecordingError>>,
    },
    /// Answered once the file is complete.
    StopRecording {
        id: RecordingId,
        reply: oneshot::Sender<Result<RecordingInfo, RecordingError>>,
    },
    ListRecordings {
        reply: oneshot::Sender<Vec<RecordingInfo>>,
    },
    Shutdown,
}

/// A room as seen from outside its task.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RoomSnapshot {
    pub id: String,
    pub mode: Mode,
    pub participants: Vec<crate::protocol::ParticipantInfo>,
    /// Whether a media pipeline exists for the room.
    pub pipeline: bool,
    /// Video encoders of the call running now: an MCU room encodes its
    /// composite only while someone's connection is up or it records.
    pub encoders: usize,
}

#[derive(Debug, Clone)]
pub struct RoomHandle {
    pub id: RoomId,
    pub mode: Mode,
    /// Tells this room apart from a later room of the same id.
    pub generation: u64,
    /// The client address whose join opened the room.
    pub opened_by: Option<std::net::IpAddr>,
    commands: mpsc::Sender<RoomCommand>,
}

impl RoomHandle {
    pub async fn send(&self, command: RoomCommand) -> Result<(), ProtocolError> {
        self.commands.send(command).await.map_err(|_| {
            ProtocolError::new(
                crate::protocol::ErrorCode::NotJoined,
                "The room has closed.",
            )
        })
    }
}

/// A session's place in a room.
#[derive(Debug, Clone)]
pub struct Membership {
    pub room: RoomHandle,
    pub participant: ParticipantId,
}

impl Membership {
    pub async fn signal(&self, message: ClientMessage) -> Result<(), ProtocolError> {
        self.room
            .send(RoomCommand::Signal {
                participant: self.participant.clone(),
                message,
            })
            .await
    }

    pub async fn leave(self) {
        let _ = self
            .room
            .send(RoomCommand::Leave {
                participant: self.participant,
            })
            .await;
    }
}
