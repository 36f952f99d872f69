//! The MCU's encode ladder: the sizes and bitrates the composite is encoded
//! at (`--ladder`), best first. Each receiver is fed by exactly one rung; a
//! rung nobody receives is not encoded. Pure: no GStreamer.

use crate::protocol::Quality;
use std::fmt;
use std::str::FromStr;

/// One encoding of the composite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rung {
    pub width: u32,
    pub height: u32,
    /// Target bitrate of the video, in kbit/s (audio comes on top).
    pub kbps: u32,
}

impl Rung {
    pub fn bits_per_second(&self) -> u32 {
        self.kbps.saturating_mul(1000)
    }
}

impl fmt::Display for Rung {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}@{}", self.width, self.height, self.kbps)
    }
}

/// The rungs, best first; never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ladder {
    rungs: Vec<Rung>,
}

/// More rungs than this would cost more encoding than they save anyone.
pub const MAX_RUNGS: usize = 4;

impl Default for Ladder {
    /// 720p for good links, 360p for a 500 kbit/s one, 180p for what is
    /// left of a crowded mobile network.
    fn default() -> Self {
        Ladder {
            rungs: vec![
                Rung {
                    width: 1280,
                    height: 720,
                    kbps: 1500,
                },
                Rung {
                    width: 640,
                    height: 360,
                    kbps: 500,
                },
                Rung {
                    width: 320,
                    height: 180,
                    kbps: 150,
                },
            ],
        }
    }
}

impl Ladder {
    pub fn rungs(&self) -> &[Rung] {
        &self.rungs
    }

    /// The index of the lowest (cheapest) rung.
    pub fn lowest(&self) -> usize {
        self.rungs.len() - 1
    }

    /// The best rung a receiver that asked for `quality` may be on: high is
    /// the top, low the bottom, medium the middle one (with two rungs, the
    /// lower).
    pub fn best_for(&self, quality: Quality) -> usize {
        match quality {
            Quality::High => 0,
            Quality::Medium => self.rungs.len() / 2,
            Quality::Low => self.lowest(),
        }
    }
}

impl fmt::Display for Ladder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rungs: Vec<String> = self.rungs.iter().map(Rung::to_string).collect();
        f.write_str(&rungs.join(","))
    }
}

impl FromStr for Ladder {
    type Err = String;

    /// `WIDTHxHEIGHT@KBPS,...`, best first, e.g. `1280x720@1500,640x360@500`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let rungs = text
            .split(',')
            .map(|rung| parse_rung(rung.trim()))
            .collect::<Result<Vec<_>, _>>()?;
        if rungs.len() > MAX_RUNGS {
            return Err(format!("at most {MAX_RUNGS} rungs, not {}", rungs.len()));
        }
        for pair in rungs.windows(2) {
            let (above, below) = (pair[0], pair[1]);
            let fewer_pixels = below.width * below.height < above.width * above.height;
            if !fewer_pixels || below.kbps >= above.kbps {
                return Err(format!(
                    "each rung must be smaller and of a lower bitrate than the one before it: {below} follows {above}"
                ));
            }
        }
        Ok(Ladder { rungs })
    }
}

fn parse_rung(text: &str) -> Result<Rung, String> {
    let bad = || format!("a rung is WIDTHxHEIGHT@KBPS (like 640x360@500), not {text:?}");
    let (size, kbps) = text.split_once('@').ok_or_else(bad)?;
    let (width, height) = size.split_once('x').ok_or_else(bad)?;
    let number = |s: &str| s.parse::<u32>().map_err(|_| bad());
    let rung = Rung {
        width: number(width)?,
        height: number(height)?,
        kbps: number(kbps)?,
    };
    // Even sizes for I420; VP8 takes nothing under 16 pixels well, and
    // under 50 kbit/s a picture is mush at any size.
    let fits = |side: u32| (16..=3840).contains(&side) && side.is_multiple_of(2);
    if !fits(rung.width) || !fits(rung.height) {
        return Err(format!(
            "{text:?}: width and height must be even, 16 to 3840"
        ));
    }
    if !(50..=20_000).contains(&rung.kbps) {
        return Err(format!("{text:?}: the bitrate must be 50 to 20000 kbit/s"));
    }
    Ok(rung)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_720p_360p_180p() {
        assert_eq!(
            Ladder::default().to_string(),
            "1280x720@1500,640x360@500,320x180@150"
        );
    }

    #[test]
    fn a_ladder_reads_back_as_written() {
        let ladder: Ladder = "960x540@900, 480x270@300".parse().unwrap();
        assert_eq!(ladder.to_string(), "960x540@900,480x270@300");
        assert_eq!(ladder.lowest(), 1);
    }

    #[test]
    fn one_rung_is_a_single_encode() {
        let ladder: Ladder = "1280x720@1500".parse().unwrap();
        for quality in [Quality::Low, Quality::Medium, Quality::High] {
            assert_eq!(ladder.best_for(quality), 0);
        }
    }

    #[test]
    fn qualities_pick_top_middle_and_bottom() {
        let ladder = Ladder::default();
        assert_eq!(ladder.best_for(Quality::High), 0);
        assert_eq!(ladder.best_for(Quality::Medium), 1);
        assert_eq!(ladder.best_for(Quality::Low), 2);
    }

    #[test]
    fn rungs_must_go_down_in_size_and_bitrate() {
        for bad in [
            "640x360@500,1280x720@1500",
            "1280x720@500,640x360@500",
            "640x360@500,640x360@300",
        ] {
            let e = bad.parse::<Ladder>().unwrap_err();
            assert!(e.contains("smaller and of a lower bitrate"), "{bad}: {e}");
        }
    }

    #[test]
    fn malformed_rungs_are_refused_with_the_form_expected() {
        for bad in ["", "1280x720", "1280@1500", "axb@c", "1280x720@1500,"] {
            let e = bad.parse::<Ladder>().unwrap_err();
            assert!(e.contains("WIDTHxHEIGHT@KBPS"), "{bad:?}: {e}");
        }
        assert!("641x360@500".parse::<Ladder>().is_err());
        assert!("640x360@10".parse::<Ladder>().is_err());
        assert!(
            "1280x720@1500,960x540@900,640x360@500,480x270@300,320x180@150"
                .parse::<Ladder>()
                .is_err()
        );
    }
}
