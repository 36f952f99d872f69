//! One client's signaling session, independent of the transport: it turns a
//! stream of client messages into room commands, applies the limits and the
//! room tokens, and reports errors back.
//!
//! A session outlives its connection: when a joined client's connection
//! drops, the session keeps its place in the room (and so its media) for the
//! resume grace period, numbering and keeping the messages meant for it,
//! until a new connection takes it over with "resume" or the grace runs out.

use super::identities::IdentityClaim;
use super::limits::TokenBucket;
use super::sequence::SeqBuffer;
use super::{Signaling, Transport};
use crate::auth;
use crate::live_count::{Held, LiveCount};
use crate::protocol::{ClientMessage, ErrorCode, ProtocolError, Quality, ServerMessage};
use crate::room::{Membership, OUTBOX_CAPACITY};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// What a transport hands the session: a parsed message, or why it did not parse.
pub type Inbound = Result<ClientMessage, ProtocolError>;

/// Messages already handed to a connection that are kept in case it
/// dropped them (a client resuming says how many it got).
const RETAINED_DELIVERED: usize = 64;
/// Messages not yet taken by the client; beyond this it is not reading.
const MAX_UNDELIVERED: usize = OUTBOX_CAPACITY;

/// Parses one client frame, refusing it first if it is too large.
pub fn parse_limited(text: &str, max_bytes: usize) -> Inbound {
    if text.len() > max_bytes {
        return Err(too_large(text.len(), max_bytes));
    }
    crate::protocol::parse_client_message(text)
}

pub fn too_large(size: usize, max_bytes: usize) -> ProtocolError {
    ProtocolError::new(
        ErrorCode::TooLarge,
        format!("The message is {size} bytes; the most this server accepts is {max_bytes}."),
    )
}

/// A new connection asking to take a detached (or stale) session over.
pub struct Attach {
    transport: Transport,
    received: Option<u64>,
    /// On refusal the connection is handed back with the reason.
    reply: oneshot::Sender<Result<(), (ProtocolError, Transport)>>,
}

/// Resume token -> the session holding it; and how many sessions run.
#[derive(Default)]
pub struct SessionTable {
    resumable: Mutex<HashMap<String, mpsc::Sender<Attach>>>,
    running: LiveCount,
    detached: LiveCount,
}

impl SessionTable {
    /// Sessions still running (attached or waiting for a resume).
    pub fn running(&self) -> usize {
        self.running.get()
    }

    /// Sessions in a room whose connection dropped, waiting for a resume.
    pub fn detached(&self) -> usize {
        self.detached.get()
    }

    fn insert(&self, token: String, attach: mpsc::Sender<Attach>) {
        self.map().insert(token, attach);
    }

    fn remove(&self, token: &str) {
        self.map().remove(token);
    }

    fn get(&self, token: &str) -> Option<mpsc::Sender<Attach>> {
        self.map().get(token).cloned()
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, mpsc::Sender<Attach>>> {
        self.resumable.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A random, unguessable token (128 bits, hex).
pub fn random_token() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

struct Joined {
    membership: Membership,
    resume_token: String,
    /// Its place under its token identity, on a server with auth.
    identity: Option<IdentityClaim>,
}

enum Flow {
    Continue,
    /// The session is over (its connection, if any, is closed).
    End,
}

/// The session's state. The channels are separate fields so that the main
/// loop can wait on all of them at once.
struct Session {
    signaling: Arc<Signaling>,
    /// The current connection, both ways; None while detached.
    inbound: Option<mpsc::Receiver<Inbound>>,
    outbox: Option<mpsc::Sender<ServerMessage>>,
    joined: Option<Joined>,
    /// Messages the room sends this participant.
    from_room: Option<mpsc::Receiver<ServerMessage>>,
    /// Connections that ask to take this session over.
    attach: Option<mpsc::Receiver<Attach>>,
    /// Every message for the client, numbered from 1.
    log: SeqBuffer<ServerMessage>,
    /// The newest message handed to the current connection.
    delivered: u64,
    bucket: TokenBucket,
    /// Said "rate-limited" for the current burst of refused messages.
    told_rate_limited: bool,
    candidates: u32,
    /// A connection that has not joined by then is closed.
    join_deadline: Option<Instant>,
    /// A detached session waits for "resume" until then.
    resume_deadline: Option<Instant>,
    /// Held while the session is in a room without a connection.
    detached: Option<Held>,
    /// The address of the connection that opened the session.
    client: Option<std::net::IpAddr>,
}

/// Runs one session until the client leaves, its connection closes without
/// a room to come back to, or its resume grace runs out.
pub async fn run_session(signaling: Arc<Signaling>, transport: Transport) {
    let _running = signaling.sessions.running.hold();
    let limits = signaling.settings.limits.clone();
    let mut session = Session {
        bucket: TokenBucket::new(
            limits.messages_per_second,
            limits.message_burst,
            Instant::now().into_std(),
        ),
        signaling,
        client: transport.client,
        inbound: Some(transport.inbound),
        outbox: Some(transport.outbox),
        joined: None,
        from_room: None,
        attach: None,
        log: SeqBuffer::new(MAX_UNDELIVERED + RETAINED_DELIVERED),
        delivered: 0,
        told_rate_limited: false,
        candidates: 0,
        join_deadline: Some(Instant::now() + limits.join_timeout),
        resume_deadline: None,
        detached: None,
    };
    loop {
        let deadline = session.deadline();
        let undelivered = session.delivered < session.log.last_seq();
        let flow = tokio::select! {
            item = recv_or_pend(&mut session.inbound) => match item {
                Some(item) => session.handle(item).await,
                None => session.connection_lost(),
            },
            message = recv_or_pend(&mut session.from_room) => match message {
                Some(message) => session.emit(message),
                None => session.removed_by_room(),
            },
            Some(attach) = recv_or_pend(&mut session.attach) => session.attach(attach),
            () = replaced(&mut session.joined) => session.replaced().await,
            room = has_room(&session.outbox), if undelivered => {
                if room {
                    session.flush();
                    Flow::Continue
                } else {
                    session.connection_lost()
                }
            }
            _ = sleep_until(deadline) => session.deadline_passed(),
        };
        if let Flow::End = flow {
            break;
        }
    }
    session.end().await;
}

async fn recv_or_pend<T>(channel: &mut Option<mpsc::Receiver<T>>) -> Option<T> {
    match channel {
        Some(c) => c.recv().await,
        None => std::future::pending().await,
    }
}

/// Resolves when a newer join with the same identity took this one's place.
async fn replaced(joined: &mut Option<Joined>) {
    if let Some(claim) = joined.as_mut().and_then(|j| j.identity.as_mut())
        && (&mut claim.replaced).await.is_ok()
    {
        return;
    }
    std::future::pending().await
}

/// Waits until the connection can take a message (true), or is gone (false).
async fn has_room(outbox: &Option<mpsc::Sender<ServerMessage>>) -> bool {
    match outbox {
        Some(o) => o.reserve().await.is_ok(),
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

impl Session {
    fn deadline(&self) -> Option<Instant> {
        match (self.outbox.is_some(), self.joined.is_some()) {
            (false, true) => self.resume_deadline,
            (true, false) => self.join_deadline,
            _ => None,
        }
    }

    async fn handle(&mut self, item: Inbound) -> Flow {
        if !self.bucket.try_take(Instant::now().into_std()) {
            if !self.told_rate_limited {
                self.told_rate_limited = true;
                let limits = &self.signaling.settings.limits;
                let e = ProtocolError::new(
                    ErrorCode::RateLimited,
                    format!(
                        "Too many messages: at most {} per second (bursts of {}); messages are being dropped.",
                        limits.messages_per_second, limits.message_burst
                    ),
                );
                return self.emit_error(e);
            }
            return Flow::Continue;
        }
        self.told_rate_limited = false;
        let result = match item {
            Err(e) => Err(e),
            Ok(ClientMessage::Join { .. } | ClientMessage::Resume { .. })
                if self.joined.is_some() =>
            {
                Err(ProtocolError::new(
                    ErrorCode::AlreadyJoined,
                    "This connection has already joined a room; send \"leave\" first.",
                ))
            }
            Ok(ClientMessage::Join {
                room,
                name,
                mode,
                token,
                quality,
            }) => {
                self.join(&room, &name, mode, token.as_deref(), quality)
                    .await
            }
            Ok(ClientMessage::Resume { token, received }) => {
                return self.resume(&token, received).await;
            }
            Ok(ClientMessage::Leave) => match self.leave_room() {
                Some(membership) => {
                    membership.leave().await;
                    Ok(())
                }
                None => Err(not_joined()),
            },
            Ok(message) => {
                let is_candidate = matches!(message, ClientMessage::Ice(_));
                let max = self.signaling.settings.limits.max_candidates;
                match &self.joined {
                    None => Err(not_joined()),
                    Some(_) if is_candidate && self.candidates >= max => Err(ProtocolError::new(
                        ErrorCode::TooManyCandidates,
                        format!("A session may send at most {max} ICE candidates."),
                    )),
                    Some(joined) => {
                        self.candidates += u32::from(is_candidate);
                        joined.membership.signal(message).await
                    }
                }
            }
        };
        match result {
            Ok(()) => Flow::Continue,
            Err(e) => self.emit_error(e),
        }
    }

    async fn join(
        &mut self,
        room: &str,
        name: &str,
        mode: Option<crate::protocol::Mode>,
        token: Option<&str>,
        quality: Option<Quality>,
    ) -> Result<(), ProtocolError> {
        let grant = match &self.signaling.settings.auth_secret {
            None => None,
            Some(secret) => {
                let grant = auth::verify_token(secret, token, room, auth::unix_now())
                    .map_err(|e| ProtocolError::new(ErrorCode::Unauthorized, e.to_string()))?;
                tracing::info!(identity = %grant.identity, room, can_publish = grant.can_publish, "room token accepted");
                Some(grant)
            }
        };
        let can_publish = grant.as_ref().is_none_or(|g| g.can_publish);
        // What the room a previous join left has still to say comes first.
        if let Some(mut previous) = self.from_room.take() {
            while let Some(message) = previous.recv().await {
                if let Flow::End = self.emit(message) {
                    break;
                }
            }
        }
        let (to_session, from_room) = mpsc::channel(OUTBOX_CAPACITY);
        let membership = self
            .signaling
            .registry
            .join(room, name, mode, can_publish, to_session, self.client)
            .await?;
        let identity = grant.map(|g| {
            self.signaling.identities.claim(
                room,
                &g.identity,
                self.signaling.settings.max_connections_per_identity,
            )
        });
        let resume_token = random_token();
        let (attach_tx, attach) = mpsc::channel(1);
        self.signaling
            .sessions
            .insert(resume_token.clone(), attach_tx);
        self.joined = Some(Joined {
            membership,
            resume_token,
            identity,
        });
        self.from_room = Some(from_room);
        self.attach = Some(attach);
        self.join_deadline = None;
        self.candidates = 0;
        // The room hears the cap before anything else this client sends,
        // so its video starts on that rung.
        match (quality, &self.joined) {
            (Some(max), Some(joined)) => {
                joined
                    .membership
                    .signal(ClientMessage::Quality { max })
                    .await
            }
            _ => Ok(()),
        }
    }

    /// Stops being in a room (the caller tells the room, if it must).
    /// Messages the room sent before it let the participant go (its answer
    /// to what the client sent before leaving) still arrive: `from_room` is
    /// kept until the room closes it.
    fn leave_room(&mut self) -> Option<Membership> {
        self.detached = None;
        let joined = self.joined.take()?;
        self.signaling.sessions.remove(&joined.resume_token);
        self.attach = None;
        self.join_deadline = Some(Instant::now() + self.signaling.settings.limits.join_timeout);
        Some(joined.membership)
    }

    /// Hands this connection to the session the token names; this session
    /// ends once it has.
    async fn resume(&mut self, token: &str, received: Option<u64>) -> Flow {
        let refused = || {
            ProtocolError::new(
                ErrorCode::ResumeFailed,
                "There is no session to resume with that token (it ended or never existed); join again.",
            )
        };
        let Some(target) = self.signaling.sessions.get(token) else {
            return self.emit_error(refused());
        };
        let (Some(inbound), Some(outbox)) = (self.inbound.take(), self.outbox.take()) else {
            return Flow::End;
        };
        // What this session still owes the connection goes first.
        self.flush_into(&outbox);
        let (reply, answer) = oneshot::channel();
        let attach = Attach {
            transport: Transport {
                inbound,
                outbox,
                client: self.client,
            },
            received,
            reply,
        };
        if let Err(mpsc::error::SendError(attach)) = target.send(attach).await {
            self.inbound = Some(attach.transport.inbound);
            self.outbox = Some(attach.transport.outbox);
            return self.emit_error(refused());
        }
        // Or the session ended as we asked: an Attach sent just as it ended
        // can stay in its channel, never answered nor dropped, until the
        // last sender (`target`, once this returns) goes; the connection
        // inside it is let go then, and the client's next resume is refused.
        let answer = tokio::select! {
            biased;
            answer = answer => answer,
            () = target.closed() => return Flow::End,
        };
        match answer {
            Ok(Ok(())) => Flow::End,
            Ok(Err((e, transport))) => {
                self.inbound = Some(transport.inbound);
                self.outbox = Some(transport.outbox);
                self.emit_error(e)
            }
            // The session ended as we asked; our connection went with it.
            Err(_) => Flow::End,
        }
    }

    /// Another connection takes this session over.
    fn attach(&mut self, attach: Attach) -> Flow {
        let refuse = |attach: Attach, message: String| {
            let e = ProtocolError::new(ErrorCode::ResumeFailed, message);
            let _ = attach.reply.send(Err((e, attach.transport)));
            Flow::Continue
        };
        let Some(joined) = &self.joined else {
            return refuse(attach, "The session has ended; join again.".into());
        };
        // Without a count, resend what the old connection was never handed.
        let received = attach.received.unwrap_or(self.delivered);
        let replay = match self.log.owed_after(received) {
            Ok(owed) => owed as u64,
            Err(_) => {
                return refuse(
                    attach,
                    format!(
                        "The session cannot resume after message {received}: the messages after it are no longer kept. Join again."
                    ),
                );
            }
        };
        let resumed = ServerMessage::Resumed {
            participant: joined.membership.participant.to_string(),
            replayed: replay,
        };
        if attach.transport.outbox.try_send(resumed).is_err() {
            return refuse(attach, "The new connection is not open.".into());
        }
        tracing::info!(participant = %joined.membership.participant, replayed = replay, "session resumed");
        // The old connection, if still open, is closed by dropping it.
        self.inbound = Some(attach.transport.inbound);
        self.outbox = Some(attach.transport.outbox);
        self.delivered = received;
        self.resume_deadline = None;
        self.detached = None;
        let _ = attach.reply.send(Ok(()));
        self.flush();
        Flow::Continue
    }

    fn connection_lost(&mut self) -> Flow {
        self.inbound = None;
        self.outbox = None;
        match &self.joined {
            Some(joined) => {
                let grace = self.signaling.settings.limits.resume_grace;
                tracing::info!(participant = %joined.membership.participant, "signaling connection lost; waiting {grace:?} for a resume");
                self.resume_deadline = Some(Instant::now() + grace);
                self.detached = Some(self.signaling.sessions.detached.hold());
                Flow::Continue
            }
            None => Flow::End,
        }
    }

    /// The room let this participant go and said all it had to say.
    fn removed_by_room(&mut self) -> Flow {
        self.from_room = None;
        match self.leave_room() {
            // The room removed it (its media failed, it did not read, the
            // room closed): the session is over, and the room said why.
            Some(_) => Flow::End,
            // The leave this session asked for is done; the connection may
            // join again.
            None if self.outbox.is_some() => Flow::Continue,
            None => Flow::End,
        }
    }

    /// A newer join under the same identity took this place: leave the room,
    /// say why, and end.
    async fn replaced(&mut self) -> Flow {
        if let Some(membership) = self.leave_room() {
            tracing::info!(participant = %membership.participant, "replaced by a newer join with the same identity");
            membership.leave().await;
        }
        let _ = self.emit_error(ProtocolError::new(
            ErrorCode::Replaced,
            "A newer connection joined this room with the same identity; this one has been let go.",
        ));
        Flow::End
    }

    fn deadline_passed(&mut self) -> Flow {
        if self.outbox.is_none() {
            if let Some(joined) = &self.joined {
                tracing::info!(participant = %joined.membership.participant, "no resume within the grace period");
            }
            return Flow::End;
        }
        let limits = &self.signaling.settings.limits;
        let e = ProtocolError::new(
            ErrorCode::JoinTimeout,
            format!(
                "No join within {} s of connecting; closing.",
                limits.join_timeout.as_secs()
            ),
        );
        self.emit_error(e);
        Flow::End
    }

    fn emit_error(&mut self, e: ProtocolError) -> Flow {
        self.emit(e.to_message())
    }

    /// Numbers a message for the client and hands it on when possible.
    fn emit(&mut self, mut message: ServerMessage) -> Flow {
        if let (ServerMessage::Joined { resume_token, .. }, Some(joined)) =
            (&mut message, &self.joined)
        {
            *resume_token = Some(joined.resume_token.clone());
        }
        if let ServerMessage::Recording { url: Some(url), .. } = &mut message {
            *url = self.signaling.settings.published_url(url);
        }
        if self.log.push(message).is_err() {
            tracing::warn!("client is not taking its messages; ending its session");
            return Flow::End;
        }
        self.flush();
        Flow::Continue
    }

    /// Hands the connection every message it can take now.
    fn flush(&mut self) {
        if let Some(outbox) = self.outbox.take() {
            self.flush_into(&outbox);
            self.outbox = Some(outbox);
        }
    }

    fn flush_into(&mut self, outbox: &mpsc::Sender<ServerMessage>) {
        while let Some(message) = self.log.get(self.delivered + 1) {
            if outbox.try_send(message.clone()).is_err() {
                break;
            }
            self.delivered += 1;
        }
        self.log.trim_delivered(self.delivered, RETAINED_DELIVERED);
    }

    async fn end(mut self) {
        // Whatever is still owed goes out before the connection closes.
        self.flush();
        if let Some(membership) = self.leave_room() {
            membership.leave().await;
        }
    }
}

fn not_joined() -> ProtocolError {
    ProtocolError::new(
        ErrorCode::NotJoined,
        "Send \"join\" before any other message.",
    )
}
