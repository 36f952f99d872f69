//! One room's task: the only owner of the room's pipeline and participants.

use super::recordings::{self, Recordings};
use super::registry::RegistryRef;
use super::{Outbox, RoomCommand, RoomHandle, RoomSnapshot};
use crate::ids::ParticipantId;
use crate::media::events::MediaEvent;
use crate::media::mcu::{McuMixer, McuSettings};
use crate::media::members;
use crate::media::program::Feeds;
use crate::media::recorder::{self, RecordingPart};
use crate::media::sdp::summarize_offer;
use crate::media::sfu::SfuRouter;
use crate::protocol::{
    ClientMessage, ErrorCode, IceCandidate, IceServer, Mode, ParticipantInfo, PeerConnection,
    ProtocolError, RecordingState, ServerMessage,
};
use crate::recording::{Format, RecordingError, RecordingErrorCode, RecordingInfo};
use crate::turn::TurnSettings;
use futures::StreamExt;
use gst::prelude::*;
use gst_webrtc::WebRTCPeerConnectionState;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

#[derive(Debug, Clone)]
pub struct RoomSettings {
    pub mcu: McuSettings,
    pub max_participants: usize,
    /// Most rooms open at once on this server.
    pub max_rooms: usize,
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

struct Participant {
    id: ParticipantId,
    name: String,
    /// False for a viewer's token: offers that send media are refused.
    can_publish: bool,
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

/// What carries a room's media, by mode.
enum Media {
    /// Decodes, composites, mixes and encodes (media/mcu.rs).
    Mcu(McuMixer),
    /// Forwards RTP untouched (media/sfu.rs).
    Sfu(SfuRouter),
    /// Carries no media: peers send to each other; the room relays signaling.
    Mesh,
}

impl Media {
    fn start(
        mode: Mode,
        handle: &RoomHandle,
        settings: &RoomSettings,
        events: mpsc::UnboundedSender<MediaEvent>,
    ) -> anyhow::Result<Media> {
        Ok(match mode {
            Mode::Mcu => Media::Mcu(McuMixer::new(&handle.id, settings.mcu.clone(), events)?),
            Mode::Sfu => Media::Sfu(SfuRouter::new(&handle.id, settings.mcu.clone(), events)?),
            Mode::Mesh => Media::Mesh,
        })
    }

    fn pipeline(&self) -> Option<&gst::Pipeline> {
        match self {
            Media::Mcu(mixer) => Some(mixer.pipeline()),
            Media::Sfu(router) => Some(router.pipeline()),
            Media::Mesh => None,
        }
    }

    fn owner_of(&self, source: &gst::Object) -> Option<ParticipantId> {
        match self {
            Media::Mcu(mixer) => mixer.owner_of(source),
            Media::Sfu(router) => router.owner_of(source),
            Media::Mesh => None,
        }
    }

    /// Takes a participant out of the media; returns the elements to stop,
    /// in order (webrtcbin first).
    fn remove_participant(&mut self, id: &ParticipantId) -> Vec<gst::Element> {
        match self {
            Media::Mcu(mixer) => mixer.remove_participant(id),
            Media::Sfu(router) => router.remove_participant(id).0,
            Media::Mesh => Vec::new(),
        }
    }

    /// What recordings tap; builds the program if none runs yet.
    fn recording_feeds(&mut self) -> anyhow::Result<Feeds> {
        match self {
            Media::Mcu(mixer) => mixer.recording_feeds(),
            Media::Sfu(router) => router.recording_feeds(),
            Media::Mesh => Err(anyhow::anyhow!("a mesh room has no media to record")),
        }
    }

    /// The last recording ended: the program goes. Returns its elements,
    /// still to be set to NULL.
    fn close_recording_feeds(&mut self) -> Vec<gst::Element> {
        match self {
            Media::Mcu(mixer) => mixer.close_recording_feeds(),
            Media::Sfu(router) => router.close_recording_feeds(),
            Media::Mesh => Vec::new(),
        }
    }
}

struct Room {
    handle: RoomHandle,
    settings: RoomSettings,
    media: Media,
    /// In join order, which is also tile order.
    participants: Vec<Participant>,
    /// SFU: participants whose subscribe connection needs a new offer.
    renegotiate: Vec<ParticipantId>,
    recordings: Recordings,
    /// When recording files were last flushed to disk.
    last_sync: Instant,
    registry: RegistryRef,
}

/// How often deferred keyframe requests are checked.
const TICK: Duration = Duration::from_millis(100);
/// How often files being recorded are flushed to disk.
const SYNC_INTERVAL: Duration = Duration::from_secs(2);

pub(super) async fn run_room(
    handle: RoomHandle,
    settings: RoomSettings,
    mut commands: mpsc::Receiver<RoomCommand>,
    registry: RegistryRef,
) {
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let media = match Media::start(handle.mode, &handle, &settings, events_tx) {
        Ok(media) => media,
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
    let mut bus = media
        .pipeline()
        .map(|p| p.bus().expect("a pipeline always has a bus").stream());
    let recordings = Recordings::new(settings.recording.dir.clone(), handle.id.clone());
    let mut room = Room {
        handle,
        settings,
        media,
        participants: Vec::new(),
        renegotiate: Vec::new(),
        recordings,
        last_sync: Instant::now(),
        registry: registry.clone(),
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
            Some(message) = next_bus_message(&mut bus) => room.handle_bus_message(&message),
            _ = tick.tick() => {
                match &mut room.media {
                    Media::Mcu(mixer) => mixer.poll_keyframes(),
                    Media::Sfu(router) => router.poll_keyframes(),
                    Media::Mesh => {}
                }
                room.recordings.check_overdue();
                room.sync_recording_files();
            }
        }
        room.send_due_offers().await;
        room.settle_recordings().await;
        if join_handled && room.participants.is_empty() {
            // Unregister first so new joiners make a new room; anything still
            // queued here is refused by dropping it (joiners retry).
            forget(&registry, &room.handle);
            break;
        }
    }
    drop(commands);
    room.finish_recordings(&mut bus).await;
    if let Some(registry) = registry.upgrade() {
        registry.archive(&room.handle.id, room.recordings.list());
    }
    // Participants still here (the server is shutting down, or their
    // sessions wait for a resume) leave the media the way anyone leaves,
    // each webrtcbin first, before the rest of the pipeline stops. Stopping
    // the whole pipeline with them in it can deadlock on 1.22: a payloader's
    // pad deactivation waits on a streaming thread stuck inside a webrtcbin
    // whose peer is gone.
    let mut removed = Vec::new();
    for participant in std::mem::take(&mut room.participants) {
        removed.extend(room.media.remove_participant(&participant.id));
    }
    let media = room.media;
    // Dropping the media stops its pipeline, which blocks.
    let _ = tokio::task::spawn_blocking(move || {
        for element in removed {
            let _ = element.set_state(gst::State::Null);
        }
        drop(media);
    })
    .await;
    tracing::info!("room closed");
}

impl Room {
    /// The room is closing: every open recording is finished (end of stream
    /// through its muxer) before the pipeline stops, within the finalize
    /// timeout.
    async fn finish_recordings(&mut self, bus: &mut Option<gst::bus::BusStream>) {
        self.recordings.stop_all();
        let deadline =
            tokio::time::Instant::now() + recordings::FINALIZE_TIMEOUT + Duration::from_millis(500);
        while self.recordings.any_active() {
            tokio::select! {
                Some(message) = next_bus_message(bus) => self.handle_bus_message(&message),
                _ = tokio::time::sleep(TICK) => self.recordings.check_overdue(),
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        self.recordings
            .all_failed("The room closed before the file was finished.");
        self.settle_recordings().await;
    }
}

async fn next_bus_message(bus: &mut Option<gst::bus::BusStream>) -> Option<gst::Message> {
    match bus {
        Some(bus) => bus.next().await,
        None => std::future::pending().await,
    }
}

fn forget(registry: &RegistryRef, handle: &RoomHandle) {
    if let Some(registry) = registry.upgrade() {
        registry.forget(&handle.id, handle.generation);
    }
}

/// A viewer (a token with canPublish false) may receive but not send: an
/// offer (or, in a mesh room, an answer) whose m-lines send media is refused.
/// MCU viewers offer recvonly; SFU viewers never open the publish
/// connection; mesh viewers offer recvonly and answer recvonly.
fn refuse_publishing(mode: Mode, message: &ClientMessage) -> Result<(), ProtocolError> {
    let sdp = match (mode, message) {
        (_, ClientMessage::Offer { sdp, .. }) => sdp,
        (Mode::Mesh, ClientMessage::Answer { sdp, .. }) => sdp,
        _ => return Ok(()),
    };
    let summary = summarize_offer(sdp)?;
    if mode == Mode::Sfu
        || summary
            .media
            .iter()
            .any(|m| !m.rejected && m.direction.client_sends())
    {
        return Err(ProtocolError::new(
            ErrorCode::Forbidden,
            "Your room token does not allow publishing: offer recvonly m-lines (and in an SFU room, do not open the publish connection).",
        ));
    }
    Ok(())
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
                can_publish,
                outbox,
                reply,
            } => {
                let result = self.join(name, can_publish, outbox);
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
                    pipeline: self.media.pipeline().is_some(),
                });
            }
            RoomCommand::StartRecording { format, reply } => {
                let _ = reply.send(self.start_recording(format));
            }
            RoomCommand::StopRecording { id, reply } => self.recordings.stop(&id, reply),
            RoomCommand::ListRecordings { reply } => {
                let _ = reply.send(self.recordings.list());
            }
            RoomCommand::Shutdown => {}
        }
    }

    fn start_recording(&mut self, format: Format) -> Result<RecordingInfo, RecordingError> {
        let Some(pipeline) = self.media.pipeline().cloned() else {
            return Err(RecordingError::new(
                RecordingErrorCode::NotRecordable,
                "A mesh room cannot be recorded: its media goes from peer to peer, not through the server.",
            ));
        };
        let prepared = self.recordings.prepare(format).inspect_err(|e| {
            tracing::error!("recording refused: {e}");
        })?;
        let feeds = match self.media.recording_feeds() {
            Ok(feeds) => feeds,
            Err(e) => {
                tracing::error!("could not build what recordings record: {e:#}");
                self.recordings.abandon(prepared);
                return Err(RecordingError::new(
                    RecordingErrorCode::Internal,
                    format!("The recording could not start: {e:#}."),
                ));
            }
        };
        let started =
            self.recordings
                .launch(prepared, &pipeline, &feeds, &self.settings.mcu.templates);
        match &started {
            Ok(info) => self.broadcast(recording_message(info, RecordingState::Started)),
            Err(_) if !self.recordings.any_active() => {
                stop_off_task(self.media.close_recording_feeds());
            }
            Err(_) => {}
        }
        started
    }

    /// Takes ended recordings out of the pipeline, closes their files, and
    /// only then answers those waiting for them and tells participants.
    async fn settle_recordings(&mut self) {
        let Some(pipeline) = self.media.pipeline().cloned() else {
            return;
        };
        let ended = self.recordings.take_ended(&pipeline);
        if ended.is_empty() {
            return;
        }
        let program = if self.recordings.any_active() {
            Vec::new()
        } else {
            self.media.close_recording_feeds()
        };
        let mut waiters = Vec::new();
        let mut closing = Vec::new();
        for e in ended {
            waiters.push((e.id, e.waiters));
            closing.push((e.bin, e.file));
        }
        let _ = tokio::task::spawn_blocking(move || {
            for (bin, file) in closing {
                let _ = bin.set_state(gst::State::Null);
                if let Some(file) = file {
                    recordings::sync_file(&file);
                }
            }
        })
        .await;
        // Nobody waits for the program to stop: the files are complete.
        stop_off_task(program);
        for (id, replies) in waiters {
            if let Some(info) = self.recordings.info(&id) {
                tracing::info!(recording = %id, state = ?info.state, bytes = info.size_bytes, ms = info.duration_ms, "recording ended");
                for reply in replies {
                    let _ = reply.send(Ok(info.clone()));
                }
            }
            let stopped = match self.recordings.info(&id) {
                Some(info) => recording_message(&info, RecordingState::Stopped),
                None => ServerMessage::Recording {
                    state: RecordingState::Stopped,
                    id: id.to_string(),
                    format: None,
                    url: None,
                },
            };
            self.broadcast(stopped);
        }
    }

    /// Every few seconds, flushes the files being recorded to disk, off the
    /// room task.
    fn sync_recording_files(&mut self) {
        if self.last_sync.elapsed() < SYNC_INTERVAL {
            return;
        }
        self.last_sync = Instant::now();
        let files = self.recordings.files_being_written();
        if !files.is_empty() {
            tokio::task::spawn_blocking(move || {
                for file in files {
                    recordings::sync_file(&file);
                }
            });
        }
    }

    fn broadcast(&mut self, message: ServerMessage) {
        let everyone: Vec<ParticipantId> = self.participants.iter().map(|p| p.id.clone()).collect();
        for id in everyone {
            self.send_to(&id, message.clone());
        }
    }

    fn join(
        &mut self,
        name: String,
        can_publish: bool,
        outbox: Outbox,
    ) -> Result<ParticipantId, ProtocolError> {
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
        let added = match &mut self.media {
            Media::Mcu(mixer) => mixer.add_participant(&id),
            Media::Sfu(router) => router.add_participant(&id).map(|has_tracks| {
                if has_tracks {
                    self.renegotiate.push(id.clone());
                }
            }),
            Media::Mesh => Ok(()),
        };
        added.map_err(|e| {
            tracing::error!(participant = %id, "could not add participant: {e:#}");
            ProtocolError::new(
                ErrorCode::Internal,
                "The server could not add you to the room's media.",
            )
        })?;
        let mut ice_servers = self.settings.ice_servers.clone();
        if let Some(turn) = &self.settings.turn {
            ice_servers.push(turn.ice_server(id.as_str(), crate::auth::unix_now()));
        }
        let joined = ServerMessage::Joined {
            room: self.handle.id.to_string(),
            participant: id.to_string(),
            mode: self.handle.mode,
            participants: self.participants.iter().map(Participant::info).collect(),
            ice_servers,
            resume_token: None,
        };
        let newcomer = Participant {
            id: id.clone(),
            name,
            can_publish,
            outbox,
        };
        let announcement = ServerMessage::ParticipantJoined {
            participant: newcomer.info(),
        };
        tracing::info!(participant = %id, name = %newcomer.name, count = self.participants.len() + 1, "joined");
        self.participants.push(newcomer);
        self.send_to(&id, joined);
        for recording in self.recordings.running() {
            if let Some(info) = self.recordings.info(&recording) {
                self.send_to(&id, recording_message(&info, RecordingState::Started));
            }
        }
        self.broadcast_except(&id, announcement);
        if self.participants.len() == 1
            && let Some(format) = self.settings.recording.auto
            && self.media.pipeline().is_some()
        {
            match self.start_recording(format) {
                Ok(info) => tracing::info!(recording = %info.id, "auto-recording the room"),
                Err(e) => tracing::error!("could not auto-record the room: {e}"),
            }
        }
        Ok(id)
    }

    async fn signal(
        &mut self,
        id: &ParticipantId,
        message: ClientMessage,
    ) -> Result<(), ProtocolError> {
        let Some(participant) = self.participants.iter().find(|p| &p.id == id) else {
            return Err(ProtocolError::new(
                ErrorCode::NotJoined,
                "You are not in this room.",
            ));
        };
        if !participant.can_publish {
            refuse_publishing(self.handle.mode, &message)?;
        }
        match (&mut self.media, message) {
            (
                _,
                ClientMessage::Join { .. } | ClientMessage::Leave | ClientMessage::Resume { .. },
            ) => Err(ProtocolError::new(
                ErrorCode::BadState,
                "join and leave are handled by the session, not the room.",
            )),
            (Media::Mesh, ClientMessage::Offer { sdp, to }) => {
                self.relay(id, to, |from| ServerMessage::Offer { sdp, from })
            }
            (Media::Mesh, ClientMessage::Answer { sdp, to }) => {
                self.relay(id, to, |from| ServerMessage::Answer { sdp, from })
            }
            (Media::Mesh, ClientMessage::Ice(ice)) => {
                let to = ice.to.clone();
                self.relay(id, to, |from| {
                    ServerMessage::Ice(IceCandidate {
                        to: None,
                        from,
                        ..ice
                    })
                })
            }
            (Media::Mcu(mixer), ClientMessage::Offer { sdp, .. }) => {
                let answer = mixer.answer_offer(id, &sdp).await;
                self.publish_answered(id, answer)
            }
            (Media::Sfu(router), ClientMessage::Offer { sdp, .. }) => {
                let answer = router.answer_publish_offer(id, &sdp).await;
                self.publish_answered(id, answer)
            }
            (Media::Mcu(_), ClientMessage::Answer { .. }) => Err(ProtocolError::new(
                ErrorCode::BadState,
                "There is no offer outstanding: an MCU room uses only the publish connection.",
            )),
            (Media::Sfu(router), ClientMessage::Answer { sdp, .. }) => {
                let next = router.apply_subscribe_answer(id, &sdp).await?;
                tracing::info!(participant = %id, "subscribe answer applied");
                if let Some(offer) = next {
                    self.send_to(
                        id,
                        ServerMessage::Offer {
                            sdp: offer,
                            from: None,
                        },
                    );
                }
                Ok(())
            }
            (Media::Mcu(mixer), ClientMessage::Ice(ice)) => match ice.pc {
                PeerConnection::Publish => {
                    mixer.add_remote_candidate(id, ice.sdp_mline_index, ice.candidate)
                }
                PeerConnection::Subscribe => Err(ProtocolError::new(
                    ErrorCode::BadState,
                    "There is no subscribe connection in an MCU room.",
                )),
            },
            (Media::Sfu(router), ClientMessage::Ice(ice)) => {
                router.add_remote_candidate(id, ice.pc, ice.sdp_mline_index, ice.candidate)
            }
        }
    }

    /// Sends the answer to a publish offer, or handles its failure.
    fn publish_answered(
        &mut self,
        id: &ParticipantId,
        answer: Result<String, ProtocolError>,
    ) -> Result<(), ProtocolError> {
        match answer {
            Ok(sdp) => {
                tracing::info!(participant = %id, "publish offer answered");
                self.send_to(id, ServerMessage::Answer { sdp, from: None });
                Ok(())
            }
            Err(e) if e.code == ErrorCode::Internal => {
                // A broken branch costs this participant, not the room.
                tracing::info!(participant = %id, "publish offer failed: {e}");
                self.fail(id, &e.message);
                Ok(())
            }
            Err(e) => {
                tracing::info!(participant = %id, "publish offer refused: {e}");
                Err(e)
            }
        }
    }

    /// Mesh: passes a message to the participant it names, saying who it is from.
    fn relay(
        &mut self,
        from: &ParticipantId,
        to: Option<String>,
        message: impl FnOnce(Option<String>) -> ServerMessage,
    ) -> Result<(), ProtocolError> {
        let Some(to) = to else {
            return Err(ProtocolError::new(
                ErrorCode::BadMessage,
                "In a mesh room, offer, answer and ice must say \"to\" which participant they are for.",
            ));
        };
        let Some(target) = self
            .participants
            .iter()
            .find(|p| p.id.as_str() == to)
            .map(|p| p.id.clone())
        else {
            return Err(ProtocolError::new(
                ErrorCode::UnknownParticipant,
                format!(
                    "There is no participant \"{}\" in this room.",
                    to.chars().take(40).collect::<String>()
                ),
            ));
        };
        if &target == from {
            return Err(ProtocolError::new(
                ErrorCode::BadMessage,
                "A participant cannot send signaling to itself.",
            ));
        }
        self.send_to(&target, message(Some(from.to_string())));
        Ok(())
    }

    /// SFU: sends the subscribe offers that changes made due, one
    /// outstanding per participant.
    async fn send_due_offers(&mut self) {
        while let Some(id) = self.renegotiate.pop() {
            let Media::Sfu(router) = &mut self.media else {
                self.renegotiate.clear();
                return;
            };
            match router.tracks_changed(&id).await {
                Ok(Some(sdp)) => {
                    tracing::info!(participant = %id, "subscribe offer sent");
                    self.send_to(&id, ServerMessage::Offer { sdp, from: None });
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(participant = %id, "subscribe offer failed: {e:#}");
                    self.fail(
                        &id,
                        "The server could not offer you the other participants' media.",
                    );
                }
            }
        }
    }

    fn mark_for_offer(&mut self, ids: Vec<ParticipantId>) {
        for id in ids {
            if !self.renegotiate.contains(&id) {
                self.renegotiate.push(id);
            }
        }
    }

    fn handle_media_event(&mut self, event: MediaEvent) {
        match event {
            MediaEvent::IceCandidate {
                participant,
                pc,
                mline,
                candidate,
            } => self.send_to(
                &participant,
                ServerMessage::Ice(IceCandidate {
                    candidate,
                    sdp_mline_index: mline,
                    sdp_mid: None,
                    pc,
                    to: None,
                    from: None,
                }),
            ),
            MediaEvent::ConnectionState {
                participant,
                pc,
                state,
            } => {
                tracing::info!(participant = %participant, "{pc:?} connection {state:?}");
                match state {
                    WebRTCPeerConnectionState::Connected => match &mut self.media {
                        Media::Mcu(mixer) => mixer.request_keyframe(),
                        Media::Sfu(router) if pc == PeerConnection::Subscribe => {
                            let publishers = router.video_publishers_for(&participant);
                            router.request_keyframes(&publishers);
                        }
                        _ => {}
                    },
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
            MediaEvent::TrackPublished {
                participant,
                kind,
                caps,
            } => {
                let Media::Sfu(router) = &mut self.media else {
                    return;
                };
                match router.track_published(&participant, kind, caps) {
                    Ok(changed) => self.mark_for_offer(changed),
                    Err(e) => {
                        tracing::error!(participant = %participant, "could not forward a track: {e:#}")
                    }
                }
            }
        }
    }

    fn handle_bus_message(&mut self, message: &gst::Message) {
        use gst::MessageView;
        if let Some(id) = recorder::finished_recording(message) {
            self.recordings.finished(&id);
            return;
        }
        match message.view() {
            MessageView::Error(err) => {
                let source = message.src();
                let path = source
                    .map(|s| s.path_string().to_string())
                    .unwrap_or_default();
                let pipeline = self.media.pipeline();
                if let (Some(s), Some(p)) = (source, pipeline)
                    && !members::is_in(p, s)
                    && self.media.owner_of(s).is_none()
                {
                    // Queued before its element was taken out (an ended
                    // recording, a closed program): nothing left to fail.
                    tracing::debug!("late error from removed {path}: {}", err.error());
                    return;
                }
                let recording = match (source, pipeline) {
                    (Some(s), Some(p)) => recorder::recording_part(p, s),
                    _ => None,
                };
                // A recording's failure costs the recording, never the call.
                match recording {
                    Some(RecordingPart::Branch(id)) => {
                        tracing::warn!(recording = %id, "recording error from {path}: {} ({:?})", err.error(), err.debug());
                        self.recordings.failed(&id, &err.error().to_string());
                        return;
                    }
                    Some(RecordingPart::Program) => {
                        tracing::warn!(
                            "recording program error from {path}: {} ({:?})",
                            err.error(),
                            err.debug()
                        );
                        self.recordings
                            .all_failed(&format!("What the room records failed: {}", err.error()));
                        return;
                    }
                    None => {}
                }
                match source.and_then(|s| self.media.owner_of(s)) {
                    Some(participant) if self.participants.iter().any(|p| p.id == participant) => {
                        tracing::warn!(participant = %participant, "media error from {path}, removing: {}", err.error());
                        self.fail(
                            &participant,
                            &format!("Your media failed on the server: {}.", err.error()),
                        );
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
                if let Some(pipeline) = self.media.pipeline() {
                    let _ = pipeline.recalculate_latency();
                }
            }
            _ => {}
        }
    }

    /// A participant's media failed on the server: it is told so with
    /// `media-failed` and removed (its session then ends).
    fn fail(&mut self, id: &ParticipantId, why: &str) {
        let error = ProtocolError::new(
            ErrorCode::MediaFailed,
            format!("{} You have been removed from the room.", why.trim_end()),
        );
        self.send_to(id, error.to_message());
        self.remove(id, "media failed");
    }

    /// Removes a participant from the media and tells everyone else.
    fn remove(&mut self, id: &ParticipantId, why: &str) {
        let Some(index) = self.participants.iter().position(|p| &p.id == id) else {
            return;
        };
        let gone = self.participants.remove(index);
        if self.participants.is_empty() {
            // Unregistered before the last session hears it is out (its
            // outbox closes with `gone`): a rejoin it sends then makes a new
            // room instead of finding this closing one.
            forget(&self.registry, &self.handle);
        }
        drop(gone);
        self.renegotiate.retain(|p| p != id);
        let removed = match &mut self.media {
            Media::Mcu(mixer) => mixer.remove_participant(id),
            Media::Sfu(router) => {
                let (removed, changed) = router.remove_participant(id);
                self.mark_for_offer(changed);
                removed
            }
            Media::Mesh => Vec::new(),
        };
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

/// Sets removed elements to NULL off the room task.
fn stop_off_task(elements: Vec<gst::Element>) {
    if elements.is_empty() {
        return;
    }
    tokio::task::spawn_blocking(move || {
        for element in elements {
            let _ = element.set_state(gst::State::Null);
        }
    });
}

/// What participants are told of a recording: its id, format and where it
/// is served (a browser plays an HLS recording live from there).
fn recording_message(info: &RecordingInfo, state: RecordingState) -> ServerMessage {
    ServerMessage::Recording {
        state,
        id: info.id.clone(),
        format: Some(info.format.as_str().to_owned()),
        url: Some(info.url.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(direction: &str) -> ClientMessage {
        ClientMessage::Offer {
            sdp: format!(
                "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\na=rtpmap:96 VP8/90000\r\na={direction}\r\n"
            ),
            to: None,
        }
    }

    #[test]
    fn viewers_may_receive_but_not_send() {
        let code =
            |mode, message: &ClientMessage| refuse_publishing(mode, message).err().map(|e| e.code);
        assert_eq!(code(Mode::Mcu, &offer("recvonly")), None);
        assert_eq!(
            code(Mode::Mcu, &offer("sendrecv")),
            Some(ErrorCode::Forbidden)
        );
        assert_eq!(
            code(Mode::Mcu, &offer("sendonly")),
            Some(ErrorCode::Forbidden)
        );
        // SFU: any offer is a publish offer.
        assert_eq!(
            code(Mode::Sfu, &offer("recvonly")),
            Some(ErrorCode::Forbidden)
        );
        let ClientMessage::Offer { sdp, .. } = offer("sendrecv") else {
            unreachable!()
        };
        let answer = ClientMessage::Answer { sdp, to: None };
        assert_eq!(code(Mode::Sfu, &answer), None, "subscribe answers are fine");
        assert_eq!(code(Mode::Mesh, &answer), Some(ErrorCode::Forbidden));
        assert_eq!(code(Mode::Mesh, &offer("recvonly")), None);
        let junk = ClientMessage::Offer {
            sdp: "hello".into(),
            to: None,
        };
        assert_eq!(code(Mode::Mcu, &junk), Some(ErrorCode::BadSdp));
        assert_eq!(code(Mode::Mcu, &ClientMessage::Leave), None);
    }
}
