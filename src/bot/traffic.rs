//! What a bot sends and receives, counted without decoding: bytes and
//! packets per received stream, video frames by RTP marker bit, freezes
//! (gaps between frames over 200 ms), and bytes sent. The bench reads it.

use crate::media::rtp;
use gst::prelude::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A gap between two video frames longer than this is a freeze.
pub const FREEZE_GAP: Duration = Duration::from_millis(200);

/// One received stream of one kind.
#[derive(Debug, Clone, Default)]
pub struct StreamTraffic {
    pub packets: u64,
    pub bytes: u64,
    /// Complete video frames (packets with the marker bit).
    pub frames: u64,
    pub first_frame: Option<Instant>,
    pub last_frame: Option<Instant>,
    /// When each freeze ended (the frame after the gap arrived).
    pub freezes: Vec<Instant>,
}

impl StreamTraffic {
    fn count(&mut self, packet: &[u8], video: bool) {
        self.packets += 1;
        self.bytes += packet.len() as u64;
        if video && rtp::marker(packet) {
            let now = Instant::now();
            if self.last_frame.is_some_and(|t| now - t > FREEZE_GAP) {
                self.freezes.push(now);
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

    /// The earliest first video frame of any stream.
    pub fn first_video_frame(&self) -> Option<Instant> {
        self.received
            .iter()
            .filter(|((_, video), _)| *video)
            .filter_map(|(_, s)| s.first_frame)
            .min()
    }
}

impl Traffic {
    /// Counts the RTP leaving a webrtcbin src pad, which carries `stream`.
    pub fn count_received(&self, pad: &gst::Pad, stream: &str, video: bool) {
        let received = self.received.clone();
        let key = (stream.to_owned(), video);
        pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let Some(buffer) = info.buffer()
                && let Ok(map) = buffer.map_readable()
            {
                let mut received = received.lock().unwrap_or_else(|e| e.into_inner());
                received.entry(key.clone()).or_default().count(&map, video);
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
            video.count(&rtp(marker), true);
        }
        assert_eq!((video.packets, video.bytes, video.frames), (5, 500, 2));
        assert!(video.first_frame.is_some() && video.freezes.is_empty());
        let mut audio = StreamTraffic::default();
        audio.count(&rtp(true), false);
        assert_eq!((audio.packets, audio.frames), (1, 0));
    }

    #[test]
    fn a_long_gap_between_frames_is_a_freeze() {
        let mut video = StreamTraffic::default();
        video.count(&rtp(true), true);
        video.last_frame = video.last_frame.map(|t| t - FREEZE_GAP * 2);
        video.count(&rtp(true), true);
        assert_eq!(video.freezes.len(), 1);
    }
}
