//! What a bot sends and receives, counted without decoding: bytes and
//! packets per received stream, video frames by RTP marker bit, freezes
//! (gaps between frames over 200 ms), the SSRCs and MID header extension
//! values packets came with, and bytes sent. The bench reads it; tests
//! check what each m-line really carried.

use crate::media::rtp;
use gst::prelude::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A gap between two video frames longer than this is a freeze.
pub const FREEZE_GAP: Duration = Duration::from_millis(200);

/// A gap between two video frames longer than `FREEZE_GAP`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Freeze {
    /// When the frame after the gap arrived.
    pub ended: Instant,
    pub gap: Duration,
}

/// One received stream of one kind.
#[derive(Debug, Clone, Default)]
pub struct StreamTraffic {
    pub packets: u64,
    pub bytes: u64,
    /// Complete video frames (packets with the marker bit).
    pub frames: u64,
    pub first_frame: Option<Instant>,
    pub last_frame: Option<Instant>,
    pub freezes: Vec<Freeze>,
    /// The SSRCs its packets carried, each once.
    pub ssrcs: Vec<u32>,
    /// The mids its packets' MID header extension named, each once.
    pub header_mids: Vec<String>,
}

impl StreamTraffic {
    fn count(&mut self, packet: &[u8], video: bool, mid_extension: Option<u8>) {
        self.packets += 1;
        self.bytes += packet.len() as u64;
        if let Some(ssrc) = rtp::ssrc(packet)
            && !self.ssrcs.contains(&ssrc)
        {
            self.ssrcs.push(ssrc);
        }
        if let Some(mid) = mid_extension.and_then(|id| rtp::header_extension(packet, id))
            && !self.header_mids.iter().any(|m| m.as_bytes() == mid)
        {
            self.header_mids
                .push(String::from_utf8_lossy(mid).into_owned());
        }
        if video && rtp::marker(packet) {
            let now = Instant::now();
            if let Some(gap) = self.last_frame.map(|t| now - t)
                && gap > FREEZE_GAP
            {
                self.freezes.push(Freeze { ended: now, gap });
            }
            self.frames += 1;
            self.first_frame.get_or_insert(now);
            self.last_frame = Some(now);
        }
    }
}

/// Counts of everything a bot received (by sender stream and kind) and sent.
#[derive(Clone, Default)]
pub struct Traffic {
    received: Arc<Mutex<HashMap<(String, bool), StreamTraffic>>>,
    sent_bytes: Arc<AtomicU64>,
}

/// A copy of the counts at one moment.
#[derive(Debug, Clone, Default)]
pub struct TrafficSnapshot {
    pub at: Option<Instant>,
    pub sent_bytes: u64,
    /// (sender stream, is video) -> counts.
    pub received: HashMap<(String, bool), StreamTraffic>,
}

impl TrafficSnapshot {
    pub fn received_bytes(&self) -> u64 {
        self.received.values().map(|s| s.bytes).sum()
    }

    pub fn received_packets(&self) -> u64 {
        self.received.values().map(|s| s.packets).sum()
    }

    pub fn received_video_bytes(&self) -> u64 {
        self.video_streams().map(|s| s.bytes).sum()
    }

    /// The freezes of every video stream that ended after `after`.
    pub fn freezes_after(&self, after: Instant) -> Vec<Freeze> {
        self.video_streams()
            .flat_map(|s| s.freezes.iter().filter(|f| f.ended > after).copied())
            .collect()
    }

    fn video_streams(&self) -> impl Iterator<Item = &StreamTraffic> {
        self.received
            .iter()
            .filter(|((_, video), _)| *video)
            .map(|(_, s)| s)
    }

    /// The earliest first video frame of any stream.
    pub fn first_video_frame(&self) -> Option<Instant> {
        self.video_streams().filter_map(|s| s.first_frame).min()
    }
}

impl Traffic {
    /// Counts the RTP leaving a webrtcbin src pad, which carries `stream`.
    /// Counts what arrives on `pad`, a stream of `stream`'s; its MID header
    /// extension is read at `mid_extension`, the id negotiated for it.
    pub fn count_received(
        &self,
        pad: &gst::Pad,
        stream: &str,
        video: bool,
        mid_extension: Option<u8>,
    ) {
        let received = self.received.clone();
        let key = (stream.to_owned(), video);
        pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let Some(buffer) = info.buffer()
                && let Ok(map) = buffer.map_readable()
            {
                let mut received = received.lock().unwrap_or_else(|e| e.into_inner());
                received
                    .entry(key.clone())
                    .or_default()
                    .count(&map, video, mid_extension);
            }
            gst::PadProbeReturn::Ok
        });
    }

    /// Counts the bytes leaving `pad` towards a peer.
    pub fn count_sent(&self, pad: &gst::Pad) {
        let sent = self.sent_bytes.clone();
        pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let Some(buffer) = info.buffer() {
                sent.fetch_add(buffer.size() as u64, Ordering::Relaxed);
            }
            gst::PadProbeReturn::Ok
        });
    }

    pub fn snapshot(&self) -> TrafficSnapshot {
        TrafficSnapshot {
            at: Some(Instant::now()),
            sent_bytes: self.sent_bytes.load(Ordering::Relaxed),
            received: self
                .received
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtp(marker: bool) -> Vec<u8> {
        let mut p = vec![0x80, u8::from(marker) << 7 | 96];
        p.resize(100, 0);
        p
    }

    #[test]
    fn frames_are_counted_by_marker_and_audio_has_none() {
        let mut video = StreamTraffic::default();
        for marker in [false, false, true, false, true] {
            video.count(&rtp(marker), true, None);
        }
        assert_eq!((video.packets, video.bytes, video.frames), (5, 500, 2));
        assert!(video.first_frame.is_some() && video.freezes.is_empty());
        let mut audio = StreamTraffic::default();
        audio.count(&rtp(true), false, None);
        assert_eq!((audio.packets, audio.frames), (1, 0));
    }

    #[test]
    fn a_long_gap_between_frames_is_a_freeze() {
        let mut video = StreamTraffic::default();
        video.count(&rtp(true), true, None);
        video.last_frame = video.last_frame.map(|t| t - FREEZE_GAP * 2);
        video.count(&rtp(true), true, None);
        assert_eq!(video.freezes.len(), 1);
        assert!(video.freezes[0].gap >= FREEZE_GAP * 2);
    }

    #[test]
    fn ssrcs_and_header_mids_are_noted_once_each() {
        let mut video = StreamTraffic::default();
        let tagged = crate::media::rtp::with_only_extension(&rtp(true), 1, b"video3").unwrap();
        for packet in [&rtp(false), &tagged, &tagged] {
            video.count(packet, true, Some(1));
        }
        let mut other = rtp(true);
        other[8..12].copy_from_slice(&7u32.to_be_bytes());
        video.count(&other, true, Some(1));
        assert_eq!(video.ssrcs, [0, 7]);
        assert_eq!(video.header_mids, ["video3"]);
    }
}
