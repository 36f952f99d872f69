//! One recording: a bin in the room pipeline, named "recording/<id>", that
//! taps the program's tees (see program.rs), encodes what needs encoding,
//! muxes and writes.
//!
//! ```text
//! program video tee ─ gate ─┐ queue ─ [encode] ─┐
//!                           │                   ├ mux ─ filesink     (webm, mp4)
//! program audio tee ─ gate ─┘ queue ─ encode ───┘       or hlssink2  (hls)
//! ```
//!
//! - Never slows or stops the call: its queues are leaky, so a stalled disk
//!   drops the recording's data, not the room's, and deaf to downstream
//!   errors, so a failing disk fails the recording, not the room.
//! - Starts at 0 with picture and sound together (recording/gate.rs).
//! - Always playable: Matroska and fragmented MP4 are written as they go,
//!   each buffer straight to the file (no user-space buffering), so a killed
//!   process leaves a file that plays up to its last cluster or fragment; a
//!   stop sends end of stream through the muxer, which then writes its index
//!   and duration. The bin forwards its children's EOS messages so the room
//!   task sees when the file is complete.

use crate::media::pads::{self, discard};
use crate::media::program::{Feeds, isolate_downstream, leaky_queue};
use crate::media::templates::{Chain, PipelineTemplates};
use crate::recording::gate::{Admit, StartGate};
use crate::recording::naming::{HLS_SEGMENT_PATTERN, RecordingPaths};
use crate::recording::{Format, RecordingId};
use anyhow::{Context, Result, anyhow};
use gst::prelude::*;
use std::sync::{Arc, Mutex};

pub const RECORDING_PREFIX: &str = "recording/";

/// HLS segment length, seconds: a live viewer is about three behind.
const HLS_TARGET_DURATION: u32 = 2;

/// What the room needs to know about a bus message's source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordingPart {
    /// Part of one recording's branch.
    Branch(RecordingId),
    /// Part of the program that all the room's recordings share.
    Program,
}

/// Which recording element (if any) a bus message comes from, by the name of
/// its top-level ancestor under `pipeline`.
pub fn recording_part(pipeline: &gst::Pipeline, source: &gst::Object) -> Option<RecordingPart> {
    let name = crate::media::members::top_level_under(pipeline, source).name();
    let rest = name.strip_prefix(RECORDING_PREFIX)?;
    if rest.starts_with("program/") {
        return Some(RecordingPart::Program);
    }
    RecordingId::parse(rest).map(RecordingPart::Branch)
}

/// The recording whose file is now complete, if `message` says so: an EOS
/// that a recording bin forwarded from its sink.
pub fn finished_recording(message: &gst::Message) -> Option<RecordingId> {
    let gst::MessageView::Element(element) = message.view() else {
        return None;
    };
    let structure = element.structure()?;
    if structure.name() != "GstBinForwarded" {
        return None;
    }
    let inner = structure.get::<gst::Message>("message").ok()?;
    if inner.type_() != gst::MessageType::Eos {
        return None;
    }
    let name = message.src()?.name();
    RecordingId::parse(name.strip_prefix(RECORDING_PREFIX)?)
}

/// One input of the branch: where it taps, and its entry into the bin.
struct Input {
    tee: gst::Element,
    tee_pad: Option<gst::Pad>,
    entry: gst::GhostPad,
}

pub struct RecordingBranch {
    bin: gst::Bin,
    inputs: Vec<Input>,
}

fn chain(templates: &PipelineTemplates, chain: Chain, name: &str) -> Result<gst::Element> {
    let bin = templates.build(chain)?;
    bin.set_property("name", name);
    Ok(bin.upcast())
}

fn src_pad(element: &gst::Element) -> Result<gst::Pad> {
    element
        .static_pad("src")
        .ok_or_else(|| anyhow!("{} has no src pad", element.name()))
}

fn sink_pad(element: &gst::Element) -> Result<gst::Pad> {
    element
        .static_pad("sink")
        .ok_or_else(|| anyhow!("{} has no sink pad", element.name()))
}

impl RecordingBranch {
    /// Builds the branch, adds it to the playing pipeline and links it to
    /// the program's tees.
    pub fn start(
        pipeline: &gst::Pipeline,
        id: &RecordingId,
        format: Format,
        paths: &RecordingPaths,
        feeds: &Feeds,
        templates: &PipelineTemplates,
    ) -> Result<RecordingBranch> {
        let bin = gst::Bin::builder()
            .name(format!("{RECORDING_PREFIX}{id}"))
            .property("message-forward", true)
            // Its sinks' asynchronous state changes stay inside it. Without
            // this, the recording's muxer sink going to PLAYING makes the
            // whole pipeline lose its state and change every element's
            // again, and an MCU's graph is a cycle (each webrtcbin feeds the
            // compositor and is fed by it): GstBin warns "loop detected in
            // the graph" each time.
            .property("async-handling", true)
            .build();
        let (video_tee, encoded_video) = match (format, &feeds.vp8_video) {
            (Format::Webm, Some(vp8)) => (vp8.clone(), true),
            _ => (feeds.raw_video.clone(), false),
        };
        // Encoded video is small; raw 720p frames are not.
        let video_queue = leaky_queue("video-queue", 2000)?;
        let audio_queue = leaky_queue("audio-queue", 2000)?;
        let mut video_chain = vec![video_queue.clone()];
        let mut audio_chain = vec![audio_queue.clone()];
        match format {
            Format::Webm => {
                if !encoded_video {
                    video_chain.push(chain(templates, Chain::VideoEncode, "video-encode")?);
                }
                audio_chain.push(chain(templates, Chain::RecordOpus, "audio-encode")?);
            }
            Format::Mp4 | Format::Hls => {
                video_chain.push(chain(templates, Chain::RecordH264, "video-encode")?);
                audio_chain.push(chain(templates, Chain::RecordAac, "audio-encode")?);
            }
        }
        let (mux, sink) = match format {
            Format::Webm => {
                let mux = gst::ElementFactory::make("webmmux")
                    .name("mux")
                    // Short clusters: a killed recording loses at most the last one.
                    .property("max-cluster-duration", 2_000_000_000i64)
                    .build()?;
                (mux, Some(file_sink(&paths.main)?))
            }
            Format::Mp4 => {
                let mux = gst::ElementFactory::make("mp4mux")
                    .name("mux")
                    // Fragmented: a moov first, then a fragment each second, so
                    // a killed recording still plays.
                    .property("fragment-duration", 1000u32)
                    .build()?;
                (mux, Some(file_sink(&paths.main)?))
            }
            Format::Hls => {
                let folder = paths
                    .folder
                    .as_ref()
                    .ok_or_else(|| anyhow!("an HLS recording needs a folder"))?;
                let sink = gst::ElementFactory::make("hlssink2")
                    .name("mux")
                    .property(
                        "location",
                        folder.join(HLS_SEGMENT_PATTERN).to_string_lossy().as_ref(),
                    )
                    .property("playlist-location", paths.main.to_string_lossy().as_ref())
                    .property("target-duration", HLS_TARGET_DURATION)
                    // Keep every segment: the live playlist is also the recording.
                    .property("playlist-length", 0u32)
                    .property("max-files", 0u32)
                    .build()?;
                (sink, None)
            }
        };
        bin.add_many(video_chain.iter().chain(&audio_chain).chain([&mux]))?;
        if let Some(sink) = &sink {
            bin.add(sink)?;
            mux.link(sink)?;
        }
        gst::Element::link_many(&video_chain)?;
        gst::Element::link_many(&audio_chain)?;
        for (chain, kind) in [(&video_chain, "video"), (&audio_chain, "audio")] {
            let last = chain.last().ok_or_else(|| anyhow!("empty chain"))?;
            let template = if format == Format::Hls {
                kind.to_owned()
            } else {
                format!("{kind}_%u")
            };
            let mux_pad = mux
                .request_pad_simple(&template)
                .ok_or_else(|| anyhow!("{} gave no {kind} pad", mux.name()))?;
            src_pad(last)?.link(&mux_pad)?;
        }
        let video_entry = gst::GhostPad::builder_with_target(&sink_pad(&video_queue)?)?
            .name("video")
            .build();
        let audio_entry = gst::GhostPad::builder_with_target(&sink_pad(&audio_queue)?)?
            .name("audio")
            .build();
        bin.add_pad(&video_entry)?;
        bin.add_pad(&audio_entry)?;
        pipeline.add(&bin)?;
        if let Err(e) = bin.sync_state_with_parent() {
            let _ = pipeline.remove(&bin);
            let _ = bin.set_state(gst::State::Null);
            return Err(e).context("starting the recording's elements");
        }

        isolate_downstream(&src_pad(&video_queue)?);
        isolate_downstream(&src_pad(&audio_queue)?);
        let requested = pipeline
            .current_running_time()
            .map(gst::ClockTime::nseconds);
        let gate = Arc::new(Mutex::new(StartGate::requested_at(requested)));
        let mut branch = RecordingBranch {
            bin,
            inputs: Vec::new(),
        };
        let taps = [
            (
                video_tee,
                video_entry,
                src_pad(&video_queue)?,
                Some(encoded_video),
            ),
            (
                feeds.audio.clone(),
                audio_entry,
                src_pad(&audio_queue)?,
                None,
            ),
        ];
        for (tee, entry, shifted, video) in taps {
            let tee_pad = match pads::request_tee_pad(&tee) {
                Ok(pad) => pad,
                Err(e) => {
                    branch.discard(pipeline);
                    return Err(e);
                }
            };
            install_gate(&tee_pad, gate.clone(), shifted, video);
            branch.inputs.push(Input {
                tee,
                tee_pad: Some(tee_pad.clone()),
                entry: entry.clone(),
            });
            if let Err(e) = tee_pad.link(&entry) {
                branch.discard(pipeline);
                return Err(e).context("linking the recording to what it records");
            }
        }
        Ok(branch)
    }

    /// Stops taking data and sends end of stream into the branch, so the
    /// muxer finishes the file. The room learns it is done from the EOS the
    /// bin forwards (`finished_recording`).
    pub fn finalize(&mut self) {
        self.detach();
        for input in &self.inputs {
            input.entry.send_event(gst::event::Eos::new());
        }
    }

    /// Unlinks the branch from the tees. Releasing a tee pad unlinks it and
    /// marks it removed, so a buffer in flight into the branch cannot make
    /// the tee fail; after this no data enters the branch.
    fn detach(&mut self) {
        for input in &mut self.inputs {
            if let Some(pad) = input.tee_pad.take() {
                input.tee.release_request_pad(&pad);
            }
        }
    }

    /// Undoes a start that failed halfway.
    fn discard(self, pipeline: &gst::Pipeline) {
        let bin = self.remove(pipeline);
        std::thread::spawn(move || {
            let _ = bin.set_state(gst::State::Null);
        });
    }

    /// Takes the branch out of the pipeline; returns the bin, still to be
    /// set to NULL (off the room task: it may wait for streaming threads).
    pub fn remove(mut self, pipeline: &gst::Pipeline) -> gst::Element {
        self.detach();
        let _ = pipeline.remove(&self.bin);
        self.bin.upcast()
    }
}

/// A file sink that hands every buffer straight to the kernel: nothing the
/// muxer wrote is lost if the process is killed. It must not wait to
/// preroll: an async sink added to a playing pipeline would make the whole
/// room pipeline lose its state.
fn file_sink(path: &std::path::Path) -> Result<gst::Element> {
    Ok(gst::ElementFactory::make("filesink")
        .name("file")
        .property("location", path.to_string_lossy().as_ref())
        .property_from_str("buffer-mode", "unbuffered")
        .property("async", false)
        .property("sync", false)
        .build()?)
}

/// Drops what arrives at a recording input before the recording's start
/// (see recording/gate.rs); on the first buffer through, shifts that
/// input's running time so the recording starts at 0, and removes itself.
/// `video`: Some(encoded) for the video input, None for audio.
fn install_gate(
    tee_pad: &gst::Pad,
    gate: Arc<Mutex<StartGate>>,
    shifted: gst::Pad,
    video: Option<bool>,
) {
    tee_pad.add_probe(
        gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST,
        move |pad, info| {
            let Some(gst::PadProbeData::Buffer(buffer)) = &info.data else {
                return discard(info);
            };
            let running_time = pad
                .sticky_event::<gst::event::Segment>(0)
                .and_then(|e| {
                    e.segment()
                        .downcast_ref::<gst::ClockTime>()
                        .and_then(|s| s.to_running_time(buffer.pts()))
                })
                .map(gst::ClockTime::nseconds);
            let mut gate = gate.lock().unwrap_or_else(|e| e.into_inner());
            let admit = match video {
                Some(encoded) => gate.video(
                    running_time,
                    !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT),
                    encoded,
                ),
                None => gate.audio(running_time),
            };
            match admit {
                Admit::Drop => discard(info),
                Admit::Open { origin } => {
                    let now = pad
                        .parent_element()
                        .and_then(|e| e.current_running_time())
                        .map(gst::ClockTime::nseconds);
                    tracing::debug!(
                        video = video.is_some(),
                        "recording input opens at {:?} ms (origin {} ms, now {:?} ms)",
                        running_time.map(|t| t / 1_000_000),
                        origin / 1_000_000,
                        now.map(|t| t / 1_000_000)
                    );
                    // Re-sends the segment, shifted, before this buffer.
                    shifted.set_offset(-(origin.min(i64::MAX as u64) as i64));
                    gst::PadProbeReturn::Remove
                }
            }
        },
    );
}
