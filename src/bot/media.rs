//! The bot's pipeline: one encoding of its picture and one of its tone (or
//! a share of an encoding made once for many bots), fanned out to every peer
//! connection it has; what it receives is decoded (receive.rs) or only
//! counted (traffic.rs).

use super::BotConfig;
use super::receive::{Receivers, link_receiver};
use super::timecode;
use super::traffic::Traffic;
use crate::media::certificate::DtlsCertificate;
use crate::media::forward::ForwardGate;
use crate::media::members::discard_pad;
use crate::media::pads;
use crate::media::sdp::{
    AUDIO_LEVEL_EXTENSION, MID_EXTENSION, MediaKind, MediaLine, summarize_offer,
};
use crate::media::webrtc::{self, WebrtcSettings};
use anyhow::{Result, anyhow};
use gst::prelude::*;
use gst_webrtc::{WebRTCRTPTransceiverDirection, WebRTCSessionDescription};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub const VIDEO_PT: u8 = 96;
pub const AUDIO_PT: u8 = 111;

/// The payload type numbers a bot gives its codecs, as another WebRTC stack
/// might number them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayloadTypes {
    pub opus: u8,
    pub vp8: u8,
}

impl Default for PayloadTypes {
    /// Chrome's numbers.
    fn default() -> Self {
        PayloadTypes {
            opus: AUDIO_PT,
            vp8: VIDEO_PT,
        }
    }
}

impl PayloadTypes {
    /// `opus=96,vp8=97`: either or both, any order.
    pub fn parse(text: &str) -> Result<PayloadTypes, String> {
        let mut types = PayloadTypes::default();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let bad = || format!("\"{part}\" is not codec=number (opus=96, vp8=97)");
            let (codec, number) = part.split_once('=').ok_or_else(bad)?;
            let number: u8 = number.trim().parse().map_err(|_| bad())?;
            if !(96..=127).contains(&number) {
                return Err(format!("{number} is not a dynamic payload type (96-127)"));
            }
            match codec.trim().to_ascii_lowercase().as_str() {
                "opus" => types.opus = number,
                "vp8" => types.vp8 = number,
                _ => return Err(bad()),
            }
        }
        if types.opus == types.vp8 {
            return Err("Opus and VP8 need different payload types".to_owned());
        }
        Ok(types)
    }

    pub fn of(self, kind: MediaKind) -> u8 {
        match kind {
            MediaKind::Video => self.vp8,
            _ => self.opus,
        }
    }
}
pub const AUDIO_RATE: u32 = 48000;

/// The stream key of the MCU composite, which has no participant of its own.
pub const COMPOSITE: &str = "composite";

/// The m-line of the remote description a webrtcbin src pad belongs to.
fn remote_line_of_pad(webrtc: &gst::Element, pad: &gst::Pad) -> Option<MediaLine> {
    let mid = webrtc::pad_transceiver(pad)?.mid()?.to_string();
    let remote =
        webrtc.property::<Option<WebRTCSessionDescription>>("current-remote-description")?;
    let summary = summarize_offer(&webrtc::description_text(&remote)).ok()?;
    summary
        .media
        .into_iter()
        .find(|m| m.mid.as_deref() == Some(mid.as_str()))
}

/// The TURN servers of "joined" (those with credentials), as webrtcbin URIs.
fn turn_uris(ice_servers: &[crate::protocol::IceServer]) -> Vec<String> {
    let mut uris = Vec::new();
    for server in ice_servers {
        let (Some(username), Some(password)) = (&server.username, &server.credential) else {
            continue;
        };
        let credentials = crate::turn::TurnCredentials {
            username: username.clone(),
            password: password.clone(),
        };
        for url in &server.urls {
            if url.starts_with("turn:") || url.starts_with("turns:") {
                uris.push(crate::turn::ice_server_uri(url, &credentials));
            }
        }
    }
    uris
}

/// How a receiving connection tells whose stream a new pad carries.
#[derive(Clone)]
pub enum StreamOwner {
    /// Everything on this connection comes from one sender.
    Fixed(String),
    /// SFU subscribe connection: the a=msid stream id of the pad's m-line.
    ByMsid,
    /// A connection the bot only sends on: anything received is discarded.
    Nobody,
}

/// The size and rate of what a bot sends.
const WIDTH: u32 = 640;
const HEIGHT: u32 = 360;

/// The launch description of a bot's video: 640x360 at 30 fps from
/// videotestsrc with `pattern` (its properties), through an identity named
/// "picture" (where a timecode is drawn), VP8 with realtime settings and a
/// keyframe every `keyframe_interval` frames unless asked, payloaded.
pub(super) fn video_encoding(pattern: &str, keyframe_interval: u32, pt: u8) -> String {
    format!(
        "videotestsrc is-live=true {pattern} \
         ! video/x-raw,format=I420,width={WIDTH},height={HEIGHT},framerate=30/1 ! identity name=picture \
         ! vp8enc deadline=1 cpu-used=8 lag-in-frames=0 target-bitrate=600000 \
           end-usage=cbr keyframe-max-dist={keyframe_interval} error-resilient=partitions \
         ! rtpvp8pay pt={pt} picture-id-mode=15-bit ! capsfilter caps=\"{}\"",
        webrtc::rtp_caps(MediaKind::Video, pt)
    )
}

/// A busy camera's picture: a zone plate that moves every frame, detail
/// everywhere and no two frames alike, yet libvpx's rate control holds it
/// to its target (noise, "snow", it overshoots eightfold).
pub(super) const BUSY_PATTERN: &str = "pattern=zone-plate kx2=20 ky2=20 kt=1";

/// Receiver reports about once a second, as browsers send them for video:
/// rtpsession's default minimum is RFC 3550's 5 s, which on AVPF becomes a
/// report every 2.5 to 7.5 s, and a server that adapts to its receivers'
/// links would see a GStreamer receiver's link far later than a browser's.
fn report_every_second(webrtc: &gst::Element) {
    let Some(rtpbin) = webrtc::rtpbin_of(webrtc).and_then(|b| b.downcast::<gst::Bin>().ok()) else {
        return;
    };
    rtpbin.connect_element_added(|_, element| {
        if element.factory().is_some_and(|f| f.name() == "rtpsession") {
            element.set_property("rtcp-min-interval", gst::ClockTime::SECOND.nseconds());
        }
    });
}

/// How loud a bot's tone is unless told otherwise (about -13.5 dBov: a
/// voice close to the microphone).
pub const TONE_VOLUME: f64 = 0.3;

/// The launch description of a bot's audio: a `tone_hz` sine at `volume`
/// (0 to 1), through an identity named "sound" (where pulses are cut), in
/// Opus.
/// The id under which the bot puts each audio packet's level (RFC 6464),
/// as browsers do, in what it offers and what it sends.
pub const AUDIO_LEVEL_ID: u8 = 1;

/// The caps of the bot's audio packets: Opus at `pt`, with their levels.
/// The extension is written the way rtpopuspay writes it into its caps
/// once it has added it (direction, URI, attributes), or the two would not
/// match; webrtcbin offers it from these caps.
pub fn audio_send_caps(pt: u8) -> gst::Caps {
    let mut caps = webrtc::rtp_caps(MediaKind::Audio, pt);
    if let Some(structure) = caps.make_mut().structure_mut(0) {
        structure.set(
            format!("extmap-{AUDIO_LEVEL_ID}"),
            gst::Array::new(["", AUDIO_LEVEL_EXTENSION, "vad=on"]),
        );
    }
    caps
}

/// The `level` measures each buffer into a GstAudioLevelMeta, which the
/// payloader (which adds the extension itself, from the caps downstream)
/// writes into each packet.
pub(super) fn audio_encoding(tone_hz: f64, volume: f64, pt: u8) -> String {
    format!(
        "audiotestsrc name=tone is-live=true wave=sine freq={tone_hz} volume={volume} samplesperbuffer=960 \
         ! audio/x-raw,format=S16LE,rate={AUDIO_RATE},channels=1 ! identity name=sound \
         ! audioconvert ! audioresample ! level audio-level-meta=true post-messages=false \
         ! opusenc frame-size=20 ! rtpopuspay pt={pt} ! capsfilter name={AUDIO_CAPS}"
    )
}

/// The name of the capsfilter that ends `audio_encoding`, whose caps
/// `set_audio_caps` sets (an array in caps does not survive being written
/// into a launch line).
const AUDIO_CAPS: &str = "audio-send-caps";

/// Sets the caps at the end of a chain built from `audio_encoding`.
pub(super) fn set_audio_caps(chain: &gst::Bin, pt: u8) -> Result<()> {
    chain
        .by_name(AUDIO_CAPS)
        .ok_or_else(|| anyhow!("the audio chain has no {AUDIO_CAPS}"))?
        .set_property("caps", audio_send_caps(pt));
    Ok(())
}

/// The bot's media: the pipeline, its encodings and what it receives.
pub struct BotMedia {
    pub pipeline: gst::Pipeline,
    video_tee: Option<gst::Element>,
    audio_tee: Option<gst::Element>,
    /// While set, no video is sent (the server paused it).
    video_paused: Arc<AtomicBool>,
    pub receivers: Receivers,
    pub traffic: Traffic,
    /// Decode what is received (false: only count it).
    decode: bool,
    settings: WebrtcSettings,
    payload_types: PayloadTypes,
}

/// A peer connection and the elements that belong only to it.
pub struct PeerLink {
    pub webrtc: gst::Element,
    /// What carries the shared encodings to it (a queue, and a payload
    /// type rewrite where the peer numbers the codec differently), with
    /// the tee pads feeding them.
    senders: Vec<(Vec<gst::Element>, gst::Pad)>,
}

impl BotMedia {
    pub fn build(
        config: &BotConfig,
        id: &str,
        ice_servers: &[crate::protocol::IceServer],
    ) -> Result<BotMedia> {
        let pipeline = gst::Pipeline::with_name(&format!("bot-{id}"));
        // Its own SSRC when it sends a share of a common encoding.
        let ssrc = rand_ssrc(id);
        let video_tee = if !config.send_video {
            None
        } else if let Some(shared) = &config.shared_encoding {
            Some(add_tee_after(
                &pipeline,
                shared.source(&pipeline, MediaKind::Video, ssrc)?,
                "video-tee",
            )?)
        } else {
            let pattern = if config.timecode_origin.is_some() || config.av_pulses {
                "pattern=black".to_owned()
            } else if config.busy_video {
                BUSY_PATTERN.to_owned()
            } else {
                format!(
                    "pattern=solid-color foreground-color={}",
                    0xff00_0000u32 | config.colour
                )
            };
            let chain = gst::parse::bin_from_description(
                &video_encoding(
                    &pattern,
                    config.keyframe_interval_frames,
                    config.payload_types.vp8,
                ),
                true,
            )?;
            if let Some(origin) = config.timecode_origin {
                draw_timecodes(&chain, origin)?;
            } else if config.av_pulses {
                flash_pulses(&chain)?;
            }
            pipeline.add(&chain)?;
            Some(add_tee_after(&pipeline, chain.upcast(), "video-tee")?)
        };
        let audio_tee = if !config.send_audio {
            None
        } else if let Some(shared) = config
            .shared_encoding
            .as_ref()
            .filter(|_| !config.own_audio)
        {
            Some(add_tee_after(
                &pipeline,
                shared.source(&pipeline, MediaKind::Audio, ssrc.wrapping_add(1))?,
                "audio-tee",
            )?)
        } else {
            let chain = gst::parse::bin_from_description(
                &audio_encoding(
                    config.tone_hz,
                    config.tone_volume,
                    config.payload_types.opus,
                ),
                true,
            )?;
            set_audio_caps(&chain, config.payload_types.opus)?;
            if config.av_pulses {
                sound_pulses(&chain)?;
            }
            pipeline.add(&chain)?;
            Some(add_tee_after(&pipeline, chain.upcast(), "audio-tee")?)
        };
        let video_paused = Arc::new(AtomicBool::new(false));
        if let Some(tee) = &video_tee {
            gate_buffers(tee, video_paused.clone())?;
        }
        Ok(BotMedia {
            pipeline,
            video_tee,
            audio_tee,
            video_paused,
            receivers: Receivers::new(
                config.on_frame.clone().map(|o| o.0),
                config.keyframe_requests_every,
            ),
            traffic: Traffic::default(),
            decode: config.decode,
            payload_types: config.payload_types,
            settings: WebrtcSettings {
                jitter_latency_ms: 60,
                stun_server: None,
                ice_addresses: config.ice_addresses.clone(),
                turn_uris: turn_uris(ice_servers),
                relay_only: config.relay_only,
                // Its own, as a browser has.
                certificate: Some(std::sync::Arc::new(DtlsCertificate::generate()?)),
                ..WebrtcSettings::default()
            },
        })
    }

    /// How its webrtcbins are made.
    pub fn settings(&self) -> &WebrtcSettings {
        &self.settings
    }

    /// Renewed TURN credentials, for the webrtcbins made from now on
    /// (those already connected keep their allocations).
    pub fn set_ice_servers(&mut self, ice_servers: &[crate::protocol::IceServer]) {
        self.settings.turn_uris = turn_uris(ice_servers);
    }

    /// Stops or resumes sending video, as a browser sets its sender
    /// inactive: the encoding goes on, its packets are not sent. Resumed,
    /// it starts on a keyframe, as a browser's re-activated sender does.
    pub fn set_video_paused(&self, paused: bool) {
        self.video_paused.store(paused, Ordering::Relaxed);
        if !paused && let Some(pad) = self.video_tee.as_ref().and_then(|t| t.static_pad("sink")) {
            pad.push_event(webrtc::keyframe_request(None));
        }
    }

    /// Its own tone at `volume` from now on.
    pub fn set_tone_volume(&self, volume: f64) -> Result<()> {
        let tone = self
            .pipeline
            .by_name("tone")
            .ok_or_else(|| anyhow!("this bot sends no tone of its own"))?;
        tone.set_property("volume", volume.clamp(0.0, 1.0));
        Ok(())
    }

    pub fn sends_anything(&self) -> bool {
        self.video_tee.is_some() || self.audio_tee.is_some()
    }

    /// A new webrtcbin named `name`, whose received streams belong to `owner`.
    pub fn add_connection(&self, name: &str, owner: StreamOwner) -> Result<PeerLink> {
        let webrtc = webrtc::make_webrtcbin(name, &self.settings)?;
        report_every_second(&webrtc);
        self.pipeline.add(&webrtc)?;
        let receivers = self.receivers.clone();
        let traffic = self.traffic.clone();
        let decode = self.decode;
        webrtc.connect_pad_added(move |webrtc, pad| {
            if pad.direction() != gst::PadDirection::Src {
                return;
            }
            let line = remote_line_of_pad(webrtc, pad);
            let stream = match &owner {
                StreamOwner::Fixed(stream) => Some(stream.clone()),
                StreamOwner::ByMsid => line.as_ref().and_then(|l| l.stream_id.clone()),
                StreamOwner::Nobody => None,
            };
            let video = webrtc::rtp_media_of(pad).as_deref() == Some("video");
            if let Some(stream) = &stream {
                // The bot answers with the offer's id for the extension.
                let mid_extension = line.as_ref().and_then(|l| l.extmap_id(MID_EXTENSION));
                traffic.count_received(pad, stream, video, mid_extension);
            }
            let linked = decode
                && stream
                    .is_some_and(|stream| link_receiver(webrtc, pad, &stream, &receivers).is_ok());
            if !linked {
                discard_pad(webrtc, pad, None);
            }
        });
        webrtc.sync_state_with_parent()?;
        Ok(PeerLink {
            webrtc,
            senders: Vec::new(),
        })
    }

    /// Offerer side: one m-line per kind, sending what the bot sends
    /// (`direction` for those) and receiving the rest if `receive` is set.
    pub fn offer_lines(
        &self,
        link: &mut PeerLink,
        direction: WebRTCRTPTransceiverDirection,
        receive: bool,
    ) -> Result<()> {
        for (tee, kind) in [
            (&self.video_tee, MediaKind::Video),
            (&self.audio_tee, MediaKind::Audio),
        ] {
            let caps = webrtc::rtp_caps(kind, self.payload_types.of(kind));
            match tee {
                Some(tee) => {
                    let transceiver = self.attach_sender(link, tee, "sink_%u", direction, None)?;
                    // The offer must not wait for caps to reach the pad: a
                    // share of a common encoding brings them only with its
                    // first packet, and an m-line without caps is left out.
                    transceiver.set_codec_preferences(Some(&caps));
                }
                None if receive => {
                    link.webrtc
                        .emit_by_name::<gst_webrtc::WebRTCRTPTransceiver>(
                            "add-transceiver",
                            &[&WebRTCRTPTransceiverDirection::Recvonly, &caps],
                        );
                }
                None => {}
            }
        }
        Ok(())
    }

    /// Answerer side (mesh): after the remote offer is set, sends what the
    /// bot has on every offered m-line whose offerer wants to receive it.
    pub fn answer_lines(
        &self,
        link: &mut PeerLink,
        offer: &WebRTCSessionDescription,
    ) -> Result<()> {
        let summary =
            summarize_offer(&webrtc::description_text(offer)).map_err(|e| anyhow!("{e}"))?;
        for line in summary
            .media
            .iter()
            .filter(|l| !l.rejected && l.direction.client_receives())
        {
            let tee = match line.kind {
                MediaKind::Video => &self.video_tee,
                MediaKind::Audio => &self.audio_tee,
                MediaKind::Other => &None,
            };
            if let Some(tee) = tee {
                let direction = if line.direction.client_sends() {
                    WebRTCRTPTransceiverDirection::Sendrecv
                } else {
                    WebRTCRTPTransceiverDirection::Sendonly
                };
                // Sent at the payload type the offer gave the codec.
                let pt = line.payload_type;
                self.attach_sender(link, tee, &format!("sink_{}", line.index), direction, pt)?;
            }
        }
        Ok(())
    }

    /// Feeds `tee` to a new sink pad of the connection, at payload type
    /// `send_pt` if given; returns its transceiver.
    fn attach_sender(
        &self,
        link: &mut PeerLink,
        tee: &gst::Element,
        pad_name: &str,
        direction: WebRTCRTPTransceiverDirection,
        send_pt: Option<u8>,
    ) -> Result<gst_webrtc::WebRTCRTPTransceiver> {
        let video = self.video_tee.as_ref() == Some(tee);
        let kind = if video {
            MediaKind::Video
        } else {
            MediaKind::Audio
        };
        let queue = gst::ElementFactory::make("queue")
            .name(format!("{}-{}-queue", link.webrtc.name(), tee.name()))
            .property_from_str("leaky", "downstream")
            .build()?;
        self.pipeline.add(&queue)?;
        let mut elements = vec![queue.clone()];
        let mut out = pads::static_pad(&queue, "src")?;
        // A peer that numbers the codec otherwise (Firefox: VP8 120, Opus
        // 109) gets caps and packets at its numbers.
        if let Some(pt) = send_pt.filter(|&pt| pt != self.payload_types.of(kind)) {
            let gate = ForwardGate::new(
                &format!("{}-{}-pt", link.webrtc.name(), tee.name()),
                Arc::new(AtomicBool::new(true)),
                false,
                pt,
                || webrtc::keyframe_request(None),
            );
            gate.state.set_negotiated(pt, None);
            self.pipeline.add(&gate.element)?;
            out.link(&pads::static_pad(&gate.element, "sink")?)?;
            out = pads::static_pad(&gate.element, "src")?;
            gate.element.sync_state_with_parent()?;
            elements.push(gate.element);
        }
        let sink = link
            .webrtc
            .request_pad_simple(pad_name)
            .ok_or_else(|| anyhow!("webrtcbin gave no {pad_name} pad"))?;
        out.link(&sink)?;
        let transceiver = webrtc::pad_transceiver(&sink)
            .ok_or_else(|| anyhow!("{pad_name} has no transceiver"))?;
        transceiver.set_direction(direction);
        if let Some(pt) = send_pt {
            // webrtcbin would otherwise ask upstream for caps, which carry
            // the bot's own numbering, and answer this m-line recvonly.
            transceiver.set_codec_preferences(Some(&webrtc::rtp_caps(kind, pt)));
        }
        queue.sync_state_with_parent()?;
        if let Some(out) = queue.static_pad("src") {
            self.traffic.count_sent(&out);
        }
        send_once_connected(&pads::static_pad(&queue, "sink")?, &link.webrtc, video);
        let tee_pad = pads::branch_tee(tee, &queue)?;
        link.senders.push((elements, tee_pad));
        Ok(transceiver)
    }

    /// Takes a peer connection out of the pipeline; the elements are
    /// returned to be set to NULL, the webrtcbin first.
    pub fn remove_connection(&self, link: PeerLink) -> Vec<gst::Element> {
        let mut stopped = vec![link.webrtc.clone()];
        let _ = self.pipeline.remove(&link.webrtc);
        let receive_prefix = format!("{}-receive-", link.webrtc.name());
        for chain in self.pipeline.children() {
            if chain.name().starts_with(&receive_prefix) {
                let _ = self.pipeline.remove(&chain);
                stopped.push(chain);
            }
        }
        for (elements, tee_pad) in link.senders {
            if let Some(tee) = tee_pad.parent_element() {
                tee.release_request_pad(&tee_pad);
            }
            for element in elements {
                let _ = self.pipeline.remove(&element);
                stopped.push(element);
            }
        }
        stopped
    }
}

/// Adds a tee after `source` (already in the pipeline) that fans it out to
/// connections.
fn add_tee_after(
    pipeline: &gst::Pipeline,
    source: gst::Element,
    tee_name: &str,
) -> Result<gst::Element> {
    let tee = gst::ElementFactory::make("tee")
        .name(tee_name)
        .property("allow-not-linked", true)
        .build()?;
    pipeline.add(&tee)?;
    source.link(&tee)?;
    Ok(tee)
}

/// Drops what reaches `tee` while `shut` is set.
fn gate_buffers(tee: &gst::Element, shut: Arc<AtomicBool>) -> Result<()> {
    let pad = tee
        .static_pad("sink")
        .ok_or_else(|| anyhow!("tee has no sink pad"))?;
    pad.add_probe(
        gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST,
        move |_, info| {
            if shut.load(Ordering::Relaxed) {
                pads::discard(info)
            } else {
                gst::PadProbeReturn::Ok
            }
        },
    );
    Ok(())
}

/// Draws, into every frame leaving the chain's "picture" element, the
/// milliseconds since `origin` as timecode blocks (see timecode.rs).
fn draw_timecodes(chain: &gst::Bin, origin: Instant) -> Result<()> {
    let pad = output_of(chain, "picture")?;
    // I420: the luma plane comes first, rows rounded up to 4 bytes.
    let stride = WIDTH.next_multiple_of(4) as usize;
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        if let Some(gst::PadProbeData::Buffer(buffer)) = &mut info.data
            && let Ok(mut map) = buffer.make_mut().map_writable()
        {
            let ms = origin.elapsed().as_millis() as u32;
            timecode::draw(&mut map, WIDTH, HEIGHT, stride, ms);
        }
        gst::PadProbeReturn::Ok
    });
    Ok(())
}

/// Drops what reaches a connection's sender queue until the connection is
/// up, as a browser sends nothing before then. Otherwise webrtcbin holds it
/// until DTLS is done and sends it in one stale burst (as much as the queue
/// keeps, a second), which the receiver's jitter buffers take seconds to
/// learn: a bot's sound was then up to 300 ms off its picture at first. The
/// first video let through asks the encoder for a keyframe, to start with.
fn send_once_connected(queue_sink: &gst::Pad, connection: &gst::Element, video: bool) {
    let connection = connection.downgrade();
    queue_sink.add_probe(
        gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST,
        move |pad, info| {
            if !connection
                .upgrade()
                .is_some_and(|c| webrtc::is_connected(&c))
            {
                return pads::discard(info);
            }
            if video {
                pad.push_event(webrtc::keyframe_request(None));
            }
            gst::PadProbeReturn::Remove
        },
    );
}

/// With `av_pulses`, a bot flashes white and sounds its tone for
/// `PULSE_LENGTH` at the start of every `PULSE_PERIOD` of running time, and
/// sends black and silence in between. Both sources take their timestamps
/// from the one pipeline clock, so the flash and the sound start together.
pub const PULSE_PERIOD: Duration = Duration::from_secs(1);
pub const PULSE_LENGTH: Duration = Duration::from_millis(200);

/// Whether running time `t` (ns) falls in a pulse.
fn in_pulse(t: u64) -> bool {
    t % (PULSE_PERIOD.as_nanos() as u64) < PULSE_LENGTH.as_nanos() as u64
}

/// The pad where a chain's element `name` hands on its buffers.
fn output_of(chain: &gst::Bin, name: &str) -> Result<gst::Pad> {
    chain
        .by_name(name)
        .and_then(|p| p.static_pad("src"))
        .ok_or_else(|| anyhow!("the chain has no {name} element"))
}

/// Turns the (black) frames that start in a pulse white.
fn flash_pulses(chain: &gst::Bin) -> Result<()> {
    // I420: the luma plane comes first, rows rounded up to 4 bytes; black
    // with a white luma is white.
    let luma = WIDTH.next_multiple_of(4) as usize * HEIGHT as usize;
    output_of(chain, "picture")?.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        if let Some(gst::PadProbeData::Buffer(buffer)) = &mut info.data
            && buffer.pts().is_some_and(|pts| in_pulse(pts.nseconds()))
            && let Ok(mut map) = buffer.make_mut().map_writable()
        {
            let end = luma.min(map.len());
            map[..end].fill(235);
        }
        gst::PadProbeReturn::Ok
    });
    Ok(())
}

/// Silences every sample outside a pulse (S16LE mono at AUDIO_RATE).
fn sound_pulses(chain: &gst::Bin) -> Result<()> {
    output_of(chain, "sound")?.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        if let Some(gst::PadProbeData::Buffer(buffer)) = &mut info.data
            && let Some(pts) = buffer.pts()
            && let Ok(mut map) = buffer.make_mut().map_writable()
        {
            for (i, sample) in map.chunks_exact_mut(2).enumerate() {
                let offset = i as u64 * 1_000_000_000 / u64::from(AUDIO_RATE);
                if !in_pulse(pts.nseconds() + offset) {
                    sample.fill(0);
                }
            }
        }
        gst::PadProbeReturn::Ok
    });
    Ok(())
}

/// An SSRC for a bot, different for every bot id.
fn rand_ssrc(id: &str) -> u32 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(id) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_type_numbers_parse_as_codec_equals_number() {
        assert_eq!(
            PayloadTypes::parse("opus=96,vp8=97"),
            Ok(PayloadTypes { opus: 96, vp8: 97 })
        );
        assert_eq!(
            PayloadTypes::parse(" VP8=120 "),
            Ok(PayloadTypes {
                opus: 111,
                vp8: 120
            })
        );
        for bad in [
            "opus",
            "opus=x",
            "h264=100",
            "opus=8",
            "opus=96,vp8=96",
            "vp8=200",
        ] {
            assert!(PayloadTypes::parse(bad).is_err(), "{bad}");
        }
    }
}
