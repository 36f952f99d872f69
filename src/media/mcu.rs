//! The MCU room pipeline: every participant's video decoded into one grid,
//! encoded once and sent to all; every participant's audio decoded, and the
//! few loudest voices mixed: one mix of them all for everyone else, and one
//! for each of them without their own voice (top-k, media/mixes.rs).
//!
//! ```text
//! background ─┐
//! P1 placeholder (a still picture) ─┤
//! P1 webrtc ─ gate ─ video-decode ─┤ compositor ─ canvas caps ─ captions ─ raw-tee ─ (a rung of the ladder) ─ selector ─ queue ─ rtpvp8pay ─ P1 webrtc
//! P2 ...                           ┘                       (encode_ladder.rs)  ─ selector ─ queue ─ rtpvp8pay ─ P2 webrtc
//! P1 webrtc ─ audio-gate ─ audio-decode ─ level ─ P1 audio-tee ─ (the mixes, media/mixes.rs) ─ queue ─ rtpopuspay ─ P2 webrtc
//! ```
//!
//! The captions are a row of text overlays between the canvas caps and
//! raw-tee (media/captions.rs), drawing each tile's name unless the room
//! turned them off. While a recording runs, a full mix of everyone
//! (media/program.rs) is fed from each audio-tee, and recordings tap
//! raw-tee, video-tee and that mix.
//!
//! Owned by the room task. GStreamer callbacks only link a new webrtcbin src
//! pad to the decode chain prepared for it (it must be linked at once) and
//! post `MediaEvent`s; all other changes happen on the room task.
//! Element names start with "<participant id>/" so a bus message can be
//! traced to the participant it concerns.

use crate::ids::{ParticipantId, RoomId};
use crate::media::adaptation::Adaptation;
use crate::media::backend::{MediaOutput, MediaSignal, ReceiverRung, RoomMedia, connection_output};
use crate::media::caption_spots::{self, NamedTile};
use crate::media::captions::CaptionRow;
use crate::media::encode_ladder::{EncodeLadder, RungFeed};
use crate::media::events::MediaEvent;
use crate::media::ladder::Ladder;
use crate::media::layout::Placement;
use crate::media::levels;
use crate::media::members::{self, Owners};
use crate::media::mixes::Mixes;
use crate::media::mixing::{self, PLACEHOLDER_ARGB};
use crate::media::pads;
use crate::media::peer::{Peer, Role, Step, StepFailure};
use crate::media::program::{Feeds, McuProgram, leaky_buffer_queue};
use crate::media::rung_control::Switch;
use crate::media::sdp::{CheckedOffer, MediaKind, MediaLine};
use crate::media::templates::{Chain, PipelineTemplates};
use crate::media::webrtc::{self, WebrtcSettings};
use crate::protocol::{ErrorCode, PeerConnection, ProtocolError, Quality, ServerMessage};
use anyhow::{Context, Result, anyhow};
use gst::prelude::*;
use gst_webrtc::{WebRTCPeerConnectionState, WebRTCRTPTransceiverDirection};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;

/// The composite's size and rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Canvas {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
}

impl Default for Canvas {
    fn default() -> Self {
        Canvas {
            width: 1280,
            height: 720,
            fps: 30,
        }
    }
}

#[derive(Debug, Clone)]
pub struct McuSettings {
    pub canvas: Canvas,
    pub webrtc: WebrtcSettings,
    pub templates: Arc<PipelineTemplates>,
    /// Minimum time between two keyframes forced on the shared encoder.
    pub keyframe_interval: Duration,
    /// Most participants on the composite at once (`--max-visible`).
    pub max_visible: usize,
    /// Most voices mixed at once (`--max-mixed-speakers`).
    pub max_mixed_speakers: usize,
    /// The encodings of the composite receivers choose from (`--ladder`).
    pub ladder: Ladder,
}

struct Member {
    id: ParticipantId,
    /// As written on its tile (captions).
    name: String,
    /// The publish connection: the client offers, the server answers.
    peer: Peer,
    placeholder_pad: gst::Pad,
    video_pad: gst::Pad,
    /// Shut while the participant is off the composite: its video is
    /// dropped before the decoder (last-N).
    video_gate: gst::Element,
    video_paused: bool,
    /// Shut while the participant's voice is in no mix and their packets
    /// say how loud they are (RFC 6464): it is then not decoded at all.
    audio_gate: gst::Element,
    audio_gated: bool,
    rtp_levels: Arc<levels::RtpLevels>,
    audio_tee: gst::Element,
    /// What feeds this participant's copy of the composite: a rung of the
    /// ladder.
    video_feed: Option<RungFeed>,
    /// Which rung its link carries, from its receiver reports.
    adaptation: Option<Adaptation>,
    /// The best rung the participant asked for (`quality`).
    quality: Quality,
    /// The audio and video m-lines of the offer being negotiated.
    offered: Vec<MediaLine>,
    /// Whether the first offer's media is attached: later offers (ICE
    /// restarts, renegotiations) are answered on the media that is there.
    attached: bool,
}

pub struct McuMixer {
    room: RoomId,
    pipeline: gst::Pipeline,
    compositor: gst::Element,
    /// The composite before encoding, for recordings that encode their own.
    raw_tee: gst::Element,
    /// Participants whose connection is up: they receive the composite.
    connected: std::collections::HashSet<ParticipantId>,
    /// The composite's encoders, one per rung.
    encoders: EncodeLadder,
    settings: McuSettings,
    /// What each listener hears (top-k audio).
    mixes: Mixes,
    /// The full mix, while any recording runs.
    program: Option<McuProgram>,
    /// Names on the tiles (one overlay per tile that may be shown).
    captions: CaptionRow,
    /// Who is where on the composite, as last arranged.
    placements: Vec<Placement<ParticipantId>>,
    /// Whether the tiles get names (the room's layout says).
    captions_shown: bool,
    events: UnboundedSender<MediaEvent>,
    members: Vec<Member>,
    /// Whose each participant element is.
    owners: Owners,
    outputs: Vec<MediaOutput>,
    /// What the rung controllers' clocks count from.
    started: Instant,
    /// When receivers' reports were last read.
    reports_read: Instant,
}

/// How often receivers' reports are read: they come about once a second,
/// and a report read late delays a step down by as much.
const REPORT_READING: Duration = Duration::from_millis(250);

fn media_failed(what: &str, e: &anyhow::Error) -> ProtocolError {
    ProtocolError::new(
        ErrorCode::MediaFailed,
        format!("{what}: {e:#}. You have been removed from the room."),
    )
}

impl McuMixer {
    pub fn new(
        room: &RoomId,
        settings: McuSettings,
        events: UnboundedSender<MediaEvent>,
    ) -> Result<Self> {
        let pipeline = gst::Pipeline::with_name(&format!("mcu-{room}"));
        let compositor = mixing::live_compositor(
            "compositor",
            mixing::mixer_latency(settings.webrtc.jitter_latency_ms),
        )?;
        let canvas_caps = mixing::canvas_caps("canvas", settings.canvas)?;
        let tee = |name: &str| {
            gst::ElementFactory::make("tee")
                .name(name)
                .property("allow-not-linked", true)
                .build()
        };
        let raw_tee = tee("raw-tee")?;
        let captions = CaptionRow::new("", settings.max_visible)?;
        pipeline.add_many([&compositor, &canvas_caps, &raw_tee])?;
        mixing::add_background(
            pipeline.upcast_ref(),
            &compositor,
            "background",
            settings.canvas.fps,
        )?;
        compositor.link(&canvas_caps)?;
        captions.insert(&pipeline, &canvas_caps, &raw_tee)?;
        // Shut until someone receives a rung (or a recording wants the
        // top one): a room of joins that never connect media costs no
        // encoding (ten of them used to keep two cores busy).
        let encoders = EncodeLadder::build(
            &pipeline,
            &raw_tee,
            (settings.canvas.width, settings.canvas.height),
            &settings.ladder,
            &settings.templates,
            settings.keyframe_interval,
        )?;

        pipeline
            .set_state(gst::State::Playing)
            .context("starting the room pipeline")?;
        Ok(McuMixer {
            room: room.clone(),
            pipeline,
            compositor,
            raw_tee,
            connected: Default::default(),
            encoders,
            mixes: Mixes::new(
                mixing::mixer_latency(settings.webrtc.jitter_latency_ms),
                settings.templates.clone(),
            ),
            settings,
            program: None,
            captions,
            placements: Vec::new(),
            captions_shown: true,
            events,
            members: Vec::new(),
            owners: Owners::default(),
            outputs: Vec::new(),
            started: Instant::now(),
            reports_read: Instant::now(),
        })
    }

    /// The rung controllers' clock.
    fn now(&self) -> Duration {
        self.started.elapsed()
    }

    /// Gives a new participant a tile and everything needed to receive their
    /// media; sending to them waits for their offer.
    fn add(&mut self, id: &ParticipantId, name: &str) -> Result<()> {
        let member = self
            .build_member(id, name)
            .with_context(|| format!("adding participant {id}"))?;
        self.members.push(member);
        let speaker_tee = self
            .members
            .last()
            .map(|m| m.audio_tee.clone())
            .expect("just pushed");
        if let Some(program) = self.program.as_mut()
            && let Err(e) = program.mix.add_decoded(&self.pipeline, id, &speaker_tee)
        {
            // The recording misses this voice; the call does not.
            tracing::warn!(participant = %id, "could not add to the recording mix: {e:#}");
        }
        Ok(())
    }

    fn build_member(&self, id: &ParticipantId, display_name: &str) -> Result<Member> {
        let name = |part: &str| format!("{id}/{part}");
        let fps = self.settings.canvas.fps as i32;

        let peer = Peer::new(
            &name("webrtc"),
            &self.settings.webrtc,
            id,
            PeerConnection::Publish,
            Role::Answerer,
            &self.events,
        )?;
        let webrtc = peer.element().clone();

        let video_gate = gst::ElementFactory::make("valve")
            .name(name("video-gate"))
            .build()?;
        let video_decode = self.settings.templates.build(Chain::VideoDecode)?;
        video_decode.set_property("name", name("video-decode"));
        let audio_gate = gst::ElementFactory::make("valve")
            .name(name("audio-gate"))
            .build()?;
        let rtp_levels = Arc::new(levels::RtpLevels::default());
        rtp_levels.watch(&pads::static_pad(&audio_gate, "sink")?, &audio_gate);
        let audio_decode = self.settings.templates.build(Chain::AudioDecode)?;
        audio_decode.set_property("name", name("audio-decode"));
        // How loud the voice is, for who speaks.
        let level = levels::level_meter(&name("level"))?;
        let audio_tee = gst::ElementFactory::make("tee")
            .name(name("audio-tee"))
            .property("allow-not-linked", true)
            .build()?;

        let elements = vec![
            webrtc.clone(),
            video_gate.clone(),
            video_decode.clone().upcast(),
            audio_gate.clone(),
            audio_decode.clone().upcast(),
            level.clone(),
            audio_tee.clone(),
        ];
        self.owners.add(self.pipeline.upcast_ref(), id, &elements)?;
        video_gate.link(&video_decode)?;
        gst::Element::link_many([&audio_gate, audio_decode.upcast_ref(), &level, &audio_tee])?;

        // Off the composite until the room's layout places it.
        let placeholder_pad = self.request_compositor_pad(1)?;
        mixing::show_still(
            &placeholder_pad,
            &name("placeholder"),
            PLACEHOLDER_ARGB,
            fps,
        )?;
        let video_pad = self.request_compositor_pad(2)?;
        mixing::hide_tile([&placeholder_pad, &video_pad]);
        video_decode
            .static_pad("src")
            .ok_or_else(|| anyhow!("video-decode chain has no src pad"))?
            .link(&video_pad)?;

        members::link_received_tracks(
            &webrtc,
            &video_gate,
            &audio_gate,
            &self.owners,
            id,
            &self.events,
        );
        for element in elements.iter().rev() {
            element.sync_state_with_parent()?;
        }
        Ok(Member {
            id: id.clone(),
            name: display_name.to_owned(),
            peer,
            placeholder_pad,
            video_pad,
            video_gate,
            video_paused: false,
            audio_gate,
            audio_gated: false,
            rtp_levels,
            audio_tee,
            video_feed: None,
            adaptation: None,
            quality: Quality::default(),
            offered: Vec::new(),
            attached: false,
        })
    }

    fn request_compositor_pad(&self, zorder: u32) -> Result<gst::Pad> {
        mixing::request_tile_pad(&self.compositor, zorder)
    }

    fn member_mut(&mut self, id: &ParticipantId) -> Option<&mut Member> {
        self.members.iter_mut().find(|m| &m.id == id)
    }

    /// A client's offer on its publish connection: applied off the room's
    /// task, answered once applied (see `negotiated`).
    fn publish_offer(
        &mut self,
        id: &ParticipantId,
        offer: CheckedOffer,
    ) -> Result<(), ProtocolError> {
        let lines: Vec<MediaLine> = [MediaKind::Audio, MediaKind::Video]
            .into_iter()
            .filter_map(|kind| offer.summary.first(kind).cloned())
            .collect();
        offer.summary.check_usable(&lines)?;
        let member = self.member_mut(id).ok_or_else(not_joined)?;
        member.peer.receive_offer(&offer.text)?;
        member.offered = lines;
        Ok(())
    }

    /// A negotiation step of a participant's publish connection came back.
    fn negotiated(&mut self, id: &ParticipantId, result: Result<Step, StepFailure>) {
        let Some(member) = self.member_mut(id) else {
            return;
        };
        match member.peer.step_done(result) {
            Ok(Step::OfferApplied) => {
                if !member.attached {
                    let lines = member.offered.clone();
                    let webrtc = member.peer.element().clone();
                    for line in &lines {
                        if let Err(e) = self.attach_media_line(id, &webrtc, line) {
                            let error = media_failed("The server could not set up your media", &e);
                            self.outputs.push(MediaOutput::Failed(id.clone(), error));
                            return;
                        }
                    }
                }
                if let Some(member) = self.member_mut(id) {
                    member.peer.answer();
                }
            }
            Ok(Step::Answered(sdp)) => {
                tracing::info!(participant = %id, "publish offer answered");
                let first = !member.attached;
                member.attached = true;
                let receives_video = member
                    .offered
                    .iter()
                    .any(|l| l.kind == MediaKind::Video && l.direction.client_receives());
                self.outputs.push(MediaOutput::Send(
                    id.clone(),
                    ServerMessage::Answer { sdp, from: None },
                ));
                if first && receives_video {
                    self.ask_keyframe(id);
                }
            }
            Ok(Step::Offered(_) | Step::AnswerApplied) => {}
            Err(failure) => {
                tracing::info!(participant = %id, "publish negotiation failed: {}", failure.message);
                self.outputs.push(if failure.refused {
                    MediaOutput::Send(id.clone(), failure.to_error().to_message())
                } else {
                    MediaOutput::Failed(id.clone(), failure.to_error())
                });
            }
        }
    }

    /// Sets up the server's side of one offered m-line: what it sends on it,
    /// its direction, and the one codec it accepts.
    ///
    /// On 1.22 a remote offer creates no transceivers; requesting the pad
    /// `sink_<mline>` creates one bound to that m-line, and a receive-only
    /// transceiver added now is matched to the m-line by create-answer.
    fn attach_media_line(
        &mut self,
        id: &ParticipantId,
        webrtc: &gst::Element,
        line: &MediaLine,
    ) -> Result<()> {
        let Some(pt) = line.payload_type else {
            return Ok(());
        };
        // Levels in the client's audio packets, where it offers them, tell
        // who speaks without decoding (RFC 6464).
        let caps = webrtc::rtp_caps(line.kind, pt);
        let caps = match self.member_mut(id) {
            Some(member) => member.rtp_levels.answer_caps(line, caps),
            None => caps,
        };
        let direction = match (
            line.direction.client_sends(),
            line.direction.client_receives(),
        ) {
            (true, true) => WebRTCRTPTransceiverDirection::Sendrecv,
            (false, true) => WebRTCRTPTransceiverDirection::Sendonly,
            (true, false) => WebRTCRTPTransceiverDirection::Recvonly,
            (false, false) => WebRTCRTPTransceiverDirection::Inactive,
        };
        let transceiver = if line.direction.client_receives() {
            let sink = webrtc
                .request_pad_simple(&format!("sink_{}", line.index))
                .ok_or_else(|| anyhow!("webrtcbin gave no sink_{} pad", line.index))?;
            match line.kind {
                MediaKind::Video => self.attach_video_out(id, &sink, pt)?,
                _ => self.attach_mix(id, &sink, pt)?,
            }
            webrtc::pad_transceiver(&sink)
                .ok_or_else(|| anyhow!("sink_{} has no transceiver", line.index))?
        } else {
            webrtc.emit_by_name::<gst_webrtc::WebRTCRTPTransceiver>(
                "add-transceiver",
                &[&direction, &caps],
            )
        };
        transceiver.set_direction(direction);
        // Answer with exactly the codec gridmix speaks, at the client's payload type.
        transceiver.set_codec_preferences(Some(&caps));
        Ok(())
    }

    /// Feeds one participant the composite from the best rung it asked for.
    fn attach_video_out(&mut self, id: &ParticipantId, sink: &gst::Pad, pt: u8) -> Result<()> {
        let feed = RungFeed::new(id)?;
        let queue = leaky_buffer_queue(&format!("{id}/video-out-queue"), 60)?;
        let pay = gst::ElementFactory::make("rtpvp8pay")
            .name(format!("{id}/video-pay"))
            .property("pt", u32::from(pt))
            .property_from_str("picture-id-mode", "15-bit")
            .build()?;
        members::add_send_branch(&self.pipeline, &self.owners, id, [&queue, &pay], sink)?;
        let now = self.now();
        let selector = feed.selector();
        self.owners.add(
            self.pipeline.upcast_ref(),
            id,
            std::slice::from_ref(selector),
        )?;
        selector.link(&queue)?;
        selector.sync_state_with_parent()?;
        let ladder = self.encoders.ladder();
        let member = self
            .members
            .iter_mut()
            .find(|m| &m.id == id)
            .ok_or_else(|| anyhow!("participant {id} is gone"))?;
        member.video_feed = Some(feed);
        let cap = ladder.best_for(member.quality);
        member.adaptation = Some(Adaptation::new(
            pay,
            member.peer.element().clone(),
            ladder,
            cap,
            now,
        ));
        self.move_to_rung(id, cap)
    }

    /// Starts moving a receiver to `rung` (at its next keyframe).
    fn move_to_rung(&mut self, id: &ParticipantId, rung: usize) -> Result<()> {
        let events = self.events.clone();
        let Some(member) = self.members.iter_mut().find(|m| &m.id == id) else {
            return Ok(());
        };
        let Some(feed) = member.video_feed.as_mut() else {
            return Ok(());
        };
        feed.move_to(&self.encoders, rung, &events)?;
        self.update_encoding();
        self.encoders.ask_keyframe(rung);
        Ok(())
    }

    /// A keyframe for one receiver, on the rung that feeds it.
    fn ask_keyframe(&self, id: &ParticipantId) {
        let rung = self
            .members
            .iter()
            .find(|m| &m.id == id)
            .and_then(|m| m.video_feed.as_ref())
            .and_then(|feed| {
                let (current, pending) = feed.rungs();
                pending.or(current)
            });
        if let Some(rung) = rung {
            self.encoders.ask_keyframe(rung);
        }
    }

    /// What the participant asked for: the best rung it may be on. Before
    /// its video is attached, that is where it will start.
    fn set_quality(&mut self, id: &ParticipantId, quality: Quality) -> Result<(), ProtocolError> {
        let now = self.now();
        let cap = self.encoders.ladder().best_for(quality);
        let member = self.member_mut(id).ok_or_else(not_joined)?;
        member.quality = quality;
        tracing::info!(participant = %id, "asks for {quality:?} quality: at most rung {cap}");
        let Some(switch) = member.adaptation.as_mut().and_then(|a| a.set_cap(cap, now)) else {
            return Ok(());
        };
        self.switch_rung(id, switch).map_err(|e| {
            ProtocolError::new(
                ErrorCode::MediaFailed,
                format!("The server could not change the quality of your video: {e:#}."),
            )
        })
    }

    /// Carries out what a receiver's rung controller decided.
    fn switch_rung(&mut self, id: &ParticipantId, switch: Switch) -> Result<()> {
        let to = self.encoders.ladder().rungs()[switch.to];
        tracing::info!(participant = %id, reason = %switch.reason, "moves to the {to} rung");
        self.move_to_rung(id, switch.to)
    }

    /// Reads receivers' latest reports and moves those whose link calls
    /// for another rung.
    fn adapt_to_links(&mut self) {
        if self.reports_read.elapsed() < REPORT_READING {
            return;
        }
        self.reports_read = Instant::now();
        let now = self.now();
        let connected = &self.connected;
        let switches: Vec<(ParticipantId, Switch)> = self
            .members
            .iter_mut()
            .filter(|m| connected.contains(&m.id))
            .filter_map(|m| Some((m.id.clone(), m.adaptation.as_mut()?.poll(now)?)))
            .collect();
        for (id, switch) in switches {
            if let Err(e) = self.switch_rung(&id, switch) {
                tracing::warn!(participant = %id, "could not change rung: {e:#}");
            }
        }
    }

    /// Sends the listener what the room's mixes have for them.
    fn attach_mix(&mut self, id: &ParticipantId, sink: &gst::Pad, pt: u8) -> Result<()> {
        self.mixes
            .listen(&self.pipeline, &self.owners, id, sink, pt)
    }

    /// Removes a participant: their tile, their voice from every mix, their
    /// own mix. Returns the removed elements, to be set to NULL off the room
    /// task (webrtcbin can take a while to stop), in the order to stop them.
    fn remove(&mut self, id: &ParticipantId) {
        let Some(index) = self.members.iter().position(|m| &m.id == id) else {
            return;
        };
        let member = self.members.remove(index);
        self.connected.remove(id);
        self.update_encoding();
        let mut removed = match self.program.as_mut() {
            Some(program) => program.mix.remove(&self.pipeline, id),
            None => Vec::new(),
        };
        removed.extend(self.mixes.remove(&self.pipeline, &self.owners, id));
        // Every element of the participant's, including sinks that
        // callbacks made for unused streams. Removing unlinks them.
        removed.extend(self.owners.remove_all(&self.pipeline, id));
        // Then the request pads the participant held on shared elements.
        if let Some(mut feed) = member.video_feed {
            feed.release();
        }
        self.compositor.release_request_pad(&member.placeholder_pad);
        self.compositor.release_request_pad(&member.video_pad);
        members::sort_for_stopping(&mut removed);
        members::stop_off_thread(removed);
    }

    /// Moves every participant's tiles where the room's layout says; those
    /// not placed leave the composite, and their video is no longer decoded
    /// (they are told, so they can stop sending it). The encoder is asked
    /// for a keyframe, so the new picture is clean at once.
    fn arrange_tiles(&mut self, placements: &[Placement<ParticipantId>]) {
        for member in &mut self.members {
            let pads = [&member.placeholder_pad, &member.video_pad];
            let placement = placements.iter().find(|p| p.participant == member.id);
            match placement {
                Some(placement) => mixing::show_tile(pads, placement.rect, placement.z),
                None => mixing::hide_tile(pads),
            }
            let paused = placement.is_none();
            if paused == member.video_paused {
                continue;
            }
            member.video_paused = paused;
            member.video_gate.set_property("drop", paused);
            if !paused {
                // Its tile shows its own picture at the next keyframe.
                if let Some(pad) = member.video_gate.static_pad("sink") {
                    pad.push_event(webrtc::keyframe_request(None));
                }
            }
            tracing::info!(participant = %member.id, "video {}", if paused { "paused" } else { "resumed" });
            self.outputs.push(MediaOutput::Send(
                member.id.clone(),
                if paused {
                    ServerMessage::VideoPaused
                } else {
                    ServerMessage::VideoResumed
                },
            ));
        }
        tracing::debug!(room = %self.room, tiles = placements.len(), "layout updated");
        self.encoders.ask_keyframes();
        self.placements = placements.to_vec();
        self.recaption();
    }

    /// Writes the names of those on the composite on their tiles, or none
    /// if the room turned captions off.
    fn recaption(&self) {
        let named: Vec<NamedTile> = if self.captions_shown {
            self.placements
                .iter()
                .filter_map(|p| {
                    let member = self.members.iter().find(|m| m.id == p.participant)?;
                    Some(NamedTile {
                        name: &member.name,
                        rect: p.rect,
                        z: p.z,
                    })
                })
                .collect()
        } else {
            Vec::new()
        };
        let canvas = (self.settings.canvas.width, self.settings.canvas.height);
        self.captions.show(&caption_spots::captions(&named, canvas));
    }

    /// Decodes a participant's voice only where it is needed: while it is
    /// mixed, while a recording (whose mix is everyone's) runs, or when its
    /// packets carry no level (the decoded audio is then how the room hears
    /// it speak). The others' audio is dropped by their gate unread.
    fn update_audio_gates(&mut self) {
        let recording = self.program.is_some();
        for member in &mut self.members {
            let gated = member.rtp_levels.seen() && !recording && !self.mixes.is_mixed(&member.id);
            if gated != member.audio_gated {
                member.audio_gated = gated;
                member.audio_gate.set_property("drop", gated);
                tracing::debug!(participant = %member.id, "audio {}", if gated { "not decoded" } else { "decoded" });
            }
        }
    }

    /// What recordings tap, building the full mix if no recording runs yet.
    /// A new recording of the encoded composite starts at a keyframe.
    fn feeds(&mut self) -> Result<Feeds> {
        if self.program.is_none() {
            let audio_tees: Vec<(ParticipantId, gst::Element)> = self
                .members
                .iter()
                .map(|m| (m.id.clone(), m.audio_tee.clone()))
                .collect();
            let latency = mixing::mixer_latency(self.settings.webrtc.jitter_latency_ms);
            match McuProgram::new(&self.pipeline, latency, &audio_tees) {
                Ok(program) => self.program = Some(program),
                Err(e) => {
                    // Whatever was added of it goes again.
                    let removed = crate::media::program::remove_program(&self.pipeline);
                    members::stop_off_thread(removed);
                    return Err(e.context("building the recording mix"));
                }
            }
        }
        self.update_encoding();
        self.update_audio_gates();
        // Now, not when the limiter allows: the recording starts at this
        // keyframe, and one more keyframe, made rarely, cannot be a storm.
        self.force_keyframe();
        let program = self.program.as_ref().expect("just built");
        Ok(Feeds {
            raw_video: self.raw_tee.clone(),
            vp8_video: Some(self.encoders.top_tee().clone()),
            audio: program.mix.tee().clone(),
        })
    }

    /// A rung is encoded while a receiver whose connection is up is on it
    /// (or moving to it), and the top one while a recording runs.
    fn update_encoding(&mut self) {
        let recording = self.program.is_some();
        let receiving = |rung: usize| {
            self.members.iter().any(|m| {
                self.connected.contains(&m.id)
                    && m.video_feed.as_ref().is_some_and(|feed| feed.uses(rung))
            })
        };
        self.encoders
            .encode(|rung| (recording && rung == 0) || receiving(rung));
    }

    /// A keyframe on the top rung now (a recording's start).
    fn force_keyframe(&self) {
        self.encoders.force_keyframe(0);
        tracing::debug!(room = %self.room, "keyframe forced");
    }

    /// A receiver's first picture of the rung it moved to came: the rung it
    /// left may stop.
    fn rung_reached(&mut self, id: &ParticipantId, rung: usize) {
        let now = self.now();
        let Some(member) = self.member_mut(id) else {
            return;
        };
        if let Some(adaptation) = member.adaptation.as_mut() {
            adaptation.reached(now);
        }
        let Some(feed) = member.video_feed.as_mut() else {
            return;
        };
        if feed.reached(rung) {
            let rung_name = self.encoders.ladder().rungs()[rung];
            tracing::info!(participant = %id, "receives the composite at {rung_name}");
            self.update_encoding();
        }
    }
}

impl RoomMedia for McuMixer {
    fn add_participant(&mut self, id: &ParticipantId, name: &str) -> Result<()> {
        self.add(id, name)
    }

    fn remove_participant(&mut self, id: &ParticipantId) {
        self.remove(id);
    }

    fn signal(&mut self, id: &ParticipantId, signal: MediaSignal) -> Result<(), ProtocolError> {
        match signal {
            MediaSignal::PublishOffer(offer) => self.publish_offer(id, offer),
            MediaSignal::SubscribeAnswer(_) => Err(ProtocolError::new(
                ErrorCode::BadState,
                "There is no offer outstanding: an MCU room uses only the publish connection.",
            )),
            MediaSignal::Candidate {
                pc: PeerConnection::Publish,
                mline,
                candidate,
            } => self
                .member_mut(id)
                .ok_or_else(not_joined)?
                .peer
                .add_candidate(mline, candidate),
            MediaSignal::Candidate { .. } => Err(ProtocolError::new(
                ErrorCode::BadState,
                "There is no subscribe connection in an MCU room.",
            )),
            MediaSignal::Quality(quality) => self.set_quality(id, quality),
        }
    }

    fn on_event(&mut self, event: MediaEvent) {
        if let Some(output) = connection_output(&event) {
            self.outputs.push(output);
        }
        match event {
            MediaEvent::ConnectionState {
                participant,
                state: WebRTCPeerConnectionState::Connected,
                ..
            } => {
                tracing::info!(participant = %participant, "publish connection up");
                self.connected.insert(participant.clone());
                self.update_encoding();
                // Its first picture of the composite.
                self.ask_keyframe(&participant);
            }
            MediaEvent::ConnectionState {
                participant,
                state: WebRTCPeerConnectionState::Failed | WebRTCPeerConnectionState::Closed,
                ..
            } => {
                self.connected.remove(&participant);
                self.update_encoding();
            }
            MediaEvent::TrackPublished {
                participant, kind, ..
            } => {
                tracing::info!(participant = %participant, "receiving {kind:?}");
            }
            MediaEvent::Negotiated {
                participant,
                result,
                ..
            } => self.negotiated(&participant, result),
            MediaEvent::RungReached { participant, rung } => self.rung_reached(&participant, rung),
            _ => {}
        }
    }

    fn tick(&mut self) {
        self.encoders.poll();
        // A sender's first level in its packets lets its decoding stop.
        self.update_audio_gates();
        self.adapt_to_links();
    }

    fn arrange(&mut self, placements: &[Placement<ParticipantId>]) {
        self.arrange_tiles(placements);
    }

    fn mix(&mut self, mixed: &[ParticipantId]) {
        let voices: Vec<(ParticipantId, gst::Element)> = mixed
            .iter()
            .filter_map(|id| self.members.iter().find(|m| &m.id == id))
            .map(|m| (m.id.clone(), m.audio_tee.clone()))
            .collect();
        let removed = self.mixes.set_mixed(&self.pipeline, &self.owners, &voices);
        members::stop_off_thread(removed);
        self.update_audio_gates();
    }

    fn show_captions(&mut self, shown: bool) {
        self.captions_shown = shown;
        self.recaption();
    }

    fn take_outputs(&mut self) -> Vec<MediaOutput> {
        std::mem::take(&mut self.outputs)
    }

    fn pipeline(&self) -> Option<&gst::Pipeline> {
        Some(&self.pipeline)
    }

    fn owner_of(&self, source: &gst::Object) -> Option<ParticipantId> {
        self.owners.owner_of(&self.pipeline, source)
    }

    fn recording_feeds(&mut self) -> Result<Feeds> {
        self.feeds()
    }

    fn receiver_rungs(&self) -> Vec<ReceiverRung> {
        let name = |rung: Option<usize>| {
            rung.and_then(|r| self.encoders.ladder().rungs().get(r))
                .map(ToString::to_string)
        };
        self.members
            .iter()
            .filter_map(|m| {
                let (current, pending) = m.video_feed.as_ref()?.rungs();
                let adaptation = m.adaptation.as_ref();
                let report = adaptation.and_then(Adaptation::last_report);
                Some(ReceiverRung {
                    participant: m.id.to_string(),
                    rung: name(current),
                    moving_to: name(pending),
                    quality: m.quality,
                    estimated_kbps: adaptation.and_then(Adaptation::estimate_kbps),
                    last_switch: adaptation
                        .and_then(Adaptation::last_reason)
                        .map(ToString::to_string),
                    loss_percent: report.map(|r| (r.fraction_lost * 1000.0).round() / 10.0),
                    rtt_ms: report.and_then(|r| r.rtt).map(|rtt| rtt.as_millis() as u64),
                    sent_kbps: report.map(|r| r.sent_kbps),
                })
            })
            .collect()
    }

    fn call_encoders_running(&self) -> usize {
        self.encoders.running()
    }

    /// Read from the pipeline: audio gates open with a stream linked to them.
    fn audio_decoded(&self) -> usize {
        self.members
            .iter()
            .filter(|m| is_open_and_fed(&m.audio_gate))
            .count()
    }

    /// Read from the pipeline: gates open with a stream linked to them.
    fn videos_decoded(&self) -> usize {
        self.members
            .iter()
            .filter(|m| is_open_and_fed(&m.video_gate))
            .count()
    }

    /// No recording runs any more: the full mix goes.
    fn close_recording_feeds(&mut self) {
        if let Some(program) = self.program.take() {
            members::stop_off_thread(program.close(&self.pipeline));
        }
        self.update_encoding();
        self.update_audio_gates();
    }
}

/// Whether a valve lets through a stream that reaches it.
fn is_open_and_fed(valve: &gst::Element) -> bool {
    !valve.property::<bool>("drop") && valve.static_pad("sink").is_some_and(|p| p.is_linked())
}

fn not_joined() -> ProtocolError {
    ProtocolError::new(ErrorCode::NotJoined, "You are not in this room.")
}

/// Dropping the mixer stops its pipeline, also when its room task is dropped
/// unfinished (a pipeline disposed while PLAYING crashes the process).
/// Blocking: drop it on a blocking thread.
impl Drop for McuMixer {
    fn drop(&mut self) {
        members::stop_pipeline(&self.pipeline);
    }
}
