//! One room's task: the only owner of the room's media (its pipeline) and
//! its core (who is in it). One loop takes the room's commands, what
//! GStreamer's threads post, the pipeline's bus and a tick; the core decides
//! and this task delivers what it decided (`Effect`s) to the participants'
//! sessions. It never waits on a negotiation: peers negotiate off it
//! (media/peer.rs).

use super::bus;
use super::core::{Admission, Composite, Effect, RoomCore};
use super::recording_control::recording_message;
use super::recordings::{self, Recordings};
use super::registry::RegistryRef;
use super::task_phases::{Phase, RoomTaskGuard};
use super::{Outbox, RoomCommand, RoomHandle, RoomSettings, RoomSnapshot};
use crate::ids::ParticipantId;
use crate::media::backend::{NoMedia, RoomMedia};
use crate::media::events::MediaEvent;
use crate::media::mcu::McuMixer;
use crate::media::sfu::SfuRouter;
use crate::protocol::{ErrorCode, Mode, ProtocolError, RecordingState};
use crate::recording::{Format, RecordingError, RecordingInfo};
use futures::StreamExt;
use gst::prelude::*;
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

/// The media of a room of `mode`.
fn start_media(
    mode: Mode,
    handle: &RoomHandle,
    settings: &RoomSettings,
    events: mpsc::UnboundedSender<MediaEvent>,
) -> anyhow::Result<Box<dyn RoomMedia>> {
    Ok(match mode {
        Mode::Mcu => Box::new(McuMixer::new(&handle.id, settings.mcu.clone(), events)?),
        Mode::Sfu => Box::new(SfuRouter::new(&handle.id, settings.mcu.clone(), events)?),
        Mode::Mesh => Box::new(NoMedia),
    })
}

struct Room {
    handle: RoomHandle,
    settings: RoomSettings,
    core: RoomCore,
    media: Box<dyn RoomMedia>,
    /// Where each participant's messages go (its session).
    outboxes: HashMap<ParticipantId, Outbox>,
    recordings: Recordings,
    /// When recording files were last flushed to disk.
    last_sync: Instant,
    /// Recalculates the pipeline's latency off this task.
    latency: crate::media::latency::LatencyRecalculation,
    registry: RegistryRef,
}

/// How often held-back keyframe requests and recordings are looked at.
const TICK: Duration = Duration::from_millis(100);
/// A step of the room's task longer than this is logged.
const SLOW_STEP: Duration = Duration::from_millis(250);

pub(super) async fn run_room(
    handle: RoomHandle,
    settings: RoomSettings,
    mut commands: mpsc::Receiver<RoomCommand>,
    registry: RegistryRef,
    alive: RoomTaskGuard,
) {
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let media = match start_media(handle.mode, &handle, &settings, events_tx) {
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
    let admission = Admission {
        max_participants: settings.max_participants,
        ice_servers: settings.ice_servers.clone(),
        turn: settings.turn.clone(),
    };
    // Only an MCU room has a composite to lay out.
    let composite = (handle.mode == Mode::Mcu).then_some(Composite {
        canvas: (settings.mcu.canvas.width, settings.mcu.canvas.height),
        max_visible: settings.mcu.max_visible,
        max_mixed: settings.mcu.max_mixed_speakers,
    });
    let mut room = Room {
        core: RoomCore::new(handle.id.clone(), handle.mode, admission, composite),
        recordings: Recordings::new(settings.recording.dir.clone(), handle.id.clone()),
        handle,
        settings,
        media,
        outboxes: HashMap::new(),
        last_sync: Instant::now(),
        latency: Default::default(),
        registry: registry.clone(),
    };
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The room exists for the join that created it; it closes once that join
    // has been handled and nobody is left.
    let mut join_handled = false;
    loop {
        let step = tokio::select! {
            command = commands.recv() => match command {
                None | Some(RoomCommand::Shutdown) => break,
                Some(command) => {
                    join_handled |= matches!(command, RoomCommand::Join { .. });
                    let began = Instant::now();
                    let what = command.name();
                    room.handle_command(command);
                    (began, what)
                }
            },
            Some(event) = events.recv() => {
                let began = Instant::now();
                room.media.on_event(event);
                let effects = room.core.media_outputs(room.media.as_mut());
                room.apply(effects);
                (began, "a media event")
            }
            Some(message) = next_bus_message(&mut bus) => {
                let began = Instant::now();
                room.handle_bus_message(&message);
                (began, "a bus message")
            }
            _ = tick.tick() => {
                let began = Instant::now();
                room.media.tick();
                let mut effects = room.core.media_outputs(room.media.as_mut());
                effects.extend(room.core.renew_credentials(crate::auth::unix_now()));
                effects.extend(room.core.update_speakers(room.media.as_mut(), Instant::now()));
                room.apply(effects);
                room.recordings.check_overdue();
                room.recordings.sync_files(&mut room.last_sync);
                (began, "a tick")
            }
        };
        // Everything in the room waits while its task works: say when a
        // step took long enough for people to notice.
        let (began, what) = step;
        if began.elapsed() > SLOW_STEP {
            tracing::warn!(room = %room.handle.id, "handling {what} took {:?}", began.elapsed());
        }
        room.settle_recordings().await;
        if join_handled && room.core.is_empty() {
            // Unregistered (again: the last leave did it first) so new
            // joiners make a new room; anything still queued here is refused
            // by dropping it (joiners retry).
            forget(&registry, &room.handle);
            break;
        }
    }
    drop(commands);
    alive.enter(Phase::FinishingRecordings);
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
    alive.enter(Phase::ReleasingParticipants);
    let effects = room
        .core
        .remove_everyone(room.media.as_mut(), None, "room closed");
    room.apply(effects);
    alive.enter(Phase::DroppingMedia);
    let media = room.media;
    // Dropping the media stops its pipeline, which blocks. What the room's
    // threads freed goes back to the system then, not at some later
    // allocation: a server that opens and closes rooms all day stays flat.
    let _ = tokio::task::spawn_blocking(move || {
        drop(media);
        crate::memory::release_free_memory();
    })
    .await;
    tracing::info!("room closed");
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

fn refuse_all(commands: &mut mpsc::Receiver<RoomCommand>, message: &str) {
    commands.close();
    while let Ok(command) = commands.try_recv() {
        if let RoomCommand::Join { reply, .. } = command {
            let _ = reply.send(Err(ProtocolError::new(ErrorCode::Internal, message)));
        }
    }
}

impl Room {
    fn handle_command(&mut self, command: RoomCommand) {
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
                let effects = self.core.signal(self.media.as_mut(), &participant, message);
                self.apply(effects);
            }
            RoomCommand::Leave { participant } => {
                let effects = self.core.leave(self.media.as_mut(), &participant);
                self.apply(effects);
            }
            RoomCommand::Describe { reply } => {
                let _ = reply.send(RoomSnapshot::of(
                    &self.handle,
                    &self.core,
                    self.media.as_ref(),
                ));
            }
            RoomCommand::StartRecording { format, reply } => {
                let _ = reply.send(self.start_recording(format));
            }
            RoomCommand::StopRecording { id, reply } => self.recordings.stop(&id, reply),
            RoomCommand::ListRecordings { reply } => {
                let _ = reply.send(self.recordings.list());
            }
            RoomCommand::SetLayout { spec, reply } => {
                let result =
                    self.core
                        .set_layout(self.media.as_mut(), &spec)
                        .map(|(message, effects)| {
                            self.apply(effects);
                            message
                        });
                let _ = reply.send(result);
            }
            RoomCommand::GetLayout { reply } => {
                let _ = reply.send(self.core.layout());
            }
            RoomCommand::Shutdown => {}
        }
    }

    fn join(
        &mut self,
        name: String,
        can_publish: bool,
        outbox: Outbox,
    ) -> Result<ParticipantId, ProtocolError> {
        let id = ParticipantId::fresh();
        let now = crate::auth::unix_now();
        let effects = self
            .core
            .join(self.media.as_mut(), id.clone(), name, can_publish, now)?;
        self.outboxes.insert(id.clone(), outbox);
        self.apply(effects);
        // A joiner hears of the recordings under way, right after "joined".
        for message in self.recordings.running_messages() {
            self.apply(vec![Effect::Send(id.clone(), message)]);
        }
        if self.core.len() == 1
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

    fn start_recording(&mut self, format: Format) -> Result<RecordingInfo, RecordingError> {
        let started =
            self.recordings
                .start_on(self.media.as_mut(), format, &self.settings.mcu.templates);
        if let Ok(info) = &started {
            let effects = self
                .core
                .tell_everyone(recording_message(info, RecordingState::Started));
            self.apply(effects);
        }
        started
    }

    async fn settle_recordings(&mut self) {
        for message in self.recordings.settle(self.media.as_mut()).await {
            let effects = self.core.tell_everyone(message);
            self.apply(effects);
        }
    }

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

    /// Delivers what the core decided. A participant whose session does not
    /// take its messages is removed, which decides more.
    fn apply(&mut self, effects: Vec<Effect>) {
        let mut queue: VecDeque<Effect> = effects.into();
        while let Some(effect) = queue.pop_front() {
            match effect {
                Effect::Send(id, message) => {
                    let Some(outbox) = self.outboxes.get(&id) else {
                        continue;
                    };
                    match outbox.try_send(message) {
                        Ok(()) => {}
                        Err(TrySendError::Full(_)) => {
                            tracing::warn!(participant = %id, "client is not reading its messages; removing it");
                            queue.extend(self.core.remove(
                                self.media.as_mut(),
                                &id,
                                None,
                                "too slow",
                            ));
                        }
                        // The session ended; its leave is on the way.
                        Err(TrySendError::Closed(_)) => {}
                    }
                }
                Effect::Release(id) => {
                    if self.core.is_empty() {
                        // Before the last session hears it is out (when its
                        // outbox goes, next), so that a rejoin it sends
                        // makes a new room instead of finding this closing
                        // one. The other way round, a rejoin in another
                        // mode was once refused mode-mismatch.
                        forget(&self.registry, &self.handle);
                    }
                    self.outboxes.remove(&id);
                }
            }
        }
    }

    fn handle_bus_message(&mut self, message: &gst::Message) {
        let effects = bus::handle(
            message,
            &mut self.core,
            self.media.as_mut(),
            &mut self.recordings,
            &self.latency,
        );
        self.apply(effects);
    }
}
