//! The recording REST API:
//!
//! - `POST   /api/rooms/{room}/recordings`       start (body optional: `{"format":"webm"|"mp4"|"hls"}`)
//! - `GET    /api/rooms/{room}/recordings`       list, with state, size and duration so far
//! - `GET    /api/rooms/{room}/recordings/{id}`  one recording
//! - `DELETE /api/rooms/{room}/recordings/{id}`  stop; answers once the file is complete
//!
//! Errors are `{"code","message"}` with the status of the code
//! (recording/error.rs). The room task does the work; this only translates.

use super::AppState;
use crate::ids::RoomId;
use crate::recording::{
    RecordingError, RecordingErrorCode, RecordingId, RecordingInfo, parse_start_request,
};
use crate::room::{RoomCommand, RoomHandle};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::time::Duration;
use tokio::sync::oneshot;

/// Longer than a room takes to finish a file (or give up on it).
const REPLY_TIMEOUT: Duration = Duration::from_secs(20);

pub struct ApiError(RecordingError);

impl From<RecordingError> for ApiError {
    fn from(e: RecordingError) -> Self {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error_response(
            self.0.code.http_status(),
            self.0.code.as_str(),
            &self.0.message,
        )
    }
}

/// An API error as every /api route answers it: `{"code","message"}` with
/// the code's status.
pub fn error_response(status: u16, code: &str, message: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        Json(serde_json::json!({"code": code, "message": message})),
    )
        .into_response()
}

fn error(code: RecordingErrorCode, message: impl Into<String>) -> ApiError {
    ApiError(RecordingError::new(code, message))
}

fn room_id(room: &str) -> Result<RoomId, ApiError> {
    RoomId::parse(room).ok_or_else(|| {
        error(
            RecordingErrorCode::BadName,
            "The room id must be 1 to 64 letters, digits, '-', '_' or '.'.",
        )
    })
}

fn unknown_room(room: &RoomId) -> ApiError {
    error(
        RecordingErrorCode::UnknownRoom,
        format!("No room \"{room}\" is open: a recording starts in a room with participants."),
    )
}

fn unknown_recording(room: &RoomId, id: &str) -> ApiError {
    error(
        RecordingErrorCode::UnknownRecording,
        format!(
            "Room \"{room}\" has no recording \"{}\".",
            id.chars().take(40).collect::<String>()
        ),
    )
}

/// Sends a command to the room and waits for its reply; a room that closed
/// meanwhile is an unknown room.
async fn ask<T>(
    handle: &RoomHandle,
    command: impl FnOnce(oneshot::Sender<T>) -> RoomCommand,
) -> Result<T, ApiError> {
    match tokio::time::timeout(REPLY_TIMEOUT, handle.ask(command)).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(_)) => Err(unknown_room(&handle.id)),
        Err(_) => Err(error(
            RecordingErrorCode::Internal,
            "The room did not answer in time.",
        )),
    }
}

pub async fn start(
    State(state): State<AppState>,
    Path(room): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let room = room_id(&room)?;
    let format = parse_start_request(&body).map_err(RecordingError::from)?;
    if *state.shutdown.borrow() {
        return Err(error(
            RecordingErrorCode::ShuttingDown,
            "The server is shutting down.",
        ));
    }
    let handle = state
        .registry
        .room(&room)
        .ok_or_else(|| unknown_room(&room))?;
    let info = ask(&handle, |reply| RoomCommand::StartRecording {
        format,
        reply,
    })
    .await??;
    let info = published(&state, info);
    let location = format!("/api/rooms/{room}/recordings/{}", info.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(info),
    )
        .into_response())
}

/// A recording as the API shows it: its URL signed on a server with auth.
fn published(state: &AppState, mut info: RecordingInfo) -> RecordingInfo {
    info.url = state.signaling.settings.published_url(&info.url);
    info
}

/// Every recording of the room: those of earlier rooms of the same id that
/// have closed, then the open room's, as the API shows them.
async fn all_recordings(state: &AppState, room: &RoomId) -> Result<Vec<RecordingInfo>, ApiError> {
    let mut recordings = state.registry.archived_recordings(room);
    let open = state.registry.room(room);
    if let Some(handle) = &open
        && let Ok(live) = ask(handle, |reply| RoomCommand::ListRecordings { reply }).await
    {
        recordings.extend(live);
    }
    if open.is_none() && recordings.is_empty() {
        return Err(unknown_room(room));
    }
    Ok(recordings
        .into_iter()
        .map(|info| published(state, info))
        .collect())
}

pub async fn list(
    State(state): State<AppState>,
    Path(room): Path<String>,
) -> Result<Json<Vec<RecordingInfo>>, ApiError> {
    let room = room_id(&room)?;
    Ok(Json(all_recordings(&state, &room).await?))
}

pub async fn show(
    State(state): State<AppState>,
    Path((room, id)): Path<(String, String)>,
) -> Result<Json<RecordingInfo>, ApiError> {
    let room = room_id(&room)?;
    all_recordings(&state, &room)
        .await?
        .into_iter()
        .rev()
        .find(|r| r.id == id)
        .map(|info| Json(published(&state, info)))
        .ok_or_else(|| unknown_recording(&room, &id))
}

pub async fn stop(
    State(state): State<AppState>,
    Path((room, id)): Path<(String, String)>,
) -> Result<Json<RecordingInfo>, ApiError> {
    let room = room_id(&room)?;
    let Some(recording) = RecordingId::parse(&id) else {
        return Err(unknown_recording(&room, &id));
    };
    if let Some(handle) = state.registry.room(&room) {
        let stopped = ask(&handle, |reply| RoomCommand::StopRecording {
            id: recording.clone(),
            reply,
        })
        .await?;
        match stopped {
            Ok(info) => return Ok(Json(published(&state, info))),
            Err(e) if e.code != RecordingErrorCode::UnknownRecording => return Err(e.into()),
            Err(_) => {}
        }
    }
    // Ended with an earlier room of this id: stopping it again is a no-op.
    state
        .registry
        .archived_recordings(&room)
        .into_iter()
        .rev()
        .find(|r| r.id == id)
        .map(Json)
        .ok_or_else(|| unknown_recording(&room, &id))
}
