//! Conventions shared by the room pipelines (MCU and SFU): every element that
//! belongs to one participant is named "<participant id>/<part>", so it can be
//! traced to its owner, swept away when they leave, and stopped in a safe
//! order.

use crate::ids::ParticipantId;
use gst::prelude::*;

/// The participant an element belongs to, from the name prefix of its
/// top-level ancestor under `pipeline`; also for elements already removed.
pub fn owner_of(pipeline: &gst::Pipeline, source: &gst::Object) -> Option<ParticipantId> {
    let pipeline = pipeline.upcast_ref::<gst::Object>();
    let mut object = source.clone();
    while let Some(parent) = object.parent() {
        if &parent == pipeline {
            break;
        }
        object = parent;
    }
    let name = object.name();
    let (prefix, _) = name.split_once('/')?;
    Some(ParticipantId::from_existing(prefix))
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

/// Removes every element named after the participant from the pipeline
/// (removing unlinks them) and returns them, still to be set to NULL.
pub fn remove_elements_of(pipeline: &gst::Pipeline, id: &ParticipantId) -> Vec<gst::Element> {
    let prefix = format!("{id}/");
    let own: Vec<gst::Element> = pipeline
        .children()
        .into_iter()
        .filter(|e| e.name().starts_with(&prefix))
        .collect();
    let _ = pipeline.remove_many(&own);
    own
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

/// Stops a whole room pipeline. Media can flow in a loop (webrtcbin ->
/// decode -> composite -> encode -> webrtcbin), so the pipeline has no
/// sink-to-source order to stop in; the webrtcbins go first, which releases
/// every thread blocked in them. Blocking: call from a blocking thread.
pub fn stop_pipeline(pipeline: &gst::Pipeline) {
    let mut webrtcbins: Vec<gst::Element> = pipeline
        .children()
        .into_iter()
        .filter(is_webrtcbin)
        .collect();
    sort_for_stopping(&mut webrtcbins);
    for webrtc in webrtcbins {
        let _ = webrtc.set_state(gst::State::Null);
    }
    let _ = pipeline.set_state(gst::State::Null);
}

/// Sinks a stream nobody uses, so webrtcbin does not fail with "not-linked".
/// Called from pad-added: the one pipeline change a callback may make.
pub fn discard_pad(webrtc: &gst::Element, pad: &gst::Pad) {
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
    if parent.add(&sink).is_ok()
        && let Some(sink_pad) = sink.static_pad("sink")
    {
        let _ = pad.link(&sink_pad);
        let _ = sink.sync_state_with_parent();
    }
}
