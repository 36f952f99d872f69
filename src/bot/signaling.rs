//! The bot's side of the protocol in each mode:
//! - MCU: one publish connection (the bot offers sendrecv), receiving the composite;
//! - SFU: a publish connection (the bot offers sendonly) if it sends anything,
//!   and the subscribe connection, where it answers every server offer;
//! - mesh: one connection per other participant; the newcomer offers to each
//!   participant already there, who answers.

use super::media::{BotMedia, COMPOSITE, PeerLink, StreamOwner};
use super::transport::{Connection as Signal, TransportKind};
use super::{BotConfig, BotState, RemoteTrack};
use crate::media::sdp::{
    MID_EXTENSION, MediaKind, accept_extension, refuse_mline, renumber_payload_types,
    summarize_offer,
};
use crate::media::speakers::Speakers;
use crate::media::webrtc;
use crate::protocol::{
    ClientMessage, ErrorCode, IceCandidate, Mode, ParticipantInfo, PeerConnection, RecordingState,
    ServerMessage,
};
use anyhow::{Result, anyhow};
use gst::prelude::*;
use gst_webrtc::{WebRTCRTPTransceiverDirection, WebRTCSDPType};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};

/// What a test can do to a running bot's signaling.
#[derive(Debug)]
pub enum Control {
    /// Drop the connection, wait until `until` fires (or its sender is
    /// dropped), then resume.
    Cut { until: oneshot::Receiver<()> },
    /// A new offer on the publish connection.
    OfferAgain,
    /// The tone at this volume from now on (0 to 1).
    ToneVolume(f64),
    /// MCU: asks for another best encoding of the composite.
    Quality(crate::protocol::Quality),
}

/// How long the bot keeps trying to resume after losing its connection.
const RESUME_TRIES_FOR: Duration = Duration::from_secs(25);

/// Which connection a message or candidate belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    Publish,
    Subscribe,
    Peer(String),
}

/// A peer connection and where it is in offer/answer.
struct Connection {
    link: PeerLink,
    remote_set: bool,
    /// Remote candidates that arrived before the remote description.
    early_candidates: Vec<(u32, String)>,
}

pub struct Session {
    /// None while cut off.
    connection: Option<Signal>,
    /// Messages to send once connected again.
    unsent: Vec<ClientMessage>,
    /// Session messages received so far ("joined" is the first).
    received: u64,
    resume_token: Option<String>,
    resume: bool,
    server: String,
    transport: TransportKind,
    mode: Mode,
    media: BotMedia,
    publish: Option<Connection>,
    subscribe: Option<Connection>,
    peers: HashMap<String, Connection>,
    local_ice: mpsc::UnboundedSender<(Route, u32, String)>,
    local_ice_rx: mpsc::UnboundedReceiver<(Route, u32, String)>,
    state: watch::Sender<BotState>,
    /// (offered, answered) payload types renumbered in subscribe answers.
    subscribe_payload_renumbering: Vec<(u8, u8)>,
    refuse_last_subscribe_video: bool,
}

impl Session {
    /// Makes the bot's first offers, as its mode wants.
    pub async fn start(
        connection: Signal,
        config: &BotConfig,
        media: BotMedia,
        others: &[ParticipantInfo],
        state: watch::Sender<BotState>,
        resume_token: Option<String>,
    ) -> Result<Session> {
        let (local_ice, local_ice_rx) = mpsc::unbounded_channel();
        let mode = config.mode;
        let mut session = Session {
            subscribe_payload_renumbering: subscribe_renumbering(config),
            refuse_last_subscribe_video: config.refuse_last_subscribe_video,
            connection: Some(connection),
            unsent: Vec::new(),
            received: 1,
            resume_token,
            resume: config.resume,
            server: config.server.clone(),
            transport: config.transport,
            mode,
            media,
            publish: None,
            subscribe: None,
            peers: HashMap::new(),
            local_ice,
            local_ice_rx,
            state,
        };
        match mode {
            Mode::Mcu => {
                let mut conn =
                    session.connect(Route::Publish, StreamOwner::Fixed(COMPOSITE.into()))?;
                let direction = if config.receive {
                    WebRTCRTPTransceiverDirection::Sendrecv
                } else {
                    WebRTCRTPTransceiverDirection::Sendonly
                };
                session
                    .media
                    .offer_lines(&mut conn.link, direction, config.receive)?;
                session.offer(conn, Route::Publish).await?;
            }
            Mode::Sfu if session.media.sends_anything() => {
                let mut conn = session.connect(Route::Publish, StreamOwner::Nobody)?;
                session.media.offer_lines(
                    &mut conn.link,
                    WebRTCRTPTransceiverDirection::Sendonly,
                    false,
                )?;
                session.offer(conn, Route::Publish).await?;
            }
            Mode::Sfu => {}
            Mode::Mesh => {
                for other in others {
                    let route = Route::Peer(other.id.clone());
                    let mut conn =
                        session.connect(route.clone(), StreamOwner::Fixed(other.id.clone()))?;
                    session.media.offer_lines(
                        &mut conn.link,
                        WebRTCRTPTransceiverDirection::Sendrecv,
                        true,
                    )?;
                    session.offer(conn, route).await?;
                }
            }
        }
        Ok(session)
    }

    pub fn pipeline(&self) -> gst::Pipeline {
        self.media.pipeline.clone()
    }

    pub fn receivers(&self) -> super::receive::Receivers {
        self.media.receivers.clone()
    }

    pub fn traffic(&self) -> super::traffic::Traffic {
        self.media.traffic.clone()
    }

    fn connect(&self, route: Route, owner: StreamOwner) -> Result<Connection> {
        let name = match &route {
            Route::Publish => "publish".to_owned(),
            Route::Subscribe => "subscribe".to_owned(),
            Route::Peer(id) => format!("peer-{id}"),
        };
        let link = self.media.add_connection(&name, owner)?;
        let local_ice = self.local_ice.clone();
        let candidate_route = route.clone();
        webrtc::on_ice_candidate(&link.webrtc, move |mline, candidate| {
            let _ = local_ice.send((candidate_route.clone(), mline, candidate));
        });
        // Gathering done: an empty candidate, as browsers signal the end of
        // their candidates.
        let local_ice = self.local_ice.clone();
        link.webrtc
            .connect_notify(Some("ice-gathering-state"), move |webrtc, _| {
                let state =
                    webrtc.property::<gst_webrtc::WebRTCICEGatheringState>("ice-gathering-state");
                if state == gst_webrtc::WebRTCICEGatheringState::Complete {
                    let _ = local_ice.send((route.clone(), 0, String::new()));
                }
            });
        Ok(Connection {
            link,
            remote_set: false,
            early_candidates: Vec::new(),
        })
    }

    /// Creates and sends an offer on a new connection, and keeps it.
    async fn offer(&mut self, conn: Connection, route: Route) -> Result<()> {
        let offer = webrtc::create_offer(&conn.link.webrtc, self.media.settings()).await?;
        webrtc::set_local_description(&conn.link.webrtc, &offer).await?;
        let to = match &route {
            Route::Peer(id) => Some(id.clone()),
            _ => None,
        };
        self.store(route, conn);
        self.send(ClientMessage::Offer {
            sdp: webrtc::description_text(&offer),
            to,
        })
        .await
    }

    /// A new offer on the publish connection: the current one again, its
    /// session version one higher, as a client renegotiating without
    /// changes sends. (webrtcbin 1.22 cannot create a new offer once its
    /// receive pads have caps the codec preferences do not intersect: "Caps
    /// negotiation on pad src_0 failed".)
    async fn offer_again(&mut self) -> Result<()> {
        let webrtc = self
            .publish
            .as_ref()
            .map(|c| c.link.webrtc.clone())
            .ok_or_else(|| anyhow!("no publish connection to offer on"))?;
        let current = webrtc
            .property::<Option<gst_webrtc::WebRTCSessionDescription>>("current-local-description")
            .ok_or_else(|| anyhow!("no offer made on the publish connection yet"))?;
        let text = next_session_version(&webrtc::description_text(&current));
        let offer = webrtc::parse_description(WebRTCSDPType::Offer, &text)?;
        webrtc::set_local_description(&webrtc, &offer).await?;
        self.send(ClientMessage::Offer {
            sdp: text,
            to: None,
        })
        .await
    }

    /// Sends now, or once connected again when cut off.
    async fn send(&mut self, message: ClientMessage) -> Result<()> {
        match &mut self.connection {
            Some(connection) => connection.send(&message).await,
            None => {
                self.unsent.push(message);
                Ok(())
            }
        }
    }

    /// Takes the session up again on a new connection, as a client whose
    /// network dropped would. False when it cannot.
    async fn reconnect(&mut self) -> bool {
        self.connection = None;
        self.state.send_modify(|s| s.disconnected = true);
        let Some(token) = self.resume_token.clone().filter(|_| self.resume) else {
            return false;
        };
        let started = Instant::now();
        while started.elapsed() < RESUME_TRIES_FOR {
            let resume = ClientMessage::Resume {
                token: token.clone(),
                received: Some(self.received),
            };
            match Signal::open(self.transport, &self.server, &resume).await {
                Ok(mut connection) => match connection.next().await {
                    Ok(Some(ServerMessage::Resumed { replayed, .. })) => {
                        tracing::info!("bot resumed its session ({replayed} messages replayed)");
                        for message in std::mem::take(&mut self.unsent) {
                            if connection.send(&message).await.is_err() {
                                break;
                            }
                        }
                        self.connection = Some(connection);
                        self.state.send_modify(|s| {
                            s.resumes += 1;
                            s.disconnected = false;
                        });
                        return true;
                    }
                    Ok(Some(ServerMessage::Error { code, message })) => {
                        tracing::warn!("bot could not resume: {}: {message}", code.as_str());
                        self.state.send_modify(|s| s.errors.push((code, message)));
                        return false;
                    }
                    other => tracing::debug!("bot resume: unexpected {other:?}"),
                },
                Err(e) => tracing::debug!("bot resume: {e:#}"),
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        false
    }

    fn store(&mut self, route: Route, conn: Connection) {
        match route {
            Route::Publish => self.publish = Some(conn),
            Route::Subscribe => self.subscribe = Some(conn),
            Route::Peer(id) => {
                self.peers.insert(id, conn);
            }
        }
    }

    fn connection(&mut self, route: &Route) -> Option<&mut Connection> {
        match route {
            Route::Publish => self.publish.as_mut(),
            Route::Subscribe => self.subscribe.as_mut(),
            Route::Peer(id) => self.peers.get_mut(id),
        }
    }

    fn route_of(&self, pc: PeerConnection, from: Option<String>) -> Route {
        match (self.mode, from, pc) {
            (Mode::Mesh, Some(from), _) => Route::Peer(from),
            (_, _, PeerConnection::Subscribe) => Route::Subscribe,
            _ => Route::Publish,
        }
    }

    fn record_error(&self, what: &str, e: anyhow::Error) {
        tracing::warn!("bot: {what}: {e:#}");
        self.state
            .send_modify(|s| s.errors.push((ErrorCode::BadSdp, format!("{what}: {e:#}"))));
    }

    /// Runs until the connection closes for good or `leave` fires.
    pub async fn run(
        mut self,
        mut leave: oneshot::Receiver<()>,
        mut control: mpsc::UnboundedReceiver<Control>,
    ) {
        loop {
            tokio::select! {
                message = next_message(&mut self.connection) => match message {
                    Ok(Some(message)) => {
                        if !matches!(message, ServerMessage::Resumed { .. }) {
                            self.received += 1;
                        }
                        self.handle(message).await
                    }
                    Ok(None) => {
                        if !self.reconnect().await {
                            break;
                        }
                    }
                    Err(e) => {
                        tracing::warn!("bot signaling: {e:#}");
                        if !self.reconnect().await {
                            break;
                        }
                    }
                },
                Some(control) = control.recv() => match control {
                    Control::OfferAgain => {
                        if let Err(e) = self.offer_again().await {
                            self.record_error("offering again", e);
                        }
                    }
                    Control::Quality(max) => {
                        if let Err(e) = self.send(ClientMessage::Quality { max }).await {
                            self.record_error("asking for a quality", e);
                        }
                    }
                    Control::ToneVolume(volume) => {
                        if let Err(e) = self.media.set_tone_volume(volume) {
                            self.record_error("changing the tone's volume", e);
                        }
                    }
                    Control::Cut { until } => {
                        tracing::info!("bot: signaling cut");
                        self.connection = None;
                        self.state.send_modify(|s| s.disconnected = true);
                        let _ = until.await;
                        if !self.reconnect().await {
                            break;
                        }
                    }
                },
                Some((route, mline, candidate)) = self.local_ice_rx.recv() => {
                    let (pc, to) = match route {
                        Route::Publish => (PeerConnection::Publish, None),
                        Route::Subscribe => (PeerConnection::Subscribe, None),
                        Route::Peer(id) => (PeerConnection::Publish, Some(id)),
                    };
                    self.state.send_modify(|s| s.local_candidates.push(candidate.clone()));
                    let ice = ClientMessage::Ice(IceCandidate {
                        candidate,
                        sdp_mline_index: mline,
                        sdp_mid: None,
                        pc,
                        to,
                        from: None,
                    });
                    if self.send(ice).await.is_err() && !self.reconnect().await {
                        break;
                    }
                }
                _ = &mut leave => {
                    if let Some(connection) = &mut self.connection {
                        let _ = connection.send(&ClientMessage::Leave).await;
                        connection.close().await;
                    }
                    break;
                }
            }
        }
        self.state.send_modify(|s| s.disconnected = true);
    }

    async fn handle(&mut self, message: ServerMessage) {
        match message {
            ServerMessage::Answer { sdp, from } => {
                let route = self.route_of(PeerConnection::Publish, from);
                match self.apply_remote(&route, WebRTCSDPType::Answer, &sdp).await {
                    Ok(()) => {
                        self.note_tracks(&route, &sdp);
                        self.state.send_modify(|s| s.answers += 1);
                    }
                    Err(e) => self.record_error("applying an answer", e),
                }
            }
            ServerMessage::Offer {
                sdp,
                from,
                new_connection,
            } => {
                let route = self.route_of(PeerConnection::Subscribe, from);
                // The server replaces the subscribe connection: the old one
                // goes now (the server forwards on it until the new one is
                // up, but the bot has no need to see the switch seamless).
                if new_connection
                    && route == Route::Subscribe
                    && let Some(old) = self.subscribe.take()
                {
                    self.stop(old);
                }
                if let Err(e) = self.answer(route, &sdp).await {
                    self.record_error("answering an offer", e);
                }
            }
            ServerMessage::Ice(ice) => {
                let route = self.route_of(ice.pc, ice.from);
                match self.connection(&route) {
                    Some(conn) if conn.remote_set => webrtc::add_ice_candidate(
                        &conn.link.webrtc,
                        ice.sdp_mline_index,
                        &ice.candidate,
                    ),
                    Some(conn) => conn
                        .early_candidates
                        .push((ice.sdp_mline_index, ice.candidate)),
                    None => tracing::debug!("bot: candidate for no connection ({route:?})"),
                }
            }
            ServerMessage::ParticipantJoined { participant } => {
                self.state.send_modify(|s| s.others.push(participant));
            }
            ServerMessage::ParticipantLeft { participant } => {
                if let Some(conn) = self.peers.remove(&participant) {
                    self.stop(conn);
                }
                let mesh = self.mode == Mode::Mesh;
                self.state.send_modify(|s| {
                    s.others.retain(|p| p.id != participant);
                    if mesh {
                        s.tracks.retain(|t| t.stream != participant);
                    }
                });
            }
            ServerMessage::Error { code, message } => {
                tracing::warn!("bot got error {}: {message}", code.as_str());
                self.state.send_modify(|s| s.errors.push((code, message)));
            }
            ServerMessage::Joined { .. } => tracing::debug!("bot ignores a second joined"),
            ServerMessage::Recording { state, id, .. } => self.state.send_modify(|s| {
                s.recordings.retain(|r| r != &id);
                if state == RecordingState::Started {
                    s.recordings.push(id);
                }
            }),
            ServerMessage::Resumed { .. } => {}
            ServerMessage::IceServers { ice_servers } => {
                self.media.set_ice_servers(&ice_servers);
                self.state.send_modify(|s| s.ice_servers = ice_servers);
            }
            ServerMessage::Speakers { active, dominant } => self
                .state
                .send_modify(|s| s.speakers = Speakers { active, dominant }),
            ServerMessage::Layout(layout) => self.state.send_modify(|s| s.layout = Some(layout)),
            ServerMessage::VideoPaused | ServerMessage::VideoResumed => {
                let paused = matches!(message, ServerMessage::VideoPaused);
                self.media.set_video_paused(paused);
                self.state.send_modify(|s| s.video_paused = paused);
            }
        }
    }

    async fn apply_remote(&mut self, route: &Route, kind: WebRTCSDPType, sdp: &str) -> Result<()> {
        let description = webrtc::parse_description(kind, sdp)?;
        let conn = self
            .connection(route)
            .ok_or_else(|| anyhow!("no connection for {route:?}"))?;
        webrtc::set_remote_description(&conn.link.webrtc, &description).await?;
        let conn = self
            .connection(route)
            .ok_or_else(|| anyhow!("connection {route:?} closed"))?;
        conn.remote_set = true;
        for (mline, candidate) in conn.early_candidates.drain(..) {
            webrtc::add_ice_candidate(&conn.link.webrtc, mline, &candidate);
        }
        Ok(())
    }

    /// Answers an offer: the server's on the SFU subscribe connection (a
    /// first offer or a renegotiation), or a mesh peer's.
    async fn answer(&mut self, route: Route, sdp: &str) -> Result<()> {
        if self.connection(&route).is_none() {
            let owner = match &route {
                Route::Peer(id) => StreamOwner::Fixed(id.clone()),
                _ => StreamOwner::ByMsid,
            };
            let conn = self.connect(route.clone(), owner)?;
            self.store(route.clone(), conn);
            if route == Route::Subscribe {
                self.state.send_modify(|s| s.subscribe_connections += 1);
            }
        }
        self.apply_remote(&route, WebRTCSDPType::Offer, sdp).await?;
        let offer = webrtc::parse_description(WebRTCSDPType::Offer, sdp)?;
        let conn = self
            .connection(&route)
            .ok_or_else(|| anyhow!("connection {route:?} closed"))?;
        let webrtc = conn.link.webrtc.clone();
        if let Route::Peer(id) = &route {
            let conn = self
                .peers
                .get_mut(id)
                .ok_or_else(|| anyhow!("connection {route:?} closed"))?;
            self.media.answer_lines(&mut conn.link, &offer)?;
        }
        let made = webrtc::create_answer(&webrtc, self.media.settings()).await?;
        let mut text = webrtc::description_text(&made);
        if route == Route::Subscribe {
            text = self.subscribe_answer_text(&text, sdp)?;
        }
        tracing::debug!("bot answers {route:?}:\n{text}");
        let answer = webrtc::parse_description(WebRTCSDPType::Answer, &text)?;
        webrtc::set_local_description(&webrtc, &answer).await?;
        self.note_tracks(&route, sdp);
        let to = match &route {
            Route::Peer(id) => Some(id.clone()),
            _ => None,
        };
        if route == Route::Subscribe {
            self.state.send_modify(|s| s.subscribe_offers += 1);
        }
        self.send(ClientMessage::Answer {
            sdp: webrtc::description_text(&answer),
            to,
        })
        .await
    }

    /// What the bot makes of webrtcbin's answer to a subscribe offer.
    fn subscribe_answer_text(&self, made: &str, offer: &str) -> Result<String> {
        let offered = summarize_offer(offer).map_err(|e| anyhow!("{e}"))?;
        // Like a browser, the bot takes the MID header extension the server
        // offers (webrtcbin 1.22 answers without any). Only here, where it
        // sends nothing: a peer that negotiated the extension routes by it,
        // and the bot's own packets would not carry it.
        let mut text = accept_extension(made, &offered, MID_EXTENSION);
        if !self.subscribe_payload_renumbering.is_empty() {
            text = renumber_payload_types(&text, &self.subscribe_payload_renumbering);
        }
        let first = self.state.borrow().subscribe_offers == 0;
        if self.refuse_last_subscribe_video
            && first
            && let Some(video) = offered.media.iter().rfind(|m| m.kind == MediaKind::Video)
        {
            text = refuse_mline(&text, video.index);
        }
        Ok(text)
    }

    /// Records which tracks the other side sends on a connection, from its
    /// offer or answer.
    fn note_tracks(&self, route: &Route, sdp: &str) {
        let Ok(summary) = summarize_offer(sdp) else {
            return;
        };
        let fixed_stream = match route {
            Route::Peer(id) => Some(id.clone()),
            Route::Publish | Route::Subscribe => None,
        };
        let tracks: Vec<RemoteTrack> = summary
            .media
            .iter()
            .filter(|m| m.kind != MediaKind::Other)
            .map(|m| RemoteTrack {
                mline: m.index,
                stream: fixed_stream
                    .clone()
                    .or_else(|| m.stream_id.clone())
                    .unwrap_or_default(),
                kind: m.kind,
                active: !m.rejected && m.direction.client_sends(),
                ssrcs: m.ssrcs.clone(),
                mid: m.mid.clone(),
            })
            .collect();
        match route {
            Route::Subscribe => self.state.send_modify(|s| s.tracks = tracks),
            Route::Peer(id) => self.state.send_modify(|s| {
                s.tracks.retain(|t| &t.stream != id);
                s.tracks.extend(tracks);
            }),
            Route::Publish => {}
        }
    }

    fn stop(&self, conn: Connection) {
        let elements = self.media.remove_connection(conn.link);
        tokio::task::spawn_blocking(move || {
            for element in elements {
                let _ = element.set_state(gst::State::Null);
            }
        });
    }
}

/// (offered, answered) payload types for subscribe answers: what the
/// configuration says, else what its own numbering implies (the server
/// offers Chrome's numbers).
fn subscribe_renumbering(config: &BotConfig) -> Vec<(u8, u8)> {
    if !config.subscribe_payload_renumbering.is_empty() {
        return config.subscribe_payload_renumbering.clone();
    }
    let own = config.payload_types;
    [(super::VIDEO_PT, own.vp8), (super::AUDIO_PT, own.opus)]
        .into_iter()
        .filter(|(offered, answered)| offered != answered)
        .collect()
}

/// The SDP with its origin line's session version one higher (RFC 3264:
/// a changed offer's version goes up).
fn next_session_version(sdp: &str) -> String {
    sdp.lines()
        .map(|line| {
            let Some(origin) = line.strip_prefix("o=") else {
                return format!("{line}\r\n");
            };
            let mut fields: Vec<String> = origin.split(' ').map(str::to_owned).collect();
            if let Some(version) = fields.get_mut(2)
                && let Ok(n) = version.parse::<u64>()
            {
                *version = (n + 1).to_string();
            }
            format!("o={}\r\n", fields.join(" "))
        })
        .collect()
}

async fn next_message(connection: &mut Option<Signal>) -> Result<Option<ServerMessage>> {
    match connection {
        Some(c) => c.next().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_session_version_goes_up_by_one_and_nothing_else_changes() {
        let sdp = "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n";
        assert_eq!(
            super::next_session_version(sdp),
            "v=0\r\no=- 4611731400430051336 3 IN IP4 127.0.0.1\r\ns=-\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"
        );
    }
}
