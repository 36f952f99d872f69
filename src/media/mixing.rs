//! The building blocks of a composite and a mix, shared by the MCU room
//! pipeline and the composite an SFU room builds while it records: the same
//! live compositor and audiomixer settings, tiles and sources, so both look
//! and sound alike.

use crate::media::layout::Rect;
use crate::media::mcu::Canvas;
use anyhow::{Result, anyhow};
use gst::prelude::*;

/// The grey of the tile of a participant who sends no video.
pub const PLACEHOLDER_ARGB: u32 = 0xff3c3c3c;

/// What every mixer input and output carries: 48 kHz mono PCM.
pub fn raw_audio_caps() -> gst::Caps {
    gst::Caps::builder("audio/x-raw")
        .field("format", "S16LE")
        .field("rate", 48000i32)
        .field("channels", 1i32)
        .field("layout", "interleaved")
        .build()
}

/// The upstream latency the live mixers budget for: participants' chains
/// (jitter buffer + decode) join later with more latency than the mixers'
/// own sources, so the mix's latency never changes mid-call. The mixers wait
/// this long for every input, so it is all latency: the jitter buffer's
/// plus 20 ms for depayloading and decoding a 360p frame (measured with
/// gridmix bench, MCU, 2-9 participants: +60 ms gave p95 183-186 ms, +20 ms
/// gives 77-140 ms, both at 30 fps with no freeze).
pub fn mixer_latency(jitter_latency_ms: u32) -> gst::ClockTime {
    gst::ClockTime::from_mseconds(u64::from(jitter_latency_ms) + 20)
}

pub fn live_compositor(name: &str, latency: gst::ClockTime) -> Result<gst::Element> {
    Ok(gst::ElementFactory::make("compositor")
        .name(name)
        .property_from_str("background", "black")
        .property("ignore-inactive-pads", true)
        .property("force-live", true)
        .property("min-upstream-latency", latency.nseconds())
        .build()?)
}

/// Makes a live mixer added to a playing pipeline start its output now.
/// With the default (start at 0) it would first produce, as fast as it can,
/// everything from the pipeline's start to now: a CPU burst that grows with
/// the call's age. Starting at its first input's time is no better: that
/// input may be old, and the mix would then run behind the clock for a while.
pub fn start_now(mixer: &gst::Element, pipeline: &gst::Pipeline) {
    if let Some(now) = pipeline.current_running_time() {
        mixer.set_property_from_str("start-time-selection", "set");
        mixer.set_property("start-time", now.nseconds());
    }
}

/// The composite's fixed caps.
pub fn canvas_caps(name: &str, canvas: Canvas) -> Result<gst::Element> {
    Ok(gst::ElementFactory::make("capsfilter")
        .name(name)
        .property(
            "caps",
            gst::Caps::builder("video/x-raw")
                .field("format", "I420")
                .field("width", canvas.width as i32)
                .field("height", canvas.height as i32)
                .field("framerate", gst::Fraction::new(canvas.fps as i32, 1))
                .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
                // VP8 has no colour-space signalling and decoders (browsers
                // included) assume BT.601; encode what they will assume.
                .field("colorimetry", "bt601")
                .build(),
        )
        .build()?)
}

pub fn live_audiomixer(name: &str, latency: gst::ClockTime) -> Result<gst::Element> {
    Ok(gst::ElementFactory::make("audiomixer")
        .name(name)
        .property("ignore-inactive-pads", true)
        .property("force-live", true)
        .property("min-upstream-latency", latency.nseconds())
        .build()?)
}

/// The head of a live mix, not yet added to `pipeline`: a silent source
/// (so the mix flows when nobody speaks), the mixer (started now) and its
/// output caps, in linking order. Returns them with the mixer. Element
/// names are `name` + "silence", "mixer", "caps".
pub fn live_mix(
    pipeline: &gst::Pipeline,
    name: &str,
    latency: gst::ClockTime,
) -> Result<(Vec<gst::Element>, gst::Element)> {
    let (silence, silence_caps) = silence_source(&format!("{name}silence"))?;
    let mixer = live_audiomixer(&format!("{name}mixer"), latency)?;
    start_now(&mixer, pipeline);
    let mix_caps = gst::ElementFactory::make("capsfilter")
        .name(format!("{name}caps"))
        .property("caps", raw_audio_caps())
        .build()?;
    Ok((vec![silence, silence_caps, mixer.clone(), mix_caps], mixer))
}

/// A live silent input that keeps a mix flowing when nobody speaks, with its
/// caps.
pub fn silence_source(name: &str) -> Result<(gst::Element, gst::Element)> {
    let silence = gst::ElementFactory::make("audiotestsrc")
        .name(name)
        .property("is-live", true)
        .property_from_str("wave", "silence")
        .property("samplesperbuffer", 480i32)
        .build()?;
    let caps = gst::ElementFactory::make("capsfilter")
        .name(format!("{name}-caps"))
        .property("caps", raw_audio_caps())
        .build()?;
    Ok((silence, caps))
}

/// A live solid-colour source with its caps: I420 like everything else the
/// compositor blends (videotestsrc would otherwise pick a 64-bit RGB
/// format), tiny because the compositor scales it to its tile.
pub fn solid_video_source(
    name: &str,
    argb: u32,
    width: i32,
    height: i32,
    fps: i32,
) -> Result<(gst::Element, gst::Element)> {
    let source = gst::ElementFactory::make("videotestsrc")
        .name(name)
        .property("is-live", true)
        .property_from_str("pattern", "solid-color")
        .property("foreground-color", argb)
        .build()?;
    let caps = gst::ElementFactory::make("capsfilter")
        .name(format!("{name}-caps"))
        .property(
            "caps",
            gst::Caps::builder("video/x-raw")
                .field("format", "I420")
                .field("colorimetry", "bt601")
                .field("width", width)
                .field("height", height)
                .field("framerate", gst::Fraction::new(fps, 1))
                .build(),
        )
        .build()?;
    Ok((source, caps))
}

/// Gives a compositor pad one still picture of `argb` that lasts as long
/// as the pad: a tile's placeholder without a source element, so without a
/// thread of its own or a frame made every 1/fps. Pushed on the caller's
/// thread without blocking (an aggregator pad queues serialized events and
/// its first buffer). The picture starts at running time 0 and lasts
/// `STILL_LASTS`, so whenever the compositor's output is, it is current and
/// the compositor never waits for another.
pub fn show_still(pad: &gst::Pad, name: &str, argb: u32, fps: i32) -> Result<()> {
    const WIDTH: usize = 64;
    const HEIGHT: usize = 36;
    let caps = gst::Caps::builder("video/x-raw")
        .field("format", "I420")
        .field("colorimetry", "bt601")
        .field("width", WIDTH as i32)
        .field("height", HEIGHT as i32)
        .field("framerate", gst::Fraction::new(fps, 1))
        .build();
    let (y, u, v) = bt601_of(argb);
    let mut picture = vec![y; WIDTH * HEIGHT];
    picture.extend(std::iter::repeat_n(u, WIDTH * HEIGHT / 4));
    picture.extend(std::iter::repeat_n(v, WIDTH * HEIGHT / 4));
    let mut buffer = gst::Buffer::from_mut_slice(picture);
    {
        let buffer = buffer.get_mut().expect("just made");
        buffer.set_pts(gst::ClockTime::ZERO);
        buffer.set_duration(STILL_LASTS);
    }
    let segment = gst::FormattedSegment::<gst::ClockTime>::new();
    let sent = pad.send_event(gst::event::StreamStart::new(name))
        && pad.send_event(gst::event::Caps::new(&caps))
        && pad.send_event(gst::event::Segment::new(&segment));
    if !sent {
        return Err(anyhow!(
            "{name}: the compositor pad refused the still's events"
        ));
    }
    pad.chain(buffer)
        .map_err(|e| anyhow!("{name}: the compositor pad refused the still: {e:?}"))?;
    Ok(())
}

/// How long a still lasts: longer than any call.
const STILL_LASTS: gst::ClockTime = gst::ClockTime::from_seconds(10 * 365 * 24 * 3600);

/// A colour (0xAARRGGBB) in BT.601 limited-range Y, U, V.
fn bt601_of(argb: u32) -> (u8, u8, u8) {
    let [_, r, g, b] = argb.to_be_bytes().map(f64::from);
    let y = 16.0 + (65.481 * r + 128.553 * g + 24.966 * b) / 255.0;
    let u = 128.0 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255.0;
    let v = 128.0 + (112.0 * r - 93.786 * g - 18.214 * b) / 255.0;
    let byte = |x: f64| x.round().clamp(0.0, 255.0) as u8;
    (byte(y), byte(u), byte(v))
}

/// A compositor pad for a tile layer: 1 for placeholders, 2 for pictures.
pub fn request_tile_pad(compositor: &gst::Element, zorder: u32) -> Result<gst::Pad> {
    let pad = compositor
        .request_pad_simple("sink_%u")
        .ok_or_else(|| anyhow!("compositor gave no sink pad"))?;
    pad.set_property("zorder", zorder);
    pad.set_property_from_str("sizing-policy", "keep-aspect-ratio");
    Ok(pad)
}

/// Shows a participant's pads (placeholder, then picture over it) at
/// `rect`, at layer `z` (0 up; the background is below every layer).
pub fn show_tile(pads: [&gst::Pad; 2], rect: Rect, z: u32) {
    for (pad, zorder) in pads.into_iter().zip([2 * z + 1, 2 * z + 2]) {
        pad.set_property("xpos", rect.x);
        pad.set_property("ypos", rect.y);
        pad.set_property("width", rect.width);
        pad.set_property("height", rect.height);
        pad.set_property("zorder", zorder);
        pad.set_property("alpha", 1.0f64);
    }
}

/// Takes a participant's pads off the composite: the compositor skips a
/// pad of alpha 0 without converting or blending its frames.
pub fn hide_tile(pads: [&gst::Pad; 2]) {
    for pad in pads {
        pad.set_property("alpha", 0.0f64);
    }
}

/// A live black canvas source that keeps a compositor ticking at the canvas
/// rate even when nobody sends video; linked to its own compositor pad.
pub fn add_background(
    bin: &gst::Bin,
    compositor: &gst::Element,
    name: &str,
    fps: u32,
) -> Result<Vec<gst::Element>> {
    let (background, caps) = solid_video_source(name, 0xff000000, 16, 16, fps as i32)?;
    bin.add_many([&background, &caps])?;
    background.link(&caps)?;
    let pad = compositor
        .request_pad_simple("sink_%u")
        .ok_or_else(|| anyhow!("compositor gave no sink pad"))?;
    pad.set_property("alpha", 0.0f64);
    pad.set_property("zorder", 0u32);
    caps.static_pad("src")
        .ok_or_else(|| anyhow!("capsfilter has no src pad"))?
        .link(&pad)?;
    Ok(vec![background, caps])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The still placeholder is the colour videotestsrc would have drawn.
    #[test]
    fn colours_convert_to_bt601_limited_range() {
        assert_eq!(bt601_of(0xff000000), (16, 128, 128));
        assert_eq!(bt601_of(0xffffffff), (235, 128, 128));
        assert_eq!(bt601_of(PLACEHOLDER_ARGB), (68, 128, 128));
        let (y, u, v) = bt601_of(0xffff0000);
        assert_eq!((y, u, v), (81, 90, 240));
    }
}
