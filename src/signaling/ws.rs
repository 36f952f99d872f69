//! The WebSocket transport at /ws: one reader and one writer task per socket.

use super::AppState;
use super::Signaling;
use super::access::{forbidden_origin, origin_allowed};
use super::client_address::client_address;
use super::session::{Inbound, parse_limited};
use crate::connections::ConnectionSlot;
use crate::protocol::{ErrorCode, ProtocolError, ServerMessage};
use axum::Extension;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::response::Response;
use futures::{SinkExt, StreamExt};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// A ping when the socket has been quiet this long keeps NATs and proxies open.
const PING_INTERVAL: Duration = Duration::from_secs(20);
/// Frames and messages up to this many times the message limit are read and
/// answered with "too-large"; larger ones close the socket. The frame limit
/// matters as much as the message limit: tungstenite buffers a whole frame
/// (16 MiB by default) before it looks at the message size.
const FRAME_SLACK: usize = 16;
/// How long a connection's end may take once its session let go of it:
/// the writer's last messages and close, then the client's close. A writer
/// still blocked then (a client that stopped reading, its socket buffers
/// full) is aborted, which closes the socket.
const WRITER_GRACE: Duration = Duration::from_secs(5);

pub async fn upgrade(
    ws: WebSocketUpgrade,
    headers: HeaderMap,
    client: Option<Extension<ConnectInfo<SocketAddr>>>,
    slot: Option<Extension<ConnectionSlot>>,
    State(state): State<AppState>,
) -> Response {
    let signaling = state.signaling.clone();
    let client = client.map(|Extension(ConnectInfo(addr))| {
        client_address(addr.ip(), &headers, &signaling.settings.trusted_proxies)
    });
    if !origin_allowed(&signaling.settings.allowed_origins, &headers) {
        return forbidden_origin();
    }
    let max = signaling.settings.limits.max_message_bytes;
    let largest = max.saturating_mul(FRAME_SLACK);
    ws.max_message_size(largest)
        .max_frame_size(largest)
        .on_upgrade(move |socket| async move {
            // Counted against the client's address while the socket lives.
            let _slot = slot;
            serve_socket(socket, state, client).await
        })
}

async fn serve_socket(socket: WebSocket, state: AppState, client: Option<IpAddr>) {
    let signaling: Arc<Signaling> = state.signaling.clone();
    let max_bytes = signaling.settings.limits.max_message_bytes;
    let (mut sink, mut stream) = socket.split();
    let (inbound, mut outgoing) = super::open_session(&signaling, client);

    let mut shutdown = state.shutdown.clone();
    let mut writer = tokio::spawn(async move {
        let mut ping = tokio::time::interval(PING_INTERVAL);
        ping.reset();
        loop {
            tokio::select! {
                message = outgoing.recv() => {
                    let Some(message) = message else { break };
                    if send(&mut sink, &message).await.is_err() {
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
            // The session ended (join timeout, left for another connection).
            _ = inbound.closed() => break,
            _ = stopped(&mut shutdown) => break,
        };
        let item: Inbound = match frame {
            Some(Ok(Message::Text(text))) => parse_limited(text.as_str(), max_bytes),
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
    // Reader done: the session leaves the room, or waits for a resume; once
    // it lets go of this connection's outbox the writer ends, with a close.
    drop(inbound);
    let closed = async {
        let _ = (&mut writer).await;
        // Then the client's frames are read, and dropped, until it closes
        // too. A socket closed with data still unread is reset, not closed,
        // and the reset can discard what the client has not read yet: the
        // error that says why it was let go (seen: a media-failed removal
        // whose bot never got the error).
        while let Some(Ok(frame)) = stream.next().await {
            if matches!(frame, Message::Close(_)) {
                break;
            }
        }
    };
    if tokio::time::timeout(WRITER_GRACE, closed).await.is_err() && !writer.is_finished() {
        // Dropping a JoinHandle would leave it blocked in `send` for good.
        tracing::debug!("websocket writer did not finish in time; closing the socket");
        writer.abort();
    }
}

async fn send(
    sink: &mut futures::stream::SplitSink<WebSocket, Message>,
    message: &ServerMessage,
) -> Result<(), axum::Error> {
    let Ok(text) = serde_json::to_string(message) else {
        return Ok(());
    };
    sink.send(Message::Text(text.into())).await
}

/// Resolves once the server starts shutting down.
pub(crate) async fn stopped(shutdown: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}
