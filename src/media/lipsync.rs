//! How a webrtcbin lines up a peer's audio and video (lip sync), for every
//! gridmix webrtcbin: the server's and the bot's.
//!
//! rtpbin delays one stream of a sender against the other so that what was
//! captured together plays together. It works that out from each stream's
//! RTCP sender reports (which RTP time the sender captured at which wall
//! time) and from its jitter buffer's mapping of RTP time to local time.
//! Both were wrong early in a call, by up to 370 ms in a recording for the
//! whole of a 7-second file (tests/recording.rs `..._in_sync`):
//!
//! - By default a GStreamer sender's report relates RTP time to when a packet
//!   was *sent*, not captured. Media queued while DTLS is set up leaves in a
//!   burst, and reports sent during it give each stream a different, false
//!   age. We send reports with capture times, as browsers do.
//! - A jitter buffer takes about 2 s of packets to learn the sender's clock
//!   against ours; until then its mapping is still moving, and a delay worked
//!   out from it is off by tens of ms. The next report corrects it, but the
//!   audio mixers keep the old alignment for jumps under their 40 ms
//!   threshold. So reports reach the lip-sync only once the jitter buffer
//!   has had that long; until then the streams play as they arrive.

use gst::prelude::*;
use std::time::{Duration, Instant};

/// How long rtpjitterbuffer's clock-skew estimate takes to settle: its
/// window spans 2 s of sender time.
const SKEW_SETTLING: Duration = Duration::from_millis(2500);

/// Sets up lip sync in `webrtc`'s rtpbin (see the module comment).
pub fn configure(webrtc: &gst::Element) {
    let Some(rtpbin) = crate::media::webrtc::rtpbin_of(webrtc) else {
        tracing::warn!("webrtcbin has no rtpbin: lip sync left at its defaults");
        return;
    };
    rtpbin.set_property("rtcp-sync-send-time", false);
    rtpbin.connect("new-jitterbuffer", false, |values| {
        if let Ok(jitterbuffer) = values[1].get::<gst::Element>() {
            hold_reports_while_settling(&jitterbuffer, Instant::now());
        }
        None
    });
}

/// Drops the sender reports that reach a new jitter buffer (on its
/// "sink_rtcp" pad, which exists for lip sync only: rtpbin's session has
/// already taken its statistics from them) until its skew has settled.
fn hold_reports_while_settling(jitterbuffer: &gst::Element, created: Instant) {
    jitterbuffer.connect_pad_added(move |_, pad| {
        if pad.name() != "sink_rtcp" {
            return;
        }
        pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if created.elapsed() < SKEW_SETTLING {
                crate::media::pads::discard(info)
            } else {
                gst::PadProbeReturn::Remove
            }
        });
    });
}
