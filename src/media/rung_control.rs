//! Chooses an MCU receiver's rung of the ladder from its receiver reports
//! (receiver_reports.rs): down at once on heavy loss, down on sustained
//! loss or a round trip growing above its lowest (a queue building up on
//! the way), up one rung at a time after a clean stretch, and a longer wait
//! before the next try each time a step up had to be taken back, so a link
//! that cannot carry the better rung is not made to freeze over and over.
//! A receiver whose reports stop while it asks for keyframe after keyframe
//! goes straight to the lowest rung: its picture is breaking up and it has
//! no report to say how much gets through. (A webrtcbin 1.22 receiver
//! under heavy loss is one: its keyframe requests go out as early RTCP
//! without report blocks, and while early feedback keeps coming its
//! regular reports are put off again and again.)
//! Pure: no GStreamer; the MCU feeds it reports and carries out switches.
//!
//! There is no probing with padding before a step up: webrtcbin 1.22's
//! sender has no way to send it (rtprtxsend gained stuffing later), so a
//! step up is itself the probe, taken back on the first bad reports.

use crate::media::ladder::Ladder;
use crate::media::receiver_reports::Report;
use std::fmt;
use std::time::Duration;

/// What the receiver's Opus takes, reserved before video is given a rung:
/// a voice at 32-48 kbit/s and its packets' headers.
pub const AUDIO_RESERVE_KBPS: u32 = 64;
/// Packet headers on top of a rung's video bitrate.
const VIDEO_OVERHEAD: f64 = 1.1;
/// Reports about the time around a switch say more about the old rung
/// (and the new rung's keyframe) than about the new one.
const SETTLE: Duration = Duration::from_secs(2);
/// One report losing this much is congestion.
const HEAVY_LOSS: f64 = 0.20;
/// Two reports in a row losing this much are.
const LOSS: f64 = 0.05;
/// Less than this is a clean report.
const CLEAN_LOSS: f64 = 0.02;
/// A round trip this much above the lowest seen means packets queue.
const DELAY_GROWTH: Duration = Duration::from_millis(100);
/// Clean time before the first step up, and after a step up that held.
const FIRST_WAIT: Duration = Duration::from_secs(5);
/// The longest wait before trying again after steps up failed.
const LONGEST_WAIT: Duration = Duration::from_secs(12);
/// A step up that lasts this long held.
const TRIAL: Duration = Duration::from_secs(8);
/// The estimate a step down is chosen from is trusted this much.
const ESTIMATE_MARGIN: f64 = 0.9;
/// No report for this long, with this many keyframe requests in it, is a
/// picture breaking up on a link too weak to report over.
const SILENCE: Duration = Duration::from_secs(3);
const BROKEN_REQUESTS: u32 = 3;
/// During a step up being tried, from the new rung's first picture: a try
/// that breaks the picture is taken back sooner.
const TRIAL_SILENCE: Duration = Duration::from_secs(1);

/// Why a receiver was moved.
#[derive(Debug, Clone, PartialEq)]
pub enum SwitchReason {
    /// It asked for at most this rung (`quality`).
    Asked,
    Loss {
        percent: f64,
    },
    Delay {
        rtt_ms: u64,
        lowest_ms: u64,
    },
    Stable {
        seconds: u64,
    },
    /// No report for a while, and this many keyframe requests meanwhile.
    Broken {
        requests: u32,
    },
}

impl fmt::Display for SwitchReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SwitchReason::Asked => f.write_str("asked for it"),
            SwitchReason::Loss { percent } => write!(f, "{percent:.0} % of packets lost"),
            SwitchReason::Delay { rtt_ms, lowest_ms } => {
                write!(f, "round trip {rtt_ms} ms, up from {lowest_ms} ms")
            }
            SwitchReason::Stable { seconds } => {
                write!(f, "no loss for {seconds} s: trying a better rung")
            }
            SwitchReason::Broken { requests } => {
                write!(f, "{requests} keyframe requests and no report")
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Switch {
    pub to: usize,
    pub reason: SwitchReason,
}

#[derive(Debug)]
pub struct RungController {
    /// What each rung needs of the link, in kbit/s: its video, headers and
    /// the audio's share.
    needs_kbps: Vec<u32>,
    /// The best rung the receiver asked for.
    cap: usize,
    /// The rung it is on or moving to.
    rung: usize,
    /// Reports before this say little about the current rung.
    settled_at: Duration,
    congested_reports: u32,
    slow_reports: u32,
    clean_since: Option<Duration>,
    lowest_rtt: Option<Duration>,
    /// How long it must have been clean before the next step up.
    up_wait: Duration,
    /// When the step up being tried was made.
    trying_since: Option<Duration>,
    /// What the link was last seen to carry, while it holds the receiver
    /// below the rung it asked for.
    estimate_kbps: Option<u32>,
    last_reason: Option<SwitchReason>,
    last_report_at: Option<Duration>,
    /// The receiver's keyframe requests so far, as counted at each tick
    /// over the last `SILENCE`.
    request_counts: std::collections::VecDeque<(Duration, u32)>,
}

impl RungController {
    /// A receiver starting on `cap`, the best rung it asked for.
    pub fn new(ladder: &Ladder, cap: usize, now: Duration) -> Self {
        let needs_kbps = ladder
            .rungs()
            .iter()
            .map(|rung| (f64::from(rung.kbps) * VIDEO_OVERHEAD) as u32 + AUDIO_RESERVE_KBPS)
            .collect();
        RungController {
            needs_kbps,
            cap,
            rung: cap,
            settled_at: now + SETTLE,
            congested_reports: 0,
            slow_reports: 0,
            clean_since: None,
            lowest_rtt: None,
            up_wait: FIRST_WAIT,
            trying_since: None,
            estimate_kbps: None,
            last_reason: None,
            last_report_at: None,
            request_counts: std::collections::VecDeque::new(),
        }
    }

    pub fn rung(&self) -> usize {
        self.rung
    }

    pub fn estimate_kbps(&self) -> Option<u32> {
        self.estimate_kbps
    }

    pub fn last_reason(&self) -> Option<&SwitchReason> {
        self.last_reason.as_ref()
    }

    /// The receiver's first picture of the rung came: reports from now on
    /// are about it.
    pub fn reached(&mut self, now: Duration) {
        self.settled_at = now + SETTLE;
    }

    /// The receiver asked for at most `cap`. Down to it at once; up to it
    /// at once too, unless the link is what holds it lower.
    pub fn set_cap(&mut self, cap: usize, now: Duration) -> Option<Switch> {
        let held_by_link = self.rung > self.cap;
        self.cap = cap;
        if self.rung < cap || (!held_by_link && self.rung > cap) {
            return Some(self.switch(cap, SwitchReason::Asked, now));
        }
        None
    }

    /// Between reports: `requests` is how many keyframes the receiver has
    /// asked for in all. A switch if its reports stopped while it kept
    /// asking.
    pub fn on_tick(&mut self, now: Duration, requests: u32) -> Option<Switch> {
        self.request_counts.push_back((now, requests));
        while self
            .request_counts
            .front()
            .is_some_and(|&(at, _)| at + SILENCE < now)
        {
            self.request_counts.pop_front();
        }
        let trying = self.trying_since.is_some();
        let (silence, heard_from) = if trying {
            (TRIAL_SILENCE, self.settled_at.saturating_sub(SETTLE))
        } else {
            (SILENCE, self.settled_at)
        };
        let quiet_since = self.last_report_at.unwrap_or_default().max(heard_from);
        if now < quiet_since + silence {
            return None;
        }
        let (_, before) = *self
            .request_counts
            .iter()
            .find(|&&(at, _)| at + silence >= now)?;
        let requests = requests.wrapping_sub(before);
        if requests < BROKEN_REQUESTS {
            return None;
        }
        // A failed try goes back to where it came from; otherwise there is
        // no telling what the link carries.
        let to = if trying {
            self.rung + 1
        } else {
            self.needs_kbps.len() - 1
        };
        self.step_down(to, SwitchReason::Broken { requests }, now)
    }

    /// What one new receiver report changes.
    pub fn on_report(&mut self, report: &Report) -> Option<Switch> {
        let now = report.at;
        self.last_report_at = Some(now);
        if let Some(rtt) = report.rtt {
            self.lowest_rtt = Some(self.lowest_rtt.map_or(rtt, |lowest| lowest.min(rtt)));
        }
        if self.trying_since.is_some_and(|since| now >= since + TRIAL) {
            self.trying_since = None;
            self.up_wait = FIRST_WAIT;
        }
        if now < self.settled_at {
            return None;
        }
        let lossy = report.fraction_lost >= LOSS;
        let slow = match (report.rtt, self.lowest_rtt) {
            (Some(rtt), Some(lowest)) => rtt > lowest + DELAY_GROWTH,
            _ => false,
        };
        self.congested_reports = if lossy { self.congested_reports + 1 } else { 0 };
        self.slow_reports = if slow { self.slow_reports + 1 } else { 0 };
        let link_kbps = report.delivered_kbps() + AUDIO_RESERVE_KBPS;
        if lossy && (report.fraction_lost >= HEAVY_LOSS || self.congested_reports >= 2) {
            self.estimate_kbps = Some(link_kbps);
            let reason = SwitchReason::Loss {
                percent: report.fraction_lost * 100.0,
            };
            return self.step_down(self.rung_for(link_kbps), reason, now);
        }
        if self.slow_reports >= 2 {
            let (rtt, lowest) = (
                report.rtt.unwrap_or_default(),
                self.lowest_rtt.unwrap_or_default(),
            );
            self.estimate_kbps = Some(link_kbps);
            let reason = SwitchReason::Delay {
                rtt_ms: rtt.as_millis() as u64,
                lowest_ms: lowest.as_millis() as u64,
            };
            return self.step_down(self.rung + 1, reason, now);
        }
        if report.fraction_lost >= CLEAN_LOSS || slow {
            self.clean_since = None;
            return None;
        }
        let clean_since = *self.clean_since.get_or_insert(now);
        if self.rung == self.cap && self.trying_since.is_none() {
            self.estimate_kbps = None;
        }
        if self.rung > self.cap && now >= clean_since + self.up_wait {
            let reason = SwitchReason::Stable {
                seconds: (now - clean_since).as_secs(),
            };
            self.trying_since = Some(now);
            return Some(self.switch(self.rung - 1, reason, now));
        }
        None
    }

    /// The best rung below the current one that `link_kbps` carries with a
    /// margin; the lowest when none does.
    fn rung_for(&self, link_kbps: u32) -> usize {
        let usable = (f64::from(link_kbps) * ESTIMATE_MARGIN) as u32;
        (self.rung + 1..self.needs_kbps.len())
            .find(|&rung| self.needs_kbps[rung] <= usable)
            .unwrap_or(self.needs_kbps.len() - 1)
    }

    fn step_down(&mut self, to: usize, reason: SwitchReason, now: Duration) -> Option<Switch> {
        let to = to.min(self.needs_kbps.len() - 1);
        if to <= self.rung {
            // Already on the lowest: nothing less to send.
            return None;
        }
        if self.trying_since.take().is_some() {
            self.up_wait = (self.up_wait * 2).min(LONGEST_WAIT);
        }
        Some(self.switch(to, reason, now))
    }

    fn switch(&mut self, to: usize, reason: SwitchReason, now: Duration) -> Switch {
        self.rung = to;
        self.settled_at = now + SETTLE;
        self.congested_reports = 0;
        self.slow_reports = 0;
        self.clean_since = None;
        self.last_reason = Some(reason.clone());
        Switch { to, reason }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOP: usize = 0;
    const MIDDLE: usize = 1;
    const LOWEST: usize = 2;

    /// Feedback as a receiver sends it, one report a second.
    struct Link {
        controller: RungController,
        now: Duration,
        /// Every switch made, with when.
        switches: Vec<(Duration, Switch)>,
    }

    impl Link {
        fn new(cap: usize) -> Self {
            Link {
                controller: RungController::new(&Ladder::default(), cap, Duration::ZERO),
                now: Duration::ZERO,
                switches: Vec::new(),
            }
        }

        /// `seconds` of reports, each from what `link` says for the rung the
        /// receiver is on: (loss, round trip in ms, kbit/s sent).
        fn run(&mut self, seconds: u64, mut link: impl FnMut(usize) -> (f64, u64, u32)) {
            for _ in 0..seconds {
                self.now += Duration::from_secs(1);
                let (fraction_lost, rtt_ms, sent_kbps) = link(self.controller.rung());
                let report = Report {
                    at: self.now,
                    fraction_lost,
                    rtt: Some(Duration::from_millis(rtt_ms)),
                    sent_kbps,
                };
                if let Some(switch) = self.controller.on_report(&report) {
                    // The new rung's keyframe comes half a second later.
                    self.controller
                        .reached(self.now + Duration::from_millis(500));
                    self.switches.push((self.now, switch));
                }
            }
        }

        fn rung(&self) -> usize {
            self.controller.rung()
        }
    }

    /// Ticks every 250 ms for `seconds` with no report, the receiver
    /// asking for a keyframe every `request_every` ticks (0: never).
    fn silent(
        controller: &mut RungController,
        from: Duration,
        seconds: u64,
        request_every: u32,
    ) -> Vec<(Duration, Switch)> {
        let mut switches = Vec::new();
        let mut requests = 0;
        for tick in 1..=(seconds * 4) as u32 {
            let now = from + Duration::from_millis(250) * tick;
            if request_every > 0 && tick % request_every == 0 {
                requests += 1;
            }
            if let Some(switch) = controller.on_tick(now, requests) {
                controller.reached(now);
                switches.push((now, switch));
            }
        }
        switches
    }

    #[test]
    fn reports_that_stop_while_keyframes_are_asked_for_send_it_to_the_lowest_rung() {
        let mut controller = RungController::new(&Ladder::default(), TOP, Duration::ZERO);
        controller.reached(Duration::ZERO);
        // A keyframe request a second, no report: the link cannot carry the
        // picture, nor the receiver's reports about it.
        let switches = silent(&mut controller, Duration::ZERO, 10, 4);
        assert_eq!(switches.len(), 1, "{switches:?}");
        let (at, switch) = &switches[0];
        assert_eq!(switch.to, LOWEST);
        assert!(matches!(switch.reason, SwitchReason::Broken { requests } if requests >= 3));
        // Settle (2 s), then 3 s of silence before it could have decided.
        assert_eq!(*at, Duration::from_secs(5));
        assert_eq!(controller.estimate_kbps(), None);
    }

    #[test]
    fn a_step_up_that_breaks_the_picture_is_taken_back_within_a_second_of_it() {
        // Down to the lowest on a weak link, then clean until a try.
        let mut link = Link::new(TOP);
        link.run(5, shaped(300));
        assert_eq!(link.rung(), LOWEST);
        let tried = (0..30).find(|_| {
            link.run(1, |_| (0.0, 20, 165));
            link.rung() != LOWEST
        });
        assert!(tried.is_some(), "{:?}", link.switches);
        let trying = link.rung();
        // On the better rung the receiver stops reporting and asks for
        // keyframe after keyframe.
        let reached = link.now + Duration::from_millis(500);
        link.controller.reached(reached);
        let switches = silent(&mut link.controller, link.now, 5, 1);
        let (at, switch) = &switches[0];
        assert_eq!(switch.to, trying + 1);
        assert!(*at <= reached + Duration::from_millis(1250), "{switches:?}");
    }

    #[test]
    fn silence_alone_or_a_rare_request_moves_nothing() {
        // GStreamer's receivers report only every few seconds.
        let mut controller = RungController::new(&Ladder::default(), TOP, Duration::ZERO);
        assert!(silent(&mut controller, Duration::ZERO, 30, 0).is_empty());
        // One request every two seconds (a lost keyframe now and then).
        assert!(silent(&mut controller, Duration::from_secs(30), 30, 8).is_empty());
        // Requests with reports between them: the reports say what happens.
        let mut link = Link::new(TOP);
        for _ in 0..10 {
            link.run(2, |_| (0.0, 20, 1650));
            let now = link.now;
            assert_eq!(link.controller.on_tick(now, 100), None);
        }
        assert_eq!(link.rung(), TOP);
    }

    /// What each rung sends, in kbit/s with headers.
    fn sent(rung: usize) -> u32 {
        [1650, 550, 165][rung]
    }

    /// A link of `capacity` kbit/s shared with 50 kbit/s of audio: what does
    /// not fit is lost, and a full link's queue adds 150 ms.
    fn shaped(capacity: u32) -> impl Fn(usize) -> (f64, u64, u32) {
        move |rung| {
            let video_room = f64::from(capacity - 50);
            let sent = f64::from(sent(rung));
            if sent <= video_room {
                (0.0, 20, sent as u32)
            } else {
                (1.0 - video_room / sent, 170, sent as u32)
            }
        }
    }

    fn clean(rung: usize) -> (f64, u64, u32) {
        (0.0, 20, sent(rung))
    }

    #[test]
    fn a_clean_link_stays_on_the_top_rung() {
        let mut link = Link::new(TOP);
        link.run(120, clean);
        assert_eq!(link.rung(), TOP);
        assert!(link.switches.is_empty());
        assert_eq!(link.controller.estimate_kbps(), None);
    }

    #[test]
    fn heavy_loss_goes_straight_to_the_rung_the_link_carries() {
        let mut link = Link::new(TOP);
        link.run(8, shaped(300));
        assert_eq!(link.rung(), LOWEST);
        assert_eq!(link.switches.len(), 1, "{:?}", link.switches);
        let (at, switch) = &link.switches[0];
        assert!(*at <= Duration::from_secs(3), "{at:?}");
        assert!(matches!(switch.reason, SwitchReason::Loss { percent } if percent > 80.0));
        // 250 kbit/s of video reached it, plus the audio reserve.
        assert_eq!(link.controller.estimate_kbps(), Some(314));
    }

    #[test]
    fn a_link_for_the_middle_rung_settles_on_it() {
        let mut link = Link::new(TOP);
        link.run(120, shaped(800));
        assert_eq!(link.rung(), MIDDLE);
        // Trying the top again now and then, each time waiting longer.
        let tries: Vec<Duration> = link
            .switches
            .iter()
            .filter(|(_, s)| s.to == TOP)
            .map(|(at, _)| *at)
            .collect();
        assert!(!tries.is_empty());
        for pair in tries.windows(2) {
            assert!(pair[1] - pair[0] >= Duration::from_secs(10), "{tries:?}");
        }
    }

    #[test]
    fn occasional_loss_is_not_congestion() {
        let mut link = Link::new(TOP);
        let mut second = 0;
        link.run(60, |rung| {
            second += 1;
            let loss = if second % 7 == 0 { 0.06 } else { 0.0 };
            (loss, 20, sent(rung))
        });
        assert_eq!(link.rung(), TOP, "{:?}", link.switches);
    }

    #[test]
    fn sustained_loss_steps_down() {
        let mut link = Link::new(TOP);
        link.run(5, clean);
        link.run(3, |rung| (0.08, 20, sent(rung)));
        assert_eq!(link.rung(), MIDDLE, "{:?}", link.switches);
    }

    #[test]
    fn a_growing_round_trip_steps_down_one_rung_before_any_loss() {
        let mut link = Link::new(TOP);
        link.run(5, clean);
        link.run(3, |rung| (0.0, 200, sent(rung)));
        assert_eq!(link.rung(), MIDDLE);
        let (_, switch) = &link.switches[0];
        assert_eq!(
            switch.reason,
            SwitchReason::Delay {
                rtt_ms: 200,
                lowest_ms: 20
            }
        );
    }

    #[test]
    fn the_weak_link_never_switches_faster_than_every_few_seconds() {
        let mut link = Link::new(TOP);
        link.run(300, shaped(300));
        for pair in link.switches.windows(2) {
            assert!(
                pair[1].0 - pair[0].0 >= Duration::from_secs(3),
                "{:?}",
                link.switches
            );
        }
        // Tries of the middle rung come at most every 12 s once it has failed.
        let late_tries = link
            .switches
            .iter()
            .filter(|(at, s)| *at > Duration::from_secs(60) && s.to == MIDDLE)
            .count();
        assert!(late_tries <= 240 / 12, "{late_tries}");
        assert_eq!(link.rung(), LOWEST);
    }

    #[test]
    fn when_the_link_recovers_the_receiver_climbs_back_within_30_seconds() {
        let mut link = Link::new(TOP);
        link.run(120, shaped(300));
        assert_eq!(link.rung(), LOWEST);
        link.run(30, clean);
        assert_eq!(link.rung(), TOP, "{:?}", link.switches);
        assert_eq!(link.controller.estimate_kbps(), None);
        let climbs: Vec<_> = link.switches.iter().rev().take(2).collect();
        assert!(
            climbs
                .iter()
                .all(|(_, s)| matches!(s.reason, SwitchReason::Stable { .. }))
        );
    }

    #[test]
    fn a_receiver_never_climbs_above_what_it_asked_for() {
        let mut link = Link::new(MIDDLE);
        link.run(120, clean);
        assert_eq!(link.rung(), MIDDLE);
        assert!(link.switches.is_empty());
    }

    #[test]
    fn asking_for_less_moves_down_at_once_and_for_more_moves_up_at_once() {
        let mut link = Link::new(TOP);
        let down = link
            .controller
            .set_cap(LOWEST, Duration::from_secs(1))
            .unwrap();
        assert_eq!((down.to, down.reason), (LOWEST, SwitchReason::Asked));
        let up = link
            .controller
            .set_cap(TOP, Duration::from_secs(2))
            .unwrap();
        assert_eq!(up.to, TOP);
    }

    #[test]
    fn asking_for_more_on_a_weak_link_waits_for_the_link() {
        let mut link = Link::new(TOP);
        link.run(8, shaped(300));
        link.controller.set_cap(MIDDLE, link.now);
        assert_eq!(link.controller.set_cap(TOP, link.now), None);
        assert_eq!(link.rung(), LOWEST);
    }

    #[test]
    fn loss_on_the_lowest_rung_moves_nothing() {
        let mut link = Link::new(LOWEST);
        link.run(30, |rung| (0.5, 20, sent(rung)));
        assert!(link.switches.is_empty());
        assert_eq!(link.controller.estimate_kbps(), Some(147));
    }
}
