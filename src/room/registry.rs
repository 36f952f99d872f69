//! Room id -> room handle. The map only holds channels; each room's state
//! lives in its own task (room.rs).

use super::RoomSettings;
use super::creation_rate::{self, CreationRate};
use super::task::run_room;
use super::task_phases::RoomTasks;
use super::{Membership, Outbox, RoomCommand, RoomHandle, RoomSnapshot};
use crate::ids::RoomId;
use crate::protocol::{ErrorCode, Mode, ProtocolError};
use crate::recording::RecordingInfo;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::Instrument;

pub const MAX_NAME_CHARS: usize = 64;
const ROOM_COMMAND_CAPACITY: usize = 64;
const MAX_ARCHIVED_PER_ROOM: usize = 100;

pub struct Registry {
    rooms: Mutex<HashMap<RoomId, RoomHandle>>,
    /// The recordings of rooms that have closed, as they ended, so the API
    /// can still list them. Written once per room, when its task ends.
    archive: Mutex<HashMap<RoomId, Vec<RecordingInfo>>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Room tasks alive, counted by the tasks themselves (a room that did
    /// not stop when shut down is still counted), each with its phase.
    room_tasks: RoomTasks,
    next_generation: AtomicU64,
    /// Rooms opened per client address in the last minute.
    creations: Mutex<CreationRate>,
    settings: RoomSettings,
}

impl Registry {
    pub fn new(settings: RoomSettings) -> Arc<Self> {
        Arc::new(Registry {
            rooms: Mutex::new(HashMap::new()),
            archive: Mutex::new(HashMap::new()),
            tasks: Mutex::new(Vec::new()),
            room_tasks: RoomTasks::default(),
            next_generation: AtomicU64::new(1),
            creations: Mutex::new(CreationRate::new(settings.room_creations_per_ip)),
            settings,
        })
    }

    /// Joins (creating the room if needed). The room sends "joined" itself.
    pub async fn join(
        self: &Arc<Self>,
        room: &str,
        name: &str,
        mode: Option<Mode>,
        can_publish: bool,
        outbox: Outbox,
        client: Option<std::net::IpAddr>,
    ) -> Result<Membership, ProtocolError> {
        let room_id = RoomId::parse(room).ok_or_else(|| {
            ProtocolError::new(
                ErrorCode::BadName,
                "The room id must be 1 to 64 letters, digits, '-', '_' or '.'.",
            )
        })?;
        let name = name.trim();
        if name.is_empty()
            || name.chars().count() > MAX_NAME_CHARS
            || name.chars().any(char::is_control)
        {
            return Err(ProtocolError::new(
                ErrorCode::BadName,
                format!("The display name must be 1 to {MAX_NAME_CHARS} printable characters."),
            ));
        }
        let requested = mode.unwrap_or_default();
        // A room that is closing as we join drops our request; retry, which
        // finds the room gone and makes a new one.
        for _ in 0..3 {
            let handle = self.room_for(&room_id, requested, client)?;
            if mode.is_some_and(|m| m != handle.mode) {
                return Err(ProtocolError::new(
                    ErrorCode::ModeMismatch,
                    format!(
                        "Room \"{room_id}\" is a {} room; you asked to join it in {requested} mode.",
                        handle.mode
                    ),
                ));
            }
            let joined = handle
                .ask(|reply| RoomCommand::Join {
                    name: name.to_owned(),
                    can_publish,
                    outbox: outbox.clone(),
                    reply,
                })
                .await;
            match joined {
                Ok(Ok(participant)) => {
                    return Ok(Membership {
                        room: handle,
                        participant,
                    });
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => self.forget(&room_id, handle.generation),
            }
        }
        Err(ProtocolError::new(
            ErrorCode::Internal,
            "The room could not be joined; try again.",
        ))
    }

    fn room_for(
        self: &Arc<Self>,
        id: &RoomId,
        mode: Mode,
        client: Option<std::net::IpAddr>,
    ) -> Result<RoomHandle, ProtocolError> {
        let mut rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(handle) = rooms.get(id) {
            return Ok(handle.clone());
        }
        if rooms.len() >= self.settings.max_rooms {
            return Err(ProtocolError::new(
                ErrorCode::TooManyRooms,
                format!(
                    "The server has its maximum of {} rooms open; join an existing room or try later.",
                    self.settings.max_rooms
                ),
            ));
        }
        // One address cannot take every room for itself (mesh rooms cost
        // the server nothing else, so nothing else would stop it).
        if let Some(ip) = client
            && rooms.values().filter(|h| h.opened_by == Some(ip)).count()
                >= self.settings.max_rooms_per_ip
        {
            return Err(ProtocolError::new(
                ErrorCode::TooManyRooms,
                format!(
                    "Your address has {} rooms open already; join one of them or an existing room.",
                    self.settings.max_rooms_per_ip
                ),
            ));
        }
        // Nor open and close rooms as fast as it likes (each MCU room builds
        // a compositor and an encoder).
        if let Some(ip) = client {
            let mut creations = self.creations.lock().unwrap_or_else(|e| e.into_inner());
            if !creations.try_open(ip, std::time::Instant::now()) {
                return Err(ProtocolError::new(
                    ErrorCode::TooManyRooms,
                    format!(
                        "Your address has opened {} rooms in the last {} s; join an existing room or wait a little.",
                        creations.max_per_window(),
                        creation_rate::WINDOW.as_secs()
                    ),
                ));
            }
        }
        let (commands, inbox) = mpsc::channel(ROOM_COMMAND_CAPACITY);
        let handle = RoomHandle {
            id: id.clone(),
            mode,
            opened_by: client,
            generation: self.next_generation.fetch_add(1, Ordering::Relaxed),
            commands,
        };
        let span = tracing::info_span!("room", room = %id);
        let alive = self.room_tasks.start(id.clone(), handle.generation);
        let room = run_room(
            handle.clone(),
            self.settings.clone(),
            inbox,
            Arc::downgrade(self),
            alive,
        );
        let task = tokio::spawn(room.instrument(span));
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        tasks.retain(|t| !t.is_finished());
        tasks.push(task);
        rooms.insert(id.clone(), handle.clone());
        Ok(handle)
    }

    /// Drops a room's entry if it is still that room (not a newer one).
    pub(super) fn forget(&self, id: &RoomId, generation: u64) {
        let mut rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        if rooms.get(id).is_some_and(|h| h.generation == generation) {
            rooms.remove(id);
        }
    }

    /// The open room with this id, if any.
    pub fn room(&self, id: &RoomId) -> Option<RoomHandle> {
        self.rooms
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }

    /// Keeps a closed room's recordings (added to any it had before under
    /// the same id), so they can still be listed.
    pub(super) fn archive(&self, id: &RoomId, recordings: Vec<RecordingInfo>) {
        if recordings.is_empty() {
            return;
        }
        let mut archive = self.archive.lock().unwrap_or_else(|e| e.into_inner());
        let kept = archive.entry(id.clone()).or_default();
        kept.extend(recordings);
        let excess = kept.len().saturating_sub(MAX_ARCHIVED_PER_ROOM);
        kept.drain(..excess);
    }

    /// The recordings of closed rooms of this id, oldest first.
    pub fn archived_recordings(&self, id: &RoomId) -> Vec<RecordingInfo> {
        self.archive
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
            .unwrap_or_default()
    }

    fn handles(&self) -> Vec<RoomHandle> {
        self.rooms
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// One open room, as its task sees it.
    pub async fn snapshot_of(&self, id: &RoomId) -> Option<RoomSnapshot> {
        describe(&self.room(id)?).await
    }

    /// Every open room, as its task sees it.
    pub async fn snapshot(&self) -> Vec<RoomSnapshot> {
        let mut rooms = Vec::new();
        for handle in self.handles() {
            rooms.extend(describe(&handle).await);
        }
        rooms.sort_by(|a, b| a.id.cmp(&b.id));
        rooms
    }

    /// Number of room tasks still running (closing rooms included, and
    /// rooms that did not stop when the server shut down).
    pub fn running_rooms(&self) -> usize {
        self.room_tasks.len()
    }

    /// Each running room task and the step it is in ("id#generation:
    /// phase"), to tell where a room that does not end is stuck.
    pub fn room_tasks(&self) -> Vec<String> {
        self.room_tasks.describe()
    }

    /// Stops every room: pipelines to NULL, participants' outboxes dropped.
    pub async fn shutdown(&self) {
        for handle in self.handles() {
            let _ = handle.send(RoomCommand::Shutdown).await;
        }
        let tasks: Vec<_> =
            std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for task in tasks {
            if tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .is_err()
            {
                tracing::warn!("a room did not stop within 10 s");
            }
        }
    }
}

/// A room that has not answered "describe" after this long is reported.
const SLOW_ROOM: Duration = Duration::from_secs(5);

/// What one room says of itself (None once it has closed). A room whose
/// task does not answer is stuck somewhere no other check would show: it is
/// reported, and still waited for (an answer made up here would hide it).
async fn describe(handle: &RoomHandle) -> Option<RoomSnapshot> {
    let asked = async {
        handle
            .ask(|reply| RoomCommand::Describe { reply })
            .await
            .ok()
    };
    tokio::pin!(asked);
    tokio::select! {
        snapshot = &mut asked => return snapshot,
        _ = tokio::time::sleep(SLOW_ROOM) => {}
    }
    tracing::warn!(
        room = %handle.id,
        generation = handle.generation,
        inbox_closed = handle.commands.is_closed(),
        queued = ROOM_COMMAND_CAPACITY - handle.commands.capacity(),
        "the room has not answered for {SLOW_ROOM:?}: its task is stuck"
    );
    asked.await
}

/// Lets a room task unregister itself without keeping the registry alive.
pub(super) type RegistryRef = Weak<Registry>;
