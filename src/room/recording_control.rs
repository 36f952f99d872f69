//! The room's side of its recordings: starting one on its media's feeds,
//! taking ended ones out of the pipeline and closing their files (off the
//! room's task) before anyone waiting is answered, and flushing files being
//! written. Returns what everyone in the room is told.

use super::recordings::{self, Recordings};
use crate::media::backend::RoomMedia;
use crate::media::templates::PipelineTemplates;
use crate::protocol::{RecordingState, ServerMessage};
use crate::recording::{Format, RecordingError, RecordingErrorCode, RecordingInfo};
use gst::prelude::*;
use std::time::{Duration, Instant};

/// How often files being recorded are flushed to disk.
const SYNC_INTERVAL: Duration = Duration::from_secs(2);

impl Recordings {
    /// Starts a recording of the room's media in `format`.
    pub fn start_on(
        &mut self,
        media: &mut dyn RoomMedia,
        format: Format,
        templates: &PipelineTemplates,
    ) -> Result<RecordingInfo, RecordingError> {
        let Some(pipeline) = media.pipeline().cloned() else {
            return Err(RecordingError::new(
                RecordingErrorCode::NotRecordable,
                "A mesh room cannot be recorded: its media goes from peer to peer, not through the server.",
            ));
        };
        let prepared = self.prepare(format).inspect_err(|e| {
            tracing::error!("recording refused: {e}");
        })?;
        let feeds = match media.recording_feeds() {
            Ok(feeds) => feeds,
            Err(e) => {
                tracing::error!("could not build what recordings record: {e:#}");
                self.abandon(prepared);
                return Err(RecordingError::new(
                    RecordingErrorCode::Internal,
                    format!("The recording could not start: {e:#}."),
                ));
            }
        };
        let started = self.launch(prepared, &pipeline, &feeds, templates);
        if started.is_err() && !self.any_active() {
            media.close_recording_feeds();
        }
        started
    }

    /// Takes ended recordings out of the pipeline and closes their files;
    /// only then are those waiting for them answered. Returns the
    /// "recording stopped" messages for everyone.
    pub async fn settle(&mut self, media: &mut dyn RoomMedia) -> Vec<ServerMessage> {
        let Some(pipeline) = media.pipeline().cloned() else {
            return Vec::new();
        };
        let ended = self.take_ended(&pipeline);
        if ended.is_empty() {
            return Vec::new();
        }
        let last = !self.any_active();
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
        if last {
            // Stopped off the room's task and waited for by nobody: the
            // files are complete.
            media.close_recording_feeds();
        }
        let mut told = Vec::new();
        for (id, replies) in waiters {
            let info = self.info(&id);
            if let Some(info) = &info {
                tracing::info!(recording = %id, state = ?info.state, bytes = info.size_bytes, ms = info.duration_ms, "recording ended");
                for reply in replies {
                    let _ = reply.send(Ok(info.clone()));
                }
            }
            told.push(match info {
                Some(info) => recording_message(&info, RecordingState::Stopped),
                None => ServerMessage::Recording {
                    state: RecordingState::Stopped,
                    id: id.to_string(),
                    format: None,
                    url: None,
                },
            });
        }
        told
    }

    /// Every few seconds, flushes the files being recorded to disk, off the
    /// room's task.
    pub fn sync_files(&mut self, last_sync: &mut Instant) {
        if last_sync.elapsed() < SYNC_INTERVAL {
            return;
        }
        *last_sync = Instant::now();
        let files = self.files_being_written();
        if !files.is_empty() {
            tokio::task::spawn_blocking(move || {
                for file in files {
                    recordings::sync_file(&file);
                }
            });
        }
    }

    /// "recording started" for each recording running now (a joiner is told).
    pub fn running_messages(&self) -> Vec<ServerMessage> {
        self.running()
            .iter()
            .filter_map(|id| self.info(id))
            .map(|info| recording_message(&info, RecordingState::Started))
            .collect()
    }
}

/// What participants are told of a recording: its id, format and where it
/// is served (a browser plays an HLS recording live from there).
pub fn recording_message(info: &RecordingInfo, state: RecordingState) -> ServerMessage {
    ServerMessage::Recording {
        state,
        id: info.id.clone(),
        format: Some(info.format.as_str().to_owned()),
        url: Some(info.url.clone()),
    }
}
