//! The synthetic participant: joins over WebSocket, publishes a solid colour
//! and a sine tone through webrtcbin, and decodes what it receives so that a
//! test (or a person at the CLI) can check the colours and tones.

pub mod analysis;
pub mod dtls;
mod media;
mod receive;
pub mod shared;
mod signaling;
pub mod timecode;
pub mod traffic;
pub mod transport;

pub use media::{
    AUDIO_PT, AUDIO_RATE, COMPOSITE, PULSE_LENGTH, PULSE_PERIOD, PayloadTypes, VIDEO_PT,
};
pub use receive::{FrameObserver, frame_of};

use crate::media::sdp::MediaKind;
use crate::protocol::{ClientMessage, ErrorCode, Mode, ParticipantInfo, ServerMessage};
use analysis::VideoFrame;
use anyhow::{Context, Result, anyhow, bail};
use gst::prelude::*;
use media::BotMedia;
use receive::Receivers;
use shared::SharedEncoding;
use signaling::{Control, Session};
use std::time::Duration;
use std::time::Instant;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use traffic::{Traffic, TrafficSnapshot};
use transport::Connection;
pub use transport::TransportKind;

#[derive(Debug, Clone)]
pub struct BotConfig {
    /// ws://host:port/ws
    pub server: String,
    pub room: String,
    pub name: String,
    pub mode: Mode,
    /// 0xRRGGBB of the video it sends.
    pub colour: u32,
    /// Frequency of the tone it sends, Hz.
    pub tone_hz: f64,
    /// The tone's volume, 0 (silence) to 1.
    pub tone_volume: f64,
    pub send_video: bool,
    pub send_audio: bool,
    /// Local addresses its ICE may use (empty: all).
    pub ice_addresses: Vec<String>,
    /// Frames between the keyframes its encoder makes unasked; keyframes
    /// asked for by receivers (PLI/FIR) come on top.
    pub keyframe_interval_frames: u32,
    /// MCU: also receive the composite and the mix (false: offer sendonly,
    /// as a client that only sends).
    pub receive: bool,
    /// Asks for a keyframe on every video stream it receives this often
    /// (PLI through its webrtcbin), whether it needs one or not: a flood a
    /// server must rate-limit.
    pub keyframe_requests_every: Option<Duration>,
    /// The payload type numbers of what it sends; its subscribe answers
    /// (SFU) number the offered codecs the same way, as a stack with its own
    /// numbering does.
    pub payload_types: PayloadTypes,
    /// SFU: payload types its subscribe answers renumber, (offered, answered),
    /// as a client with its own payload type numbering would.
    pub subscribe_payload_renumbering: Vec<(u8, u8)>,
    /// SFU: refuse (port 0) the last video m-line of its first subscribe
    /// offer, as a client that cannot take one more video does. (Not the
    /// first m-line: that one tags the BUNDLE group, see README.)
    pub refuse_last_subscribe_video: bool,
    /// MCU: the best encoding of the composite it asks for, before its
    /// first offer (none: whatever the server sends).
    pub quality: Option<crate::protocol::Quality>,
    /// WebSocket (default) or long-poll.
    pub transport: TransportKind,
    /// A room token for servers that want one.
    pub token: Option<String>,
    /// Resume the session when the signaling connection drops.
    pub resume: bool,
    /// Relayed (TURN) candidates only, using the TURN servers of "joined".
    pub relay_only: bool,
    /// Send timecode blocks of the milliseconds since this instant instead
    /// of the colour (the bench's latency probes).
    pub timecode_origin: Option<Instant>,
    /// Send black and silence, broken by a white flash and a burst of the
    /// tone at the same instants (see `media::PULSE_PERIOD`): what an
    /// audio/video sync check measures.
    pub av_pulses: bool,
    /// Decode what it receives (false: only count it, as the bench's load
    /// participants do).
    pub decode: bool,
    /// Send a share of this encoding instead of encoding its own.
    pub shared_encoding: Option<SharedEncoding>,
    /// With a shared encoding, still send a tone of its own (whose volume
    /// `set_tone_volume` changes): the bench's talkers.
    pub own_audio: bool,
    /// Sees every decoded video frame.
    pub on_frame: Option<OnFrame>,
    /// Send a moving, detailed picture instead of the colour: one that takes
    /// every bit an encoder is given, as a busy camera does, so the
    /// composite's rungs run at their full rates (a solid colour's 720p
    /// composite needs a tenth).
    pub busy_video: bool,
}

/// A frame observer in a configuration.
#[derive(Clone)]
pub struct OnFrame(pub FrameObserver);

impl std::fmt::Debug for OnFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnFrame")
    }
}

impl BotConfig {
    pub fn new(server: &str, room: &str, name: &str, colour: u32, tone_hz: f64) -> Self {
        BotConfig {
            server: server.to_owned(),
            room: room.to_owned(),
            name: name.to_owned(),
            mode: Mode::Mcu,
            colour,
            tone_hz,
            tone_volume: media::TONE_VOLUME,
            send_video: true,
            send_audio: true,
            ice_addresses: Vec::new(),
            keyframe_interval_frames: 90,
            receive: true,
            keyframe_requests_every: None,
            payload_types: PayloadTypes::default(),
            subscribe_payload_renumbering: Vec::new(),
            refuse_last_subscribe_video: false,
            quality: None,
            timecode_origin: None,
            av_pulses: false,
            decode: true,
            shared_encoding: None,
            own_audio: false,
            on_frame: None,
            busy_video: false,
            transport: TransportKind::WebSocket,
            token: None,
            resume: true,
            relay_only: false,
        }
    }
}

/// A track another participant sends this bot, as signaling described it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteTrack {
    /// Its m-line's index in the SDP.
    pub mline: u32,
    /// The sender's participant id (SFU: the m-line's a=msid stream id).
    pub stream: String,
    pub kind: MediaKind,
    /// False once the sender left (SFU: the m-line went inactive).
    pub active: bool,
    /// The SSRCs its a=ssrc lines announce.
    pub ssrcs: Vec<u32>,
    /// Its a=mid.
    pub mid: Option<String>,
}

/// What the bot has learnt from signaling.
#[derive(Debug, Clone, Default)]
pub struct BotState {
    pub others: Vec<ParticipantInfo>,
    pub errors: Vec<(ErrorCode, String)>,
    /// Answers to its offers on the publish connection so far.
    pub answers: u32,
    /// The signaling connection is down (ended, or lost and not resumed yet).
    pub disconnected: bool,
    /// SFU and mesh: every track offered to the bot, live or ended.
    pub tracks: Vec<RemoteTrack>,
    /// SFU: subscribe offers answered so far (first offer and renegotiations).
    pub subscribe_offers: u32,
    /// SFU: subscribe connections opened so far (the server replaces one
    /// whose departed publishers' m-lines pile up).
    pub subscribe_connections: u32,
    /// Recordings of the room that signaling says are running, by id.
    pub recordings: Vec<String>,
    /// Times the bot resumed its session after losing its connection.
    pub resumes: u32,
    /// The local ICE candidates it sent, as candidate lines; an empty one
    /// when a connection finished gathering (the end-of-candidates it sends).
    pub local_candidates: Vec<String>,
    /// The ICE servers it uses for connections it opens from now on: those
    /// of "joined", then each renewal ("ice-servers").
    pub ice_servers: Vec<crate::protocol::IceServer>,
    /// Who the room last said is speaking.
    pub speakers: crate::media::speakers::Speakers<String>,
    /// The composite's layout, as last announced (MCU rooms).
    pub layout: Option<crate::protocol::Layout>,
    /// The server said its video is off the composite, and it stopped
    /// sending it.
    pub video_paused: bool,
}

impl BotState {
    /// The streams that send a live track of `kind`, sorted.
    pub fn live_streams(&self, kind: MediaKind) -> Vec<String> {
        let mut streams: Vec<String> = self
            .tracks
            .iter()
            .filter(|t| t.active && t.kind == kind)
            .map(|t| t.stream.clone())
            .collect();
        streams.sort();
        streams
    }
}

pub struct Bot {
    id: String,
    pipeline: gst::Pipeline,
    receivers: Receivers,
    traffic: Traffic,
    state: watch::Receiver<BotState>,
    leave: Option<oneshot::Sender<()>>,
    control: mpsc::UnboundedSender<Control>,
    task: Option<JoinHandle<()>>,
}

impl Bot {
    /// Joins and makes its first offers; returns once they are sent.
    pub async fn join(config: BotConfig) -> Result<Bot> {
        gst::init()?;
        let join = ClientMessage::Join {
            room: config.room.clone(),
            name: config.name.clone(),
            mode: Some(config.mode),
            token: config.token.clone(),
            quality: config.quality,
        };
        let mut connection = Connection::open(config.transport, &config.server, &join)
            .await
            .with_context(|| format!("joining through {}", config.server))?;
        let (id, others, ice_servers, resume_token) = match connection.next().await? {
            Some(ServerMessage::Joined {
                participant,
                participants,
                ice_servers,
                resume_token,
                ..
            }) => (participant, participants, ice_servers, resume_token),
            Some(ServerMessage::Error { code, message }) => {
                bail!("join refused: {}: {message}", code.as_str())
            }
            other => bail!("expected \"joined\", got {other:?}"),
        };

        let media = BotMedia::build(&config, &id, &ice_servers)?;
        media
            .pipeline
            .set_state(gst::State::Playing)
            .context("starting the bot pipeline")?;
        let (state_tx, state) = watch::channel(BotState {
            others: others.clone(),
            ice_servers: ice_servers.clone(),
            ..BotState::default()
        });
        let session =
            Session::start(connection, &config, media, &others, state_tx, resume_token).await?;
        let pipeline = session.pipeline();
        let receivers = session.receivers();
        let traffic = session.traffic();
        let (leave, leave_rx) = oneshot::channel();
        let (control, control_rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(session.run(leave_rx, control_rx));
        Ok(Bot {
            id,
            pipeline,
            receivers,
            traffic,
            state,
            leave: Some(leave),
            control,
            task: Some(task),
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn state(&self) -> BotState {
        self.state.borrow().clone()
    }

    /// Its signaling state as it changes.
    pub fn watch_state(&self) -> watch::Receiver<BotState> {
        self.state.clone()
    }

    /// Waits until the bot's signaling state satisfies `condition`.
    pub async fn wait_for_state(
        &self,
        timeout: Duration,
        condition: impl Fn(&BotState) -> bool,
    ) -> Result<BotState> {
        let mut state = self.state.clone();
        let result = tokio::time::timeout(timeout, state.wait_for(|s| condition(s))).await;
        match result {
            Ok(Ok(s)) => Ok(s.clone()),
            _ => Err(anyhow!(
                "state condition not met within {timeout:?}; state: {:?}",
                self.state()
            )),
        }
    }

    /// What it has sent and received so far, counted without decoding.
    pub fn traffic(&self) -> TrafficSnapshot {
        self.traffic.snapshot()
    }

    /// Video frames decoded so far, from every stream.
    pub fn frames_received(&self) -> u64 {
        self.receivers.frames()
    }

    /// Keyframes received so far, from every video stream.
    pub fn keyframes_received(&self) -> u64 {
        self.receivers.keyframes()
    }

    /// Offers again on the publish connection (MCU, SFU), as a client
    /// renegotiating or restarting ICE would; the answer counts in
    /// `BotState::answers`.
    pub fn offer_again(&self) {
        let _ = self.control.send(Control::OfferAgain);
    }

    /// MCU: asks for `quality` as the best encoding of the composite, as a
    /// client whose user picked it in a menu does.
    pub fn set_quality(&self, quality: crate::protocol::Quality) {
        let _ = self.control.send(Control::Quality(quality));
    }

    /// Its tone at `volume` (0 to 1) from now on: it starts or stops
    /// speaking.
    pub fn set_tone_volume(&self, volume: f64) {
        let _ = self.control.send(Control::ToneVolume(volume));
    }

    /// The streams the bot has received media from (participant ids, or
    /// `COMPOSITE` in an MCU room).
    pub fn received_streams(&self) -> Vec<String> {
        self.receivers.streams()
    }

    /// A freshly decoded frame of the MCU composite.
    pub async fn latest_frame(&self, timeout: Duration) -> Result<VideoFrame> {
        self.receivers.fresh_frame(COMPOSITE, timeout).await
    }

    /// A freshly decoded frame of one participant's video (SFU, mesh).
    pub async fn frame_from(&self, stream: &str, timeout: Duration) -> Result<VideoFrame> {
        self.receivers.fresh_frame(stream, timeout).await
    }

    /// Records `duration` of the MCU mix (mono, 48 kHz).
    pub async fn record_audio(&self, duration: Duration) -> Result<Vec<f32>> {
        self.receivers.record_audio(COMPOSITE, duration).await
    }

    /// Records `duration` of one participant's audio (SFU, mesh).
    pub async fn record_audio_from(&self, stream: &str, duration: Duration) -> Result<Vec<f32>> {
        self.receivers.record_audio(stream, duration).await
    }

    /// Sends "leave", closes the socket and stops the pipeline.
    pub async fn leave(mut self) {
        if let Some(leave) = self.leave.take() {
            let _ = leave.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
        self.stop_pipeline().await;
    }

    /// Cuts the signaling connection as a network failure would (no
    /// WebSocket close, no leave) and keeps it cut until the returned
    /// `SignalingCut` is released (or dropped); then the bot resumes the
    /// session if `resume` is set. Media is left alone.
    pub fn cut_signaling(&self) -> SignalingCut {
        let (release, until) = oneshot::channel();
        let _ = self.control.send(Control::Cut { until });
        SignalingCut(Some(release))
    }

    /// Drops the signaling connection without "leave", as a crashed client would.
    pub async fn vanish(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
        self.stop_pipeline().await;
    }

    async fn stop_pipeline(&self) {
        let pipeline = self.pipeline.clone();
        let _ =
            tokio::task::spawn_blocking(move || crate::media::members::stop_pipeline(&pipeline))
                .await;
    }
}

/// A bot's signaling held cut; releasing it lets the bot reconnect.
pub struct SignalingCut(Option<oneshot::Sender<()>>);

impl SignalingCut {
    pub fn release(mut self) {
        if let Some(release) = self.0.take() {
            let _ = release.send(());
        }
    }
}

impl Drop for SignalingCut {
    fn drop(&mut self) {
        if let Some(release) = self.0.take() {
            let _ = release.send(());
        }
    }
}

impl Drop for Bot {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        crate::media::members::stop_pipeline(&self.pipeline);
    }
}
