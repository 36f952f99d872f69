//! One MCU receiver's adaptation to its link: reads the receiver's reports
//! about the composite it is sent and its transport-wide feedback (from the
//! RTCP its session receives) and
//! what was sent (from the session's statistics), and lets the rung
//! controller (rung_control.rs) decide on them. The MCU carries out the
//! switches it returns.

use crate::media::ladder::Ladder;
use crate::media::receiver_reports::{
    Report, ReportBlock, ReportDeltas, SenderReading, report_blocks, round_trip,
};
use crate::media::rung_control::{RungController, Switch, SwitchReason};
use crate::media::twcc_feedback::{self, Arrivals};
use crate::media::webrtc;
use gst::prelude::*;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub struct Adaptation {
    /// The receiver's VP8 payloader: its SSRC is the stream reported on.
    pay: gst::Element,
    webrtc: gst::Element,
    reports: ReportDeltas,
    control: RungController,
    last_report: Option<Report>,
    /// The payloader's SSRC, for the RTCP callback; it is only settled
    /// once the payloader has its caps.
    ssrc: Arc<AtomicU32>,
    heard: Heard,
    /// The rtpsession sending the payloader's SSRC, once found; the RTCP
    /// callback is connected to it then.
    session: Option<gst::Element>,
    /// The receiver's keyframe requests so far (its PLIs and FIRs, as they
    /// come up through its payloader).
    keyframe_requests: Arc<AtomicU32>,
}

impl Adaptation {
    pub fn new(
        pay: gst::Element,
        webrtc: gst::Element,
        ladder: &Ladder,
        cap: usize,
        now: Duration,
    ) -> Self {
        let keyframe_requests = Arc::new(AtomicU32::new(0));
        if let Some(pad) = pay.static_pad("sink") {
            count_keyframe_requests(&pad, keyframe_requests.clone());
        }
        Adaptation {
            keyframe_requests,
            pay,
            webrtc,
            reports: ReportDeltas::default(),
            control: RungController::new(ladder, cap, now),
            last_report: None,
            ssrc: Arc::new(AtomicU32::new(0)),
            heard: Arc::default(),
            session: None,
        }
    }

    /// Reads the latest figures; a switch if a new report, or the lack of
    /// one, calls for it.
    pub fn poll(&mut self, now: Duration) -> Option<Switch> {
        let report = self.reading().and_then(|r| self.reports.update(now, r));
        let Some(report) = report else {
            let requests = self.keyframe_requests.load(Ordering::Relaxed);
            return self.control.on_tick(now, requests);
        };
        tracing::debug!(?report, "receiver report");
        self.last_report = Some(report);
        self.control.on_report(&report)
    }

    pub fn set_cap(&mut self, cap: usize, now: Duration) -> Option<Switch> {
        self.control.set_cap(cap, now)
    }

    pub fn reached(&mut self, now: Duration) {
        self.control.reached(now);
    }

    pub fn estimate_kbps(&self) -> Option<u32> {
        self.control.estimate_kbps()
    }

    pub fn last_reason(&self) -> Option<&SwitchReason> {
        self.control.last_reason()
    }

    pub fn last_report(&self) -> Option<&Report> {
        self.last_report.as_ref()
    }

    /// What was sent comes from rtpsession's statistics for the
    /// payloader's SSRC; the report blocks about it come from the session's
    /// RTCP as it arrives (see `receiver_reports::report_blocks` for why).
    fn reading(&mut self) -> Option<SenderReading> {
        let ssrc = self
            .pay
            .property::<gst::Structure>("stats")
            .get::<u32>("ssrc")
            .ok()?;
        self.ssrc.store(ssrc, Ordering::Relaxed);
        if self.session.is_none() {
            self.session = self.find_session(ssrc);
        }
        let own = sender_stats(self.session.as_ref()?, ssrc)?;
        let heard = *self.heard.lock().unwrap_or_else(|e| e.into_inner());
        Some(SenderReading {
            packets_sent: own.get::<u64>("packets-sent").unwrap_or(0),
            payload_bytes_sent: own.get::<u64>("octets-sent").unwrap_or(0),
            block: heard.block,
            arrivals: heard.arrivals,
        })
    }

    /// The session sending `ssrc`, with the RTCP callback connected. With
    /// BUNDLE every m-line is in one session, but which one is webrtcbin's
    /// business: look in each.
    fn find_session(&self, ssrc: u32) -> Option<gst::Element> {
        let rtpbin = webrtc::rtpbin_of(&self.webrtc)?;
        let session = (0u32..4)
            .filter_map(|id| rtpbin.emit_by_name::<Option<gst::Element>>("get-session", &[&id]))
            .find(|session| sender_stats(session, ssrc).is_some())?;
        listen_for_reports(&session, self.ssrc.clone(), self.heard.clone());
        Some(session)
    }
}

/// Counts the keyframe requests going up through `pad` from the receiver.
fn count_keyframe_requests(pad: &gst::Pad, count: Arc<AtomicU32>) {
    pad.add_probe(gst::PadProbeType::EVENT_UPSTREAM, move |_, info| {
        if let Some(gst::PadProbeData::Event(event)) = &info.data
            && webrtc::is_keyframe_request(event)
        {
            count.fetch_add(1, Ordering::Relaxed);
        }
        gst::PadProbeReturn::Ok
    });
}

/// `session`'s statistics for the stream it sends with `ssrc`.
fn sender_stats(session: &gst::Element, ssrc: u32) -> Option<gst::Structure> {
    session
        .property::<gst::Structure>("stats")
        .get::<gst::glib::ValueArray>("source-stats")
        .ok()?
        .iter()
        .filter_map(|source| source.get::<gst::Structure>().ok())
        .find(|source| source.get::<u32>("ssrc").ok() == Some(ssrc))
}

/// What the receiver's RTCP said: the latest report block about the video,
/// with the round trip it implies, and the transport-wide feedback so far.
#[derive(Debug, Clone, Copy, Default)]
struct HeardSoFar {
    block: Option<(ReportBlock, Option<Duration>)>,
    arrivals: Arrivals,
}

type Heard = Arc<Mutex<HeardSoFar>>;

/// Keeps what each RTCP packet `session` receives says about `ssrc` (and,
/// with BUNDLE, about the whole transport) in `heard`.
fn listen_for_reports(session: &gst::Element, ssrc: Arc<AtomicU32>, heard: Heard) {
    // rtpbin's `get-session` gives the rtpsession element; the signal is
    // on the session object inside it.
    let session = session.property::<gst::glib::Object>("internal-session");
    session.connect("on-receiving-rtcp", false, move |args| {
        let buffer = args.get(1)?.get::<gst::Buffer>().ok()?;
        let map = buffer.map_readable().ok()?;
        let wanted = ssrc.load(Ordering::Relaxed);
        let block = report_blocks(&map)
            .into_iter()
            .rev()
            .find(|(about, _)| *about == wanted)
            .map(|(_, block)| (block, round_trip(&block, ntp_short_now())));
        let arrivals = twcc_feedback::arrivals(&map);
        let mut heard = heard.lock().unwrap_or_else(|e| e.into_inner());
        if block.is_some() {
            heard.block = block;
        }
        heard.arrivals += arrivals;
        None
    });
}

/// The middle 32 bits of the NTP time now: the clock rtpsession stamps its
/// sender reports with (rtpbin's default NTP time source, the real-time
/// clock).
fn ntp_short_now() -> u32 {
    const NTP_TO_UNIX_SECONDS: u64 = 2_208_988_800;
    let since_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let seconds = since_unix.as_secs() + NTP_TO_UNIX_SECONDS;
    let fraction = (u64::from(since_unix.subsec_nanos()) << 16) / 1_000_000_000;
    ((seconds << 16) as u32) | fraction as u32
}
