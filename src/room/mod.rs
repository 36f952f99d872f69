//! Rooms: one tokio task per room owns its media; everything else talks to it
//! through `RoomCommand`s on a bounded channel.

mod bus;
pub mod core;
mod creation_rate;
pub mod layout;
pub mod mix_choice;
mod recording_control;
mod recordings;
pub mod registry;
mod task;
mod task_phases;

use crate::ids::{ParticipantId, RoomId};
use crate::media::backend::RoomMedia;
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
    /// A new layout for the composite; answered with the layout message
    /// everyone was sent.
    SetLayout {
        spec: layout::LayoutSpec<String>,
        reply: oneshot::Sender<Result<crate::protocol::Layout, layout::LayoutError>>,
    },
    /// The composite's layout (none: the room has no composite).
    GetLayout {
        reply: oneshot::Sender<Option<crate::protocol::Layout>>,
    },
    Shutdown,
}

impl RoomCommand {
    /// What the command is, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            RoomCommand::Join { .. } => "a join",
            RoomCommand::Signal { .. } => "a signal",
            RoomCommand::Leave { .. } => "a leave",
            RoomCommand::Describe { .. } => "a describe",
            RoomCommand::StartRecording { .. } => "a recording start",
            RoomCommand::StopRecording { .. } => "a recording stop",
            RoomCommand::ListRecordings { .. } => "a recording list",
            RoomCommand::SetLayout { .. } => "a layout",
            RoomCommand::GetLayout { .. } => "a layout request",
            RoomCommand::Shutdown => "a shutdown",
        }
    }
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
    /// Participants' videos decoded now: in an MCU room, those on the
    /// composite that send video (the others are dropped unread).
    pub videos_decoded: usize,
    /// Participants' voices decoded now: in an MCU room, those mixed, and
    /// those whose packets do not say how loud they are (RFC 6464).
    pub audio_decoded: usize,
    /// Opus encoders in the room's pipeline (recordings' included): in an
    /// MCU room, one per mix, at most `--max-mixed-speakers` + 2.
    pub audio_encoders: usize,
    /// Audio mixers in the room's pipeline (a recording's full mix included).
    pub audio_mixers: usize,
    /// Peer connections (webrtcbins) in the room's pipeline: one per MCU
    /// participant, two per SFU participant (publish and subscribe), and
    /// for a moment three while a subscribe connection is being replaced.
    pub peer_connections: usize,
    /// Whose voices an MCU room mixes now (top-k audio), in the order they
    /// were let in; empty in other rooms.
    pub mixed: Vec<String>,
    /// Which encoding of the composite each MCU receiver gets.
    pub receivers: Vec<crate::media::backend::ReceiverRung>,
}

impl RoomSnapshot {
    /// What a room is now: who is in it from its core, what runs from its
    /// media and from the pipeline itself.
    fn of(handle: &RoomHandle, core: &core::RoomCore, media: &dyn RoomMedia) -> RoomSnapshot {
        let [audio_encoders, audio_mixers, peer_connections] =
            media.pipeline().map_or([0, 0, 0], |p| {
                crate::media::members::count_elements(p, ["opusenc", "audiomixer", "webrtcbin"])
            });
        RoomSnapshot {
            id: handle.id.to_string(),
            mode: handle.mode,
            participants: core.participants(),
            pipeline: media.pipeline().is_some(),
            encoders: media.call_encoders_running(),
            videos_decoded: media.videos_decoded(),
            audio_decoded: media.audio_decoded(),
            audio_encoders,
            audio_mixers,
            peer_connections,
            mixed: core.mixed(),
            receivers: media.receiver_rungs(),
        }
    }
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

fn room_closed() -> ProtocolError {
    ProtocolError::new(
        crate::protocol::ErrorCode::NotJoined,
        "The room has closed.",
    )
}

impl RoomHandle {
    pub async fn send(&self, command: RoomCommand) -> Result<(), ProtocolError> {
        self.commands.send(command).await.map_err(|_| room_closed())
    }

    /// Sends a command that carries `reply` and waits for the answer; an
    /// error once the room has closed. Also when it closes after taking the
    /// command in: a command sent just as the room's task ends can stay in
    /// the channel (tokio drops what was sent concurrently with the
    /// receiver's drop only with the channel, when the last sender goes), and
    /// its reply then neither comes nor fails. Waiting on the reply alone
    /// hung `describe` that way.
    pub async fn ask<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<T>) -> RoomCommand,
    ) -> Result<T, ProtocolError> {
        let (reply, answer) = oneshot::channel();
        self.send(command(reply)).await?;
        tokio::select! {
            biased;
            answer = answer => answer.map_err(|_| room_closed()),
            () = self.commands.closed() => Err(room_closed()),
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn handle(commands: mpsc::Sender<RoomCommand>) -> RoomHandle {
        RoomHandle {
            id: RoomId::parse("r").unwrap(),
            mode: crate::protocol::Mode::Mesh,
            generation: 1,
            opened_by: None,
            commands,
        }
    }

    #[tokio::test]
    async fn a_command_the_room_will_never_read_is_not_waited_for() {
        // A room task that stops reading with a command still in its
        // channel: the command is neither answered nor dropped.
        let (commands, mut inbox) = mpsc::channel(4);
        let room = handle(commands);
        let asked = tokio::spawn({
            let room = room.clone();
            async move { room.ask(|reply| RoomCommand::Describe { reply }).await }
        });
        while room.commands.capacity() == 4 {
            tokio::task::yield_now().await;
        }
        inbox.close();
        let outcome = tokio::time::timeout(Duration::from_secs(5), asked)
            .await
            .expect("ask gives up once the room's inbox closes")
            .unwrap();
        assert_eq!(
            outcome.unwrap_err().code,
            crate::protocol::ErrorCode::NotJoined
        );
        // The command is still there, its reply never sent.
        assert!(matches!(inbox.try_recv(), Ok(RoomCommand::Describe { .. })));
    }

    #[tokio::test]
    async fn an_answer_comes_back() {
        let (commands, mut inbox) = mpsc::channel(4);
        let room = handle(commands);
        tokio::spawn(async move {
            if let Some(RoomCommand::ListRecordings { reply }) = inbox.recv().await {
                let _ = reply.send(Vec::new());
            }
        });
        let listed = room
            .ask(|reply| RoomCommand::ListRecordings { reply })
            .await;
        assert!(listed.unwrap().is_empty());
    }
}
