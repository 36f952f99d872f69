//! The WebSocket transport at /ws: one reader and one writer task per socket.

use super::session::{Inbound, run_session};
use crate::protocol::{ErrorCode, ProtocolError, ServerMessage, parse_client_message};
use crate::room::OUTBOX_CAPACITY;
use crate::server::AppState;
use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use futures::{SinkExt, StreamExt};
use std::time::Duration;
use tokio::sync::mpsc;

/// Largest text frame accepted; SDP included.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// A ping when the socket has been quiet this long keeps NATs and proxies open.
const PING_INTERVAL: Duration = Duration::from_secs(20);

pub async fn upgrade(ws: WebSocketUpgrade, State(state): State<AppState>) -> Response {
    ws.max_message_size(MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| serve_socket(socket, state))
}

async fn serve_socket(socket: WebSocket, state: AppState) {
    let (mut sink, mut stream) = socket.split();
    let (outbox, mut outgoing) = mpsc::channel::<ServerMessage>(OUTBOX_CAPACITY);
    let (inbound, session_inbound) = mpsc::channel::<Inbound>(32);
    let session = tokio::spawn(run_session(state.registry.clone(), session_inbound, outbox));

    let mut shutdown = state.shutdown.clone();
    let writer = tokio::spawn(async move {
        let mut ping = tokio::time::interval(PING_INTERVAL);
        ping.reset();
        loop {
            tokio::select! {
                message = outgoing.recv() => {
                    let Some(message) = message else { break };
                    let Ok(text) = serde_json::to_string(&message) else { continue };
                    if sink.send(Message::Text(text.into())).await.is_err() {
                        break;
                    }
                    ping.reset();
                }
                _ = ping.tick() => {
                    if sink.send(Message::Ping(Vec::new().into())).await.is_err() {
                        break;
                    }
                }
                _ = stopped(&mut shutdown) => break,
            }
        }
        let _ = sink.send(Message::Close(None)).await;
        let _ = sink.close().await;
    });

    let mut shutdown = state.shutdown.clone();
    loop {
        let frame = tokio::select! {
            frame = stream.next() => frame,
            _ = stopped(&mut shutdown) => break,
        };
        let item = match frame {
            Some(Ok(Message::Text(text))) => parse_client_message(text.as_str()),
            Some(Ok(Message::Binary(_))) => Err(ProtocolError::new(
                ErrorCode::BadJson,
                "Binary frames are not part of the protocol; send JSON text.",
            )),
            Some(Ok(Message::Close(_))) | None => break,
            Some(Ok(_)) => continue,
            Some(Err(e)) => {
                tracing::debug!("websocket read failed: {e}");
                break;
            }
        };
        if inbound.send(item).await.is_err() {
            break;
        }
    }
    // Reader done: the session leaves the room; its outbox then closes and
    // the writer ends.
    drop(inbound);
    let _ = session.await;
    if tokio::time::timeout(Duration::from_secs(5), writer)
        .await
        .is_err()
    {
        tracing::debug!("websocket writer did not finish in time");
    }
}

/// Resolves once the server starts shutting down.
async fn stopped(shutdown: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}
