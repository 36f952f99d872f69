//! What a message on a room's pipeline bus means for the room: a finished
//! recording, an audio level, a latency change, or an error, which costs
//! the recording it came from, the participant whose element it was (found
//! by structure: the media's ownership table), or the whole room when a
//! shared element failed.

use super::core::{Effect, RoomCore};
use super::recordings::Recordings;
use crate::media::backend::RoomMedia;
use crate::media::latency::LatencyRecalculation;
use crate::media::levels;
use crate::media::members;
use crate::media::recorder::{self, RecordingPart};
use crate::protocol::{ErrorCode, ProtocolError};
use gst::prelude::*;

/// Acts on one bus message; returns what the room decided.
pub(super) fn handle(
    message: &gst::Message,
    core: &mut RoomCore,
    media: &mut dyn RoomMedia,
    recordings: &mut Recordings,
    latency: &LatencyRecalculation,
) -> Vec<Effect> {
    use gst::MessageView;
    if let Some(id) = recorder::finished_recording(message) {
        recordings.finished(&id);
        return Vec::new();
    }
    if let Some(dbov) = levels::reported_level(message) {
        if let Some(owner) = message.src().and_then(|s| media.owner_of(s)) {
            core.audio_level(&owner, std::time::Instant::now(), dbov);
        }
        return Vec::new();
    }
    match message.view() {
        MessageView::Error(err) => triage(core, media, recordings, message.src(), err),
        MessageView::Warning(w) => {
            tracing::debug!("pipeline warning: {} ({:?})", w.error(), w.debug());
            Vec::new()
        }
        MessageView::Latency(_) => {
            if let Some(pipeline) = media.pipeline() {
                latency.request(pipeline);
            }
            Vec::new()
        }
        _ => Vec::new(),
    }
}

/// An error from the pipeline costs whatever it came from: a recording, a
/// participant, or (from a shared element) the room. Returns what the room
/// decided.
fn triage(
    core: &mut RoomCore,
    media: &mut dyn RoomMedia,
    recordings: &mut Recordings,
    source: Option<&gst::Object>,
    err: &gst::message::Error,
) -> Vec<Effect> {
    let (Some(source), Some(pipeline)) = (source, media.pipeline()) else {
        return Vec::new();
    };
    let path = source.path_string();
    let owner = media.owner_of(source);
    if owner.is_none() && !members::is_in(pipeline, source) {
        // Queued before its element was taken out (an ended recording,
        // a participant gone, a closed program): nothing left to fail.
        tracing::debug!("late error from removed {path}: {}", err.error());
        return Vec::new();
    }
    // A recording's failure costs the recording, never the call.
    match recorder::recording_part(pipeline, source) {
        Some(RecordingPart::Branch(id)) => {
            tracing::warn!(recording = %id, "recording error from {path}: {} ({:?})", err.error(), err.debug());
            recordings.failed(&id, &err.error().to_string());
            return Vec::new();
        }
        Some(RecordingPart::Program) => {
            tracing::warn!(
                "recording program error from {path}: {} ({:?})",
                err.error(),
                err.debug()
            );
            recordings.all_failed(&format!("What the room records failed: {}", err.error()));
            return Vec::new();
        }
        None => {}
    }
    match owner {
        Some(participant) if core.contains(&participant) => {
            tracing::warn!(participant = %participant, "media error from {path}, removing: {}", err.error());
            let told = ProtocolError::new(
                ErrorCode::MediaFailed,
                format!(
                    "Your media failed on the server: {}. You have been removed from the room.",
                    err.error()
                ),
            );
            core.remove(media, &participant, Some(told), "media error")
        }
        // A participant already removed: its last words do not matter.
        Some(participant) => {
            tracing::debug!(participant = %participant, "late error from {path}: {}", err.error());
            Vec::new()
        }
        None => {
            // A shared element failed: the composite is gone for
            // everyone, so say so and close the room.
            tracing::error!(
                "room pipeline error from {path}: {} ({:?})",
                err.error(),
                err.debug()
            );
            let told = ProtocolError::new(
                ErrorCode::Internal,
                "The room's media pipeline failed; please join again.",
            );
            core.remove_everyone(media, Some(told), "room pipeline failed")
        }
    }
}
