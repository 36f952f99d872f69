//! The "program" a recording records: the grid composite and a mix of
//! everyone (not mix-minus), as live tees that recording branches tap.
//!
//! MCU rooms already composite: the program adds only the full mix, fed from
//! each participant's decoded audio. SFU rooms decode nothing for the call,
//! so while a recording runs the program decodes each publisher's forwarded
//! tracks (through leaky queues off the forwarding tees, so forwarding never
//! waits for it) into a composite of its own, laid out like the MCU's.
//!
//! Every element is named "recording/program/...", so a failure in it is
//! told apart from the call's own and costs the recordings, not the call.

use crate::ids::ParticipantId;
use crate::media::caption_spots::{self, NamedTile};
use crate::media::captions::CaptionRow;
use crate::media::layout::GridLayout;
use crate::media::mcu::Canvas;
use crate::media::mixing::{self, PLACEHOLDER_ARGB};
use crate::media::pads;
use crate::media::templates::{Chain, PipelineTemplates};
use anyhow::{Result, anyhow};
use gst::prelude::*;
use std::collections::HashMap;

pub const PROGRAM_PREFIX: &str = "recording/program/";

fn program_name(part: &str) -> String {
    format!("{PROGRAM_PREFIX}{part}")
}

/// What a recording branch taps.
#[derive(Debug, Clone)]
pub struct Feeds {
    /// The composite, raw, at the canvas caps.
    pub raw_video: gst::Element,
    /// The same composite already encoded to VP8, where the room has it (MCU).
    pub vp8_video: Option<gst::Element>,
    /// Everyone's audio mixed, raw (48 kHz mono).
    pub audio: gst::Element,
}

fn tee(name: &str) -> Result<gst::Element> {
    Ok(gst::ElementFactory::make("tee")
        .name(name)
        .property("allow-not-linked", true)
        .build()?)
}

/// A leaky queue off a live tee: a slow consumer drops its own data rather
/// than holding back the tee's other branches.
pub fn leaky_queue(name: &str, max_time_ms: u64) -> Result<gst::Element> {
    Ok(gst::ElementFactory::make("queue")
        .name(name)
        .property_from_str("leaky", "downstream")
        .property("max-size-buffers", 0u32)
        .property("max-size-bytes", 0u32)
        .property("max-size-time", max_time_ms * 1_000_000)
        .build()?)
}

/// A leaky queue of at most `max_buffers` buffers: past that the oldest is
/// dropped, so a slow consumer loses data instead of building latency or
/// holding up the thread that feeds it.
pub fn leaky_buffer_queue(name: &str, max_buffers: u32) -> Result<gst::Element> {
    Ok(gst::ElementFactory::make("queue")
        .name(name)
        .property_from_str("leaky", "downstream")
        .property("max-size-buffers", max_buffers)
        .property("max-size-bytes", 0u32)
        .property("max-size-time", 0u64)
        .build()?)
}

/// Makes a queue's src pad deaf to what happens downstream: each buffer is
/// handed on and the result is always OK. A queue whose downstream fails
/// stops its task and answers every later buffer with that error, and a tee
/// that gets an error from one branch fails upstream, for every branch. With
/// this, a failing recording (or recording program) costs only itself; the
/// room task removes it when its error message arrives.
pub fn isolate_downstream(queue_src: &gst::Pad) {
    queue_src.add_probe(gst::PadProbeType::BUFFER, |pad, info| {
        let Some(buffer) = info.take_buffer() else {
            return gst::PadProbeReturn::Ok;
        };
        if let Some(peer) = pad.peer() {
            let _ = peer.chain(buffer);
        }
        info.flow_res = Ok(gst::FlowSuccess::Ok);
        gst::PadProbeReturn::Handled
    });
}

/// A chain from a request pad of some tee into a request pad of a mixer.
struct Tap {
    tee: gst::Element,
    tee_pad: gst::Pad,
    elements: Vec<gst::Element>,
    mixer: gst::Element,
    mixer_pad: gst::Pad,
}

impl Tap {
    /// Adds `elements` (linked in order), links their end to `mixer_pad`,
    /// starts them, and only then links the tee to them, so data never
    /// reaches an element that is not ready.
    fn open(
        pipeline: &gst::Pipeline,
        tee: &gst::Element,
        elements: Vec<gst::Element>,
        mixer: &gst::Element,
        mixer_pad: gst::Pad,
    ) -> Result<Tap> {
        pipeline.add_many(&elements)?;
        gst::Element::link_many(&elements)?;
        let (first, last) = match (elements.first(), elements.last()) {
            (Some(f), Some(l)) => (f.clone(), l.clone()),
            _ => return Err(anyhow!("an empty tap")),
        };
        isolate_downstream(
            &first
                .static_pad("src")
                .ok_or_else(|| anyhow!("{} has no src pad", first.name()))?,
        );
        last.static_pad("src")
            .ok_or_else(|| anyhow!("{} has no src pad", last.name()))?
            .link(&mixer_pad)?;
        for element in elements.iter().rev() {
            element.sync_state_with_parent()?;
        }
        let tee_pad = pads::branch_tee(tee, &first)?;
        Ok(Tap {
            tee: tee.clone(),
            tee_pad,
            elements,
            mixer: mixer.clone(),
            mixer_pad,
        })
    }

    /// Removes the chain (which unlinks it) and frees both request pads.
    /// Releasing the tee pad marks it removed, so a buffer still on its way
    /// cannot fail the tee. Returns the elements, still to be set to NULL.
    fn close(self, pipeline: &gst::Pipeline) -> Vec<gst::Element> {
        let _ = pipeline.remove_many(&self.elements);
        self.tee.release_request_pad(&self.tee_pad);
        self.mixer.release_request_pad(&self.mixer_pad);
        self.elements
    }
}

/// Everyone's voice in one mix. The live call's mixes are mix-minus; a
/// recording wants all.
pub struct FullMix {
    mixer: gst::Element,
    tee: gst::Element,
    inputs: HashMap<ParticipantId, Tap>,
}

impl FullMix {
    pub fn new(pipeline: &gst::Pipeline, latency: gst::ClockTime) -> Result<FullMix> {
        let (mut elements, mixer) = mixing::live_mix(pipeline, &program_name("mix-"), latency)?;
        let tee = tee(&program_name("audio-tee"))?;
        elements.push(tee.clone());
        pipeline.add_many(&elements)?;
        gst::Element::link_many(&elements)?;
        for element in elements.iter().rev() {
            element.sync_state_with_parent()?;
        }
        Ok(FullMix {
            mixer,
            tee,
            inputs: HashMap::new(),
        })
    }

    pub fn tee(&self) -> &gst::Element {
        &self.tee
    }

    /// Mixes in a participant's decoded audio, taken from `source_tee`
    /// through `chain` (a leaky queue first; a decoder after it if the tee
    /// carries RTP).
    fn add(
        &mut self,
        pipeline: &gst::Pipeline,
        id: &ParticipantId,
        source_tee: &gst::Element,
        chain: Vec<gst::Element>,
    ) -> Result<()> {
        self.remove(pipeline, id);
        let pad = self
            .mixer
            .request_pad_simple("sink_%u")
            .ok_or_else(|| anyhow!("audiomixer gave no sink pad"))?;
        let tap = Tap::open(pipeline, source_tee, chain, &self.mixer, pad)?;
        self.inputs.insert(id.clone(), tap);
        Ok(())
    }

    /// MCU: mixes in a participant's already-decoded audio tee.
    pub fn add_decoded(
        &mut self,
        pipeline: &gst::Pipeline,
        id: &ParticipantId,
        audio_tee: &gst::Element,
    ) -> Result<()> {
        let queue = leaky_queue(&program_name(&format!("hears-{id}")), 200)?;
        self.add(pipeline, id, audio_tee, vec![queue])
    }

    pub fn remove(&mut self, pipeline: &gst::Pipeline, id: &ParticipantId) -> Vec<gst::Element> {
        self.inputs
            .remove(id)
            .map(|tap| tap.close(pipeline))
            .unwrap_or_default()
    }

    /// Frees every input's pads; the mix's own elements go with the rest of
    /// the program (`remove_program`).
    fn close_inputs(&mut self, pipeline: &gst::Pipeline) -> Vec<gst::Element> {
        self.inputs
            .drain()
            .flat_map(|(_, tap)| tap.close(pipeline))
            .collect()
    }
}

/// Removes every program element left in the pipeline and returns them,
/// still to be set to NULL.
pub fn remove_program(pipeline: &gst::Pipeline) -> Vec<gst::Element> {
    let own: Vec<gst::Element> = pipeline
        .children()
        .into_iter()
        .filter(|e| e.name().starts_with(PROGRAM_PREFIX))
        .collect();
    let _ = pipeline.remove_many(&own);
    own
}

/// The MCU room's program: its composite is the call's (names included),
/// so only the full mix is added, fed from every participant's decoded
/// audio.
pub struct McuProgram {
    pub mix: FullMix,
}

impl McuProgram {
    pub fn new(
        pipeline: &gst::Pipeline,
        latency: gst::ClockTime,
        audio_tees: &[(ParticipantId, gst::Element)],
    ) -> Result<McuProgram> {
        let mut mix = FullMix::new(pipeline, latency)?;
        for (id, tee) in audio_tees {
            mix.add_decoded(pipeline, id, tee)?;
        }
        Ok(McuProgram { mix })
    }

    pub fn close(mut self, pipeline: &gst::Pipeline) -> Vec<gst::Element> {
        let mut removed = self.mix.close_inputs(pipeline);
        removed.extend(remove_program(pipeline));
        removed
    }
}

/// Most names the SFU program writes on its composite: its grid shows every
/// publisher, so this is a room of the default size.
const SFU_CAPTION_SLOTS: usize = 25;

/// A downstream keyframe request for the next frame, for the recordings'
/// encoders that take the composite from a tee. Its running time is 0,
/// not "none": each recording input shifts running times by a pad offset
/// (recorder.rs), and an encoder (GstVideoEncoder) adds that offset to the
/// request's running time, which turns "none" into a time that never comes
/// and leaves 0 at 0, which every frame is past.
fn keyframe_now() -> gst::Event {
    gst::event::CustomDownstream::new(
        gst::Structure::builder("GstForceKeyUnit")
            .field("running-time", 0u64)
            .field("all-headers", true)
            .build(),
    )
}

/// One participant in the SFU program's composite.
struct SfuTile {
    id: ParticipantId,
    name: String,
    placeholder_pad: gst::Pad,
    /// The compositor pad for the decoded picture, and the tap feeding it.
    picture_pad: gst::Pad,
    video: Option<Tap>,
}

/// The SFU room's program: a composite and a full mix of its own, built
/// from the forwarded tracks while a recording runs.
pub struct SfuProgram {
    canvas: Canvas,
    templates: std::sync::Arc<PipelineTemplates>,
    compositor: gst::Element,
    captions: CaptionRow,
    raw_tee: gst::Element,
    mix: FullMix,
    /// In join order, which is tile order.
    tiles: Vec<SfuTile>,
}

impl SfuProgram {
    pub fn new(
        pipeline: &gst::Pipeline,
        canvas: Canvas,
        latency: gst::ClockTime,
        templates: std::sync::Arc<PipelineTemplates>,
    ) -> Result<SfuProgram> {
        let compositor = mixing::live_compositor(&program_name("compositor"), latency)?;
        mixing::start_now(&compositor, pipeline);
        let caps = mixing::canvas_caps(&program_name("canvas"), canvas)?;
        let raw_tee = tee(&program_name("video-tee"))?;
        let captions = CaptionRow::new(PROGRAM_PREFIX, SFU_CAPTION_SLOTS)?;
        pipeline.add_many([&compositor, &caps, &raw_tee])?;
        let mut started = mixing::add_background(
            pipeline.upcast_ref(),
            &compositor,
            &program_name("background"),
            canvas.fps,
        )?;
        compositor.link(&caps)?;
        captions.insert(pipeline, &caps, &raw_tee)?;
        let row = captions.elements().iter().rev().cloned();
        started.splice(
            0..0,
            std::iter::once(raw_tee.clone())
                .chain(row)
                .chain([caps, compositor.clone()]),
        );
        for element in &started {
            element.sync_state_with_parent()?;
        }
        let mix = FullMix::new(pipeline, latency)?;
        Ok(SfuProgram {
            canvas,
            templates,
            compositor,
            captions,
            raw_tee,
            mix,
            tiles: Vec::new(),
        })
    }

    pub fn feeds(&self) -> Feeds {
        Feeds {
            raw_video: self.raw_tee.clone(),
            vp8_video: None,
            audio: self.mix.tee().clone(),
        }
    }

    /// A tile for a participant (grey until their video is decoded), with
    /// their `name` on it.
    pub fn add_participant(&mut self, id: &ParticipantId, name: &str) -> Result<()> {
        if self.tiles.iter().any(|t| &t.id == id) {
            return Ok(());
        }
        let placeholder_pad = mixing::request_tile_pad(&self.compositor, 1)?;
        mixing::show_still(
            &placeholder_pad,
            &program_name(&format!("placeholder-{id}")),
            PLACEHOLDER_ARGB,
            self.canvas.fps as i32,
        )?;
        let picture_pad = mixing::request_tile_pad(&self.compositor, 2)?;
        self.tiles.push(SfuTile {
            id: id.clone(),
            name: name.to_owned(),
            placeholder_pad,
            picture_pad,
            video: None,
        });
        self.relayout();
        Ok(())
    }

    /// Decodes a publisher's forwarded track (RTP from `rtp_tee`) into the
    /// composite or the mix.
    pub fn add_track(
        &mut self,
        pipeline: &gst::Pipeline,
        id: &ParticipantId,
        video: bool,
        rtp_tee: &gst::Element,
    ) -> Result<()> {
        let kind = if video { "video" } else { "audio" };
        // Enough to ride out a decoder hiccup; more would only add delay.
        let queue = leaky_queue(&program_name(&format!("{kind}-in-{id}")), 500)?;
        let chain = if video {
            Chain::VideoDecode
        } else {
            Chain::AudioDecode
        };
        let decode = self.templates.build(chain)?;
        decode.set_property("name", program_name(&format!("{kind}-decode-{id}")));
        let elements = vec![queue, decode.upcast()];
        if !video {
            return self.mix.add(pipeline, id, rtp_tee, elements);
        }
        let Some(tile) = self.tiles.iter_mut().find(|t| &t.id == id) else {
            return Err(anyhow!("{id} has no tile"));
        };
        if let Some(old) = tile.video.take() {
            old.close(pipeline);
            tile.picture_pad = mixing::request_tile_pad(&self.compositor, 2)?;
        }
        let tap = Tap::open(
            pipeline,
            rtp_tee,
            elements,
            &self.compositor,
            tile.picture_pad.clone(),
        )?;
        tile.video = Some(tap);
        self.relayout();
        Ok(())
    }

    /// Takes a participant out of the composite and the mix. Returns the
    /// removed elements, still to be set to NULL.
    pub fn remove_participant(
        &mut self,
        pipeline: &gst::Pipeline,
        id: &ParticipantId,
    ) -> Vec<gst::Element> {
        let mut removed = self.mix.remove(pipeline, id);
        if let Some(index) = self.tiles.iter().position(|t| &t.id == id) {
            let tile = self.tiles.remove(index);
            match tile.video {
                Some(tap) => removed.extend(tap.close(pipeline)),
                None => self.compositor.release_request_pad(&tile.picture_pad),
            }
            self.compositor.release_request_pad(&tile.placeholder_pad);
            self.relayout();
        }
        removed
    }

    fn relayout(&self) {
        let layout = GridLayout::for_count(self.tiles.len(), self.canvas.width, self.canvas.height);
        let mut named = Vec::with_capacity(self.tiles.len());
        for (tile, rect) in self.tiles.iter().zip(&layout.tiles) {
            mixing::show_tile([&tile.placeholder_pad, &tile.picture_pad], *rect, 1);
            named.push(NamedTile {
                name: &tile.name,
                rect: *rect,
                z: 1,
            });
        }
        let canvas = (self.canvas.width, self.canvas.height);
        self.captions.show(&caption_spots::captions(&named, canvas));
        // The recordings' encoders start the new picture with a keyframe,
        // clean at once rather than the old one blending into it.
        if let Some(pad) = self.raw_tee.static_pad("sink") {
            pad.send_event(keyframe_now());
        }
    }

    pub fn close(mut self, pipeline: &gst::Pipeline) -> Vec<gst::Element> {
        let mut removed = self.mix.close_inputs(pipeline);
        for tile in self.tiles.drain(..) {
            if let Some(tap) = tile.video {
                removed.extend(tap.close(pipeline));
            }
        }
        removed.extend(remove_program(pipeline));
        removed
    }
}
