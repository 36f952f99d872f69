//! One room's task: the only owner of the room's pipeline and participants.

use super::registry::RegistryRef;
use super::{Outbox, RoomCommand, RoomHandle, RoomSnapshot};
use crate::ids::ParticipantId;
use crate::media::mcu::{McuMixer, McuSettings, MediaEvent};
use crate::protocol::{
    ClientMessage, ErrorCode, IceCandidate, IceServer, ParticipantInfo, PeerConnection,
    ProtocolError, ServerMessage,
};
use futures::StreamExt;
use gst::prelude::*;
use gst_webrtc::WebRTCPeerConnectionState;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

#[derive(Debug, Clone)]
pub struct RoomSettings {
    pub mcu: McuSettings,
    pub max_participants: usize,
    /// Sent to clients in "joined", in RTCIceServer form.
    pub ice_servers: Vec<IceServer>,
}

struct Participant {
    id: ParticipantId,
    name: String,
    outbox: Outbox,
}

impl Participant {
    fn info(&self) -> ParticipantInfo {
        ParticipantInfo {
            id: self.id.to_string(),
            name: self.name.clone(),
        }
    }
}

struct Room {
    handle: RoomHandle,
    settings: RoomSettings,
    mixer: McuMixer,
    /// In join order, which is also tile order.
    participants: Vec<Participant>,
}

/// How often deferred keyframe requests are checked.
const TICK: Duration = Duration::from_millis(100);

pub(super) async fn run_room(
    handle: RoomHandle,
    settings: RoomSettings,
    mut commands: mpsc::Receiver<RoomCommand>,
    registry: RegistryRef,
) {
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let mixer = match McuMixer::new(&handle.id, settings.mcu.clone(), events_tx) {
        Ok(mixer) => mixer,
        Err(e) => {
            tracing::error!("could not start the room pipeline: {e:#}");
            forget(&registry, &handle);
            refuse_all(
                &mut commands,
                &format!("The room's media pipeline could not start: {e:#}."),
            );
            return;
        }
    };
    tracing::info!(mode = %handle.mode, "room opened");
    let mut bus = mixer.bus().stream();
    let mut room = Room {
        handle,
        settings,
        mixer,
        participants: Vec::new(),
    };
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The room exists for the join that created it; it closes once that join
    // has been handled and nobody is left.
    let mut join_handled = false;
    loop {
        tokio::select! {
            command = commands.recv() => match command {
                None | Some(RoomCommand::Shutdown) => break,
                Some(command) => {
                    join_handled |= matches!(command, RoomCommand::Join { .. });
                    room.handle_command(command).await;
                }
            },
            Some(event) = events.recv() => room.handle_media_event(event),
            Some(message) = bus.next() => room.handle_bus_message(&message),
            _ = tick.tick() => room.mixer.poll_keyframes(),
        }
        if join_handled && room.participants.is_empty() {
            // Unregister first so new joiners make a new room; anything still
            // queued here is refused by dropping it (joiners retry).
            forget(&registry, &room.handle);
            break;
        }
    }
    drop(commands);
    room.participants.clear();
    let mixer = room.mixer;
    let _ = tokio::task::spawn_blocking(move || mixer.shut_down()).await;
    tracing::info!("room closed");
}

fn forget(registry: &RegistryRef, handle: &RoomHandle) {
    if let Some(registry) = registry.upgrade() {
        registry.forget(&handle.id, handle.generation);
    }
}

fn refuse_all(commands: &mut mpsc::Receiver<RoomCommand>, message: &str) {
    commands.close();
    while let Ok(command) = commands.try_recv() {
        if let RoomCommand::Join { reply, .. } = command {
            let _ = reply.send(Err(ProtocolError::new(ErrorCode::Internal, message)));
        }
    }
}

impl Room {
    async fn handle_command(&mut self, command: RoomCommand) {
        match command {
            RoomCommand::Join {
                name,
                outbox,
                reply,
            } => {
                let result = self.join(name, outbox);
                let _ = reply.send(result);
            }
            RoomCommand::Signal {
                participant,
                message,
            } => {
                if let Err(e) = self.signal(&participant, message).await {
                    self.send_to(&participant, e.to_message());
                }
            }
            RoomCommand::Leave { participant } => self.remove(&participant, "left"),
            RoomCommand::Describe { reply } => {
                let _ = reply.send(RoomSnapshot {
                    id: self.handle.id.to_string(),
                    mode: self.handle.mode,
                    participants: self.participants.iter().map(Participant::info).collect(),
                    pipeline: true,
                });
            }
            RoomCommand::Shutdown => {}
        }
    }

    fn join(&mut self, name: String, outbox: Outbox) -> Result<ParticipantId, ProtocolError> {
        if self.participants.len() >= self.settings.max_participants {
            return Err(ProtocolError::new(
                ErrorCode::RoomFull,
                format!(
                    "The room is full ({} participants).",
                    self.settings.max_participants
                ),
            ));
        }
        let id = ParticipantId::fresh();
        self.mixer.add_participant(&id).map_err(|e| {
            tracing::error!(participant = %id, "could not add participant: {e:#}");
            ProtocolError::new(
                ErrorCode::Internal,
                "The server could not add you to the room's media.",
            )
        })?;
        let joined = ServerMessage::Joined {
            room: self.handle.id.to_string(),
            participant: id.to_string(),
            mode: self.handle.mode,
            participants: self.participants.iter().map(Participant::info).collect(),
            ice_servers: self.settings.ice_servers.clone(),
        };
        let newcomer = Participant {
            id: id.clone(),
            name,
            outbox,
        };
        let announcement = ServerMessage::ParticipantJoined {
            participant: newcomer.info(),
        };
        tracing::info!(participant = %id, name = %newcomer.name, count = self.participants.len() + 1, "joined");
        self.participants.push(newcomer);
        self.send_to(&id, joined);
        self.broadcast_except(&id, announcement);
        Ok(id)
    }

    async fn signal(
        &mut self,
        id: &ParticipantId,
        message: ClientMessage,
    ) -> Result<(), ProtocolError> {
        if !self.participants.iter().any(|p| &p.id == id) {
            return Err(ProtocolError::new(
                ErrorCode::NotJoined,
                "You are not in this room.",
            ));
        }
        match message {
            ClientMessage::Offer { sdp } => match self.mixer.answer_offer(id, &sdp).await {
                Ok(answer) => {
                    tracing::info!(participant = %id, "publish offer answered");
                    self.send_to(id, ServerMessage::Answer { sdp: answer });
                    Ok(())
                }
                Err(e) => {
                    tracing::info!(participant = %id, "publish offer refused: {e}");
                    if e.code == ErrorCode::Internal {
                        // A broken branch costs this participant, not the room.
                        self.send_to(id, e.to_message());
                        self.remove(id, "negotiation failed");
                        return Ok(());
                    }
                    Err(e)
                }
            },
            ClientMessage::Answer { .. } => Err(ProtocolError::new(
                ErrorCode::BadState,
                "There is no offer outstanding: an MCU room uses only the publish connection.",
            )),
            ClientMessage::Ice(ice) => match ice.pc {
                PeerConnection::Publish => {
                    self.mixer
                        .add_remote_candidate(id, ice.sdp_mline_index, ice.candidate)
                }
                PeerConnection::Subscribe => Err(ProtocolError::new(
                    ErrorCode::BadState,
                    "There is no subscribe connection in an MCU room.",
                )),
            },
            ClientMessage::Join { .. } | ClientMessage::Leave => Err(ProtocolError::new(
                ErrorCode::BadState,
                "join and leave are handled by the session, not the room.",
            )),
        }
    }

    fn handle_media_event(&mut self, event: MediaEvent) {
        match event {
            MediaEvent::IceCandidate {
                participant,
                mline,
                candidate,
            } => self.send_to(
                &participant,
                ServerMessage::Ice(IceCandidate {
                    candidate,
                    sdp_mline_index: mline,
                    sdp_mid: None,
                    pc: PeerConnection::Publish,
                }),
            ),
            MediaEvent::ConnectionState { participant, state } => {
                tracing::info!(participant = %participant, "connection {state:?}");
                match state {
                    WebRTCPeerConnectionState::Connected => self.mixer.request_keyframe(),
                    WebRTCPeerConnectionState::Failed => {
                        self.send_to(
                            &participant,
                            ProtocolError::new(
                                ErrorCode::ConnectionFailed,
                                "Your media connection failed (ICE/DTLS); you have been removed from the room.",
                            )
                            .to_message(),
                        );
                        self.remove(&participant, "connection failed");
                    }
                    _ => {}
                }
            }
            MediaEvent::StreamStarted { participant, media } => {
                tracing::info!(participant = %participant, "receiving {media}");
            }
            MediaEvent::KeyframeRequested => self.mixer.request_keyframe(),
        }
    }

    fn handle_bus_message(&mut self, message: &gst::Message) {
        use gst::MessageView;
        match message.view() {
            MessageView::Error(err) => {
                let source = message.src();
                let path = source
                    .map(|s| s.path_string().to_string())
                    .unwrap_or_default();
                match source.and_then(|s| self.mixer.owner_of(s)) {
                    Some(participant) if self.participants.iter().any(|p| p.id == participant) => {
                        tracing::warn!(participant = %participant, "media error from {path}, removing: {}", err.error());
                        self.remove(&participant, "media error");
                    }
                    // A participant already removed: its last words do not matter.
                    Some(participant) => {
                        tracing::debug!(participant = %participant, "late error from {path}: {}", err.error());
                    }
                    None => {
                        // A shared element failed: the composite is gone for
                        // everyone, so say so and close the room.
                        tracing::error!(
                            "room pipeline error from {path}: {} ({:?})",
                            err.error(),
                            err.debug()
                        );
                        let failure = ProtocolError::new(
                            ErrorCode::Internal,
                            "The room's media pipeline failed; please join again.",
                        );
                        let everyone: Vec<ParticipantId> =
                            self.participants.iter().map(|p| p.id.clone()).collect();
                        for id in everyone {
                            self.send_to(&id, failure.to_message());
                            self.remove(&id, "room pipeline failed");
                        }
                    }
                }
            }
            MessageView::Warning(w) => {
                tracing::debug!("pipeline warning: {} ({:?})", w.error(), w.debug());
            }
            MessageView::Latency(_) => {
                let _ = self.mixer.pipeline().recalculate_latency();
            }
            _ => {}
        }
    }

    /// Removes a participant from the media and tells everyone else.
    fn remove(&mut self, id: &ParticipantId, why: &str) {
        let Some(index) = self.participants.iter().position(|p| &p.id == id) else {
            return;
        };
        self.participants.remove(index);
        let removed = self.mixer.remove_participant(id);
        tokio::task::spawn_blocking(move || {
            for element in removed {
                let _ = element.set_state(gst::State::Null);
            }
        });
        tracing::info!(participant = %id, count = self.participants.len(), "{why}");
        self.broadcast_except(
            id,
            ServerMessage::ParticipantLeft {
                participant: id.to_string(),
            },
        );
    }

    fn send_to(&mut self, id: &ParticipantId, message: ServerMessage) {
        let Some(participant) = self.participants.iter().find(|p| &p.id == id) else {
            return;
        };
        match participant.outbox.try_send(message) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                tracing::warn!(participant = %id, "client is not reading its messages; removing it");
                self.remove(id, "too slow");
            }
            // The session ended; its Leave is on the way.
            Err(TrySendError::Closed(_)) => {}
        }
    }

    fn broadcast_except(&mut self, except: &ParticipantId, message: ServerMessage) {
        let others: Vec<ParticipantId> = self
            .participants
            .iter()
            .filter(|p| &p.id != except)
            .map(|p| p.id.clone())
            .collect();
        for id in others {
            self.send_to(&id, message.clone());
        }
    }
}
