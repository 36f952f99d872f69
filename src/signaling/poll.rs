//! The HTTP long-poll transport, for networks that block WebSocket. It
//! carries exactly the messages of /ws and feeds the same session:
//!
//! - `POST /signal` with a join (or resume) opens a session and answers
//!   `{"session": id, "messages": [...]}`: the first server messages;
//! - `POST /signal/{id}` sends one client message, or a JSON array of them;
//! - `GET /signal/{id}?after=N` answers the server messages numbered after
//!   N, waiting up to `poll_wait` for one; asking after N also acknowledges
//!   1..=N, which are then forgotten, so a poll repeated after a lost
//!   response gets the same messages again, none lost and none doubled;
//! - `DELETE /signal/{id}` leaves.
//!
//! A session not polled for `poll_timeout` ends as if it had left.

use super::AppState;
use super::access::{error_response, forbidden_origin, origin_allowed};
use super::client_address::client_address;
use super::sequence::SeqBuffer;
use super::session::{Inbound, random_token, too_large};
use super::{Signaling, open_session};
use crate::protocol::{ClientMessage, ErrorCode, ProtocolError, ServerMessage, parse_client_value};
use axum::Extension;
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// Messages kept for a client that has not acknowledged them; beyond this
/// it is not polling and its session ends.
const MAX_UNACKNOWLEDGED: usize = 1024;
/// A batch POST may carry at most this many messages.
const MAX_BATCH: usize = 64;
/// How long opening a session waits for the join's answer.
const FIRST_REPLY_TIMEOUT: Duration = Duration::from_secs(15);
/// A request body may be this many times the message limit (a batch).
const BODY_SLACK: usize = 16;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/signal", post(open))
        .route("/signal/{session}", post(send).get(poll).delete(leave))
}

/// A server message and its number in the session.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Numbered {
    pub seq: u64,
    pub message: ServerMessage,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Opened {
    pub session: String,
    pub messages: Vec<Numbered>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Polled {
    pub messages: Vec<Numbered>,
    /// The session has ended: nothing will follow these messages.
    pub closed: bool,
}

#[derive(Debug, Deserialize)]
pub struct After {
    #[serde(default)]
    after: u64,
}

enum PollRequest {
    Poll {
        after: u64,
        reply: oneshot::Sender<Result<Polled, ProtocolError>>,
    },
    Leave,
    Close,
}

/// One long-poll session as the HTTP handlers reach it.
#[derive(Clone)]
struct PollHandle {
    requests: mpsc::Sender<PollRequest>,
    inbound: mpsc::Sender<Inbound>,
}

/// Long-poll session id -> its task.
#[derive(Default)]
pub struct PollTable {
    sessions: Mutex<HashMap<String, PollHandle>>,
}

impl PollTable {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, PollHandle>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self, id: &str) -> Option<PollHandle> {
        self.map().get(id).cloned()
    }

    /// Long-poll sessions open now.
    pub fn open(&self) -> usize {
        self.map().len()
    }

    /// Ends every long-poll session (server shutdown).
    pub fn close_all(&self) {
        let handles: Vec<PollHandle> = self.map().drain().map(|(_, h)| h).collect();
        for handle in handles {
            let _ = handle.requests.try_send(PollRequest::Close);
        }
    }
}

/// The session `id` names, for a request from an allowed origin; otherwise
/// the error response to send.
fn session_of(
    signaling: &Signaling,
    id: &str,
    headers: &HeaderMap,
) -> Result<PollHandle, Box<Response>> {
    if !origin_allowed(&signaling.settings.allowed_origins, headers) {
        return Err(Box::new(forbidden_origin()));
    }
    signaling
        .polls
        .get(id)
        .ok_or_else(|| Box::new(unknown_session()))
}

fn unknown_session() -> Response {
    error_response(&ProtocolError::new(
        ErrorCode::UnknownSession,
        "There is no long-poll session with that id (it ended, or timed out); join again.",
    ))
}

/// `POST /signal`: a join or resume opens a session.
async fn open(
    State(state): State<AppState>,
    client: Option<Extension<ConnectInfo<std::net::SocketAddr>>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let signaling = state.signaling.clone();
    if !origin_allowed(&signaling.settings.allowed_origins, &headers) {
        return forbidden_origin();
    }
    let max = signaling.settings.limits.max_message_bytes;
    let first = match read_body(body, max, 1).await {
        Ok(mut items) if items.len() == 1 => items.remove(0),
        Ok(_) => Err(ProtocolError::new(
            ErrorCode::BadMessage,
            "POST /signal takes one join or resume message.",
        )),
        Err(response) => return response,
    };
    match &first {
        Ok(ClientMessage::Join { .. } | ClientMessage::Resume { .. }) => {}
        Ok(_) => {
            return error_response(&ProtocolError::new(
                ErrorCode::NotJoined,
                "POST /signal takes a join or resume message; other messages go to POST /signal/{session}.",
            ));
        }
        Err(e) => return error_response(e),
    }
    let client = client.map(|Extension(ConnectInfo(a))| {
        client_address(a.ip(), &headers, &signaling.settings.trusted_proxies)
    });
    let (inbound, outgoing) = open_session(&signaling, client);
    let id = random_token();
    let (requests, requests_rx) = mpsc::channel(16);
    let handle = PollHandle { requests, inbound };
    signaling.polls.map().insert(id.clone(), handle.clone());
    tokio::spawn(run_poll(
        signaling.clone(),
        id.clone(),
        outgoing,
        requests_rx,
        handle.inbound.clone(),
        state.shutdown.clone(),
    ));
    if handle.inbound.send(first).await.is_err() {
        return unknown_session();
    }
    // The answer to the join: "joined" (or "resumed"), or an error.
    let (reply, answer) = oneshot::channel();
    let _ = handle
        .requests
        .send(PollRequest::Poll { after: 0, reply })
        .await;
    let polled = match tokio::time::timeout(FIRST_REPLY_TIMEOUT, answer).await {
        Ok(Ok(Ok(polled))) => polled,
        _ => {
            let _ = handle.requests.send(PollRequest::Close).await;
            return error_response(&ProtocolError::new(
                ErrorCode::Internal,
                "The join was not answered in time.",
            ));
        }
    };
    let refused = polled.messages.first().and_then(|n| match &n.message {
        ServerMessage::Error { code, message } => Some(ProtocolError::new(*code, message.clone())),
        _ => None,
    });
    if let Some(e) = refused {
        // Nothing to keep open: the client starts again with a new POST.
        // Unlisted before the answer goes (the session's task would do it
        // a moment later), so a refused join leaves nothing behind it.
        signaling.polls.map().remove(&id);
        let _ = handle.requests.send(PollRequest::Close).await;
        return error_response(&e);
    }
    axum::Json(Opened {
        session: id,
        messages: polled.messages,
    })
    .into_response()
}

/// `POST /signal/{id}`: one client message or an array of them.
async fn send(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let signaling = &state.signaling;
    let handle = match session_of(signaling, &id, &headers) {
        Ok(handle) => handle,
        Err(refused) => return *refused,
    };
    let max = signaling.settings.limits.max_message_bytes;
    let items = match read_body(body, max, MAX_BATCH).await {
        Ok(items) => items,
        Err(response) => return response,
    };
    let mut accepted = 0;
    for item in items {
        if handle.inbound.send(item).await.is_err() {
            return unknown_session();
        }
        accepted += 1;
    }
    axum::Json(serde_json::json!({ "accepted": accepted })).into_response()
}

/// `GET /signal/{id}?after=N`.
async fn poll(
    State(state): State<AppState>,
    Path(id): Path<String>,
    query: Result<Query<After>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let Ok(Query(After { after })) = query else {
        return error_response(&ProtocolError::new(
            ErrorCode::BadMessage,
            "Poll with ?after=N, N the last sequence number received (0 at first).",
        ));
    };
    let signaling = &state.signaling;
    let handle = match session_of(signaling, &id, &headers) {
        Ok(handle) => handle,
        Err(refused) => return *refused,
    };
    let (reply, answer) = oneshot::channel();
    if handle
        .requests
        .send(PollRequest::Poll { after, reply })
        .await
        .is_err()
    {
        return unknown_session();
    }
    let wait = signaling.settings.limits.poll_wait;
    match tokio::time::timeout(wait, answer).await {
        Ok(Ok(Ok(polled))) => axum::Json(polled).into_response(),
        Ok(Ok(Err(e))) => error_response(&e),
        // Replaced by a newer poll, or the session task ended.
        Ok(Err(_)) => axum::Json(Polled {
            messages: Vec::new(),
            closed: signaling.polls.get(&id).is_none(),
        })
        .into_response(),
        Err(_) => axum::Json(Polled {
            messages: Vec::new(),
            closed: false,
        })
        .into_response(),
    }
}

/// `DELETE /signal/{id}`: leave.
async fn leave(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let signaling = &state.signaling;
    let handle = match session_of(signaling, &id, &headers) {
        Ok(handle) => handle,
        Err(refused) => return *refused,
    };
    let _ = handle.requests.send(PollRequest::Leave).await;
    StatusCode::NO_CONTENT.into_response()
}

/// Reads a body of one message or an array of at most `max_items`; each
/// message is parsed (or refused) on its own, as a WebSocket frame would be.
async fn read_body(
    body: Body,
    max_message: usize,
    max_items: usize,
) -> Result<Vec<Inbound>, Response> {
    let limit = max_message.saturating_mul(BODY_SLACK);
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
        error_response(&ProtocolError::new(
            ErrorCode::TooLarge,
            format!("The request body is larger than {limit} bytes."),
        ))
    })?;
    let value: Value = match serde_json::from_slice(&bytes) {
        Ok(value) => value,
        Err(e) => {
            return Ok(vec![Err(ProtocolError::new(
                ErrorCode::BadJson,
                format!("The message is not valid JSON: {e}."),
            ))]);
        }
    };
    let values = match value {
        Value::Array(values) => values,
        value => vec![value],
    };
    if values.len() > max_items {
        return Err(error_response(&ProtocolError::new(
            ErrorCode::TooLarge,
            format!("At most {max_items} messages per request."),
        )));
    }
    Ok(values
        .into_iter()
        .map(|value| {
            let size = value.to_string().len();
            if size > max_message {
                Err(too_large(size, max_message))
            } else {
                parse_client_value(value)
            }
        })
        .collect())
}

/// One long-poll session's task: numbers the session's messages, keeps them
/// until acknowledged, answers polls, and ends the session when the client
/// stops polling.
async fn run_poll(
    signaling: Arc<Signaling>,
    id: String,
    mut outgoing: mpsc::Receiver<ServerMessage>,
    mut requests: mpsc::Receiver<PollRequest>,
    inbound: mpsc::Sender<Inbound>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let limits = signaling.settings.limits.clone();
    let mut buffer = PollBuffer::new(MAX_UNACKNOWLEDGED);
    let mut last_poll = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut session_closed = false;
    loop {
        tokio::select! {
            message = outgoing.recv(), if !session_closed => match message {
                Some(message) => {
                    if !buffer.push(message) {
                        tracing::info!("long-poll client is not taking its messages; ending its session");
                        let _ = inbound.send(Ok(ClientMessage::Leave)).await;
                        break;
                    }
                }
                None => {
                    session_closed = true;
                    buffer.close();
                }
            },
            request = requests.recv() => match request {
                Some(PollRequest::Poll { after, reply }) => {
                    last_poll = Instant::now();
                    buffer.poll(after, reply);
                }
                Some(PollRequest::Leave) => {
                    let _ = inbound.send(Ok(ClientMessage::Leave)).await;
                    break;
                }
                Some(PollRequest::Close) | None => break,
            },
            _ = tick.tick() => {
                if buffer.waiting() {
                    last_poll = Instant::now();
                } else if last_poll.elapsed() > limits.poll_timeout {
                    tracing::info!("long-poll session not polled for {:?}; leaving", limits.poll_timeout);
                    let _ = inbound.send(Ok(ClientMessage::Leave)).await;
                    break;
                } else if session_closed && buffer.is_drained() {
                    break;
                }
            }
            _ = super::ws::stopped(&mut shutdown) => break,
        }
    }
    signaling.polls.map().remove(&id);
    buffer.close();
}

/// The numbered messages of one long-poll session and the poll waiting for
/// them.
struct PollBuffer {
    messages: SeqBuffer<ServerMessage>,
    waiter: Option<(u64, oneshot::Sender<Result<Polled, ProtocolError>>)>,
    closed: bool,
}

impl PollBuffer {
    fn new(capacity: usize) -> Self {
        PollBuffer {
            messages: SeqBuffer::new(capacity),
            waiter: None,
            closed: false,
        }
    }

    /// False when full.
    fn push(&mut self, message: ServerMessage) -> bool {
        if self.messages.push(message).is_err() {
            return false;
        }
        self.answer_waiter();
        true
    }

    fn close(&mut self) {
        self.closed = true;
        self.answer_waiter();
    }

    fn waiting(&mut self) -> bool {
        if self.waiter.as_ref().is_some_and(|(_, w)| w.is_closed()) {
            self.waiter = None;
        }
        self.waiter.is_some()
    }

    fn is_drained(&self) -> bool {
        self.messages.is_empty()
    }

    fn poll(&mut self, after: u64, reply: oneshot::Sender<Result<Polled, ProtocolError>>) {
        self.messages.acknowledge(after);
        // A newer poll replaces an older one, which is answered empty.
        if let Some((_, old)) = self.waiter.take() {
            let _ = old.send(Ok(Polled {
                messages: Vec::new(),
                closed: self.closed,
            }));
        }
        self.waiter = Some((after, reply));
        self.answer_waiter();
    }

    fn answer_waiter(&mut self) {
        let Some((after, _)) = &self.waiter else {
            return;
        };
        let result = match self.messages.since(*after) {
            Ok(messages) if messages.is_empty() && !self.closed => return,
            Ok(messages) => Ok(Polled {
                closed: self.closed
                    && after.saturating_add(messages.len() as u64) >= self.messages.last_seq(),
                messages: messages
                    .into_iter()
                    .map(|(seq, message)| Numbered { seq, message })
                    .collect(),
            }),
            Err(gap) => Err(ProtocolError::new(
                ErrorCode::BadState,
                format!(
                    "Messages up to {} were acknowledged already; poll with after={} or later.",
                    gap.oldest_kept - 1,
                    gap.oldest_kept - 1
                ),
            )),
        };
        if let Some((_, reply)) = self.waiter.take() {
            let _ = reply.send(result);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn left(n: u32) -> ServerMessage {
        ServerMessage::ParticipantLeft {
            participant: format!("p{n}"),
        }
    }

    fn answered(rx: &mut oneshot::Receiver<Result<Polled, ProtocolError>>) -> Option<Polled> {
        rx.try_recv().ok().map(|r| r.expect("no error"))
    }

    fn seqs(p: &Polled) -> Vec<u64> {
        p.messages.iter().map(|n| n.seq).collect()
    }

    #[test]
    fn a_poll_waits_for_a_message_and_a_repeat_gets_the_same() {
        let mut buffer = PollBuffer::new(8);
        let (tx, mut rx) = oneshot::channel();
        buffer.poll(0, tx);
        assert!(answered(&mut rx).is_none(), "nothing yet: the poll waits");
        assert!(buffer.push(left(1)));
        assert_eq!(seqs(&answered(&mut rx).unwrap()), [1]);
        // That response was lost; the client asks again after 0.
        assert!(buffer.push(left(2)));
        let (tx, mut rx) = oneshot::channel();
        buffer.poll(0, tx);
        assert_eq!(seqs(&answered(&mut rx).unwrap()), [1, 2]);
        // Now it got them: after 2 waits for the next one only.
        let (tx, mut rx) = oneshot::channel();
        buffer.poll(2, tx);
        assert!(answered(&mut rx).is_none());
        assert!(buffer.is_drained());
        assert!(buffer.push(left(3)));
        assert_eq!(seqs(&answered(&mut rx).unwrap()), [3]);
    }

    #[test]
    fn a_newer_poll_replaces_the_waiting_one() {
        let mut buffer = PollBuffer::new(8);
        let (tx1, mut rx1) = oneshot::channel();
        buffer.poll(0, tx1);
        let (tx2, mut rx2) = oneshot::channel();
        buffer.poll(0, tx2);
        assert!(answered(&mut rx1).unwrap().messages.is_empty());
        buffer.push(left(1));
        assert_eq!(seqs(&answered(&mut rx2).unwrap()), [1]);
    }

    #[test]
    fn closing_answers_with_closed_once_everything_is_out() {
        let mut buffer = PollBuffer::new(8);
        buffer.push(left(1));
        buffer.close();
        let (tx, mut rx) = oneshot::channel();
        buffer.poll(0, tx);
        let polled = answered(&mut rx).unwrap();
        assert_eq!(seqs(&polled), [1]);
        assert!(polled.closed);
    }

    #[test]
    fn polling_before_what_was_acknowledged_is_an_error_not_a_repeat() {
        let mut buffer = PollBuffer::new(8);
        buffer.push(left(1));
        buffer.push(left(2));
        let (tx, _rx) = oneshot::channel();
        buffer.poll(2, tx);
        let (tx, mut rx) = oneshot::channel();
        buffer.poll(0, tx);
        assert_eq!(
            rx.try_recv().unwrap().unwrap_err().code,
            ErrorCode::BadState
        );
    }

    #[test]
    fn a_client_that_never_acknowledges_fills_the_buffer() {
        let mut buffer = PollBuffer::new(2);
        assert!(buffer.push(left(1)));
        assert!(buffer.push(left(2)));
        assert!(!buffer.push(left(3)));
    }
}
