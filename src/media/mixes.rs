//! Top-k audio in an MCU room: the few mixes the room encodes, and each
//! listener's payloader fed from one of them.
//!
//! ```text
//! A audio-tee ─ queue ─┐
//! B audio-tee ─ queue ─┤ everyone mixer ─ audio-encode ─ tee ─┬ queue ─ rtpopuspay ─ C webrtc   (C, D: not mixed,
//!             silence ─┘                                      └ queue ─ rtpopuspay ─ D webrtc    hear A and B)
//! B audio-tee ─ queue ─┐
//!             silence ─┘ A's mixer ─ audio-encode ─ tee ─ queue ─ rtpopuspay ─ A webrtc          (A hears B)
//! A audio-tee ─ queue ─┐
//!             silence ─┘ B's mixer ─ audio-encode ─ tee ─ queue ─ rtpopuspay ─ B webrtc          (B hears A)
//! ```
//!
//! Who is mixed is the room's choice (room/mix_choice.rs); this carries it
//! out. A listener moves from one mix to another by relinking its queue
//! from one tee to the other between two buffers (an idle probe), with the
//! same payloader throughout, so its RTP sequence numbers run on and its
//! timestamps (taken from running time) stay continuous; the Opus decoder
//! crosses over within a frame. Nobody hears their own voice: a newly mixed
//! participant is moved to a mix of its own before its voice enters any
//! other, and leaves the other mixes before it is moved back.

use crate::ids::ParticipantId;
use crate::media::members::{self, Owners};
use crate::media::mixing;
use crate::media::pads;
use crate::media::program::leaky_queue;
use crate::media::templates::{Chain, PipelineTemplates};
use anyhow::{Result, anyhow};
use gst::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// The longest a listener's switch waits for its branch to come idle
/// between two buffers (a push into a leaky queue takes microseconds).
const SWITCH_TIMEOUT: Duration = Duration::from_secs(1);

/// One speaker's voice entering a mix, through a leaky queue so one slow
/// mix never holds back the speaker's others.
struct Input {
    speaker_tee: gst::Element,
    tee_pad: gst::Pad,
    queue: gst::Element,
}

/// Some speakers' voices over silence, encoded once, on a tee.
struct Mix {
    name: String,
    tee: gst::Element,
    mixer: gst::Element,
    elements: Vec<gst::Element>,
    inputs: HashMap<ParticipantId, Input>,
}

impl Mix {
    /// Builds and starts a mix named `name`, belonging to `owner` if given
    /// (its failure then costs that participant, not the room).
    fn build(
        pipeline: &gst::Pipeline,
        owners: &Owners,
        owner: Option<&ParticipantId>,
        name: &str,
        latency: gst::ClockTime,
        templates: &PipelineTemplates,
    ) -> Result<Mix> {
        let (mut elements, mixer) = mixing::live_mix(pipeline, &format!("{name}/"), latency)?;
        let encode = templates.build(Chain::AudioEncode)?;
        encode.set_property("name", format!("{name}/audio-encode"));
        let tee = gst::ElementFactory::make("tee")
            .name(format!("{name}/tee"))
            .property("allow-not-linked", true)
            .build()?;
        elements.extend([encode.upcast(), tee.clone()]);
        match owner {
            Some(owner) => owners.add(pipeline.upcast_ref(), owner, &elements)?,
            None => pipeline.add_many(&elements)?,
        }
        gst::Element::link_many(&elements)?;
        for element in elements.iter().rev() {
            element.sync_state_with_parent()?;
        }
        Ok(Mix {
            name: name.to_owned(),
            tee,
            mixer,
            elements,
            inputs: HashMap::new(),
        })
    }

    /// Lets `speaker`'s voice (decoded, on `speaker_tee`) into the mix.
    fn add_input(
        &mut self,
        pipeline: &gst::Pipeline,
        owners: &Owners,
        speaker: &ParticipantId,
        speaker_tee: &gst::Element,
    ) -> Result<()> {
        if self.inputs.contains_key(speaker) {
            return Ok(());
        }
        let queue = leaky_queue(&format!("{speaker}/into-{}", self.name), 200)?;
        owners.add(pipeline.upcast_ref(), speaker, std::slice::from_ref(&queue))?;
        let mixer_pad = self
            .mixer
            .request_pad_simple("sink_%u")
            .ok_or_else(|| anyhow!("{} gave no sink pad", self.mixer.name()))?;
        pads::static_pad(&queue, "src")?.link(&mixer_pad)?;
        queue.sync_state_with_parent()?;
        let tee_pad = pads::branch_tee(speaker_tee, &queue)?;
        self.inputs.insert(
            speaker.clone(),
            Input {
                speaker_tee: speaker_tee.clone(),
                tee_pad,
                queue,
            },
        );
        Ok(())
    }

    /// As `add_input`; a voice that cannot be added is missing from this
    /// mix only, and said so.
    fn add_input_or_warn(
        &mut self,
        pipeline: &gst::Pipeline,
        owners: &Owners,
        speaker: &ParticipantId,
        speaker_tee: &gst::Element,
    ) {
        if let Err(e) = self.add_input(pipeline, owners, speaker, speaker_tee) {
            tracing::warn!(%speaker, mix = %self.name, "not heard in this mix: {e:#}");
        }
    }

    /// Takes `speaker`'s voice out; returns its queue, still to be stopped.
    fn remove_input(
        &mut self,
        pipeline: &gst::Pipeline,
        owners: &Owners,
        speaker: &ParticipantId,
    ) -> Option<gst::Element> {
        let input = self.inputs.remove(speaker)?;
        Some(close_input(pipeline, owners, &self.mixer, input))
    }

    /// Takes the whole mix out; returns its elements, still to be stopped.
    fn close(self, pipeline: &gst::Pipeline, owners: &Owners) -> Vec<gst::Element> {
        let mut removed: Vec<gst::Element> = self
            .inputs
            .into_values()
            .map(|input| close_input(pipeline, owners, &self.mixer, input))
            .collect();
        for element in &self.elements {
            owners.forget(element);
            let _ = pipeline.remove(element);
        }
        removed.extend(self.elements);
        removed
    }
}

/// Removing the queue unlinks it from both sides; then the request pads go.
fn close_input(
    pipeline: &gst::Pipeline,
    owners: &Owners,
    mixer: &gst::Element,
    input: Input,
) -> gst::Element {
    owners.forget(&input.queue);
    let mixer_pad = pads::static_pad(&input.queue, "src")
        .ok()
        .and_then(|p| p.peer());
    let _ = pipeline.remove(&input.queue);
    input.speaker_tee.release_request_pad(&input.tee_pad);
    if let Some(mixer_pad) = mixer_pad {
        mixer.release_request_pad(&mixer_pad);
    }
    input.queue
}

/// One listener's branch: a queue (and, after it, their own payloader) on
/// the tee of the mix they hear.
struct Listener {
    queue: gst::Element,
    tee: gst::Element,
    tee_pad: gst::Pad,
}

impl Listener {
    /// Moves the branch onto `to` between two buffers.
    fn switch_to(&mut self, to: &gst::Element) -> Result<()> {
        if &self.tee == to {
            return Ok(());
        }
        let new_pad = pads::request_tee_pad(to)?;
        let sink = pads::static_pad(&self.queue, "sink")?;
        let began = std::time::Instant::now();
        let (done, switched) = std::sync::mpsc::sync_channel(1);
        let relinked = new_pad.clone();
        // Called at once on this thread if the pad is idle, otherwise on
        // the streaming thread as soon as its push returns.
        let probe = self
            .tee_pad
            .add_probe(gst::PadProbeType::IDLE, move |pad, _| {
                let _ = pad.unlink(&sink);
                let linked = relinked.link(&sink).is_ok();
                if !linked {
                    // Back onto the old mix rather than silent.
                    let _ = pad.link(&sink);
                }
                let _ = done.try_send(linked);
                gst::PadProbeReturn::Remove
            });
        let outcome = switched.recv_timeout(SWITCH_TIMEOUT).ok().or_else(|| {
            if let Some(probe) = probe {
                self.tee_pad.remove_probe(probe);
            }
            switched.try_recv().ok()
        });
        tracing::debug!(
            "listener's branch {} switched in {:?}",
            self.queue.name(),
            began.elapsed()
        );
        match outcome {
            Some(true) => {
                self.tee.release_request_pad(&self.tee_pad);
                self.tee = to.clone();
                self.tee_pad = new_pad;
                Ok(())
            }
            Some(false) => {
                // Refused by the new mix: still on the old one.
                to.release_request_pad(&new_pad);
                Err(anyhow!("the listener's queue refused {}", to.name()))
            }
            None => {
                to.release_request_pad(&new_pad);
                Err(anyhow!(
                    "the listener's branch did not come idle within {SWITCH_TIMEOUT:?}"
                ))
            }
        }
    }
}

/// Every mix of an MCU room and who hears which.
pub struct Mixes {
    latency: gst::ClockTime,
    templates: Arc<PipelineTemplates>,
    /// What everyone who is not mixed hears: all the mixed voices. Built
    /// for the first listener or speaker.
    everyone: Option<Mix>,
    /// For each mixed participant who listens: the other mixed voices.
    own: HashMap<ParticipantId, Mix>,
    /// The mixed participants, with the tee of their decoded voice.
    mixed: Vec<(ParticipantId, gst::Element)>,
    listeners: HashMap<ParticipantId, Listener>,
}

impl Mixes {
    pub fn new(latency: gst::ClockTime, templates: Arc<PipelineTemplates>) -> Self {
        Mixes {
            latency,
            templates,
            everyone: None,
            own: HashMap::new(),
            mixed: Vec::new(),
            listeners: HashMap::new(),
        }
    }

    /// Whether `id`'s voice is in the mixes now.
    pub fn is_mixed(&self, id: &ParticipantId) -> bool {
        self.mixed.iter().any(|(m, _)| m == id)
    }

    fn everyone(&mut self, pipeline: &gst::Pipeline, owners: &Owners) -> Result<&mut Mix> {
        if self.everyone.is_none() {
            let mut mix = Mix::build(
                pipeline,
                owners,
                None,
                "mix/everyone",
                self.latency,
                &self.templates,
            )?;
            for (speaker, tee) in &self.mixed {
                mix.add_input_or_warn(pipeline, owners, speaker, tee);
            }
            self.everyone = Some(mix);
        }
        Ok(self.everyone.as_mut().expect("just built"))
    }

    /// `listener`'s own mix (the mixed voices but theirs), built if need be.
    fn own_mix(
        &mut self,
        pipeline: &gst::Pipeline,
        owners: &Owners,
        listener: &ParticipantId,
    ) -> Result<gst::Element> {
        if let Some(mix) = self.own.get(listener) {
            return Ok(mix.tee.clone());
        }
        let mut mix = Mix::build(
            pipeline,
            owners,
            Some(listener),
            &format!("mix/{listener}"),
            self.latency,
            &self.templates,
        )?;
        for (speaker, tee) in self.mixed.iter().filter(|(s, _)| s != listener) {
            mix.add_input_or_warn(pipeline, owners, speaker, tee);
        }
        let tee = mix.tee.clone();
        self.own.insert(listener.clone(), mix);
        Ok(tee)
    }

    /// Sends `listener` what they should hear, at payload type `pt`, into
    /// `sink` (their webrtcbin's pad).
    pub fn listen(
        &mut self,
        pipeline: &gst::Pipeline,
        owners: &Owners,
        listener: &ParticipantId,
        sink: &gst::Pad,
        pt: u8,
    ) -> Result<()> {
        let queue = leaky_queue(&format!("{listener}/audio-out-queue"), 200)?;
        // The m-line's caps may carry the listener's audio-level extension
        // (for what it sends): the mixes have no levels to write into it.
        let pay = gst::ElementFactory::make("rtpopuspay")
            .name(format!("{listener}/audio-pay"))
            .property("pt", u32::from(pt))
            .property("auto-header-extension", false)
            .build()?;
        members::add_send_branch(pipeline, owners, listener, [&queue, &pay], sink)?;
        let tee = if self.is_mixed(listener) {
            self.own_mix(pipeline, owners, listener)?
        } else {
            self.everyone(pipeline, owners)?.tee.clone()
        };
        let tee_pad = pads::branch_tee(&tee, &queue)?;
        self.listeners.insert(
            listener.clone(),
            Listener {
                queue,
                tee,
                tee_pad,
            },
        );
        Ok(())
    }

    /// Mixes exactly `mixed` (each with the tee of their decoded voice).
    /// Returns the elements taken out, still to be stopped.
    pub fn set_mixed(
        &mut self,
        pipeline: &gst::Pipeline,
        owners: &Owners,
        mixed: &[(ParticipantId, gst::Element)],
    ) -> Vec<gst::Element> {
        let mut removed = Vec::new();
        let leaving: Vec<ParticipantId> = self
            .mixed
            .iter()
            .map(|(id, _)| id.clone())
            .filter(|id| !mixed.iter().any(|(m, _)| m == id))
            .collect();
        for id in leaving {
            removed.extend(self.mix_out(pipeline, owners, &id));
        }
        for (id, tee) in mixed {
            if self.is_mixed(id) {
                continue;
            }
            if let Err(e) = self.mix_in(pipeline, owners, id, tee) {
                tracing::warn!(participant = %id, "not mixed: {e:#}");
            }
        }
        removed
    }

    /// `id` joins the mixed: onto a mix of their own first, then into
    /// everyone else's.
    fn mix_in(
        &mut self,
        pipeline: &gst::Pipeline,
        owners: &Owners,
        id: &ParticipantId,
        tee: &gst::Element,
    ) -> Result<()> {
        if self.listeners.contains_key(id) {
            let own = self.own_mix(pipeline, owners, id)?;
            let switched = self
                .listeners
                .get_mut(id)
                .map_or(Ok(()), |l| l.switch_to(&own));
            if let Err(e) = switched {
                if let Some(mix) = self.own.remove(id) {
                    members::stop_off_thread(mix.close(pipeline, owners));
                }
                return Err(e.context("moving onto their own mix"));
            }
        }
        self.everyone(pipeline, owners)?
            .add_input_or_warn(pipeline, owners, id, tee);
        for (_, mix) in self.own.iter_mut().filter(|(l, _)| *l != id) {
            mix.add_input_or_warn(pipeline, owners, id, tee);
        }
        self.mixed.push((id.clone(), tee.clone()));
        tracing::info!(participant = %id, mixed = self.mixed.len(), "mixed");
        Ok(())
    }

    /// `id` leaves the mixed: out of every mix first, then back onto the
    /// mix of everyone, and their own mix goes.
    fn mix_out(
        &mut self,
        pipeline: &gst::Pipeline,
        owners: &Owners,
        id: &ParticipantId,
    ) -> Vec<gst::Element> {
        let mut removed = self.remove_voice(pipeline, owners, id);
        let back = match (self.listeners.get_mut(id), self.everyone.as_ref()) {
            (Some(listener), Some(everyone)) => listener.switch_to(&everyone.tee),
            _ => Ok(()),
        };
        match back {
            Ok(()) => {
                if let Some(mix) = self.own.remove(id) {
                    removed.extend(mix.close(pipeline, owners));
                }
            }
            // Still on their own mix, which now carries nobody.
            Err(e) => tracing::warn!(participant = %id, "stays on its own mix: {e:#}"),
        }
        tracing::info!(participant = %id, mixed = self.mixed.len(), "no longer mixed");
        removed
    }

    /// Takes `id`'s voice out of every mix (it is no longer mixed); returns
    /// the queues that fed it in, still to be stopped.
    fn remove_voice(
        &mut self,
        pipeline: &gst::Pipeline,
        owners: &Owners,
        id: &ParticipantId,
    ) -> Vec<gst::Element> {
        self.mixed.retain(|(m, _)| m != id);
        self.everyone
            .iter_mut()
            .chain(self.own.values_mut())
            .filter_map(|mix| mix.remove_input(pipeline, owners, id))
            .collect()
    }

    /// Takes a leaving participant out of every mix, with their own mix
    /// and branch. Returns the elements taken out, still to be stopped.
    pub fn remove(
        &mut self,
        pipeline: &gst::Pipeline,
        owners: &Owners,
        id: &ParticipantId,
    ) -> Vec<gst::Element> {
        let mut removed = Vec::new();
        if let Some(listener) = self.listeners.remove(id) {
            // The queue is theirs (stopped with the rest of their
            // elements); unlinked first, so the tee's pad goes idle.
            let _ = pipeline.remove(&listener.queue);
            listener.tee.release_request_pad(&listener.tee_pad);
        }
        removed.extend(self.remove_voice(pipeline, owners, id));
        if let Some(mix) = self.own.remove(id) {
            removed.extend(mix.close(pipeline, owners));
        }
        removed
    }
}
