//! The one way keyframe requests are throttled, for the MCU's shared encoder
//! and each SFU publisher alike: a receiver's PLI arrives as an upstream
//! force-key-unit event; a probe on the pad it must cross lets at most one
//! through per interval (media/keyframe.rs decides), holds later ones back,
//! and the room's tick sends what was held back once it is due. Requests
//! gridmix itself must make at once (a new subscriber's first picture, a
//! recording's first frame) carry a marker that the probe lets through.

use crate::media::keyframe::{KeyframeDecision, KeyframeLimiter};
use crate::media::webrtc;
use gst::prelude::*;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Marks a request the limiter lets through as it is.
pub const PAST_LIMITER: &str = "gridmix-past-limiter";

/// A keyframe request; `past_limiter` marks it for the limiter to let
/// through.
pub fn request(past_limiter: bool) -> gst::Event {
    webrtc::keyframe_request(past_limiter.then_some(PAST_LIMITER))
}

/// Keyframe requests crossing one pad, upstream, rate-limited.
pub struct LimitedRequests {
    /// The pad requests cross; requests the limiter held back are sent
    /// upstream from it once due.
    pad: gst::Pad,
    limiter: Arc<Mutex<KeyframeLimiter>>,
}

impl LimitedRequests {
    /// Limits the requests going upstream through `pad` to one per
    /// `interval`.
    pub fn install(pad: &gst::Pad, interval: Duration) -> LimitedRequests {
        let limiter = Arc::new(Mutex::new(KeyframeLimiter::new(interval)));
        let probe_limiter = limiter.clone();
        pad.add_probe(gst::PadProbeType::EVENT_UPSTREAM, move |_, info| {
            let Some(gst::PadProbeData::Event(event)) = &info.data else {
                return gst::PadProbeReturn::Ok;
            };
            if !webrtc::is_keyframe_request(event) || webrtc::carries(event, PAST_LIMITER) {
                return gst::PadProbeReturn::Ok;
            }
            let decision = probe_limiter
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .request(Instant::now());
            match decision {
                KeyframeDecision::Force => gst::PadProbeReturn::Ok,
                // Handled, not Drop: the probe consumes the event
                // (gstreamer-rs unrefs it), and GStreamer must not unref it
                // again.
                KeyframeDecision::Deferred => gst::PadProbeReturn::Handled,
            }
        });
        LimitedRequests {
            pad: pad.clone(),
            limiter,
        }
    }

    /// Sends a request the limiter held back, once it is due. Called on the
    /// room's tick.
    pub fn poll(&self) {
        let due = self
            .limiter
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .poll(Instant::now());
        if due {
            self.force();
        }
    }

    /// A request through the limiter, as a receiver's would go.
    pub fn ask(&self) {
        self.pad.push_event(request(false));
    }

    /// A request now, past the limiter.
    pub fn force(&self) {
        self.pad.push_event(request(true));
    }
}
