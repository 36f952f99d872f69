//! One client's signaling session, independent of the transport: it turns a
//! stream of client messages into room commands and reports errors back.

use crate::protocol::{ClientMessage, ErrorCode, ProtocolError, ServerMessage};
use crate::room::Membership;
use crate::room::registry::Registry;
use std::sync::Arc;
use tokio::sync::mpsc;

/// What a transport hands the session: a parsed message, or why it did not parse.
pub type Inbound = Result<ClientMessage, ProtocolError>;

/// Runs until `inbound` ends (the client went away), then leaves the room.
pub async fn run_session(
    registry: Arc<Registry>,
    mut inbound: mpsc::Receiver<Inbound>,
    outbox: mpsc::Sender<ServerMessage>,
) {
    let mut membership: Option<Membership> = None;
    while let Some(item) = inbound.recv().await {
        let result = match item {
            Err(e) => Err(e),
            Ok(ClientMessage::Join { .. }) if membership.is_some() => Err(ProtocolError::new(
                ErrorCode::AlreadyJoined,
                "This connection has already joined a room; send \"leave\" first.",
            )),
            Ok(ClientMessage::Join { room, name, mode }) => {
                match registry.join(&room, &name, mode, outbox.clone()).await {
                    Ok(m) => {
                        membership = Some(m);
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            }
            Ok(ClientMessage::Leave) => match membership.take() {
                Some(m) => {
                    m.leave().await;
                    Ok(())
                }
                None => Err(not_joined()),
            },
            Ok(message) => match &membership {
                Some(m) => m.signal(message).await,
                None => Err(not_joined()),
            },
        };
        if let Err(e) = result
            && outbox.send(e.to_message()).await.is_err()
        {
            break;
        }
    }
    if let Some(m) = membership {
        m.leave().await;
    }
}

fn not_joined() -> ProtocolError {
    ProtocolError::new(
        ErrorCode::NotJoined,
        "Send \"join\" before any other message.",
    )
}
