//! The layout REST API of MCU rooms (behind the API secret, like all of
//! /api):
//!
//! - `GET /api/rooms/{room}/layout`  the composite's layout and tiles now
//! - `PUT /api/rooms/{room}/layout`  a new layout (room/layout.rs says
//!   what the body may hold); answers with the layout as announced
//!
//! Errors are `{"code","message"}` with the status of the code. The room
//! task does the work; this only translates.

use super::AppState;
use crate::ids::RoomId;
use crate::protocol::Layout;
use crate::room::RoomCommand;
use crate::room::RoomHandle;
use crate::room::layout::{LayoutError, LayoutErrorCode, not_composited, parse_layout_request};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use std::time::Duration;
use tokio::sync::oneshot;

/// A room answers at once; longer than this, something is wrong.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

pub struct LayoutApiError(LayoutError);

impl IntoResponse for LayoutApiError {
    fn into_response(self) -> Response {
        super::api::error_response(
            self.0.code.http_status(),
            self.0.code.as_str(),
            &self.0.message,
        )
    }
}

impl From<LayoutError> for LayoutApiError {
    fn from(e: LayoutError) -> Self {
        LayoutApiError(e)
    }
}

fn unknown_room(room: &str) -> LayoutApiError {
    LayoutApiError(LayoutError::new(
        LayoutErrorCode::UnknownRoom,
        format!(
            "No room \"{}\" is open: a layout is set in a room with participants.",
            room.chars().take(64).collect::<String>()
        ),
    ))
}

fn open_room(state: &AppState, room: &str) -> Result<RoomHandle, LayoutApiError> {
    RoomId::parse(room)
        .and_then(|id| state.registry.room(&id))
        .ok_or_else(|| unknown_room(room))
}

async fn ask<T>(
    handle: &RoomHandle,
    command: impl FnOnce(oneshot::Sender<T>) -> RoomCommand,
) -> Result<T, LayoutApiError> {
    match tokio::time::timeout(REPLY_TIMEOUT, handle.ask(command)).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(_)) => Err(unknown_room(handle.id.as_str())),
        Err(_) => Err(LayoutApiError(LayoutError::new(
            LayoutErrorCode::Internal,
            "The room did not answer in time.",
        ))),
    }
}

pub async fn show(
    State(state): State<AppState>,
    Path(room): Path<String>,
) -> Result<Json<Layout>, LayoutApiError> {
    let handle = open_room(&state, &room)?;
    ask(&handle, |reply| RoomCommand::GetLayout { reply })
        .await?
        .map(Json)
        .ok_or_else(|| LayoutApiError(not_composited(handle.mode)))
}

pub async fn set(
    State(state): State<AppState>,
    Path(room): Path<String>,
    body: Bytes,
) -> Result<Json<Layout>, LayoutApiError> {
    let spec = parse_layout_request(&body)?;
    let handle = open_room(&state, &room)?;
    let layout = ask(&handle, |reply| RoomCommand::SetLayout { spec, reply }).await??;
    Ok(Json(layout))
}
