//! One encoding of a colour and a tone, fanned out to many bots: the bench's
//! load participants all send it, so a load generator on a small machine
//! encodes once, not once per participant. Each bot gets its own SSRC.

use crate::media::rtp;
use crate::media::sdp::MediaKind;
use anyhow::{Context, Result, anyhow};
use gst::prelude::*;
use std::sync::{Arc, Mutex};

use super::media::{
    AUDIO_PT, VIDEO_PT, audio_encoding, audio_send_caps, set_audio_caps, video_encoding,
};

/// The bots fed by one kind of the shared encoding: (their source, SSRC).
type Outputs = Arc<Mutex<Vec<(gst_app::AppSrc, u32)>>>;

struct Encoder {
    pipeline: gst::Pipeline,
    video: Outputs,
    audio: Outputs,
    /// Where the video encoding leaves its pipeline: keyframe requests from
    /// any bot are sent upstream from here to the encoder.
    video_out: gst::Pad,
}

impl Drop for Encoder {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

#[derive(Clone)]
pub struct SharedEncoding {
    encoder: Arc<Encoder>,
}

impl std::fmt::Debug for SharedEncoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedEncoding")
    }
}

impl SharedEncoding {
    /// Starts encoding `colour` (0xRRGGBB) and a `tone_hz` sine at
    /// `volume` (0 to 1).
    pub fn start(colour: u32, tone_hz: f64, volume: f64) -> Result<SharedEncoding> {
        let pattern = format!(
            "pattern=solid-color foreground-color={}",
            0xff00_0000u32 | colour
        );
        Self::start_pattern(&pattern, tone_hz, volume)
    }

    /// As `start`, with a busy camera's picture (`BotConfig::busy_video`).
    pub fn busy(tone_hz: f64, volume: f64) -> Result<SharedEncoding> {
        Self::start_pattern(super::media::BUSY_PATTERN, tone_hz, volume)
    }

    fn start_pattern(pattern: &str, tone_hz: f64, volume: f64) -> Result<SharedEncoding> {
        gst::init()?;
        let pipeline = gst::Pipeline::with_name("shared-encoding");
        let video: Outputs = Arc::default();
        let audio: Outputs = Arc::default();
        let mut video_out = None;
        for (description, outputs) in [
            (video_encoding(pattern, 90, VIDEO_PT), &video),
            (audio_encoding(tone_hz, volume, AUDIO_PT), &audio),
        ] {
            let chain = gst::parse::bin_from_description(
                &format!("{description} ! appsink name=out sync=false"),
                true,
            )
            .context("building the shared encoding")?;
            if Arc::ptr_eq(outputs, &audio) {
                set_audio_caps(&chain, AUDIO_PT)?;
            }
            let sink = chain
                .by_name("out")
                .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
                .ok_or_else(|| anyhow!("no app sink in the shared encoding"))?;
            pipeline.add(&chain)?;
            if Arc::ptr_eq(outputs, &video) {
                video_out = sink.static_pad("sink");
            }
            let outputs = outputs.clone();
            sink.set_callbacks(
                gst_app::AppSinkCallbacks::builder()
                    .new_sample(move |sink| {
                        let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                        if let Some(buffer) = sample.buffer() {
                            fan_out(buffer, &outputs);
                        }
                        Ok(gst::FlowSuccess::Ok)
                    })
                    .build(),
            );
        }
        pipeline
            .set_state(gst::State::Playing)
            .context("starting the shared encoding")?;
        Ok(SharedEncoding {
            encoder: Arc::new(Encoder {
                pipeline,
                video,
                audio,
                video_out: video_out.ok_or_else(|| anyhow!("the shared video has no output"))?,
            }),
        })
    }

    /// A source in `pipeline` that plays this encoding's `kind` as a bot
    /// with its own SSRC would send it.
    pub fn source(
        &self,
        pipeline: &gst::Pipeline,
        kind: MediaKind,
        ssrc: u32,
    ) -> Result<gst::Element> {
        let (outputs, caps) = match kind {
            MediaKind::Video => (
                &self.encoder.video,
                crate::media::webrtc::rtp_caps(kind, VIDEO_PT),
            ),
            _ => (&self.encoder.audio, audio_send_caps(AUDIO_PT)),
        };
        let source = gst_app::AppSrc::builder()
            .caps(&caps)
            .is_live(true)
            .format(gst::Format::Time)
            // Stamped on arrival: the encoder's timestamps belong to another pipeline.
            .do_timestamp(true)
            .max_bytes(1 << 20)
            .leaky_type(gst_app::AppLeakyType::Downstream)
            .build();
        pipeline.add(&source)?;
        if kind == MediaKind::Video {
            pass_keyframe_requests(&source, self.encoder.video_out.clone());
        }
        outputs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((source.clone(), ssrc));
        Ok(source.upcast())
    }
}

/// Sends the keyframe requests (PLIs) that reach a bot's source on to the
/// shared encoder, as a bot's own encoder would answer them: a new
/// subscriber of a load participant then starts within a frame or two, not
/// at the next periodic keyframe. Every bot sharing the encoding sends that
/// keyframe.
fn pass_keyframe_requests(source: &gst_app::AppSrc, encoder_out: gst::Pad) {
    let Some(pad) = source.static_pad("src") else {
        return;
    };
    pad.add_probe(gst::PadProbeType::EVENT_UPSTREAM, move |_, info| {
        if let Some(event) = info.event()
            && crate::media::webrtc::is_keyframe_request(event)
        {
            encoder_out.push_event(event.clone());
        }
        gst::PadProbeReturn::Ok
    });
}

/// Copies a packet to every bot under its SSRC; bots whose pipeline stopped
/// are dropped from the list.
fn fan_out(buffer: &gst::BufferRef, outputs: &Outputs) {
    let Ok(map) = buffer.map_readable() else {
        return;
    };
    let mut outputs = outputs.lock().unwrap_or_else(|e| e.into_inner());
    outputs.retain(|(source, ssrc)| {
        let mut packet = map.to_vec();
        rtp::set_ssrc(&mut packet, *ssrc);
        source
            .push_buffer(gst::Buffer::from_mut_slice(packet))
            .is_ok()
    });
}
