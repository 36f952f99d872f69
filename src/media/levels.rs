//! How loud each voice is: read from the levels a sender puts in its audio
//! packets (RFC 6464), where it does, and otherwise measured by a `level`
//! element on the participant's decoded audio in an MCU room; both are
//! posted on the bus, which the room reads to tell who speaks (room/core.rs,
//! media/speakers.rs).

use crate::media::sdp::{AUDIO_LEVEL_EXTENSION, MediaKind, MediaLine};
use crate::media::webrtc;
use anyhow::Result;
use gst::prelude::*;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often a voice's level is measured: ten readings a second are enough
/// for a one-second speaking window and cheap on the room's bus.
pub const INTERVAL: Duration = Duration::from_millis(100);

/// How long after a sender's last packet level its levels are still
/// counted on: a sender that stops writing them (or whose packets stop) is
/// decoded and measured again after this, so it is never left unheard.
pub const LEVELS_LAST: Duration = Duration::from_secs(1);

/// A pass-through element that measures the audio going through it.
pub fn level_meter(name: &str) -> Result<gst::Element> {
    Ok(gst::ElementFactory::make("level")
        .name(name)
        .property("interval", INTERVAL.as_nanos() as u64)
        .property("post-messages", true)
        .build()?)
}

/// The name of the message a voice's level read from RFC 6464 header
/// extensions is posted as (see `RtpLevels`).
const RTP_LEVEL: &str = "gridmix-rtp-audio-level";

/// The level a `level` element reported (dBov, the loudest channel), or
/// one read from RTP header extensions, if `message` is either.
pub fn reported_level(message: &gst::Message) -> Option<f64> {
    let gst::MessageView::Element(element) = message.view() else {
        return None;
    };
    let structure = element.structure()?;
    if structure.name() == RTP_LEVEL {
        return structure.get::<f64>("dbov").ok();
    }
    if structure.name() != "level" {
        return None;
    }
    let rms = structure.get::<gst::glib::ValueArray>("rms").ok()?;
    rms.iter()
        .filter_map(|v| v.get::<f64>().ok())
        .max_by(f64::total_cmp)
}

/// Levels a sender put in its audio packets (RFC 6464: the level in -dBov,
/// 0 to 127, in the low seven bits of a one-byte extension), gathered over
/// each `INTERVAL` and posted on the bus from `element` like a `level`
/// element's reading, so the room hears who speaks without the audio being
/// decoded. Shared with the probe that reads them.
#[derive(Debug, Default)]
pub struct RtpLevels {
    /// The extension's id in this sender's packets (0: none negotiated).
    id: AtomicU8,
    readings: Mutex<Readings>,
}

#[derive(Debug, Default)]
struct Readings {
    /// When the last packet with a level came.
    last: Option<Instant>,
    /// The interval under way: when it started, the summed power, packets.
    window: Option<(Instant, f64, u32)>,
}

impl RtpLevels {
    /// What a server's transceiver answers the sender's m-line `line`
    /// with: `caps`, plus the audio-level extension where the line sends
    /// audio and offers it, whose levels are then read from the packets.
    /// (webrtcbin 1.22 writes an `a=extmap` only from codec preferences.)
    pub fn answer_caps(&self, line: &MediaLine, caps: gst::Caps) -> gst::Caps {
        match (
            line.kind,
            line.extmap_id(AUDIO_LEVEL_EXTENSION),
            line.direction.client_sends(),
        ) {
            (MediaKind::Audio, Some(id), true) => {
                self.id.store(id, Ordering::Relaxed);
                webrtc::with_extension(caps, id, AUDIO_LEVEL_EXTENSION)
            }
            _ => caps,
        }
    }

    /// Whether the sender's packets carry levels: one did within the last
    /// `LEVELS_LAST`.
    pub fn seen(&self) -> bool {
        self.seen_at(Instant::now())
    }

    fn seen_at(&self, now: Instant) -> bool {
        let readings = self.readings.lock().unwrap_or_else(|e| e.into_inner());
        readings
            .last
            .is_some_and(|last| now.saturating_duration_since(last) < LEVELS_LAST)
    }

    /// Reads the level of each RTP packet through `pad`, posting the
    /// interval's level (mean power) from `element`.
    pub fn watch(self: &Arc<Self>, pad: &gst::Pad, element: &gst::Element) {
        let levels = self.clone();
        let element = element.downgrade();
        pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            let id = levels.id.load(Ordering::Relaxed);
            if id == 0 {
                return gst::PadProbeReturn::Ok;
            }
            let Some(buffer) = info.buffer() else {
                return gst::PadProbeReturn::Ok;
            };
            let level = buffer.map_readable().ok().and_then(|map| {
                crate::media::rtp::header_extension(&map, id)
                    .and_then(|value| value.first().copied())
            });
            if let Some(byte) = level {
                let dbov = -f64::from(byte & 0x7f);
                if let Some(reading) = levels.add(Instant::now(), dbov)
                    && let Some(element) = element.upgrade()
                {
                    let structure = gst::Structure::builder(RTP_LEVEL)
                        .field("dbov", reading)
                        .build();
                    let _ = element.post_message(
                        gst::message::Element::builder(structure)
                            .src(&element)
                            .build(),
                    );
                }
            }
            gst::PadProbeReturn::Ok
        });
    }

    /// Adds one packet's level; returns the interval's once it is over.
    fn add(&self, now: Instant, dbov: f64) -> Option<f64> {
        let mut readings = self.readings.lock().unwrap_or_else(|e| e.into_inner());
        readings.last = Some(now);
        let window = &mut readings.window;
        let (started, power, count) = window.get_or_insert((now, 0.0, 0));
        *power += 10f64.powf(dbov / 10.0);
        *count += 1;
        if now.duration_since(*started) < INTERVAL {
            return None;
        }
        let mean = *power / f64::from(*count);
        *window = None;
        Some((10.0 * mean.log10()).max(-127.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packet_levels_are_posted_as_the_mean_power_of_each_interval() {
        let levels = RtpLevels::default();
        let t = Instant::now();
        assert_eq!(levels.add(t, -20.0), None);
        assert_eq!(levels.add(t + Duration::from_millis(50), -20.0), None);
        let reading = levels.add(t + INTERVAL, -127.0).unwrap();
        // Two loud packets and a silent one: 10 log10(2/3 * 0.01).
        assert!((reading - -21.76).abs() < 0.01, "{reading}");
        assert_eq!(levels.add(t + INTERVAL * 2, -127.0), None);
    }

    /// A sender that stops writing levels is decoded again: its levels
    /// count only for a while after the last.
    #[test]
    fn levels_count_for_a_while_after_the_last_packet_with_one() {
        let levels = RtpLevels::default();
        let t = Instant::now();
        assert!(!levels.seen_at(t));
        levels.add(t, -30.0);
        assert!(levels.seen_at(t + LEVELS_LAST / 2));
        assert!(!levels.seen_at(t + LEVELS_LAST));
        levels.add(t + LEVELS_LAST * 2, -30.0);
        assert!(levels.seen_at(t + LEVELS_LAST * 2));
    }

    /// A sine at `volume` through a level meter: what it reports.
    fn measured(volume: f64) -> f64 {
        gst::init().unwrap();
        let pipeline = gst::Pipeline::new();
        let source = gst::ElementFactory::make("audiotestsrc")
            .property("volume", volume)
            .property("num-buffers", 20)
            .build()
            .unwrap();
        let meter = level_meter("meter").unwrap();
        let sink = gst::ElementFactory::make("fakesink").build().unwrap();
        pipeline.add_many([&source, &meter, &sink]).unwrap();
        gst::Element::link_many([&source, &meter, &sink]).unwrap();
        pipeline.set_state(gst::State::Playing).unwrap();
        let bus = pipeline.bus().unwrap();
        let mut level = None;
        for message in bus.iter_timed(gst::ClockTime::from_seconds(5)) {
            if let Some(reported) = reported_level(&message) {
                level = Some(reported);
            }
            if matches!(message.view(), gst::MessageView::Eos(_)) {
                break;
            }
        }
        pipeline.set_state(gst::State::Null).unwrap();
        level.expect("the meter reported")
    }

    #[test]
    fn a_louder_sine_reads_louder_and_silence_reads_as_nothing() {
        // A sine's RMS is its amplitude / sqrt(2): 0.3 is about -13.5 dBov.
        let loud = measured(0.3);
        assert!((loud - -13.5).abs() < 1.0, "{loud}");
        let quiet = measured(0.003);
        assert!((quiet - -53.5).abs() < 1.0, "{quiet}");
        assert!(measured(0.0) < -100.0);
    }
}
