//! Where a recording starts in the live streams it taps.
//!
//! A recording joins streams that have been flowing for a while; its file
//! must start at zero with picture and sound together. The video input
//! decides the start: its first buffer (the first keyframe, when the video
//! arrives already encoded). Audio waits for that and passes from the same
//! running time on. Each input then shifts its running time by the start,
//! so every muxer sees a stream beginning at 0.

/// What to do with a buffer arriving at a recording input whose gate is shut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    Drop,
    /// Let it through and open this input for good; its running time is to be
    /// shifted back by `origin` (ns).
    Open {
        origin: u64,
    },
}

/// Shared by a recording's inputs.
#[derive(Debug, Default)]
pub struct StartGate {
    origin: Option<u64>,
    /// Raw video from before this running time is stale: a mixer that has
    /// fallen behind is catching up. Raw frames stand alone, so skipping
    /// them costs nothing and the recording starts when it was asked to.
    not_before: Option<u64>,
}

/// How far before the request raw video may start: about the mixers' latency.
pub const STALE_AFTER_NS: u64 = 300_000_000;

impl StartGate {
    /// A gate for a recording requested at running time `requested` (ns).
    pub fn requested_at(requested: Option<u64>) -> Self {
        StartGate {
            origin: None,
            not_before: requested.map(|r| r.saturating_sub(STALE_AFTER_NS)),
        }
    }

    /// A video buffer at `running_time` (ns). Encoded video can only start at
    /// a keyframe.
    pub fn video(&mut self, running_time: Option<u64>, keyframe: bool, encoded: bool) -> Admit {
        let Some(rt) = running_time else {
            return Admit::Drop;
        };
        if encoded && !keyframe {
            return Admit::Drop;
        }
        if !encoded && self.not_before.is_some_and(|t| rt < t) {
            return Admit::Drop;
        }
        let origin = *self.origin.get_or_insert(rt);
        if rt < origin {
            return Admit::Drop;
        }
        Admit::Open { origin }
    }

    /// An audio buffer at `running_time` (ns).
    pub fn audio(&mut self, running_time: Option<u64>) -> Admit {
        match (self.origin, running_time) {
            (Some(origin), Some(rt)) if rt >= origin => Admit::Open { origin },
            _ => Admit::Drop,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_video_starts_at_its_first_keyframe_and_audio_follows() {
        let mut gate = StartGate::default();
        assert_eq!(
            gate.audio(Some(1_000)),
            Admit::Drop,
            "audio before any video"
        );
        assert_eq!(gate.video(Some(1_000), false, true), Admit::Drop);
        assert_eq!(gate.video(None, true, true), Admit::Drop);
        assert_eq!(
            gate.video(Some(1_500), true, true),
            Admit::Open { origin: 1_500 }
        );
        assert_eq!(
            gate.audio(Some(1_400)),
            Admit::Drop,
            "audio from before the start"
        );
        assert_eq!(gate.audio(Some(1_520)), Admit::Open { origin: 1_500 });
    }

    #[test]
    fn stale_raw_video_is_skipped_but_encoded_video_cannot_be() {
        let mut gate = StartGate::requested_at(Some(2_000_000_000));
        assert_eq!(gate.video(Some(1_000_000_000), false, false), Admit::Drop);
        assert_eq!(gate.audio(Some(1_800_000_000)), Admit::Drop);
        assert_eq!(
            gate.video(Some(1_750_000_000), false, false),
            Admit::Open {
                origin: 1_750_000_000
            }
        );
        // A keyframe is the only place encoded video can start, stale or not.
        let mut gate = StartGate::requested_at(Some(2_000_000_000));
        assert_eq!(
            gate.video(Some(1_000_000_000), true, true),
            Admit::Open {
                origin: 1_000_000_000
            }
        );
    }

    #[test]
    fn raw_video_starts_at_once() {
        let mut gate = StartGate::default();
        assert_eq!(gate.video(Some(7), false, false), Admit::Open { origin: 7 });
        assert_eq!(gate.audio(None), Admit::Drop);
        assert_eq!(gate.audio(Some(7)), Admit::Open { origin: 7 });
    }
}
