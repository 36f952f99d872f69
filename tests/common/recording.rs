//! Checking recordings the way a viewer would: the file's container and
//! codecs, decoded to its end, every frame in a window showing the right
//! tiles, the tones of the people recorded and no gap in the picture.

use super::media_file::{Decoded, Probe, TimedFrame, decode, probe};
use super::recording_api::Api;
use super::{check_tiles, eventually};
use gridmix::bot::analysis::{VideoFrame, tone_amplitude};
use gridmix::media::layout::GridLayout;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const CANVAS: (u32, u32) = (1280, 720);
/// A tone nobody sends: must not show up in a recording's mix.
pub const SILENT_TONE: f64 = 1800.0;
/// The longest a recording's picture may stand still. The composite is made
/// at 30 fps (33 ms a frame); a recording's raw queue drops frames only when
/// the machine is overloaded, and 250 ms is several dropped frames in a row,
/// which a viewer sees as a stutter.
pub const MAX_VIDEO_GAP: Duration = Duration::from_millis(250);
const TIMEOUT: Duration = Duration::from_secs(40);

/// What a recording format writes, as a player's discoverer names it.
#[derive(Debug, Clone, Copy)]
pub struct Codecs {
    pub container: &'static str,
    pub video: &'static str,
    pub audio: &'static str,
}

pub const WEBM: Codecs = Codecs {
    container: "video/webm",
    video: "video/x-vp8",
    audio: "audio/x-opus",
};
pub const MP4: Codecs = Codecs {
    container: "video/quicktime",
    video: "video/x-h264",
    audio: "audio/mpeg,mpegversion=4",
};
pub const HLS: Codecs = Codecs {
    container: "application/x-hls",
    video: "video/x-h264",
    audio: "audio/mpeg,mpegversion=4",
};

/// The codecs of a format by its API name.
pub fn codecs_of(format: &str) -> Codecs {
    match format {
        "webm" => WEBM,
        "mp4" => MP4,
        "hls" => HLS,
        other => panic!("no such recording format {other}"),
    }
}

/// A fresh, empty folder for one test's recordings.
pub fn record_dir(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("recordings-{test}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn path_of(info: &Value) -> PathBuf {
    PathBuf::from(info["path"].as_str().expect("a path"))
}

/// The discoverer's view of a file, off the async runtime.
pub async fn probe_file(path: &Path) -> Probe {
    let owned = path.to_owned();
    let shown = path.display().to_string();
    tokio::task::spawn_blocking(move || probe(&owned))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{shown} cannot be probed: {e:#}"))
}

/// Checks that a file has one video and one audio stream in `codecs`.
pub async fn check_codecs(path: &Path, codecs: Codecs) -> Probe {
    let probed = probe_file(path).await;
    let shown = path.display();
    assert_eq!(
        (probed.video_streams, probed.audio_streams),
        (1, 1),
        "{shown}: {probed:?}"
    );
    assert_eq!(
        (
            probed.container.as_deref(),
            probed.video_codec.as_deref(),
            probed.audio_codec.as_deref()
        ),
        (
            Some(codecs.container),
            Some(codecs.video),
            Some(codecs.audio)
        ),
        "{shown}: {probed:?}"
    );
    probed
}

/// Decodes a finished recording off the async runtime, keeping every
/// `keep_every`th frame, and checks it decodes to its end without error.
pub async fn decode_finished(path: PathBuf, keep_every: u64) -> Decoded {
    let shown = path.display().to_string();
    let decoded = tokio::task::spawn_blocking(move || decode(&path, keep_every))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{shown} does not decode: {e:#}"));
    assert_eq!(decoded.error, None, "{shown}: decoding to the end");
    decoded
}

/// The kept frames in [from, to]; there must be at least two.
fn kept_frames(decoded: &Decoded, from: Duration, to: Duration) -> Vec<&TimedFrame> {
    let frames: Vec<_> = decoded
        .frames
        .iter()
        .filter(|f| f.pts >= from && f.pts <= to)
        .collect();
    assert!(
        frames.len() >= 2,
        "only {} kept frames between {from:?} and {to:?}; {} frames from {:?} to {:?}, longest gap {:?}",
        frames.len(),
        decoded.video_pts.len(),
        decoded.video_pts.first(),
        decoded.last_video_pts(),
        decoded.longest_video_gap()
    );
    frames
}

/// Checks the decoded frames in [from, to] show `colours` in grid order.
pub fn check_frames(decoded: &Decoded, from: Duration, to: Duration, colours: &[u32]) {
    for f in kept_frames(decoded, from, to) {
        check_tiles(&f.frame, CANVAS, colours)
            .unwrap_or_else(|e| panic!("frame at {:?} of {from:?}..{to:?}: {e:#}", f.pts));
    }
}

/// Checks the audio in [from, to] has every tone in `present` and not the
/// silent one.
pub fn check_tones(decoded: &Decoded, from: Duration, to: Duration, present: &[f64]) {
    let audio = decoded.audio_between(from, to);
    // A machine shared with other builds can drop some audio; a silent
    // stretch of a quarter of the window is still a failure.
    assert!(
        audio.len() as f64 >= (to - from).as_secs_f64() * 48_000.0 * 0.75,
        "only {} samples between {from:?} and {to:?}",
        audio.len()
    );
    let silent = tone_amplitude(audio, 48_000, SILENT_TONE);
    for &tone in present {
        let level = tone_amplitude(audio, 48_000, tone);
        // Each bot sends 0.3: above 0.05 means it is there for most of
        // the window.
        assert!(
            level > 0.05 && silent < level / 10.0,
            "{tone} Hz at {level:.3} between {from:?} and {to:?} (silent {SILENT_TONE} Hz at {silent:.3})"
        );
    }
}

/// Checks that the picture never stands still longer than MAX_VIDEO_GAP.
pub fn check_no_gap(decoded: &Decoded, shown: &str) {
    assert!(
        decoded.longest_video_gap() < MAX_VIDEO_GAP,
        "{shown}: a gap of {:?} in the video",
        decoded.longest_video_gap()
    );
}

/// A finished recording of a call, checked whole: its container and codecs,
/// decoded to its end without error, at least `at_least` of picture and
/// sound, no gap in the picture, every kept frame from `pictures_from` on
/// showing `colours` in their tiles, and the sound from half a second on
/// holding every tone in `tones` (the people recorded) and no other.
pub async fn check_recording(
    path: &Path,
    codecs: Codecs,
    at_least: Duration,
    pictures_from: Duration,
    colours: &[u32],
    tones: &[f64],
) -> Decoded {
    let shown = path.display().to_string();
    check_codecs(path, codecs).await;
    let decoded = decode_finished(path.to_owned(), 10).await;
    let end = decoded
        .last_video_pts()
        .unwrap_or_else(|| panic!("{shown}: no video frames"));
    assert!(end >= at_least, "{shown}: video ends at {end:?}");
    let audio_end = decoded
        .last_audio_end
        .unwrap_or_else(|| panic!("{shown}: no audio"));
    assert!(
        audio_end >= at_least,
        "{shown}: audio ends at {audio_end:?}"
    );
    check_no_gap(&decoded, &shown);
    check_frames(&decoded, pictures_from, end, colours);
    check_tones(&decoded, Duration::from_millis(500), at_least, tones);
    decoded
}

/// Waits until the API says the recording has `ms` of content.
pub async fn wait_recorded(api: &Api, room: &str, id: &str, ms: u64) {
    eventually(TIMEOUT, || async {
        let shown = api.show(room, id).await?;
        let recorded = shown["duration_ms"].as_u64().unwrap_or(0);
        anyhow::ensure!(recorded >= ms, "{recorded} ms recorded, waiting for {ms}");
        Ok(())
    })
    .await
    .unwrap();
}

/// How much the API says the recording holds now.
pub async fn recorded_ms(api: &Api, room: &str, id: &str) -> u64 {
    api.show(room, id).await.unwrap()["duration_ms"]
        .as_u64()
        .unwrap()
}

/// The length an HLS recording's segments aim at (README, "Live HLS").
pub const HLS_SEGMENT_SECONDS: f64 = 2.0;

/// Checks a recording's HLS playlist: a target duration of
/// HLS_SEGMENT_SECONDS, every segment listed with its length, none longer
/// than the target, none but the last shorter than the one-second keyframe
/// interval the H.264 chain keeps (a segment can only end at a keyframe),
/// and `#EXT-X-ENDLIST` exactly when the recording `ended`. Returns the
/// segments' (file name, seconds).
pub fn check_hls_playlist(text: &str, ended: bool) -> Vec<(String, f64)> {
    let target = text
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-TARGETDURATION:"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no target duration in {text}"));
    assert_eq!(target, HLS_SEGMENT_SECONDS, "{text}");
    let mut segments = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if let Some(info) = line.strip_prefix("#EXTINF:") {
            let seconds: f64 = info
                .split(',')
                .next()
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or_else(|| panic!("bad #EXTINF {line} in {text}"));
            let file = lines
                .next()
                .unwrap_or_else(|| panic!("#EXTINF without a file in {text}"));
            segments.push((file.trim().to_owned(), seconds));
        }
    }
    assert!(!segments.is_empty(), "no segment in {text}");
    for (i, (file, seconds)) in segments.iter().enumerate() {
        assert_eq!(file, &format!("segment{i:05}.ts"), "{text}");
        // Rounding in the playlist's three decimals.
        assert!(*seconds <= target + 0.01, "{file} is {seconds} s: {text}");
        if i + 1 < segments.len() {
            assert!(*seconds >= 0.99, "{file} is {seconds} s: {text}");
        }
    }
    assert_eq!(text.contains("#EXT-X-ENDLIST"), ended, "{text}");
    segments
}

/// Near-white pixels (a caption's letters) in the strip along the bottom of
/// each of `count` grid tiles of `frame`: where the server writes names on a
/// recording (src/media/caption_spots.rs). The tiles are solid colours and
/// the placeholder is grey, so without a caption a strip has none.
pub fn caption_ink(frame: &VideoFrame, count: usize) -> Vec<usize> {
    let layout = GridLayout::for_count(count, frame.width, frame.height);
    layout
        .tiles
        .iter()
        .map(|tile| {
            let xs = (tile.x + tile.width / 4)..(tile.x + tile.width * 3 / 4);
            let ys = (tile.y + tile.height * 5 / 6)..(tile.y + tile.height - 2);
            ys.flat_map(|y| xs.clone().map(move |x| (x, y)))
                .filter(|&(x, y)| {
                    let at = y as usize * frame.stride + x as usize * 3;
                    frame.rgb[at..at + 3].iter().all(|&c| c > 150)
                })
                .count()
        })
        .collect()
}

/// Letters enough to be a name in every tile: a short name in bold at a
/// 640x360 tile's size has several hundred such pixels.
pub const CAPTION_INK: usize = 40;

/// Whether `ink` (`caption_ink`) is a name on every tile (`named`) or
/// none on any.
pub fn captions_are(ink: &[usize], named: bool) -> bool {
    if named {
        ink.iter().all(|&n| n >= CAPTION_INK)
    } else {
        ink.iter().all(|&n| n <= 2)
    }
}

/// Checks that every kept frame in [from, to] has a name on each of its
/// `count` tiles (`named`), or none on any.
pub fn check_captions(decoded: &Decoded, from: Duration, to: Duration, count: usize, named: bool) {
    for f in kept_frames(decoded, from, to) {
        let ink = caption_ink(&f.frame, count);
        assert!(
            captions_are(&ink, named),
            "frame at {:?} of {from:?}..{to:?}: caption pixels per tile {ink:?}, want {}",
            f.pts,
            if named { "a name on each" } else { "none" }
        );
    }
}
