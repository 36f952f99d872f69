//! Who owns what in a room pipeline (MCU and SFU), and how it is taken out
//! and stopped: the code that adds a participant's element records it as
//! theirs (an ownership table, not a reading of element names), so a bus
//! message can be traced to its participant, and their elements swept away
//! and stopped in a safe order when they leave.

use crate::ids::ParticipantId;
use crate::media::events::MediaEvent;
use crate::media::sdp::MediaKind;
use crate::media::webrtc;
use anyhow::{Result, anyhow};
use gst::prelude::*;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc::UnboundedSender;

/// The top-level elements of a pipeline that belong to participants, by
/// participant. Shared with callbacks that add elements on streaming
/// threads (see `discard_pad`); held briefly.
#[derive(Clone, Default)]
pub struct Owners(Arc<Mutex<HashMap<gst::Element, ParticipantId>>>);

impl Owners {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<gst::Element, ParticipantId>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds `elements` to `bin` as `owner`'s; recorded first, so that even
    /// their first message finds its owner.
    pub fn add(
        &self,
        bin: &gst::Bin,
        owner: &ParticipantId,
        elements: &[gst::Element],
    ) -> Result<()> {
        {
            let mut map = self.map();
            for element in elements {
                map.insert(element.clone(), owner.clone());
            }
        }
        bin.add_many(elements).map_err(|e| {
            let mut map = self.map();
            for element in elements {
                map.remove(element);
            }
            anyhow!("adding {owner}'s elements: {e}")
        })
    }

    /// The participant the top-level element holding `source` belongs to.
    pub fn owner_of(
        &self,
        pipeline: &gst::Pipeline,
        source: &gst::Object,
    ) -> Option<ParticipantId> {
        let element = top_level_under(pipeline, source)
            .downcast::<gst::Element>()
            .ok()?;
        self.map().get(&element).cloned()
    }

    /// Takes every element of `owner` out of `pipeline` (removing unlinks
    /// them) and returns them in the order to stop them.
    pub fn remove_all(&self, pipeline: &gst::Pipeline, owner: &ParticipantId) -> Vec<gst::Element> {
        let mut own: Vec<gst::Element> = {
            let mut map = self.map();
            let own: Vec<gst::Element> = map
                .iter()
                .filter(|(_, o)| *o == owner)
                .map(|(e, _)| e.clone())
                .collect();
            for element in &own {
                map.remove(element);
            }
            own
        };
        for element in &own {
            let _ = pipeline.remove(element);
        }
        sort_for_stopping(&mut own);
        own
    }

    /// Forgets `element` (taken out by its owner's own code).
    pub fn forget(&self, element: &gst::Element) {
        self.map().remove(element);
    }
}

/// Adds `owner`'s branch that sends to their webrtcbin: `queue` (fed from
/// a shared tee by the caller), then `pay`, linked into `sink`, and starts
/// them. The queue answers serialized queries itself (see
/// `pads::answer_serialized_queries`).
pub fn add_send_branch(
    pipeline: &gst::Pipeline,
    owners: &Owners,
    owner: &ParticipantId,
    [queue, pay]: [&gst::Element; 2],
    sink: &gst::Pad,
) -> Result<()> {
    owners.add(pipeline.upcast_ref(), owner, &[queue.clone(), pay.clone()])?;
    queue.link(pay)?;
    crate::media::pads::answer_serialized_queries(&crate::media::pads::static_pad(queue, "sink")?);
    crate::media::pads::static_pad(pay, "src")?.link(sink)?;
    pay.sync_state_with_parent()?;
    queue.sync_state_with_parent()?;
    Ok(())
}

/// Whether `source` is (still) inside `pipeline`.
pub fn is_in(pipeline: &gst::Pipeline, source: &gst::Object) -> bool {
    let pipeline = pipeline.upcast_ref::<gst::Object>();
    let mut object = Some(source.clone());
    while let Some(o) = object {
        if &o == pipeline {
            return true;
        }
        object = o.parent();
    }
    false
}

/// How many elements made by each of `factories` are in `pipeline`, at
/// any depth, in one walk: what the room reports runs is read from the
/// pipeline itself.
pub fn count_elements<const N: usize>(
    pipeline: &gst::Pipeline,
    factories: [&str; N],
) -> [usize; N] {
    let mut counts = [0; N];
    for element in pipeline
        .iterate_recurse()
        .into_iter()
        .filter_map(Result::ok)
    {
        let Some(factory) = element.factory() else {
            continue;
        };
        if let Some(i) = factories.iter().position(|f| factory.name() == *f) {
            counts[i] += 1;
        }
    }
    counts
}

fn is_webrtcbin(element: &gst::Element) -> bool {
    element.factory().is_some_and(|f| f.name() == "webrtcbin")
}

/// Puts webrtcbins first in a list of elements to stop. Until DTLS connects,
/// and whenever its sinks are paused, a webrtcbin holds upstream streaming
/// threads blocked inside it, and those threads hold the stream locks that
/// stopping a payloader, queue or mixer upstream would wait on forever.
pub fn sort_for_stopping(elements: &mut [gst::Element]) {
    elements.sort_by_key(|e| !is_webrtcbin(e));
}

/// The element directly in `pipeline` that holds `source` (`source`
/// itself if it is one, or if it is not in the pipeline at all).
pub fn top_level_under(pipeline: &gst::Pipeline, source: &gst::Object) -> gst::Object {
    let pipeline = pipeline.upcast_ref::<gst::Object>();
    let mut object = source.clone();
    while let Some(parent) = object.parent() {
        if &parent == pipeline {
            break;
        }
        object = parent;
    }
    object
}

/// Sets elements taken out of a pipeline to NULL, in order, on a thread of
/// their own: the one way gridmix stops elements without blocking the
/// async runtime or the room.
pub fn stop_off_thread(elements: Vec<gst::Element>) {
    if elements.is_empty() {
        return;
    }
    std::thread::spawn(move || {
        for element in elements {
            let _ = element.set_state(gst::State::Null);
        }
    });
}

/// Stops a whole room pipeline. Media can flow in a loop (webrtcbin ->
/// decode -> composite -> encode -> webrtcbin), so the pipeline has no
/// sink-to-source order to stop in; the webrtcbins go first, which releases
/// every thread blocked in them. Each is then taken out of the pipeline:
/// left in, the pipeline's own way down (to PAUSED, then READY) took it back
/// up to PAUSED, its sink pads active again with their stream-start gone,
/// and a buffer still arriving from upstream made GStreamer warn "Got data
/// flow before stream-start event"; and a pipeline whose participants were
/// still in it (a room task dropped unfinished) warned "loop detected in the
/// graph" over the cycle through them. Blocking: call from a blocking thread.
pub fn stop_pipeline(pipeline: &gst::Pipeline) {
    let mut webrtcbins: Vec<gst::Element> = pipeline
        .children()
        .into_iter()
        .filter(is_webrtcbin)
        .collect();
    sort_for_stopping(&mut webrtcbins);
    for webrtc in webrtcbins {
        let _ = webrtc.set_state(gst::State::Null);
        let _ = pipeline.remove(&webrtc);
    }
    let _ = pipeline.set_state(gst::State::Null);
}

/// Links each src pad `webrtc` adds to the sink pad of `video_in` or
/// `audio_in`, by its kind, and posts `TrackPublished` with its caps. It
/// must be linked at once or webrtcbin fails "not-linked": a pad of another
/// kind, or one whose sink is taken already, is discarded (as `owner`'s).
/// Holds weak references only.
pub fn link_received_tracks(
    webrtc: &gst::Element,
    video_in: &gst::Element,
    audio_in: &gst::Element,
    owners: &Owners,
    owner: &ParticipantId,
    events: &UnboundedSender<MediaEvent>,
) {
    let events = events.clone();
    let owners = owners.clone();
    let participant = owner.clone();
    let video_in = video_in.static_pad("sink").map(|p| p.downgrade());
    let audio_in = audio_in.static_pad("sink").map(|p| p.downgrade());
    webrtc.connect_pad_added(move |webrtc, pad| {
        if pad.direction() != gst::PadDirection::Src {
            return;
        }
        let (kind, target) = match webrtc::rtp_media_of(pad).as_deref() {
            Some("video") => (MediaKind::Video, video_in.as_ref()),
            Some("audio") => (MediaKind::Audio, audio_in.as_ref()),
            _ => (MediaKind::Other, None),
        };
        let target = target.and_then(|p| p.upgrade());
        if target.is_some_and(|t| !t.is_linked() && pad.link(&t).is_ok()) {
            let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
            let _ = events.send(MediaEvent::TrackPublished {
                participant: participant.clone(),
                kind,
                caps,
            });
        } else {
            discard_pad(webrtc, pad, Some((&owners, &participant)));
        }
    });
}

/// Sinks a stream nobody uses, so webrtcbin does not fail with "not-linked";
/// the sink is `owner`'s when given. Called from pad-added: the one
/// pipeline change a callback may make.
pub fn discard_pad(
    webrtc: &gst::Element,
    pad: &gst::Pad,
    owner: Option<(&Owners, &ParticipantId)>,
) {
    let Some(parent) = webrtc.parent().and_then(|p| p.downcast::<gst::Bin>().ok()) else {
        return;
    };
    let Ok(sink) = gst::ElementFactory::make("fakesink")
        .name(format!("{}-discard-{}", webrtc.name(), pad.name()))
        .property("async", false)
        .property("sync", false)
        .build()
    else {
        return;
    };
    let added = match owner {
        Some((owners, id)) => owners.add(&parent, id, std::slice::from_ref(&sink)).is_ok(),
        None => parent.add(&sink).is_ok(),
    };
    if added && let Some(sink_pad) = sink.static_pad("sink") {
        let _ = pad.link(&sink_pad);
        let _ = sink.sync_state_with_parent();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn a_stopped_webrtcbin_is_not_taken_back_up_by_its_pipeline() {
        gst::init().unwrap();
        let pipeline = gst::Pipeline::new();
        let webrtc = gst::ElementFactory::make("webrtcbin").build().unwrap();
        pipeline.add(&webrtc).unwrap();
        // The states the webrtcbin goes to, as they happen (a pipeline
        // going to NULL flushes its bus, so they are not read off it later).
        let states = Arc::new(Mutex::new(Vec::new()));
        let seen = states.clone();
        let watched = webrtc.clone();
        pipeline.bus().unwrap().set_sync_handler(move |_, message| {
            if let gst::MessageView::StateChanged(changed) = message.view()
                && message.src() == Some(watched.upcast_ref())
            {
                seen.lock().unwrap().push(changed.current());
            }
            gst::BusSyncReply::Drop
        });
        pipeline.set_state(gst::State::Playing).unwrap();
        let (reached, _, _) = pipeline.state(gst::ClockTime::from_seconds(5));
        reached.unwrap();
        states.lock().unwrap().clear();
        stop_pipeline(&pipeline);
        use gst::State::{Null, Paused, Ready};
        assert_eq!(*states.lock().unwrap(), [Paused, Ready, Null]);
    }
}
