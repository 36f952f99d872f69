//! How loud each voice is: a `level` element on every participant's decoded
//! audio in an MCU room posts its RMS on the bus, which the room reads to
//! tell who speaks (room/core.rs, media/speakers.rs).

use anyhow::Result;
use std::time::Duration;

/// How often a voice's level is measured: ten readings a second are enough
/// for a one-second speaking window and cheap on the room's bus.
pub const INTERVAL: Duration = Duration::from_millis(100);

/// A pass-through element that measures the audio going through it.
pub fn level_meter(name: &str) -> Result<gst::Element> {
    Ok(gst::ElementFactory::make("level")
        .name(name)
        .property("interval", INTERVAL.as_nanos() as u64)
        .property("post-messages", true)
        .build()?)
}

/// The level a `level` element reported (dBov, the loudest channel), if
/// `message` is one.
pub fn reported_level(message: &gst::Message) -> Option<f64> {
    let gst::MessageView::Element(element) = message.view() else {
        return None;
    };
    let structure = element.structure()?;
    if structure.name() != "level" {
        return None;
    }
    let rms = structure.get::<gst::glib::ValueArray>("rms").ok()?;
    rms.iter()
        .filter_map(|v| v.get::<f64>().ok())
        .max_by(f64::total_cmp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gst::prelude::*;

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
