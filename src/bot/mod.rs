//! The synthetic participant: joins over WebSocket, publishes a solid colour
//! and a sine tone through webrtcbin, and decodes what it receives so that a
//! test (or a person at the CLI) can check the colours and tones.

pub mod analysis;

use crate::media::webrtc::{self, WebrtcSettings};
use crate::protocol::{
    ClientMessage, ErrorCode, IceCandidate, Mode, ParticipantInfo, PeerConnection, ServerMessage,
};
use analysis::VideoFrame;
use anyhow::{Context, Result, anyhow, bail};
use futures::{SinkExt, StreamExt};
use gst::prelude::*;
use gst_webrtc::{WebRTCRTPTransceiverDirection, WebRTCSDPType};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

pub const VIDEO_PT: u8 = 96;
pub const AUDIO_PT: u8 = 111;
pub const AUDIO_RATE: u32 = 48000;

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
    pub send_video: bool,
    pub send_audio: bool,
    /// Local addresses its ICE may use (empty: all).
    pub ice_addresses: Vec<String>,
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
            send_video: true,
            send_audio: true,
            ice_addresses: Vec::new(),
        }
    }
}

/// What the bot has learnt from signaling.
#[derive(Debug, Clone, Default)]
pub struct BotState {
    pub others: Vec<ParticipantInfo>,
    pub errors: Vec<(ErrorCode, String)>,
    pub answered: bool,
    /// The signaling connection ended.
    pub disconnected: bool,
}

pub struct Bot {
    id: String,
    pipeline: gst::Pipeline,
    video_sink: gst_app::AppSink,
    audio_sink: gst_app::AppSink,
    frames: Arc<AtomicU64>,
    state: watch::Receiver<BotState>,
    leave: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

type WsStream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn send_json(ws: &mut WsStream, message: &ClientMessage) -> Result<()> {
    let text = serde_json::to_string(message)?;
    ws.send(Message::Text(text.into()))
        .await
        .context("sending to the server")
}

async fn next_server_message(ws: &mut WsStream) -> Result<Option<ServerMessage>> {
    while let Some(frame) = ws.next().await {
        match frame.context("reading from the server")? {
            Message::Text(text) => {
                return serde_json::from_str(text.as_str())
                    .map(Some)
                    .with_context(|| format!("server sent an unknown message: {text}"));
            }
            Message::Close(_) => return Ok(None),
            _ => {}
        }
    }
    Ok(None)
}

impl Bot {
    /// Joins, offers, and starts sending; returns once the offer is sent.
    pub async fn join(config: BotConfig) -> Result<Bot> {
        gst::init()?;
        let (mut ws, _) = tokio_tungstenite::connect_async(config.server.as_str())
            .await
            .with_context(|| format!("connecting to {}", config.server))?;
        let join = ClientMessage::Join {
            room: config.room.clone(),
            name: config.name.clone(),
            mode: Some(config.mode),
        };
        send_json(&mut ws, &join).await?;
        let (id, others) = match next_server_message(&mut ws).await? {
            Some(ServerMessage::Joined {
                participant,
                participants,
                ..
            }) => (participant, participants),
            Some(ServerMessage::Error { code, message }) => {
                bail!("join refused: {}: {message}", code.as_str())
            }
            other => bail!("expected \"joined\", got {other:?}"),
        };

        let media = BotMedia::build(&config, &id)?;
        let (ice_tx, ice_rx) = mpsc::unbounded_channel();
        webrtc::on_ice_candidate(&media.webrtc, move |mline, candidate| {
            let _ = ice_tx.send((mline, candidate));
        });
        media
            .pipeline
            .set_state(gst::State::Playing)
            .context("starting the bot pipeline")?;
        let offer = webrtc::create_offer(&media.webrtc).await?;
        webrtc::set_local_description(&media.webrtc, &offer).await?;
        send_json(
            &mut ws,
            &ClientMessage::Offer {
                sdp: webrtc::description_text(&offer),
            },
        )
        .await?;

        let (state_tx, state) = watch::channel(BotState {
            others,
            ..BotState::default()
        });
        let (leave, leave_rx) = oneshot::channel();
        let task = tokio::spawn(run_signaling(
            ws,
            media.webrtc.clone(),
            ice_rx,
            state_tx,
            leave_rx,
        ));
        Ok(Bot {
            id,
            pipeline: media.pipeline,
            video_sink: media.video_sink,
            audio_sink: media.audio_sink,
            frames: media.frames,
            state,
            leave: Some(leave),
            task: Some(task),
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn state(&self) -> BotState {
        self.state.borrow().clone()
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

    /// Video frames decoded so far.
    pub fn frames_received(&self) -> u64 {
        self.frames.load(Ordering::Relaxed)
    }

    /// The most recent decoded frame, waiting up to `timeout` for one.
    pub async fn latest_frame(&self, timeout: Duration) -> Result<VideoFrame> {
        let sink = self.video_sink.clone();
        let sample = tokio::task::spawn_blocking(move || {
            sink.try_pull_sample(gst::ClockTime::from_nseconds(timeout.as_nanos() as u64))
        })
        .await?
        .ok_or_else(|| anyhow!("no video frame within {timeout:?}"))?;
        frame_of(&sample)
    }

    /// Records `duration` of freshly received audio (mono, 48 kHz).
    pub async fn record_audio(&self, duration: Duration) -> Result<Vec<f32>> {
        let sink = self.audio_sink.clone();
        let wanted = (duration.as_secs_f64() * f64::from(AUDIO_RATE)) as usize;
        tokio::task::spawn_blocking(move || {
            // Skip what queued up before the caller asked.
            while sink.try_pull_sample(gst::ClockTime::ZERO).is_some() {}
            let mut samples = Vec::with_capacity(wanted);
            while samples.len() < wanted {
                let sample = sink
                    .try_pull_sample(gst::ClockTime::from_seconds(2))
                    .ok_or_else(|| anyhow!("audio stopped arriving"))?;
                let buffer = sample
                    .buffer()
                    .ok_or_else(|| anyhow!("audio sample without buffer"))?;
                let map = buffer.map_readable()?;
                samples.extend(
                    map.chunks_exact(4)
                        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                );
            }
            Ok(samples)
        })
        .await?
    }

    /// Sends "leave", closes the socket and stops the pipeline.
    pub async fn leave(mut self) {
        if let Some(leave) = self.leave.take() {
            let _ = leave.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
        let pipeline = self.pipeline.clone();
        let _ = tokio::task::spawn_blocking(move || pipeline.set_state(gst::State::Null)).await;
    }

    /// Drops the signaling connection without "leave", as a crashed client would.
    pub async fn vanish(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
        let pipeline = self.pipeline.clone();
        let _ = tokio::task::spawn_blocking(move || pipeline.set_state(gst::State::Null)).await;
    }
}

impl Drop for Bot {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

fn frame_of(sample: &gst::Sample) -> Result<VideoFrame> {
    let caps = sample.caps().ok_or_else(|| anyhow!("frame without caps"))?;
    let s = caps.structure(0).ok_or_else(|| anyhow!("empty caps"))?;
    let width = s.get::<i32>("width")? as u32;
    let height = s.get::<i32>("height")? as u32;
    let buffer = sample
        .buffer()
        .ok_or_else(|| anyhow!("frame without buffer"))?;
    let map = buffer.map_readable()?;
    let stride = map.len() / height.max(1) as usize;
    Ok(VideoFrame {
        width,
        height,
        stride,
        rgb: map.to_vec(),
    })
}

/// The bot's pipeline: sources into webrtcbin, webrtcbin into app sinks.
struct BotMedia {
    pipeline: gst::Pipeline,
    webrtc: gst::Element,
    video_sink: gst_app::AppSink,
    audio_sink: gst_app::AppSink,
    frames: Arc<AtomicU64>,
}

impl BotMedia {
    fn build(config: &BotConfig, id: &str) -> Result<BotMedia> {
        let pipeline = gst::Pipeline::with_name(&format!("bot-{id}"));
        let settings = WebrtcSettings {
            jitter_latency_ms: 60,
            stun_server: None,
            ice_addresses: config.ice_addresses.clone(),
        };
        let webrtc = webrtc::make_webrtcbin("webrtc", &settings)?;
        pipeline.add(&webrtc)?;

        let video_caps = webrtc::rtp_caps("video", "VP8", 90000, VIDEO_PT);
        let audio_caps = webrtc::rtp_caps("audio", "OPUS", 48000, AUDIO_PT);
        if config.send_video {
            let source = gst::parse::bin_from_description(
                &format!(
                    "videotestsrc is-live=true pattern=solid-color foreground-color={argb} \
                     ! video/x-raw,width=640,height=360,framerate=30/1 ! videoconvert \
                     ! vp8enc deadline=1 cpu-used=8 lag-in-frames=0 target-bitrate=600000 \
                       end-usage=cbr keyframe-max-dist=90 error-resilient=partitions \
                     ! rtpvp8pay pt={VIDEO_PT} picture-id-mode=15-bit ! capsfilter caps=\"{video_caps}\"",
                    argb = 0xff00_0000u32 | config.colour,
                ),
                true,
            )?;
            link_sender(&pipeline, &webrtc, source.upcast())?;
        } else {
            add_receive_only(&webrtc, &video_caps);
        }
        if config.send_audio {
            let source = gst::parse::bin_from_description(
                &format!(
                    "audiotestsrc is-live=true wave=sine freq={} volume=0.3 samplesperbuffer=960 \
                     ! audioconvert ! audioresample ! opusenc frame-size=20 \
                     ! rtpopuspay pt={AUDIO_PT} ! capsfilter caps=\"{audio_caps}\"",
                    config.tone_hz
                ),
                true,
            )?;
            link_sender(&pipeline, &webrtc, source.upcast())?;
        } else {
            add_receive_only(&webrtc, &audio_caps);
        }

        // VP8 carries no colour space; like browsers, read it as BT.601
        // (vp8dec would assume BT.709 for HD sizes and shift every colour).
        let video_receive = gst::parse::bin_from_description(
            "rtpvp8depay request-keyframe=true wait-for-keyframe=true ! vp8dec \
             ! capssetter join=true replace=false caps=\"video/x-raw,colorimetry=bt601\" ! videoconvert \
             ! video/x-raw,format=RGB ! appsink name=video-sink max-buffers=1 drop=true sync=false",
            true,
        )?;
        let audio_receive = gst::parse::bin_from_description(
            &format!(
                "rtpopusdepay ! opusdec ! audioconvert ! audioresample \
                 ! audio/x-raw,format=F32LE,rate={AUDIO_RATE},channels=1,layout=interleaved \
                 ! appsink name=audio-sink max-buffers=200 drop=true sync=false"
            ),
            true,
        )?;
        pipeline.add_many([&video_receive, &audio_receive])?;
        let app_sink = |bin: &gst::Bin, name: &str| -> Result<gst_app::AppSink> {
            bin.by_name(name)
                .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
                .ok_or_else(|| anyhow!("no {name} in the bot's receive chain"))
        };
        let video_sink = app_sink(&video_receive, "video-sink")?;
        let audio_sink = app_sink(&audio_receive, "audio-sink")?;
        let frames = Arc::new(AtomicU64::new(0));
        let counter = frames.clone();
        video_sink
            .static_pad("sink")
            .ok_or_else(|| anyhow!("appsink has no sink pad"))?
            .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
                counter.fetch_add(1, Ordering::Relaxed);
                gst::PadProbeReturn::Ok
            });

        let video_in = video_receive.static_pad("sink").map(|p| p.downgrade());
        let audio_in = audio_receive.static_pad("sink").map(|p| p.downgrade());
        webrtc.connect_pad_added(move |webrtc, pad| {
            if pad.direction() != gst::PadDirection::Src {
                return;
            }
            let target = match webrtc::rtp_media_of(pad).as_deref() {
                Some("video") => video_in.as_ref().and_then(|p| p.upgrade()),
                Some("audio") => audio_in.as_ref().and_then(|p| p.upgrade()),
                _ => None,
            };
            if !target.is_some_and(|t| !t.is_linked() && pad.link(&t).is_ok()) {
                discard(webrtc, pad);
            }
        });
        Ok(BotMedia {
            pipeline,
            webrtc,
            video_sink,
            audio_sink,
            frames,
        })
    }
}

/// Adds a sending chain and links it to a new sendrecv m-line.
fn link_sender(
    pipeline: &gst::Pipeline,
    webrtc: &gst::Element,
    source: gst::Element,
) -> Result<()> {
    pipeline.add(&source)?;
    let sink = webrtc
        .request_pad_simple("sink_%u")
        .ok_or_else(|| anyhow!("webrtcbin gave no sink pad"))?;
    source
        .static_pad("src")
        .ok_or_else(|| anyhow!("source chain has no src pad"))?
        .link(&sink)?;
    if let Some(transceiver) = webrtc::pad_transceiver(&sink) {
        transceiver.set_direction(WebRTCRTPTransceiverDirection::Sendrecv);
    }
    Ok(())
}

fn add_receive_only(webrtc: &gst::Element, caps: &gst::Caps) {
    webrtc.emit_by_name::<gst_webrtc::WebRTCRTPTransceiver>(
        "add-transceiver",
        &[&WebRTCRTPTransceiverDirection::Recvonly, caps],
    );
}

fn discard(webrtc: &gst::Element, pad: &gst::Pad) {
    let Some(bin) = webrtc.parent().and_then(|p| p.downcast::<gst::Bin>().ok()) else {
        return;
    };
    if let Ok(sink) = gst::ElementFactory::make("fakesink")
        .property("sync", false)
        .build()
        && bin.add(&sink).is_ok()
        && let Some(sink_pad) = sink.static_pad("sink")
    {
        let _ = pad.link(&sink_pad);
        let _ = sink.sync_state_with_parent();
    }
}

/// The bot's signaling after the offer: applies the answer and candidates,
/// tracks who is in the room, sends its own candidates, leaves on request.
async fn run_signaling(
    mut ws: WsStream,
    webrtc: gst::Element,
    mut local_ice: mpsc::UnboundedReceiver<(u32, String)>,
    state: watch::Sender<BotState>,
    mut leave: oneshot::Receiver<()>,
) {
    let mut answered = false;
    let mut early_candidates: Vec<(u32, String)> = Vec::new();
    loop {
        tokio::select! {
            message = next_server_message(&mut ws) => {
                let message = match message {
                    Ok(Some(m)) => m,
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!("bot signaling: {e:#}");
                        break;
                    }
                };
                match message {
                    ServerMessage::Answer { sdp } => {
                        let applied = match webrtc::parse_description(WebRTCSDPType::Answer, &sdp) {
                            Ok(desc) => webrtc::set_remote_description(&webrtc, &desc).await,
                            Err(e) => Err(e),
                        };
                        if let Err(e) = applied {
                            state.send_modify(|s| s.errors.push((ErrorCode::BadSdp, format!("{e:#}"))));
                            continue;
                        }
                        answered = true;
                        for (mline, candidate) in early_candidates.drain(..) {
                            webrtc::add_ice_candidate(&webrtc, mline, &candidate);
                        }
                        state.send_modify(|s| s.answered = true);
                    }
                    ServerMessage::Ice(ice) if ice.pc == PeerConnection::Publish => {
                        if answered {
                            webrtc::add_ice_candidate(&webrtc, ice.sdp_mline_index, &ice.candidate);
                        } else {
                            early_candidates.push((ice.sdp_mline_index, ice.candidate));
                        }
                    }
                    ServerMessage::ParticipantJoined { participant } => {
                        state.send_modify(|s| s.others.push(participant));
                    }
                    ServerMessage::ParticipantLeft { participant } => {
                        state.send_modify(|s| s.others.retain(|p| p.id != participant));
                    }
                    ServerMessage::Error { code, message } => {
                        tracing::warn!("bot got error {}: {message}", code.as_str());
                        state.send_modify(|s| s.errors.push((code, message)));
                    }
                    other => tracing::debug!("bot ignores {other:?}"),
                }
            }
            Some((mline, candidate)) = local_ice.recv() => {
                let ice = ClientMessage::Ice(IceCandidate {
                    candidate,
                    sdp_mline_index: mline,
                    sdp_mid: None,
                    pc: PeerConnection::Publish,
                });
                if send_json(&mut ws, &ice).await.is_err() {
                    break;
                }
            }
            _ = &mut leave => {
                let _ = send_json(&mut ws, &ClientMessage::Leave).await;
                let _ = ws.close(None).await;
                break;
            }
        }
    }
    state.send_modify(|s| s.disconnected = true);
}
