//! Who is speaking, from each participant's audio levels. Pure: no
//! GStreamer, no clock of its own (the caller passes the time).
//!
//! A participant is *active* while enough of its recent samples are loud:
//! it becomes active when at least `enter_share` of the last `window` is
//! above the threshold, and stays so until that share falls below
//! `exit_share` (lower), so a pause between words does not drop it. The
//! *dominant* speaker is the active one with the most speech energy in the
//! window; it changes only once it has held for `hold`, so a cough or a
//! short interjection does not move the main tile.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq)]
pub struct SpeakerSettings {
    /// A sample above this level (dBov, 0 the loudest) counts as speech.
    pub threshold_dbov: f64,
    /// How far back the share of loud samples is taken.
    pub window: Duration,
    /// Share of loud samples in the window that makes a participant active.
    pub enter_share: f64,
    /// Share below which an active participant stops being so.
    pub exit_share: f64,
    /// How long a dominant speaker keeps the place at least.
    pub hold: Duration,
}

impl Default for SpeakerSettings {
    fn default() -> Self {
        SpeakerSettings {
            // Speech into a phone or laptop microphone sits around -20 to
            // -40 dBov; room noise well below -50.
            threshold_dbov: -50.0,
            window: Duration::from_millis(1000),
            enter_share: 0.4,
            exit_share: 0.15,
            hold: Duration::from_millis(1500),
        }
    }
}

/// Who speaks now: `active` in the order they became active (longest
/// first), `dominant` the one a speaker layout shows large.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Speakers<K> {
    pub active: Vec<K>,
    pub dominant: Option<K>,
}

impl<K> Default for Speakers<K> {
    fn default() -> Self {
        Speakers {
            active: Vec::new(),
            dominant: None,
        }
    }
}

#[derive(Debug, Default)]
struct Track {
    /// (when, level in dBov), oldest first, within the window.
    samples: VecDeque<(Instant, f64)>,
    active: bool,
}

impl Track {
    fn forget_before(&mut self, cutoff: Option<Instant>) {
        let Some(cutoff) = cutoff else { return };
        while self.samples.front().is_some_and(|(at, _)| *at < cutoff) {
            self.samples.pop_front();
        }
    }

    /// The share of loud samples; none until the samples span half a
    /// window (one loud first sample is not a share of anything).
    fn loud_share(&self, threshold: f64, now: Instant, window: Duration) -> f64 {
        let Some((first, _)) = self.samples.front() else {
            return 0.0;
        };
        if now.duration_since(*first) < window / 2 {
            return 0.0;
        }
        let loud = self.samples.iter().filter(|(_, l)| *l > threshold).count();
        loud as f64 / self.samples.len() as f64
    }

    /// Mean amplitude over the window (linear, so the louder and the longer
    /// speaker scores higher).
    fn energy(&self) -> f64 {
        if self.samples.is_empty() {
            return 0.0;
        }
        let sum: f64 = self.samples.iter().map(|(_, l)| 10f64.powf(l / 20.0)).sum();
        sum / self.samples.len() as f64
    }
}

#[derive(Debug)]
pub struct SpeakerDetector<K> {
    settings: SpeakerSettings,
    tracks: HashMap<K, Track>,
    current: Speakers<K>,
    /// When the dominant speaker last changed.
    dominant_since: Option<Instant>,
}

impl<K: Clone + Eq + Hash> SpeakerDetector<K> {
    pub fn new(settings: SpeakerSettings) -> Self {
        SpeakerDetector {
            settings,
            tracks: HashMap::new(),
            current: Speakers::default(),
            dominant_since: None,
        }
    }

    /// One level reading of `who` (dBov; -127 is silence).
    pub fn add_level(&mut self, who: &K, at: Instant, level_dbov: f64) {
        let level = if level_dbov.is_finite() {
            level_dbov.clamp(-127.0, 0.0)
        } else {
            -127.0
        };
        self.tracks
            .entry(who.clone())
            .or_default()
            .samples
            .push_back((at, level));
    }

    /// `who` left: it is neither active nor dominant any more.
    /// The level above which a reading counts as speech.
    pub fn threshold_dbov(&self) -> f64 {
        self.settings.threshold_dbov
    }

    pub fn remove(&mut self, who: &K) {
        self.tracks.remove(who);
    }

    pub fn speakers(&self) -> &Speakers<K> {
        &self.current
    }

    /// Re-decides who speaks at `now`; the new state if it changed.
    pub fn update(&mut self, now: Instant) -> Option<Speakers<K>> {
        let settings = &self.settings;
        let cutoff = now.checked_sub(settings.window);
        for track in self.tracks.values_mut() {
            track.forget_before(cutoff);
            let share = track.loud_share(settings.threshold_dbov, now, settings.window);
            track.active = if track.active {
                share >= settings.exit_share
            } else {
                share >= settings.enter_share
            };
        }
        // Those still active keep their order; newcomers go last.
        let mut active: Vec<K> = self
            .current
            .active
            .iter()
            .filter(|k| self.tracks.get(*k).is_some_and(|t| t.active))
            .cloned()
            .collect();
        for (who, track) in &self.tracks {
            if track.active && !active.contains(who) {
                active.push(who.clone());
            }
        }
        let dominant = self.choose_dominant(&active, now);
        let next = Speakers { active, dominant };
        if next == self.current {
            return None;
        }
        if next.dominant != self.current.dominant {
            self.dominant_since = Some(now);
        }
        self.current = next.clone();
        Some(next)
    }

    fn choose_dominant(&self, active: &[K], now: Instant) -> Option<K> {
        let loudest = active
            .iter()
            .filter_map(|k| self.tracks.get(k).map(|t| (k, t.energy())))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(k, _)| k.clone());
        let current = self.current.dominant.as_ref();
        // One who left gives the place up at once.
        let Some(current) = current.filter(|k| self.tracks.contains_key(*k)) else {
            return loudest;
        };
        let held = self
            .dominant_since
            .is_some_and(|since| now.duration_since(since) >= self.settings.hold);
        match loudest {
            // Silence keeps the last speaker on screen.
            None => Some(current.clone()),
            Some(loudest) if held => Some(loudest),
            Some(_) => Some(current.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOUD: f64 = -20.0;
    const QUIET: f64 = -70.0;
    /// Levels come every 50 ms, as from a `level` element's interval.
    const STEP: Duration = Duration::from_millis(50);

    struct Call {
        detector: SpeakerDetector<&'static str>,
        now: Instant,
        /// Each change, with when it was decided.
        changes: Vec<(Instant, Speakers<&'static str>)>,
    }

    impl Call {
        fn new() -> Call {
            Call {
                detector: SpeakerDetector::new(SpeakerSettings::default()),
                now: Instant::now(),
                changes: Vec::new(),
            }
        }

        /// `ms` of time in which each of `levels` sends its level every STEP.
        fn run(&mut self, ms: u64, levels: &[(&'static str, f64)]) {
            let end = self.now + Duration::from_millis(ms);
            while self.now < end {
                self.now += STEP;
                for (who, level) in levels {
                    self.detector.add_level(who, self.now, *level);
                }
                if let Some(change) = self.detector.update(self.now) {
                    self.changes.push((self.now, change));
                }
            }
        }

        fn dominant(&self) -> Option<&'static str> {
            self.detector.speakers().dominant
        }

        /// When `who` last became dominant.
        fn dominant_since(&self, who: &'static str) -> Option<Instant> {
            let mut before = None;
            let mut since = None;
            for (at, change) in &self.changes {
                if change.dominant == Some(who) && before != Some(who) {
                    since = Some(*at);
                }
                before = change.dominant;
            }
            since
        }

        fn active(&self) -> Vec<&'static str> {
            self.detector.speakers().active.clone()
        }
    }

    #[test]
    fn a_steady_speaker_becomes_active_and_dominant() {
        let mut call = Call::new();
        call.run(2000, &[("a", LOUD), ("b", QUIET), ("c", QUIET)]);
        assert_eq!(call.active(), ["a"]);
        assert_eq!(call.dominant(), Some("a"));
        // One change, not a flicker.
        assert_eq!(call.changes.len(), 1, "{:?}", call.changes);
    }

    #[test]
    fn a_cough_does_not_make_anyone_active() {
        let mut call = Call::new();
        call.run(1000, &[("a", QUIET), ("b", QUIET)]);
        call.run(150, &[("a", LOUD), ("b", QUIET)]);
        call.run(1500, &[("a", QUIET), ("b", QUIET)]);
        assert!(call.changes.is_empty(), "{:?}", call.changes);
        assert_eq!(call.dominant(), None);
    }

    #[test]
    fn a_newcomers_first_sounds_are_not_yet_a_share_of_anything() {
        let mut call = Call::new();
        // B's very first levels are a bump of the microphone.
        call.run(150, &[("b", LOUD)]);
        call.run(1500, &[("b", QUIET)]);
        assert!(call.changes.is_empty(), "{:?}", call.changes);
    }

    #[test]
    fn sparse_speech_keeps_a_speaker_active_but_does_not_make_one() {
        let mut call = Call::new();
        call.run(1500, &[("a", LOUD), ("b", QUIET)]);
        // Both now speak alike: 150 ms of words, 350 ms of pause. A, who
        // was speaking, stays active; B, who was not, does not become so.
        for _ in 0..8 {
            call.run(150, &[("a", LOUD), ("b", LOUD)]);
            call.run(350, &[("a", QUIET), ("b", QUIET)]);
        }
        assert_eq!(call.active(), ["a"]);
        assert_eq!(call.changes.len(), 1, "{:?}", call.changes);
        // Then silence ends it; the last speaker stays dominant.
        call.run(1500, &[("a", QUIET), ("b", QUIET)]);
        assert!(call.active().is_empty());
        assert_eq!(call.dominant(), Some("a"));
    }

    #[test]
    fn the_dominant_speaker_keeps_the_place_for_the_hold_then_the_loudest_takes_it() {
        let hold = SpeakerSettings::default().hold;
        let mut call = Call::new();
        call.run(1000, &[("a", LOUD), ("b", QUIET)]);
        let a_since = call.dominant_since("a").expect("a is dominant");
        // B starts talking, louder, and A stops: B takes over, but only
        // once A has held the place for the hold.
        let b_starts = call.now;
        while call.dominant() != Some("b") && call.now - b_starts < hold * 3 {
            call.run(50, &[("a", QUIET), ("b", -10.0)]);
        }
        let b_since = call.dominant_since("b").expect("b took over");
        assert!(b_since - a_since >= hold, "after {:?}", b_since - a_since);
        assert!(
            b_since - a_since < hold + STEP * 2,
            "after {:?}",
            b_since - a_since
        );
        // A louder burst right after B took over does not move it.
        call.run(500, &[("a", -5.0), ("b", -10.0)]);
        assert!(call.active().contains(&"a"), "the burst is speech");
        assert_eq!(call.dominant(), Some("b"));
        // Once B has held the place, the louder A takes it.
        call.run(hold.as_millis() as u64, &[("a", -5.0), ("b", -10.0)]);
        assert_eq!(call.dominant(), Some("a"));
    }

    #[test]
    fn a_dominant_speaker_who_leaves_gives_the_place_up_at_once() {
        let mut call = Call::new();
        call.run(2000, &[("a", LOUD), ("b", LOUD)]);
        let first = call.dominant().unwrap();
        let other = if first == "a" { "b" } else { "a" };
        call.detector.remove(&first);
        call.run(100, &[(other, LOUD)]);
        assert_eq!(call.dominant(), Some(other));
        assert_eq!(call.active(), [other]);
        call.detector.remove(&other);
        call.run(100, &[]);
        assert_eq!(call.dominant(), None);
    }

    #[test]
    fn the_active_list_keeps_its_order_and_adds_newcomers_last() {
        let mut call = Call::new();
        call.run(1500, &[("b", LOUD), ("a", QUIET), ("c", QUIET)]);
        call.run(1500, &[("b", LOUD), ("a", QUIET), ("c", LOUD)]);
        call.run(1500, &[("b", LOUD), ("a", LOUD), ("c", LOUD)]);
        assert_eq!(call.active(), ["b", "c", "a"]);
    }

    #[test]
    fn unusable_levels_count_as_silence() {
        let mut call = Call::new();
        call.run(1500, &[("a", f64::NAN), ("b", f64::INFINITY)]);
        assert!(call.changes.is_empty(), "{:?}", call.changes);
    }
}
