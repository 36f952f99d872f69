//! Recording ids and where their files go.
//!
//! Files sit flat in the record directory, named `<room>-<id>.<ext>` (HLS: a
//! folder `<room>-<id>/` with `index.m3u8` and its segments). Room ids may
//! be "." or "..", so a room never becomes a directory of its own.

use crate::recording::Format;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// A recording's id: its UTC start time and 64 random bits, e.g.
/// `20250301-141503-9f3c07aa12e45b60`; sorts by start time, is safe in file
/// names, URLs and GStreamer element names, and cannot be guessed from the
/// time a recording started.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordingId(String);

impl RecordingId {
    pub fn fresh(now: SystemTime) -> Self {
        let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
        RecordingId(format!(
            "{}-{:016x}",
            utc_stamp(since.as_secs()),
            rand::random::<u64>()
        ))
    }

    /// An id as a client sent it; None unless it could be one of ours.
    pub fn parse(s: &str) -> Option<RecordingId> {
        let ok = !s.is_empty()
            && s.len() <= 32
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        ok.then(|| RecordingId(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RecordingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `YYYYMMDD-HHMMSS` in UTC for seconds since the Unix epoch.
pub fn utc_stamp(unix_secs: u64) -> String {
    let (y, m, d) = civil_from_days((unix_secs / 86_400) as i64);
    let s = unix_secs % 86_400;
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// Days since 1970-01-01 to a (year, month, day) in the proleptic Gregorian
/// calendar (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Where one recording's output goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingPaths {
    /// The file a player opens: the .webm, the .mp4 or the HLS playlist.
    pub main: PathBuf,
    /// HLS: the folder holding the playlist and its segments.
    pub folder: Option<PathBuf>,
    /// The main file's URL path under /recordings/.
    pub url: String,
}

pub fn recording_paths(dir: &Path, room: &str, id: &RecordingId, format: Format) -> RecordingPaths {
    let stem = format!("{room}-{id}");
    match format {
        Format::Webm | Format::Mp4 => {
            let file = format!("{stem}.{}", format.as_str());
            RecordingPaths {
                main: dir.join(&file),
                folder: None,
                url: format!("/recordings/{file}"),
            }
        }
        Format::Hls => RecordingPaths {
            main: dir.join(&stem).join(HLS_PLAYLIST),
            folder: Some(dir.join(&stem)),
            url: format!("/recordings/{stem}/{HLS_PLAYLIST}"),
        },
    }
}

pub const HLS_PLAYLIST: &str = "index.m3u8";
/// printf-style, as hlssink2 wants it.
pub const HLS_SEGMENT_PATTERN: &str = "segment%05d.ts";

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn utc_stamps_match_known_dates() {
        assert_eq!(utc_stamp(0), "19700101-000000");
        assert_eq!(utc_stamp(951_782_400), "20000229-000000");
        assert_eq!(utc_stamp(1_740_838_503), "20250301-141503");
        assert_eq!(utc_stamp(4_102_444_799), "20991231-235959");
    }

    #[test]
    fn ids_carry_the_start_time_and_parse_back() {
        let id = RecordingId::fresh(UNIX_EPOCH + Duration::from_secs(1_740_838_503));
        assert!(id.as_str().starts_with("20250301-141503-"), "{id}");
        assert_eq!(id.as_str().len(), 32, "16 hex digits of randomness: {id}");
        assert_eq!(RecordingId::parse(id.as_str()), Some(id.clone()));
        let same_second = RecordingId::fresh(UNIX_EPOCH + Duration::from_secs(1_740_838_503));
        assert_ne!(id, same_second);
        for bad in ["", "../x", "a/b", "a b", &"1".repeat(33)] {
            assert_eq!(RecordingId::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn files_stay_in_the_record_dir_whatever_the_room_id() {
        let id = RecordingId::parse("20250301-141503-9f3c").unwrap();
        let dir = Path::new("/rec");
        let webm = recording_paths(dir, "..", &id, Format::Webm);
        assert_eq!(webm.main, Path::new("/rec/..-20250301-141503-9f3c.webm"));
        assert_eq!(webm.main.parent(), Some(dir));
        assert_eq!(webm.url, "/recordings/..-20250301-141503-9f3c.webm");
        let hls = recording_paths(dir, "standup", &id, Format::Hls);
        assert_eq!(
            hls.main,
            Path::new("/rec/standup-20250301-141503-9f3c/index.m3u8")
        );
        assert_eq!(
            hls.folder.as_deref(),
            Some(Path::new("/rec/standup-20250301-141503-9f3c"))
        );
        assert_eq!(
            hls.url,
            "/recordings/standup-20250301-141503-9f3c/index.m3u8"
        );
    }
}
