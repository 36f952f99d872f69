//! The MCU composite's encoders, one per rung of the ladder (ladder.rs),
//! and each receiver's feed from one of them.
//!
//! ```text
//! raw-tee ─┬ rung0-valve ─ queue ─ scale ─ caps ─ video-encode (1280x720) ─ video-tee ─┐
//!          ├ rung1-valve ─ ...                    (640x360)  ─ rung1-tee ─┤  (one of them)
//!          └ rung2-valve ─ ...                    (320x180)  ─ rung2-tee ─┴ P1 input-selector ─ queue ─ rtpvp8pay ─ P1 webrtc
//! ```
//!
//! A rung is encoded only while someone receives it (or, for the top one, a
//! recording taps it). A receiver changes rung at a keyframe of the new one:
//! its selector gets a pad from the new rung, which drops the pictures
//! before that rung's next keyframe and makes itself the selector's active
//! pad on it, so the receiver's decoder never sees a picture that refers to
//! one it never got. One payloader per receiver keeps its RTP sequence
//! numbers and timestamps continuous across rungs. Keyframe requests go up
//! to the rungs the selector is fed from, each through its own limiter.

use crate::ids::ParticipantId;
use crate::media::events::MediaEvent;
use crate::media::keyframes::LimitedRequests;
use crate::media::ladder::{Ladder, Rung};
use crate::media::pads;
use crate::media::program::leaky_buffer_queue;
use crate::media::templates::{Chain, PipelineTemplates};
use anyhow::{Context, Result, anyhow};
use gst::prelude::*;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedSender;

/// One rung's chain, from its valve to its tee.
struct RungChain {
    rung: Rung,
    valve: gst::Element,
    tee: gst::Element,
    keyframes: LimitedRequests,
}

impl RungChain {
    fn encoding(&self) -> bool {
        !self.valve.property::<bool>("drop")
    }
}

pub struct EncodeLadder {
    ladder: Ladder,
    rungs: Vec<RungChain>,
}

impl EncodeLadder {
    /// Adds every rung's chain to `pipeline`, fed from `raw_tee` (the
    /// composite at `canvas`, width and height), each shut.
    pub fn build(
        pipeline: &gst::Pipeline,
        raw_tee: &gst::Element,
        canvas: (u32, u32),
        ladder: &Ladder,
        templates: &PipelineTemplates,
        keyframe_interval: Duration,
    ) -> Result<Self> {
        let rungs = ladder
            .rungs()
            .iter()
            .enumerate()
            .map(|(index, rung)| {
                build_rung(
                    pipeline,
                    raw_tee,
                    index,
                    *rung,
                    within_canvas(rung, canvas),
                    templates,
                    keyframe_interval,
                )
                .with_context(|| format!("building the {rung} encoder"))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(EncodeLadder {
            ladder: ladder.clone(),
            rungs,
        })
    }

    pub fn ladder(&self) -> &Ladder {
        &self.ladder
    }

    /// The top rung's encoded composite (what recordings of VP8 tap).
    pub fn top_tee(&self) -> &gst::Element {
        &self.rungs[0].tee
    }

    /// Opens the rungs `wanted` says and shuts the others; a rung that
    /// starts encoding starts on a keyframe.
    pub fn encode(&self, wanted: impl Fn(usize) -> bool) {
        for (index, chain) in self.rungs.iter().enumerate() {
            let wanted = wanted(index);
            if wanted == chain.encoding() {
                continue;
            }
            chain.valve.set_property("drop", !wanted);
            tracing::info!(rung = %chain.rung, "composite encoding {}", if wanted { "on" } else { "off" });
            if wanted {
                chain.keyframes.force();
            }
        }
    }

    /// Rungs being encoded now.
    pub fn running(&self) -> usize {
        self.rungs.iter().filter(|chain| chain.encoding()).count()
    }

    /// A keyframe on `rung` now (a new receiver, a recording's start).
    pub fn force_keyframe(&self, rung: usize) {
        if let Some(chain) = self.rungs.get(rung) {
            chain.keyframes.force();
        }
    }

    /// A keyframe on `rung` as soon as its limiter allows.
    pub fn ask_keyframe(&self, rung: usize) {
        if let Some(chain) = self.rungs.get(rung) {
            chain.keyframes.ask();
        }
    }

    /// A keyframe on every rung being encoded, as soon as each allows (the
    /// picture changed for everyone).
    pub fn ask_keyframes(&self) {
        for chain in self.rungs.iter().filter(|chain| chain.encoding()) {
            chain.keyframes.ask();
        }
    }

    /// Sends keyframe requests held back by the limiters that are now due.
    pub fn poll(&self) {
        for chain in &self.rungs {
            chain.keyframes.poll();
        }
    }

    fn tee(&self, rung: usize) -> Result<&gst::Element> {
        self.rungs
            .get(rung)
            .map(|chain| &chain.tee)
            .ok_or_else(|| anyhow!("the ladder has no rung {rung}"))
    }
}

/// The size a rung is encoded at: its own, or the canvas's where the rung
/// is larger (a composite is never scaled up).
fn within_canvas(rung: &Rung, (width, height): (u32, u32)) -> (u32, u32) {
    if rung.width <= width && rung.height <= height {
        return (rung.width, rung.height);
    }
    tracing::warn!(rung = %rung, "the rung is larger than the {width}x{height} canvas: encoded at the canvas size");
    (width, height)
}

fn build_rung(
    pipeline: &gst::Pipeline,
    raw_tee: &gst::Element,
    index: usize,
    rung: Rung,
    (width, height): (u32, u32),
    templates: &PipelineTemplates,
    keyframe_interval: Duration,
) -> Result<RungChain> {
    // The top rung keeps the names it had as the only encoder.
    let name = |what: &str| match index {
        0 => format!("video-{what}"),
        _ => format!("rung{index}-{what}"),
    };
    let valve = gst::ElementFactory::make("valve")
        .name(name("valve"))
        .property("drop", true)
        .build()?;
    // Scaling and encoding run on a thread of their own per rung, with at
    // most one frame waiting: when an encoder falls behind, the stalest
    // frame is dropped instead of latency building up behind it.
    let queue = leaky_buffer_queue(&name("encode-queue"), 1)?;
    let scale = gst::ElementFactory::make("videoscale")
        .name(name("scale"))
        .build()?;
    let size = gst::ElementFactory::make("capsfilter")
        .name(name("size"))
        .property(
            "caps",
            gst::Caps::builder("video/x-raw")
                .field("width", width as i32)
                .field("height", height as i32)
                .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
                .build(),
        )
        .build()?;
    let encoder = templates.build(Chain::VideoEncode)?;
    encoder.set_property("name", name("encode"));
    set_bitrate(&encoder, rung);
    if index > 0 {
        one_thread(&encoder);
    }
    let tee = gst::ElementFactory::make("tee")
        .name(name("tee"))
        .property("allow-not-linked", true)
        .build()?;
    let chain = [&valve, &queue, &scale, &size, encoder.upcast_ref(), &tee];
    pipeline.add_many(chain)?;
    gst::Element::link_many(chain)?;
    for element in chain.iter().rev() {
        element.sync_state_with_parent()?;
    }
    pads::branch_tee(raw_tee, &valve)?;
    // Receivers' keyframe requests reach the encoder through this limiter.
    let keyframes = LimitedRequests::install(&pads::static_pad(&tee, "sink")?, keyframe_interval);
    Ok(RungChain {
        rung,
        valve,
        tee,
        keyframes,
    })
}

/// The rung's bitrate on every element of the encode chain that has a
/// `target-bitrate` (vp8enc's, in bit/s): the chain says how to encode, the
/// ladder how much.
fn set_bitrate(encoder: &gst::Bin, rung: Rung) {
    let bitrate = rung.bits_per_second().to_string();
    if !set_wherever_present(encoder, "target-bitrate", &bitrate) {
        tracing::warn!(rung = %rung, "the video-encode chain has no target-bitrate: the rung's bitrate is not applied");
    }
}

/// One encoding thread for a lower rung, whatever the chain (which may be
/// an override) says. libvpx's worker threads spin while they wait for
/// each other: with three two-thread encoders on two cores the spinning
/// took over half a core (README, Encode ladder), and a 360p or 180p
/// picture gains nothing from a second thread.
fn one_thread(encoder: &gst::Bin) {
    set_wherever_present(encoder, "threads", "1");
}

/// Sets `property` on every element of `chain` that has it; whether any had.
fn set_wherever_present(chain: &gst::Bin, property: &str, value: &str) -> bool {
    let mut found = false;
    for element in chain.iterate_recurse().into_iter().flatten() {
        if element.find_property(property).is_some() {
            element.set_property_from_str(property, value);
            found = true;
        }
    }
    found
}

/// What feeds one receiver's payloader: a selector with a pad from the rung
/// it is on and, while it changes rung, one from the rung it goes to.
pub struct RungFeed {
    participant: ParticipantId,
    selector: gst::Element,
    current: Option<Branch>,
    pending: Option<Branch>,
}

/// A rung's tee pad linked to a selector pad.
struct Branch {
    rung: usize,
    tee: gst::Element,
    tee_pad: gst::Pad,
    selector_pad: gst::Pad,
}

impl Branch {
    fn release(self, selector: &gst::Element) {
        self.tee.release_request_pad(&self.tee_pad);
        selector.release_request_pad(&self.selector_pad);
    }
}

impl RungFeed {
    /// A selector for `participant`'s payloader, named after them; the
    /// caller adds it to the pipeline and links its src pad.
    pub fn new(participant: &ParticipantId) -> Result<Self> {
        // Pads that are not active drop what they get instead of waiting
        // for the active one's running time.
        let selector = gst::ElementFactory::make("input-selector")
            .name(format!("{participant}/rung-selector"))
            .property("sync-streams", false)
            .property("cache-buffers", false)
            .build()?;
        Ok(RungFeed {
            participant: participant.clone(),
            selector,
            current: None,
            pending: None,
        })
    }

    pub fn selector(&self) -> &gst::Element {
        &self.selector
    }

    /// The rung the receiver is on (or gets first), then the one it goes to.
    pub fn rungs(&self) -> (Option<usize>, Option<usize>) {
        (
            self.current.as_ref().map(|b| b.rung),
            self.pending.as_ref().map(|b| b.rung),
        )
    }

    /// Whether `rung` feeds this receiver or is about to.
    pub fn uses(&self, rung: usize) -> bool {
        let (current, pending) = self.rungs();
        current == Some(rung) || pending == Some(rung)
    }

    /// Starts moving the receiver to `rung`: from its next keyframe on, the
    /// receiver gets that rung (`MediaEvent::RungReached` says when). The
    /// caller opens the rung and forces the keyframe.
    pub fn move_to(
        &mut self,
        ladder: &EncodeLadder,
        rung: usize,
        events: &UnboundedSender<MediaEvent>,
    ) -> Result<()> {
        if let Some(pending) = self.pending.take() {
            if pending.rung == rung {
                self.pending = Some(pending);
                return Ok(());
            }
            if self.is_active(&pending) {
                // Its keyframe passed and its `RungReached` is on the way:
                // it feeds the receiver now, so it is the one to move from.
                if let Some(old) = self.current.replace(pending) {
                    old.release(&self.selector);
                }
            } else {
                pending.release(&self.selector);
            }
        }
        if self.current.as_ref().is_some_and(|b| b.rung == rung) {
            return Ok(());
        }
        let tee = ladder.tee(rung)?.clone();
        let selector_pad = self
            .selector
            .request_pad_simple("sink_%u")
            .ok_or_else(|| anyhow!("{} gave no sink pad", self.selector.name()))?;
        let selector = self.selector.downgrade();
        let sender = events.clone();
        let participant = self.participant.clone();
        // Until the rung's next keyframe nothing of it passes; on it, the
        // pad becomes the selector's active one before the keyframe enters.
        selector_pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
            let keyframe = info
                .buffer()
                .is_some_and(|b| !b.flags().contains(gst::BufferFlags::DELTA_UNIT));
            if !keyframe {
                return pads::discard(info);
            }
            if let Some(selector) = selector.upgrade() {
                selector.set_property("active-pad", pad);
            }
            let _ = sender.send(MediaEvent::RungReached {
                participant: participant.clone(),
                rung,
            });
            gst::PadProbeReturn::Remove
        });
        let tee_pad = pads::request_tee_pad(&tee)?;
        if let Err(e) = tee_pad.link(&selector_pad) {
            tee.release_request_pad(&tee_pad);
            self.selector.release_request_pad(&selector_pad);
            return Err(anyhow!("linking {} to the receiver: {e:?}", tee.name()));
        }
        self.pending = Some(Branch {
            rung,
            tee,
            tee_pad,
            selector_pad,
        });
        Ok(())
    }

    fn is_active(&self, branch: &Branch) -> bool {
        self.selector
            .property::<Option<gst::Pad>>("active-pad")
            .is_some_and(|pad| pad == branch.selector_pad)
    }

    /// The receiver got its first picture of `rung`: the rung it was on
    /// before goes. Returns whether `rung` was the one it was moving to.
    pub fn reached(&mut self, rung: usize) -> bool {
        if self.pending.as_ref().is_none_or(|b| b.rung != rung) {
            return false;
        }
        if let Some(old) = self.current.take() {
            old.release(&self.selector);
        }
        self.current = self.pending.take();
        true
    }

    /// Takes the receiver off every rung (it leaves).
    pub fn release(&mut self) {
        for branch in [self.current.take(), self.pending.take()]
            .into_iter()
            .flatten()
        {
            branch.release(&self.selector);
        }
    }
}
