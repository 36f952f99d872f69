//! A room's recordings, owned by the room task: each one's lifecycle, its
//! branch in the room pipeline, and the HTTP requests waiting for it to end.
//! The room task supplies the pipeline and the program's feeds.

use crate::ids::RoomId;
use crate::media::program::Feeds;
use crate::media::recorder::RecordingBranch;
use crate::media::templates::PipelineTemplates;
use crate::recording::naming::{RecordingPaths, recording_paths, utc_stamp};
use crate::recording::{
    Format, Lifecycle, Phase, RecordingError, RecordingErrorCode, RecordingId, RecordingInfo,
    StopStep,
};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::oneshot;

/// How long a stop may take to finish the file before it is given up: the
/// encoder may have up to 2 s of queued frames to drain, on a busy machine
/// at a fraction of real time. Below the registry's 10 s wait for a room.
pub const FINALIZE_TIMEOUT: Duration = Duration::from_secs(8);
/// Recordings running at once in one room; each costs an encode or two.
pub const MAX_ACTIVE: usize = 4;
/// Ended recordings a room keeps listing.
const MAX_KEPT: usize = 50;

pub type InfoReply = oneshot::Sender<Result<RecordingInfo, RecordingError>>;

struct Entry {
    id: RecordingId,
    format: Format,
    paths: RecordingPaths,
    started: String,
    life: Lifecycle,
    branch: Option<RecordingBranch>,
    /// Stop requests answered once the file is complete.
    waiters: Vec<InfoReply>,
}

/// A recording checked and given its files, not yet started.
pub struct Prepared {
    id: RecordingId,
    format: Format,
    paths: RecordingPaths,
    started: String,
}

/// A recording that ended and left the pipeline: what is left to do off
/// the room task before its waiters are answered.
pub struct Ended {
    pub id: RecordingId,
    pub bin: gst::Element,
    /// The file to flush to disk (HLS segments are closed as they go).
    pub file: Option<PathBuf>,
    pub waiters: Vec<InfoReply>,
}

pub struct Recordings {
    dir: PathBuf,
    room: RoomId,
    entries: Vec<Entry>,
}

fn storage_error(path: &Path, e: std::io::Error) -> RecordingError {
    RecordingError::new(
        RecordingErrorCode::StorageError,
        format!("Cannot write to {}: {e}.", path.display()),
    )
}

/// Bytes on disk: the file, or every file of an HLS folder.
fn size_on_disk(paths: &RecordingPaths) -> u64 {
    match &paths.folder {
        Some(folder) => std::fs::read_dir(folder)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0),
        None => std::fs::metadata(&paths.main).map(|m| m.len()).unwrap_or(0),
    }
}

impl Recordings {
    pub fn new(dir: PathBuf, room: RoomId) -> Self {
        Recordings {
            dir,
            room,
            entries: Vec::new(),
        }
    }

    pub fn any_active(&self) -> bool {
        self.entries.iter().any(|e| e.life.is_active())
    }

    /// Recordings under way (not stopping), for participants who join.
    pub fn running(&self) -> Vec<RecordingId> {
        self.entries
            .iter()
            .filter(|e| e.life.phase() == Phase::Recording)
            .map(|e| e.id.clone())
            .collect()
    }

    /// Checks a new recording may start and that its file can be written.
    pub fn prepare(&self, format: Format) -> Result<Prepared, RecordingError> {
        let active = self.entries.iter().filter(|e| e.life.is_active()).count();
        if active >= MAX_ACTIVE {
            return Err(RecordingError::new(
                RecordingErrorCode::TooManyRecordings,
                format!("The room already has {MAX_ACTIVE} recordings running; stop one first."),
            ));
        }
        let now = SystemTime::now();
        let mut id = RecordingId::fresh(now);
        while self.entries.iter().any(|e| e.id == id) {
            id = RecordingId::fresh(SystemTime::now());
        }
        let paths = recording_paths(&self.dir, self.room.as_str(), &id, format);
        std::fs::create_dir_all(&self.dir).map_err(|e| storage_error(&self.dir, e))?;
        match &paths.folder {
            Some(folder) => std::fs::create_dir(folder).map_err(|e| storage_error(folder, e))?,
            // Fails now, with a reason, rather than in the pipeline.
            // Never through a symlink someone left under that name: a new
            // file or nothing (create_dir above refuses the same way).
            None => {
                std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&paths.main)
                    .map_err(|e| storage_error(&paths.main, e))?;
            }
        }
        let secs = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        Ok(Prepared {
            id,
            format,
            paths,
            started: utc_stamp(secs),
        })
    }

    /// Undoes `prepare` for a recording that could not start.
    pub fn abandon(&self, prepared: Prepared) {
        let _ = match &prepared.paths.folder {
            Some(folder) => std::fs::remove_dir_all(folder),
            None => std::fs::remove_file(&prepared.paths.main),
        };
    }

    /// Starts a prepared recording's branch on the program's feeds.
    pub fn launch(
        &mut self,
        prepared: Prepared,
        pipeline: &gst::Pipeline,
        feeds: &Feeds,
        templates: &PipelineTemplates,
    ) -> Result<RecordingInfo, RecordingError> {
        let branch = match RecordingBranch::start(
            pipeline,
            &prepared.id,
            prepared.format,
            &prepared.paths,
            feeds,
            templates,
        ) {
            Ok(branch) => branch,
            Err(e) => {
                tracing::error!(recording = %prepared.id, "could not start the recording: {e:#}");
                self.abandon(prepared);
                return Err(RecordingError::new(
                    RecordingErrorCode::Internal,
                    format!("The recording could not start: {e:#}."),
                ));
            }
        };
        tracing::info!(recording = %prepared.id, format = %prepared.format, path = %prepared.paths.main.display(), "recording started");
        self.entries.push(Entry {
            id: prepared.id,
            format: prepared.format,
            paths: prepared.paths,
            started: prepared.started,
            life: Lifecycle::new(Instant::now()),
            branch: Some(branch),
            waiters: Vec::new(),
        });
        self.forget_old();
        Ok(self.info_of(self.entries.len() - 1))
    }

    fn forget_old(&mut self) {
        while self.entries.len() > MAX_KEPT {
            match self.entries.iter().position(|e| !e.life.is_active()) {
                Some(i) => {
                    self.entries.remove(i);
                }
                None => break,
            }
        }
    }

    fn index(&self, id: &RecordingId) -> Option<usize> {
        self.entries.iter().position(|e| &e.id == id)
    }

    fn info_of(&self, index: usize) -> RecordingInfo {
        let e = &self.entries[index];
        RecordingInfo {
            id: e.id.to_string(),
            room: self.room.to_string(),
            format: e.format,
            state: e.life.phase(),
            path: e.paths.main.display().to_string(),
            url: e.paths.url.clone(),
            started: e.started.clone(),
            duration_ms: e.life.duration(Instant::now()).as_millis() as u64,
            size_bytes: size_on_disk(&e.paths),
            error: e.life.error().map(str::to_owned),
        }
    }

    pub fn info(&self, id: &RecordingId) -> Option<RecordingInfo> {
        self.index(id).map(|i| self.info_of(i))
    }

    pub fn list(&self) -> Vec<RecordingInfo> {
        (0..self.entries.len()).map(|i| self.info_of(i)).collect()
    }

    /// A stop request: finishes the file and answers `reply` when it is
    /// complete (at once if the recording had already ended).
    pub fn stop(&mut self, id: &RecordingId, reply: InfoReply) {
        let Some(i) = self.index(id) else {
            let _ = reply.send(Err(RecordingError::new(
                RecordingErrorCode::UnknownRecording,
                format!("Room \"{}\" has no recording \"{id}\".", self.room),
            )));
            return;
        };
        match self.entries[i]
            .life
            .request_stop(Instant::now(), FINALIZE_TIMEOUT)
        {
            StopStep::Finalize => {
                tracing::info!(recording = %id, "recording stopping");
                if let Some(branch) = self.entries[i].branch.as_mut() {
                    branch.finalize();
                }
                self.entries[i].waiters.push(reply);
            }
            StopStep::Wait => self.entries[i].waiters.push(reply),
            StopStep::Ended => {
                let _ = reply.send(Ok(self.info_of(i)));
            }
        }
    }

    /// Stops every running recording (the room is closing).
    pub fn stop_all(&mut self) {
        let now = Instant::now();
        for entry in &mut self.entries {
            if entry.life.request_stop(now, FINALIZE_TIMEOUT) == StopStep::Finalize {
                tracing::info!(recording = %entry.id, "recording stopping");
                if let Some(branch) = entry.branch.as_mut() {
                    branch.finalize();
                }
            }
        }
    }

    /// The muxer finished the file.
    pub fn finished(&mut self, id: &RecordingId) {
        if let Some(i) = self.index(id)
            && self.entries[i].life.finalized(Instant::now())
        {
            tracing::info!(recording = %id, "recording complete");
        }
    }

    /// Writing failed; the branch goes, the file keeps what it had.
    pub fn failed(&mut self, id: &RecordingId, message: &str) {
        if let Some(i) = self.index(id)
            && self.entries[i].life.fail(Instant::now(), message)
        {
            tracing::error!(recording = %id, "recording failed: {message}");
        }
    }

    /// The program all recordings share failed: every recording fails.
    pub fn all_failed(&mut self, message: &str) {
        let ids: Vec<RecordingId> = self
            .entries
            .iter()
            .filter(|e| e.life.is_active())
            .map(|e| e.id.clone())
            .collect();
        for id in ids {
            self.failed(&id, message);
        }
    }

    /// Stops that took too long fail (the file may lack its index).
    pub fn check_overdue(&mut self) {
        let now = Instant::now();
        let overdue: Vec<RecordingId> = self
            .entries
            .iter()
            .filter(|e| e.life.overdue(now))
            .map(|e| e.id.clone())
            .collect();
        for id in overdue {
            self.failed(
                &id,
                &format!(
                    "The file was not finished within {} s; it may lack its index.",
                    FINALIZE_TIMEOUT.as_secs()
                ),
            );
        }
    }

    /// Takes ended recordings' branches out of the pipeline.
    pub fn take_ended(&mut self, pipeline: &gst::Pipeline) -> Vec<Ended> {
        let mut ended = Vec::new();
        for entry in &mut self.entries {
            if entry.life.is_active() {
                continue;
            }
            if let Some(branch) = entry.branch.take() {
                ended.push(Ended {
                    id: entry.id.clone(),
                    bin: branch.remove(pipeline),
                    file: entry
                        .paths
                        .folder
                        .is_none()
                        .then(|| entry.paths.main.clone()),
                    waiters: std::mem::take(&mut entry.waiters),
                });
            }
        }
        ended
    }

    /// Files being written, to flush to disk now and then so that a power
    /// loss costs seconds, not the recording.
    pub fn files_being_written(&self) -> Vec<PathBuf> {
        self.entries
            .iter()
            .filter(|e| e.life.phase() == Phase::Recording && e.paths.folder.is_none())
            .map(|e| e.paths.main.clone())
            .collect()
    }
}

/// Flushes a file's written data to disk. fsync works on the file, not the
/// descriptor, so this also covers what the pipeline's filesink wrote.
pub fn sync_file(path: &Path) {
    if let Ok(file) = std::fs::File::open(path) {
        let _ = file.sync_data();
    }
}
