//! Whose voices an MCU room mixes (top-k audio). Pure: no GStreamer, no
//! clock of its own (the caller passes the time).
//!
//! At most `slots` participants are *mixed*, plus the pinned one. Every
//! listener who is not mixed hears the same mix of all of them (one encode
//! for all), and each mixed one hears the others (one encode each), so a
//! room encodes at most `slots + 2` mixes whatever its size.
//!
//! The speaker detector (media/speakers.rs) takes about half a second to
//! call someone active: far too long to wait before letting a voice in,
//! since the first words would be lost. So a slot goes on the first loud
//! reading to whoever is speaking and not mixed, taken from the mixed
//! participant who has been quiet longest, provided that one has been quiet
//! for `release` (so two people talking over each other do not take turns
//! at being cut). Free slots go to those who send audio: the most recently
//! loud first, then in join order; so a room no bigger than `slots` mixes
//! everyone, exactly as if each listener had a mix of their own.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// A loud reading this recent means the participant is speaking now.
const ONSET: Duration = Duration::from_millis(300);
/// How long a mixed participant must have been quiet before its slot can
/// go to someone else.
const RELEASE: Duration = Duration::from_millis(1500);

#[derive(Debug)]
pub struct MixChoice<K> {
    slots: usize,
    /// In the order they were given their slot.
    mixed: Vec<K>,
    /// Participants whose audio reaches the server (any reading at all),
    /// with their last loud reading.
    heard: HashMap<K, Option<Instant>>,
}

impl<K: Clone + Eq + Hash> MixChoice<K> {
    pub fn new(slots: usize) -> Self {
        MixChoice {
            slots: slots.max(1),
            mixed: Vec::new(),
            heard: HashMap::new(),
        }
    }

    /// One level reading of `who`; `loud` when it counts as speech.
    pub fn reading(&mut self, who: &K, at: Instant, loud: bool) {
        let last_loud = self.heard.entry(who.clone()).or_insert(None);
        if loud {
            *last_loud = Some(at);
        }
    }

    pub fn forget(&mut self, who: &K) {
        self.heard.remove(who);
        self.mixed.retain(|k| k != who);
    }

    /// Who is mixed now.
    pub fn mixed(&self) -> &[K] {
        &self.mixed
    }

    fn last_loud(&self, who: &K) -> Option<Instant> {
        self.heard.get(who).copied().flatten()
    }

    fn speaking(&self, who: &K, now: Instant) -> bool {
        self.last_loud(who)
            .is_some_and(|at| now.saturating_duration_since(at) <= ONSET)
    }

    fn quiet_for_release(&self, who: &K, now: Instant) -> bool {
        self.last_loud(who)
            .is_none_or(|at| now.saturating_duration_since(at) >= RELEASE)
    }

    /// Re-decides who is mixed, of `joined` (in join order) with `pinned`
    /// always among them. Returns the new set if it changed.
    pub fn choose(&mut self, joined: &[K], pinned: Option<&K>, now: Instant) -> Option<Vec<K>> {
        let before = self.mixed.clone();
        self.mixed.retain(|k| joined.contains(k));
        if let Some(pin) = pinned
            && joined.contains(pin)
            && !self.mixed.contains(pin)
        {
            self.mixed.push(pin.clone());
        }
        let counted = |mixed: &[K]| mixed.iter().filter(|k| Some(*k) != pinned).count();

        // Speaking now and not mixed, the most recently loud first.
        let mut newcomers: Vec<&K> = joined
            .iter()
            .filter(|k| !self.mixed.contains(k) && self.speaking(k, now))
            .collect();
        newcomers.sort_by_key(|k| std::cmp::Reverse(self.last_loud(k)));
        for newcomer in newcomers {
            if counted(&self.mixed) < self.slots {
                self.mixed.push(newcomer.clone());
                continue;
            }
            let victim = self
                .mixed
                .iter()
                .filter(|k| Some(*k) != pinned && self.quiet_for_release(k, now))
                .min_by_key(|k| self.last_loud(k))
                .cloned();
            if let Some(victim) = victim {
                self.mixed.retain(|k| *k != victim);
                self.mixed.push(newcomer.clone());
            }
        }

        // Free slots: whoever sends audio, the most recently loud first,
        // then in join order (a stable sort keeps join order among equals).
        let mut waiting: Vec<&K> = joined
            .iter()
            .filter(|k| !self.mixed.contains(k) && self.heard.contains_key(k))
            .collect();
        waiting.sort_by_key(|k| std::cmp::Reverse(self.last_loud(k)));
        for k in waiting {
            if counted(&self.mixed) >= self.slots {
                break;
            }
            self.mixed.push(k.clone());
        }

        (self.mixed != before).then(|| self.mixed.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn heard_all(choice: &mut MixChoice<&'static str>, who: &[&'static str], at: Instant) {
        for k in who {
            choice.reading(k, at, false);
        }
    }

    #[test]
    fn a_room_no_bigger_than_the_slots_mixes_everyone_who_sends_audio() {
        let t = Instant::now();
        let mut choice = MixChoice::new(3);
        heard_all(&mut choice, &["a", "b", "c"], t);
        assert_eq!(
            choice.choose(&["a", "b", "c", "viewer"], None, t),
            Some(vec!["a", "b", "c"])
        );
        assert_eq!(choice.choose(&["a", "b", "c", "viewer"], None, t), None);
    }

    #[test]
    fn someone_who_starts_speaking_takes_the_slot_of_the_longest_quiet() {
        let t = Instant::now();
        let mut choice = MixChoice::new(2);
        let joined = ["a", "b", "c", "d"];
        heard_all(&mut choice, &joined, t);
        choice.reading(&"b", t, true);
        choice.choose(&joined, None, t);
        assert_eq!(choice.mixed(), ["b", "a"]);
        // d speaks two seconds later: a (never loud) makes way, at once.
        let later = t + ms(2000);
        choice.reading(&"d", later, true);
        assert_eq!(choice.choose(&joined, None, later), Some(vec!["b", "d"]));
    }

    #[test]
    fn a_slot_is_not_taken_from_someone_who_spoke_just_now() {
        let t = Instant::now();
        let mut choice = MixChoice::new(2);
        let joined = ["a", "b", "c"];
        heard_all(&mut choice, &joined, t);
        choice.reading(&"a", t, true);
        choice.reading(&"b", t, true);
        choice.choose(&joined, None, t);
        // c talks over them a second later: both spoke within RELEASE.
        choice.reading(&"c", t + ms(1000), true);
        assert_eq!(choice.choose(&joined, None, t + ms(1000)), None);
        // Once a has been quiet long enough, c gets a's slot.
        choice.reading(&"b", t + ms(1600), true);
        choice.reading(&"c", t + ms(1600), true);
        assert_eq!(
            choice.choose(&joined, None, t + ms(1600)),
            Some(vec!["b", "c"])
        );
    }

    #[test]
    fn the_pinned_participant_is_mixed_beyond_the_slots_and_never_loses_its_place() {
        let t = Instant::now();
        let mut choice = MixChoice::new(1);
        let joined = ["a", "b", "c"];
        heard_all(&mut choice, &joined, t);
        choice.choose(&joined, Some(&"c"), t);
        assert_eq!(choice.mixed(), ["c", "a"]);
        let later = t + ms(3000);
        choice.reading(&"b", later, true);
        assert_eq!(
            choice.choose(&joined, Some(&"c"), later),
            Some(vec!["c", "b"])
        );
    }

    #[test]
    fn a_leaver_frees_its_slot_for_the_most_recent_speaker() {
        let t = Instant::now();
        let mut choice = MixChoice::new(1);
        heard_all(&mut choice, &["a", "b", "c"], t);
        choice.choose(&["a", "b", "c"], None, t);
        assert_eq!(choice.mixed(), ["a"]);
        choice.reading(&"c", t + ms(100), true);
        choice.reading(&"c", t + ms(2000), false);
        choice.forget(&"a");
        let later = t + ms(2000);
        assert_eq!(choice.choose(&["b", "c"], None, later), Some(vec!["c"]));
    }

    #[test]
    fn nobody_is_mixed_before_their_audio_arrives() {
        let t = Instant::now();
        let mut choice: MixChoice<&str> = MixChoice::new(3);
        assert_eq!(choice.choose(&["a", "b"], None, t), None);
        choice.reading(&"b", t, false);
        assert_eq!(choice.choose(&["a", "b"], None, t), Some(vec!["b"]));
    }
}
