//! The bot's pipeline: one encoding of its colour and one of its tone, fanned
//! out to every peer connection it has, and a decode chain per received
//! stream ending in app sinks that tests read.

use super::BotConfig;
use super::analysis::VideoFrame;
use crate::media::members::discard_pad;
use crate::media::sdp::{MediaKind, summarize_offer};
use crate::media::webrtc::{self, WebrtcSettings};
use anyhow::{Result, anyhow};
use gst::prelude::*;
use gst_webrtc::{WebRTCRTPTransceiverDirection, WebRTCSessionDescription};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const VIDEO_PT: u8 = 96;
pub const AUDIO_PT: u8 = 111;
pub const AUDIO_RATE: u32 = 48000;

/// The stream key of the MCU composite, which has no participant of its own.
pub const COMPOSITE: &str = "composite";

/// What a received stream decodes into.
#[derive(Default, Clone)]
struct StreamSinks {
    video: Option<gst_app::AppSink>,
    audio: Option<gst_app::AppSink>,
}

/// Received streams by stream id (the sender's participant id, or COMPOSITE).
#[derive(Default, Clone)]
pub struct Receivers {
    streams: Arc<Mutex<HashMap<String, StreamSinks>>>,
    frames: Arc<AtomicU64>,
}

impl Receivers {
    fn sink(&self, stream: &str, video: bool) -> Option<gst_app::AppSink> {
        let streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        let sinks = streams.get(stream)?;
        if video {
            sinks.video.clone()
        } else {
            sinks.audio.clone()
        }
    }

    /// Stream ids something was ever received from.
    pub fn streams(&self) -> Vec<String> {
        let streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        let mut ids: Vec<String> = streams.keys().cloned().collect();
        ids.sort();
        ids
    }

    pub fn frames(&self) -> u64 {
        self.frames.load(Ordering::Relaxed)
    }

    /// A frame of `stream` decoded after this call, waiting up to `timeout`.
    pub async fn fresh_frame(&self, stream: &str, timeout: Duration) -> Result<VideoFrame> {
        let sink = self
            .sink(stream, true)
            .ok_or_else(|| anyhow!("no video received from {stream}"))?;
        let sample = tokio::task::spawn_blocking(move || {
            // The sink keeps its newest frame; drop it, it may be stale.
            let _ = sink.try_pull_sample(gst::ClockTime::ZERO);
            sink.try_pull_sample(gst::ClockTime::from_nseconds(timeout.as_nanos() as u64))
        })
        .await?
        .ok_or_else(|| anyhow!("no video frame from {stream} within {timeout:?}"))?;
        frame_of(&sample)
    }

    /// Records `duration` of freshly received audio of `stream` (mono, 48 kHz).
    pub async fn record_audio(&self, stream: &str, duration: Duration) -> Result<Vec<f32>> {
        let sink = self
            .sink(stream, false)
            .ok_or_else(|| anyhow!("no audio received from {stream}"))?;
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

    fn insert(&self, stream: &str, video: bool, sink: gst_app::AppSink) {
        let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        let entry = streams.entry(stream.to_owned()).or_default();
        if video {
            entry.video = Some(sink);
        } else {
            entry.audio = Some(sink);
        }
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

/// The TURN servers of "joined" (those with credentials), as webrtcbin URIs.
fn turn_uris(ice_servers: &[crate::protocol::IceServer]) -> Vec<String> {
    let mut uris = Vec::new();
    for server in ice_servers {
        let (Some(username), Some(password)) = (&server.username, &server.credential) else {
            continue;
        };
        let credentials = crate::turn::TurnCredentials {
            username: username.clone(),
            password: password.clone(),
        };
        for url in &server.urls {
            if url.starts_with("turn:") || url.starts_with("turns:") {
                uris.push(crate::turn::ice_server_uri(url, &credentials));
            }
        }
    }
    uris
}

/// How a receiving connection tells whose stream a new pad carries.
#[derive(Clone)]
pub enum StreamOwner {
    /// Everything on this connection comes from one sender.
    Fixed(String),
    /// SFU subscribe connection: the a=msid stream id of the pad's m-line.
    ByMsid,
    /// A connection the bot only sends on: anything received is discarded.
    Nobody,
}

/// The bot's media: the pipeline, its shared encodings and its receivers.
pub struct BotMedia {
    pub pipeline: gst::Pipeline,
    video_tee: Option<gst::Element>,
    audio_tee: Option<gst::Element>,
    pub receivers: Receivers,
    settings: WebrtcSettings,
}

/// A peer connection and the elements that belong only to it.
pub struct PeerLink {
    pub webrtc: gst::Element,
    /// Queues from the shared encodings, with the tee pads feeding them.
    senders: Vec<(gst::Element, gst::Pad)>,
}

impl BotMedia {
    pub fn build(
        config: &BotConfig,
        id: &str,
        ice_servers: &[crate::protocol::IceServer],
    ) -> Result<BotMedia> {
        let pipeline = gst::Pipeline::with_name(&format!("bot-{id}"));
        let video_caps = webrtc::rtp_caps(MediaKind::Video, VIDEO_PT);
        let audio_caps = webrtc::rtp_caps(MediaKind::Audio, AUDIO_PT);
        let video_tee = if config.send_video {
            Some(add_encoding(
                &pipeline,
                &format!(
                    "videotestsrc is-live=true pattern=solid-color foreground-color={argb} \
                     ! video/x-raw,width=640,height=360,framerate=30/1 ! videoconvert \
                     ! vp8enc deadline=1 cpu-used=8 lag-in-frames=0 target-bitrate=600000 \
                       end-usage=cbr keyframe-max-dist={keyframe_interval} error-resilient=partitions \
                     ! rtpvp8pay pt={VIDEO_PT} picture-id-mode=15-bit ! capsfilter caps=\"{video_caps}\"",
                    argb = 0xff00_0000u32 | config.colour,
                    keyframe_interval = config.keyframe_interval_frames,
                ),
                "video-tee",
            )?)
        } else {
            None
        };
        let audio_tee = if config.send_audio {
            Some(add_encoding(
                &pipeline,
                &format!(
                    "audiotestsrc is-live=true wave=sine freq={} volume=0.3 samplesperbuffer=960 \
                     ! audioconvert ! audioresample ! opusenc frame-size=20 \
                     ! rtpopuspay pt={AUDIO_PT} ! capsfilter caps=\"{audio_caps}\"",
                    config.tone_hz
                ),
                "audio-tee",
            )?)
        } else {
            None
        };
        Ok(BotMedia {
            pipeline,
            video_tee,
            audio_tee,
            receivers: Receivers::default(),
            settings: WebrtcSettings {
                jitter_latency_ms: 60,
                stun_server: None,
                ice_addresses: config.ice_addresses.clone(),
                turn_uris: turn_uris(ice_servers),
                relay_only: config.relay_only,
                ..WebrtcSettings::default()
            },
        })
    }

    pub fn sends_anything(&self) -> bool {
        self.video_tee.is_some() || self.audio_tee.is_some()
    }

    /// A new webrtcbin named `name`, whose received streams belong to `owner`.
    pub fn add_connection(&self, name: &str, owner: StreamOwner) -> Result<PeerLink> {
        let webrtc = webrtc::make_webrtcbin(name, &self.settings)?;
        self.pipeline.add(&webrtc)?;
        let receivers = self.receivers.clone();
        webrtc.connect_pad_added(move |webrtc, pad| {
            if pad.direction() != gst::PadDirection::Src {
                return;
            }
            let stream = match &owner {
                StreamOwner::Fixed(stream) => Some(stream.clone()),
                StreamOwner::ByMsid => stream_of_pad(webrtc, pad),
                StreamOwner::Nobody => None,
            };
            let linked = stream
                .is_some_and(|stream| link_receiver(webrtc, pad, &stream, &receivers).is_ok());
            if !linked {
                discard_pad(webrtc, pad);
            }
        });
        webrtc.sync_state_with_parent()?;
        Ok(PeerLink {
            webrtc,
            senders: Vec::new(),
        })
    }

    /// Offerer side: one m-line per kind, sending what the bot sends
    /// (`direction` for those) and receiving the rest if `receive` is set.
    pub fn offer_lines(
        &self,
        link: &mut PeerLink,
        direction: WebRTCRTPTransceiverDirection,
        receive: bool,
    ) -> Result<()> {
        for (tee, caps) in [
            (
                &self.video_tee,
                webrtc::rtp_caps(MediaKind::Video, VIDEO_PT),
            ),
            (
                &self.audio_tee,
                webrtc::rtp_caps(MediaKind::Audio, AUDIO_PT),
            ),
        ] {
            match tee {
                Some(tee) => self.attach_sender(link, tee, "sink_%u", direction)?,
                None if receive => {
                    link.webrtc
                        .emit_by_name::<gst_webrtc::WebRTCRTPTransceiver>(
                            "add-transceiver",
                            &[&WebRTCRTPTransceiverDirection::Recvonly, &caps],
                        );
                }
                None => {}
            }
        }
        Ok(())
    }

    /// Answerer side (mesh): after the remote offer is set, sends what the
    /// bot has on every offered m-line whose offerer wants to receive it.
    pub fn answer_lines(
        &self,
        link: &mut PeerLink,
        offer: &WebRTCSessionDescription,
    ) -> Result<()> {
        let summary =
            summarize_offer(&webrtc::description_text(offer)).map_err(|e| anyhow!("{e}"))?;
        for line in summary
            .media
            .iter()
            .filter(|l| !l.rejected && l.direction.client_receives())
        {
            let tee = match line.kind {
                MediaKind::Video => &self.video_tee,
                MediaKind::Audio => &self.audio_tee,
                MediaKind::Other => &None,
            };
            if let Some(tee) = tee {
                let direction = if line.direction.client_sends() {
                    WebRTCRTPTransceiverDirection::Sendrecv
                } else {
                    WebRTCRTPTransceiverDirection::Sendonly
                };
                self.attach_sender(link, tee, &format!("sink_{}", line.index), direction)?;
            }
        }
        Ok(())
    }

    fn attach_sender(
        &self,
        link: &mut PeerLink,
        tee: &gst::Element,
        pad_name: &str,
        direction: WebRTCRTPTransceiverDirection,
    ) -> Result<()> {
        let queue = gst::ElementFactory::make("queue")
            .name(format!("{}-{}-queue", link.webrtc.name(), tee.name()))
            .property_from_str("leaky", "downstream")
            .build()?;
        self.pipeline.add(&queue)?;
        let sink = link
            .webrtc
            .request_pad_simple(pad_name)
            .ok_or_else(|| anyhow!("webrtcbin gave no {pad_name} pad"))?;
        queue
            .static_pad("src")
            .ok_or_else(|| anyhow!("queue has no src pad"))?
            .link(&sink)?;
        if let Some(transceiver) = webrtc::pad_transceiver(&sink) {
            transceiver.set_direction(direction);
        }
        queue.sync_state_with_parent()?;
        let tee_pad = tee
            .request_pad_simple("src_%u")
            .ok_or_else(|| anyhow!("tee gave no src pad"))?;
        tee_pad.link(
            &queue
                .static_pad("sink")
                .ok_or_else(|| anyhow!("queue has no sink pad"))?,
        )?;
        link.senders.push((queue, tee_pad));
        Ok(())
    }

    /// Takes a peer connection out of the pipeline; the elements are
    /// returned to be set to NULL, the webrtcbin first.
    pub fn remove_connection(&self, link: PeerLink) -> Vec<gst::Element> {
        let mut stopped = vec![link.webrtc.clone()];
        let _ = self.pipeline.remove(&link.webrtc);
        let receive_prefix = format!("{}-receive-", link.webrtc.name());
        for chain in self.pipeline.children() {
            if chain.name().starts_with(&receive_prefix) {
                let _ = self.pipeline.remove(&chain);
                stopped.push(chain);
            }
        }
        for (queue, tee_pad) in link.senders {
            if let Some(tee) = tee_pad.parent_element() {
                tee.release_request_pad(&tee_pad);
            }
            let _ = self.pipeline.remove(&queue);
            stopped.push(queue);
        }
        stopped
    }
}

/// Adds an encoding chain ending in a tee that fans it out to connections.
fn add_encoding(
    pipeline: &gst::Pipeline,
    description: &str,
    tee_name: &str,
) -> Result<gst::Element> {
    let chain = gst::parse::bin_from_description(description, true)?;
    let tee = gst::ElementFactory::make("tee")
        .name(tee_name)
        .property("allow-not-linked", true)
        .build()?;
    pipeline.add_many([chain.upcast_ref(), &tee])?;
    chain.link(&tee)?;
    Ok(tee)
}

/// The a=msid stream id of the m-line a webrtcbin src pad belongs to.
fn stream_of_pad(webrtc: &gst::Element, pad: &gst::Pad) -> Option<String> {
    let mid = webrtc::pad_transceiver(pad)?.mid()?.to_string();
    let remote =
        webrtc.property::<Option<WebRTCSessionDescription>>("current-remote-description")?;
    let summary = summarize_offer(&webrtc::description_text(&remote)).ok()?;
    summary
        .media
        .into_iter()
        .find(|m| m.mid.as_deref() == Some(mid.as_str()))?
        .stream_id
}

/// Decodes a received stream into an app sink registered under `stream`.
/// Runs in pad-added: the pad must be linked before the callback returns.
fn link_receiver(
    webrtc: &gst::Element,
    pad: &gst::Pad,
    stream: &str,
    receivers: &Receivers,
) -> Result<()> {
    let video = match webrtc::rtp_media_of(pad).as_deref() {
        Some("video") => true,
        Some("audio") => false,
        _ => return Err(anyhow!("neither audio nor video")),
    };
    let pipeline = webrtc
        .parent()
        .and_then(|p| p.downcast::<gst::Bin>().ok())
        .ok_or_else(|| anyhow!("webrtcbin has no parent bin"))?;
    // VP8 carries no colour space; like browsers, read it as BT.601 (vp8dec
    // would assume BT.709 for HD sizes and shift every colour).
    let description = if video {
        "rtpvp8depay request-keyframe=true wait-for-keyframe=true ! vp8dec \
         ! capssetter join=true replace=false caps=\"video/x-raw,colorimetry=bt601\" ! videoconvert \
         ! video/x-raw,format=RGB ! appsink name=sink max-buffers=1 drop=true sync=false wait-on-eos=false"
            .to_owned()
    } else {
        format!(
            "rtpopusdepay ! opusdec ! audioconvert ! audioresample \
             ! audio/x-raw,format=F32LE,rate={AUDIO_RATE},channels=1,layout=interleaved \
             ! appsink name=sink max-buffers=200 drop=true sync=false wait-on-eos=false"
        )
    };
    let chain = gst::parse::bin_from_description(&description, true)?;
    let sink = chain
        .by_name("sink")
        .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
        .ok_or_else(|| anyhow!("no app sink in the receive chain"))?;
    if video {
        let frames = receivers.frames.clone();
        if let Some(sink_pad) = sink.static_pad("sink") {
            sink_pad.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
                frames.fetch_add(1, Ordering::Relaxed);
                gst::PadProbeReturn::Ok
            });
        }
    }
    chain.set_property("name", format!("{}-receive-{}", webrtc.name(), pad.name()));
    pipeline.add(&chain)?;
    chain.sync_state_with_parent()?;
    let chain_sink = chain
        .static_pad("sink")
        .ok_or_else(|| anyhow!("receive chain has no sink pad"))?;
    pad.link(&chain_sink)?;
    receivers.insert(stream, video, sink);
    Ok(())
}
