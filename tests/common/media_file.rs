//! What a recorded file holds, as a player would find it: streams and
//! duration (GStreamer's discoverer), and decoded frames and samples up to
//! the end of the file.

use anyhow::{Context, Result, anyhow};
use gridmix::bot::analysis::VideoFrame;
use gridmix::bot::frame_of;
use gst::prelude::*;
use gst_pbutils::prelude::*;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const AUDIO_RATE: u32 = 48_000;

/// What the discoverer says about a file.
#[derive(Debug)]
pub struct Probe {
    pub duration: Option<Duration>,
    pub video_streams: usize,
    pub audio_streams: usize,
    /// The container's caps name ("video/webm", "video/quicktime",
    /// "video/mpegts", "application/x-hls").
    pub container: Option<String>,
    /// The first video stream's codec ("video/x-vp8", "video/x-h264").
    pub video_codec: Option<String>,
    /// The first audio stream's codec ("audio/x-opus", or "audio/mpeg" with
    /// its version: "audio/mpeg,mpegversion=4" is AAC).
    pub audio_codec: Option<String>,
}

/// A stream's caps as "name" plus the field that tells codecs of one name
/// apart (mpegversion).
fn codec_of(caps: Option<gst::Caps>) -> Option<String> {
    let caps = caps?;
    let structure = caps.structure(0)?;
    let name = structure.name().to_string();
    Some(match structure.get::<i32>("mpegversion") {
        Ok(version) => format!("{name},mpegversion={version}"),
        Err(_) => name,
    })
}

pub fn file_uri(path: &Path) -> Result<String> {
    let absolute = std::fs::canonicalize(path).with_context(|| format!("{}", path.display()))?;
    Ok(gst::glib::filename_to_uri(&absolute, None)?.to_string())
}

pub fn probe(path: &Path) -> Result<Probe> {
    gst::init()?;
    let discoverer = gst_pbutils::Discoverer::new(gst::ClockTime::from_seconds(30))?;
    let info = discoverer
        .discover_uri(&file_uri(path)?)
        .with_context(|| format!("discovering {}", path.display()))?;
    let container = info
        .stream_info()
        .and_then(|s| s.caps())
        .and_then(|c| c.structure(0).map(|s| s.name().to_string()));
    Ok(Probe {
        duration: info.duration().map(|d| Duration::from_nanos(d.nseconds())),
        video_streams: info.video_streams().len(),
        audio_streams: info.audio_streams().len(),
        container,
        video_codec: codec_of(info.video_streams().first().and_then(|s| s.caps())),
        audio_codec: codec_of(info.audio_streams().first().and_then(|s| s.caps())),
    })
}

/// A decoded frame and when it shows, from the start of the file.
pub struct TimedFrame {
    pub pts: Duration,
    pub frame: VideoFrame,
}

/// Everything decoded from a file, to its end.
#[derive(Default)]
pub struct Decoded {
    /// One frame in `keep_every`, to keep memory bounded.
    pub frames: Vec<TimedFrame>,
    pub video_frames: u64,
    /// Timestamps of every video frame, in order.
    pub video_pts: Vec<Duration>,
    /// The brightness (0-255) at the centre of every video frame, in order.
    pub centre_brightness: Vec<f64>,
    /// Mono 48 kHz samples, from `audio_start` on.
    pub audio: Vec<f32>,
    pub audio_start: Option<Duration>,
    pub last_audio_end: Option<Duration>,
    /// The error that ended decoding early, if any.
    pub error: Option<String>,
}

impl Decoded {
    pub fn last_video_pts(&self) -> Option<Duration> {
        self.video_pts.last().copied()
    }

    /// Audio between two times from the start of the file.
    pub fn audio_between(&self, from: Duration, to: Duration) -> &[f32] {
        let start = self.audio_start.unwrap_or_default();
        let index = |t: Duration| {
            let offset = t.saturating_sub(start).as_secs_f64() * f64::from(AUDIO_RATE);
            (offset as usize).min(self.audio.len())
        };
        &self.audio[index(from)..index(to)]
    }

    /// The longest wait between two consecutive video frames.
    pub fn longest_video_gap(&self) -> Duration {
        self.video_pts
            .windows(2)
            .map(|w| w[1].saturating_sub(w[0]))
            .max()
            .unwrap_or_default()
    }
}

/// Decodes a file (or an HLS playlist) to its end, as fast as possible.
/// Keeps one RGB frame in `keep_every`.
pub fn decode(path: &Path, keep_every: u64) -> Result<Decoded> {
    gst::init()?;
    let pipeline = gst::Pipeline::new();
    let source = gst::ElementFactory::make("uridecodebin")
        .property("uri", file_uri(path)?)
        .build()?;
    pipeline.add(&source)?;
    let decoded = Arc::new(Mutex::new(Decoded::default()));
    let weak_pipeline = pipeline.downgrade();
    let sink_decoded = decoded.clone();
    source.connect_pad_added(move |_, pad| {
        let Some(pipeline) = weak_pipeline.upgrade() else {
            return;
        };
        let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
        let Some(name) = caps.structure(0).map(|s| s.name().to_string()) else {
            return;
        };
        let result = if name.starts_with("video/") {
            video_branch(&pipeline, pad, sink_decoded.clone(), keep_every)
        } else if name.starts_with("audio/") {
            audio_branch(&pipeline, pad, sink_decoded.clone())
        } else {
            Ok(())
        };
        if let Err(e) = result {
            sink_decoded.lock().unwrap().error = Some(format!("linking {name}: {e:#}"));
        }
    });
    pipeline.set_state(gst::State::Playing)?;
    let bus = pipeline.bus().expect("a pipeline has a bus");
    let message = bus.timed_pop_filtered(
        gst::ClockTime::from_seconds(120),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    );
    let ended = match message.as_ref().map(|m| m.view()) {
        Some(gst::MessageView::Eos(_)) => None,
        Some(gst::MessageView::Error(e)) => Some(format!(
            "{} ({:?}) from {:?}",
            e.error(),
            e.debug(),
            e.src().map(|s| s.path_string())
        )),
        _ => Some("decoding did not end within 120 s".to_owned()),
    };
    pipeline.set_state(gst::State::Null)?;
    let mut decoded = std::mem::take(&mut *decoded.lock().unwrap());
    if decoded.error.is_none() {
        decoded.error = ended;
    }
    Ok(decoded)
}

fn pts_of(sample: &gst::Sample) -> Option<Duration> {
    let buffer = sample.buffer()?;
    let segment = sample.segment()?.downcast_ref::<gst::ClockTime>()?;
    let pts = segment.to_stream_time(buffer.pts()?)?;
    Some(Duration::from_nanos(pts.nseconds()))
}

fn video_branch(
    pipeline: &gst::Pipeline,
    pad: &gst::Pad,
    decoded: Arc<Mutex<Decoded>>,
    keep_every: u64,
) -> Result<()> {
    let convert = gst::ElementFactory::make("videoconvert").build()?;
    let sink = gst_app::AppSink::builder()
        .caps(
            &gst::Caps::builder("video/x-raw")
                .field("format", "RGB")
                .build(),
        )
        .sync(false)
        .build();
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let mut d = decoded.lock().unwrap();
                let pts = pts_of(&sample).unwrap_or_default();
                let frame = frame_of(&sample).ok();
                let centre = frame.as_ref().map_or(0.0, |f| {
                    f.view()
                        .brightness(f.width as i32 / 2, f.height as i32 / 2, 4)
                });
                if d.video_frames.is_multiple_of(keep_every.max(1))
                    && let Some(frame) = frame
                {
                    d.frames.push(TimedFrame { pts, frame });
                }
                d.video_frames += 1;
                d.video_pts.push(pts);
                d.centre_brightness.push(centre);
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    link_branch(pipeline, pad, &[convert, sink.upcast()])
}

fn audio_branch(
    pipeline: &gst::Pipeline,
    pad: &gst::Pad,
    decoded: Arc<Mutex<Decoded>>,
) -> Result<()> {
    let convert = gst::ElementFactory::make("audioconvert").build()?;
    let resample = gst::ElementFactory::make("audioresample").build()?;
    let sink = gst_app::AppSink::builder()
        .caps(
            &gst::Caps::builder("audio/x-raw")
                .field("format", "F32LE")
                .field("rate", AUDIO_RATE as i32)
                .field("channels", 1i32)
                .field("layout", "interleaved")
                .build(),
        )
        .sync(false)
        .build();
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let Some(buffer) = sample.buffer() else {
                    return Ok(gst::FlowSuccess::Ok);
                };
                let map = buffer.map_readable().map_err(|_| gst::FlowError::Error)?;
                let samples: Vec<f32> = map
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect();
                let mut d = decoded.lock().unwrap();
                let pts = pts_of(&sample).unwrap_or_default();
                d.audio_start.get_or_insert(pts);
                d.last_audio_end = Some(
                    pts + Duration::from_secs_f64(samples.len() as f64 / f64::from(AUDIO_RATE)),
                );
                d.audio.extend(samples);
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    link_branch(pipeline, pad, &[convert, resample, sink.upcast()])
}

fn link_branch(pipeline: &gst::Pipeline, pad: &gst::Pad, elements: &[gst::Element]) -> Result<()> {
    pipeline.add_many(elements)?;
    gst::Element::link_many(elements)?;
    for e in elements {
        e.sync_state_with_parent()?;
    }
    let first = elements.first().ok_or_else(|| anyhow!("no elements"))?;
    pad.link(
        &first
            .static_pad("sink")
            .ok_or_else(|| anyhow!("no sink pad"))?,
    )?;
    Ok(())
}
