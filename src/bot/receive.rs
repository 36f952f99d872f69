//! The bot's receiving side: a decode chain per received stream ending in
//! app sinks that tests read, frame counts, and an optional observer that
//! sees every decoded frame (the bench reads its timecodes there).

use super::AUDIO_RATE;
use super::analysis::{FrameView, VideoFrame};
use crate::media::webrtc;
use anyhow::{Result, anyhow};
use gst::prelude::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Called on a streaming thread with each decoded video frame and the stream
/// it came from: it must be quick.
pub type FrameObserver = Arc<dyn Fn(&str, &FrameView<'_>) + Send + Sync>;

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
    keyframes: Arc<AtomicU64>,
    on_frame: Option<FrameObserver>,
    /// Ask for a keyframe on every video stream this often.
    keyframe_requests_every: Option<Duration>,
}

impl Receivers {
    pub fn new(
        on_frame: Option<FrameObserver>,
        keyframe_requests_every: Option<Duration>,
    ) -> Receivers {
        Receivers {
            on_frame,
            keyframe_requests_every,
            ..Receivers::default()
        }
    }

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

    pub fn keyframes(&self) -> u64 {
        self.keyframes.load(Ordering::Relaxed)
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

/// A decoded RGB sample as an owned frame.
pub fn frame_of(sample: &gst::Sample) -> Result<VideoFrame> {
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

/// Decodes a received stream into an app sink registered under `stream`.
/// Runs in pad-added: the pad must be linked before the callback returns.
pub(super) fn link_receiver(
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
    // Sinks added to a playing pipeline: not synchronised, and not waiting
    // to preroll (async=false). A teardown that hung once in 10 runs of the
    // SFU churn test had every receive chain's thread waiting in an
    // appsink's preroll, holding the stream locks webrtcbin's shutdown needs.
    let description = if video {
        "rtpvp8depay request-keyframe=true wait-for-keyframe=true ! vp8dec name=decoder \
         ! capssetter join=true replace=false caps=\"video/x-raw,colorimetry=bt601\" ! videoconvert \
         ! video/x-raw,format=RGB ! appsink name=sink max-buffers=1 drop=true sync=false async=false wait-on-eos=false"
            .to_owned()
    } else {
        format!(
            "rtpopusdepay ! opusdec ! audioconvert ! audioresample \
             ! audio/x-raw,format=F32LE,rate={AUDIO_RATE},channels=1,layout=interleaved \
             ! appsink name=sink max-buffers=200 drop=true sync=false async=false wait-on-eos=false"
        )
    };
    let chain = gst::parse::bin_from_description(&description, true)?;
    let sink = chain
        .by_name("sink")
        .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
        .ok_or_else(|| anyhow!("no app sink in the receive chain"))?;
    if video && let Some(sink_pad) = sink.static_pad("sink") {
        let frames = receivers.frames.clone();
        let observer = receivers.on_frame.clone();
        let stream = stream.to_owned();
        sink_pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
            frames.fetch_add(1, Ordering::Relaxed);
            if let (Some(observer), Some(buffer)) = (&observer, info.buffer()) {
                observe(pad, buffer, &stream, observer);
            }
            gst::PadProbeReturn::Ok
        });
    }
    if video && let Some(decoder) = chain.by_name("decoder").and_then(|d| d.static_pad("sink")) {
        let keyframes = receivers.keyframes.clone();
        decoder.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if info
                .buffer()
                .is_some_and(|b| !b.flags().contains(gst::BufferFlags::DELTA_UNIT))
            {
                keyframes.fetch_add(1, Ordering::Relaxed);
            }
            gst::PadProbeReturn::Ok
        });
        if let Some(every) = receivers.keyframe_requests_every {
            request_keyframes_every(&decoder, every);
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

/// Sends a keyframe request upstream from `pad` (towards the sender) every
/// `every`, for as long as the pad lives: its own thread, whose sleep paces
/// the requests.
fn request_keyframes_every(pad: &gst::Pad, every: Duration) {
    let pad = pad.downgrade();
    std::thread::spawn(move || {
        while let Some(pad) = pad.upgrade() {
            if pad.parent().is_some() {
                pad.push_event(webrtc::keyframe_request(None));
            }
            drop(pad);
            std::thread::sleep(every);
        }
    });
}

/// Shows one decoded RGB frame to the observer.
fn observe(pad: &gst::Pad, buffer: &gst::BufferRef, stream: &str, observer: &FrameObserver) {
    let Some((width, height)) = pad.current_caps().and_then(|caps| {
        let s = caps.structure(0)?;
        Some((
            s.get::<i32>("width").ok()? as u32,
            s.get::<i32>("height").ok()? as u32,
        ))
    }) else {
        return;
    };
    let Ok(map) = buffer.map_readable() else {
        return;
    };
    let frame = FrameView {
        width,
        height,
        stride: map.len() / height.max(1) as usize,
        rgb: &map,
    };
    observer(stream, &frame);
}
