//! One publisher's track on its way to one subscriber (SFU): a pass-through
//! element built from two pads of our own on an empty bin, between the
//! publisher's tee and the subscriber's webrtcbin.
//!
//! Why not an `identity` with probes: a tee asks every branch whether it
//! accepts the publisher's caps (ACCEPT_CAPS) before any probe could rewrite
//! them, so one subscriber whose m-line has another payload type refused the
//! publisher's caps for everyone; and a flow error from one branch stops the
//! tee for all of them. This gate accepts any caps and rewrites them to the
//! subscriber's, and whatever happens downstream, the publisher is told Ok.
//!
//! Per packet it also drops what comes before the subscriber has answered
//! an offer with this track in it, or while its connection is down
//! (webrtcbin would hold the publisher's thread until DTLS is done), asks
//! for a keyframe when it opens, sets the payload type the subscriber
//! negotiated, and, where the subscriber's answer took it, writes the
//! m-line's mid in the MID header extension (RFC 8843) in place of the
//! publisher's extensions. No thread hand-off: the publisher's receiving
//! thread sends to every subscriber itself.

use crate::media::rtp;
use gst::prelude::*;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

/// What one forward knows while packets go through it.
#[derive(Debug)]
pub struct ForwardState {
    /// The subscriber's connection is up (ICE and DTLS).
    connected: Arc<AtomicBool>,
    /// Whether the last packet found it up.
    was_open: AtomicBool,
    /// Video: ask the publisher for a keyframe when the connection comes up.
    video: bool,
    /// The payload type the subscribe offer gave this m-line: caps say it.
    offered_pt: u8,
    /// The subscriber answered an offer that has this track: until then
    /// its packets would arrive on an m-line it does not expect them on.
    negotiated: AtomicBool,
    /// The payload type the subscriber's answer chose: packets carry it.
    negotiated_pt: AtomicU8,
    /// The MID header extension's id and this m-line's mid, if the
    /// subscriber's answer took the extension.
    mid_extension: Mutex<Option<(u8, Vec<u8>)>>,
    /// Downstream refused what was sent (its first refusal was logged):
    /// nothing more goes this way.
    broken: AtomicBool,
    /// The request sent upstream when the connection comes up.
    keyframe_request: fn() -> gst::Event,
}

impl ForwardState {
    /// The subscriber's answer to an offer with this track: packets go
    /// with its payload type and, if given, the MID header extension.
    pub fn set_negotiated(&self, pt: u8, mid_extension: Option<(u8, Vec<u8>)>) {
        self.negotiated_pt.store(pt, Ordering::Relaxed);
        *self.mid_extension.lock().unwrap_or_else(|e| e.into_inner()) = mid_extension;
        self.negotiated.store(true, Ordering::Relaxed);
    }

    fn rewrite(&self, buffer: &mut gst::Buffer) {
        let pt = self.negotiated_pt.load(Ordering::Relaxed);
        let extension = self.mid_extension.lock().unwrap_or_else(|e| e.into_inner());
        match extension.as_ref() {
            Some((id, mid)) => with_extension(buffer, pt, *id, mid),
            None => set_payload_type(buffer, pt),
        }
    }

    /// Whether downstream refused this forward's media.
    pub fn is_broken(&self) -> bool {
        self.broken.load(Ordering::Relaxed)
    }
}

/// A forward's element and what it shares with its pad functions.
pub struct ForwardGate {
    pub element: gst::Element,
    pub state: Arc<ForwardState>,
}

impl ForwardGate {
    /// `keyframe_request` makes what the gate sends upstream when the
    /// subscriber's connection comes up.
    pub fn new(
        name: &str,
        connected: Arc<AtomicBool>,
        video: bool,
        offered_pt: u8,
        keyframe_request: fn() -> gst::Event,
    ) -> ForwardGate {
        let state = Arc::new(ForwardState {
            connected,
            was_open: AtomicBool::new(false),
            video,
            offered_pt,
            negotiated: AtomicBool::new(false),
            negotiated_pt: AtomicU8::new(offered_pt),
            mid_extension: Mutex::new(None),
            broken: AtomicBool::new(false),
            keyframe_request,
        });
        let bin = gst::Bin::with_name(name);
        let src = gst::Pad::builder(gst::PadDirection::Src)
            .name("src")
            .event_function(|pad, _, event| match sink_of(pad) {
                // Upstream events (keyframe requests, reconfigure) go on to
                // the publisher's tee.
                Some(sink) => sink.push_event(event),
                None => false,
            })
            .query_function(move |pad, _, query| {
                let Some(sink) = sink_of(pad) else {
                    return false;
                };
                match query.view_mut() {
                    // What upstream can send, as it leaves the gate.
                    gst::QueryViewMut::Caps(q) => {
                        let upstream = sink.peer_query_caps(None);
                        let mut caps = with_payload_type(upstream, offered_pt);
                        if let Some(filter) = q.filter() {
                            caps = filter.intersect_with_mode(&caps, gst::CapsIntersectMode::First);
                        }
                        q.set_result(&caps);
                        true
                    }
                    _ => sink.peer_query(query),
                }
            })
            .build();
        let weak_src = src.downgrade();
        let chain_state = state.clone();
        let list_state = state.clone();
        let event_state = state.clone();
        let chain_src = weak_src.clone();
        let list_src = weak_src.clone();
        let sink = gst::Pad::builder(gst::PadDirection::Sink)
            .name("sink")
            .chain_function(move |pad, _, mut buffer| {
                let Some(src) = chain_src.upgrade() else {
                    return Ok(gst::FlowSuccess::Ok);
                };
                if !chain_state.passes(pad) {
                    return Ok(gst::FlowSuccess::Ok);
                }
                chain_state.rewrite(&mut buffer);
                chain_state.settle(&src, src.push(buffer))
            })
            .chain_list_function(move |pad, _, mut list| {
                let Some(src) = list_src.upgrade() else {
                    return Ok(gst::FlowSuccess::Ok);
                };
                if !list_state.passes(pad) {
                    return Ok(gst::FlowSuccess::Ok);
                }
                list.make_mut().foreach_mut(|mut buffer, _| {
                    list_state.rewrite(&mut buffer);
                    std::ops::ControlFlow::Continue(Some(buffer))
                });
                list_state.settle(&src, src.push_list(list))
            })
            .event_function(move |_, _, event| {
                let Some(src) = weak_src.upgrade() else {
                    return true;
                };
                let event = match event.view() {
                    gst::EventView::Caps(c) => {
                        let caps = with_payload_type(c.caps_owned(), event_state.offered_pt);
                        gst::event::Caps::builder(&caps)
                            .seqnum(event.seqnum())
                            .build()
                    }
                    gst::EventView::Segment(_) => shared_segment(event),
                    _ => event,
                };
                // Whatever downstream says, the publisher's stream goes on.
                if !src.push_event(event.clone()) && event.is_serialized() {
                    tracing::debug!("{}: downstream refused {:?}", src.name(), event.type_());
                }
                true
            })
            .query_function(|_, _, query| match query.view_mut() {
                // Any caps will do: they are rewritten for the subscriber.
                gst::QueryViewMut::AcceptCaps(q) => {
                    q.set_result(true);
                    true
                }
                gst::QueryViewMut::Caps(q) => {
                    let caps = q.filter_owned().unwrap_or_else(gst::Caps::new_any);
                    q.set_result(&caps);
                    true
                }
                // Nothing else from the publisher's side is this
                // subscriber's to answer (nor to hold up).
                _ => false,
            })
            .build();
        let _ = bin.add_pad(&sink);
        let _ = bin.add_pad(&src);
        ForwardGate {
            element: bin.upcast(),
            state,
        }
    }
}

impl ForwardState {
    /// Whether a packet goes on: not before the track is negotiated, nor
    /// while the subscriber's connection is down, nor once downstream has
    /// refused. The first packet after it opens asks the publisher for a
    /// keyframe.
    fn passes(&self, sink: &gst::Pad) -> bool {
        if self.is_broken() {
            return false;
        }
        let open =
            self.negotiated.load(Ordering::Relaxed) && self.connected.load(Ordering::Relaxed);
        let was = self.was_open.swap(open, Ordering::Relaxed);
        if open && !was && self.video {
            sink.push_event((self.keyframe_request)());
        }
        open
    }

    /// The publisher is told Ok whatever happened downstream; a refusal
    /// other than a flushing or ended stream breaks this forward only.
    fn settle(
        &self,
        src: &gst::Pad,
        result: Result<gst::FlowSuccess, gst::FlowError>,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        match result {
            Ok(_) | Err(gst::FlowError::Flushing | gst::FlowError::Eos) => {}
            Err(error) => {
                if !self.broken.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "{}: the subscriber refused this track ({error:?}); it is no longer forwarded",
                        src.parent()
                            .map(|p| p.name().to_string())
                            .unwrap_or_default()
                    );
                }
            }
        }
        Ok(gst::FlowSuccess::Ok)
    }
}

/// RTP caps as they leave the gate: at payload type `pt`, and without the
/// publisher's header extensions (`extmap-N`): their ids were negotiated
/// with the publisher, and the same id can mean another extension on the
/// subscriber's m-line (the publisher's audio level at 1 against the
/// subscribe offers' MID at 1), which would make the caps refused there.
fn with_payload_type(mut caps: gst::Caps, pt: u8) -> gst::Caps {
    for s in caps.make_mut().iter_mut() {
        if s.name() == "application/x-rtp" {
            s.set("payload", i32::from(pt));
            let extensions: Vec<String> = s
                .fields()
                .filter(|f| f.starts_with("extmap-"))
                .map(|f| f.to_string())
                .collect();
            for field in extensions {
                s.remove_field(&field);
            }
        }
    }
    caps
}

/// One SEGMENT event object for every forward whose publisher's segment is
/// the same (on a live pipeline they all are: time from 0). webrtcbin's
/// rtpfunnel re-sends the segment of its input pad each time the next
/// packet comes from another pad, which with many forwards into one
/// subscriber is nearly every packet; GStreamer passes a sticky event on
/// only when it is another object than the one already there, so with
/// one shared object there is nothing to pass on.
fn shared_segment(event: gst::Event) -> gst::Event {
    static SHARED: Mutex<Option<gst::Event>> = Mutex::new(None);
    let gst::EventView::Segment(segment) = event.view() else {
        return event;
    };
    let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(existing) = shared.as_ref()
        && let gst::EventView::Segment(known) = existing.view()
        && known.segment() == segment.segment()
    {
        return existing.clone();
    }
    *shared = Some(event.clone());
    event
}

/// The gate's sink pad, seen from its src pad.
fn sink_of(src: &gst::Pad) -> Option<gst::Pad> {
    src.parent_element()?.static_pad("sink")
}

/// Sets one forwarded packet's payload type, copying it only if it differs.
fn set_payload_type(buffer: &mut gst::Buffer, pt: u8) {
    let current = buffer
        .map_readable()
        .ok()
        .and_then(|map| rtp::payload_type(&map));
    if current.is_some_and(|c| c != pt)
        && let Ok(mut map) = buffer.make_mut().map_writable()
    {
        rtp::set_payload_type(&mut map, pt);
    }
}

/// Replaces a forwarded packet by one with the payload type and only the
/// given header extension (the header grows, so the bytes are copied; the
/// timestamps and flags stay). Left as it is if it is not RTP.
fn with_extension(buffer: &mut gst::Buffer, pt: u8, id: u8, value: &[u8]) {
    let rewritten = {
        let Ok(map) = buffer.map_readable() else {
            return;
        };
        rtp::with_only_extension(&map, id, value)
    };
    let Some(mut bytes) = rewritten else {
        return;
    };
    rtp::set_payload_type(&mut bytes, pt);
    let mut packet = gst::Buffer::from_mut_slice(bytes);
    if buffer
        .copy_into(
            packet.make_mut(),
            gst::BufferCopyFlags::FLAGS
                | gst::BufferCopyFlags::TIMESTAMPS
                | gst::BufferCopyFlags::META,
            ..,
        )
        .is_ok()
    {
        *buffer = packet;
    }
}
