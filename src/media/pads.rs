//! Pad look-ups and links that fail with a sentence naming the element,
//! shared by the room pipelines, recordings and the bot.

use anyhow::{Result, anyhow};
use gst::prelude::*;

/// The always-present pad `name` of `element`.
pub fn static_pad(element: &gst::Element, name: &str) -> Result<gst::Pad> {
    element
        .static_pad(name)
        .ok_or_else(|| anyhow!("{} has no {name} pad", element.name()))
}

/// One more branch out of `tee`: a new src pad of it, linked to the sink pad
/// of `to`. Returns the tee's pad, which the caller releases when the branch
/// goes.
pub fn branch_tee(tee: &gst::Element, to: &gst::Element) -> Result<gst::Pad> {
    let tee_pad = request_tee_pad(tee)?;
    tee_pad.link(&static_pad(to, "sink")?)?;
    Ok(tee_pad)
}

/// A new src pad of a live `tee`, holding the sticky events its sink has.
///
/// The pad is requested with the tee's sink stream lock held. tee 1.22
/// copies the sink's sticky events to a new pad before it adds the pad to
/// those it pushes to; a stream-start arriving in between goes to the
/// others only, and the new pad's first buffer is "data flow before
/// stream-start" (seen in the SFU suite, when a subscriber's forward was
/// made as the publisher's first packet arrived). Every branch is a leaky
/// queue or an SFU gate, so the tee's thread never holds that lock long.
pub fn request_tee_pad(tee: &gst::Element) -> Result<gst::Pad> {
    let tee_sink = static_pad(tee, "sink")?;
    let requested = {
        let _no_events_now = tee_sink.stream_lock();
        tee.request_pad_simple("src_%u")
    };
    requested.ok_or_else(|| anyhow!("{} gave no src pad", tee.name()))
}

/// What a pad probe returns to throw away the buffer it was given. Not
/// `PadProbeReturn::Drop`: gstreamer-rs takes the buffer out of the probe
/// info before calling the probe and unrefs it itself on `Drop`, and
/// GStreamer 1.22 then unrefs the info's (now NULL) data again, a
/// `gst_mini_object_unref: assertion 'mini_object != NULL'` critical on
/// every dropped buffer. `Handled` with an OK flow is the same drop without
/// the second unref.
pub fn discard(info: &mut gst::PadProbeInfo) -> gst::PadProbeReturn {
    info.flow_res = Ok(gst::FlowSuccess::Ok);
    gst::PadProbeReturn::Handled
}

/// Makes the sink pad of a queue that feeds a webrtcbin answer serialized
/// queries (allocation, drain) itself. A webrtcbin holds its RTP back until
/// DTLS is up, so a participant whose connection never comes up (a relay
/// that refused it) stalls its branch for good; a serialized query from a
/// shared encoder would wait behind that branch's data, blocking the
/// encoder's thread (freezing the composite or a mix for everyone) and
/// deadlocking that participant's removal.
pub fn answer_serialized_queries(queue_sink: &gst::Pad) {
    queue_sink.add_probe(gst::PadProbeType::QUERY_DOWNSTREAM, |_, info| {
        match info.query() {
            Some(query) if query.is_serialized() => gst::PadProbeReturn::Handled,
            _ => gst::PadProbeReturn::Ok,
        }
    });
}
