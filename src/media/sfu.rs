//! The SFU room pipeline: each participant's RTP is forwarded, neither
//! decoded nor encoded, to every other participant.
//!
//! ```text
//! P1 publish webrtcbin ─ video ─ P1/video-tee ─┬ P2/from-P1-video gate ─ P2 subscribe webrtcbin
//!                      ─ audio ─ P1/audio-tee  └ P3/from-P1-video gate ─ P3 subscribe webrtcbin
//! ```
//!
//! Each participant has two webrtcbins: "publish", where the client offers
//! and the server answers, and "subscribe", where the server is always the
//! offerer (on GStreamer 1.22 only an offerer webrtcbin can add m-lines
//! later). A forwarded track is one sendonly m-line on the subscriber's
//! subscribe connection, with the publisher's payload type and with the
//! publisher's participant id as its MediaStream id (a=msid). A departed
//! publisher's m-lines are set inactive; new tracks always get new m-lines.
//!
//! A gate is an identity element, not a queue: the publisher's receiving
//! thread sends each packet to every subscriber itself. A queue per forward
//! put a thread hand-off on every forwarded packet, and those hand-offs were
//! most of the SFU's CPU (see README, Performance). The gate drops packets
//! until the subscriber's connection is up, because webrtcbin holds packets
//! back until its DTLS handshake is done and would hold the publisher's
//! thread, and with it every other subscriber, with them.
//!
//! While a recording runs, a composite of the forwarded tracks is built
//! beside the forwarding (media/program.rs), fed by leaky queues off the
//! same tees, and torn down when the last recording ends.
//!
//! Owned by the room task; callbacks only link a new publish src pad to the
//! tee prepared for its kind and post `MediaEvent`s.

use crate::ids::{ParticipantId, RoomId};
use crate::media::candidates::RemoteCandidates;
use crate::media::events::{MediaEvent, watch_connection};
use crate::media::forward::ForwardGate;
use crate::media::keyframes::{self, LimitedRequests};
use crate::media::mcu::McuSettings;
use crate::media::members;
use crate::media::mixing;
use crate::media::negotiation::{NextStep, OfferNegotiation};
use crate::media::pads;
use crate::media::program::{Feeds, SfuProgram};
use crate::media::sdp::{MediaKind, MediaLine, TrackLabel, label_tracks, summarize_offer};
use crate::media::webrtc::{self, WebrtcSettings};
use crate::protocol::{ErrorCode, PeerConnection, ProtocolError};
use anyhow::{Context, Result, anyhow};
use gst::prelude::*;
use gst_webrtc::{WebRTCRTPTransceiver, WebRTCRTPTransceiverDirection, WebRTCSDPType};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::mpsc::UnboundedSender;

/// One publisher's track going to one subscriber.
struct Forward {
    publisher: ParticipantId,
    kind: MediaKind,
    /// Its m-line on the subscriber's subscribe connection.
    mline: u32,
    /// The publisher's SSRC, from the caps of the published track.
    ssrc: Option<u32>,
    tee_pad: gst::Pad,
    /// Between the publisher's tee and the subscriber's webrtcbin: drops
    /// until connected, rewrites payload types, keeps refusals here.
    gate: ForwardGate,
    transceiver: WebRTCRTPTransceiver,
}

impl Forward {
    fn label(&self) -> TrackLabel {
        TrackLabel {
            mline: self.mline,
            stream: self.publisher.to_string(),
            track: format!("{}-{}", self.publisher, kind_name(self.kind)),
            ssrc: self.ssrc,
        }
    }
}

struct Member {
    id: ParticipantId,
    publish: gst::Element,
    /// Ready once the client's first publish offer is applied.
    publish_candidates: RemoteCandidates,
    video_tee: gst::Element,
    audio_tee: gst::Element,
    /// The tracks this participant publishes, with their RTP caps.
    published: Vec<(MediaKind, gst::Caps)>,
    subscribe: gst::Element,
    /// None until the server's first subscribe offer: before it, the
    /// subscribe connection does not exist for the client.
    subscribe_candidates: Option<RemoteCandidates>,
    /// Whether the subscribe connection is up (ICE and DTLS): until then
    /// the gates to it drop what they get.
    subscribe_connected: Arc<AtomicBool>,
    negotiation: OfferNegotiation,
    forwards: Vec<Forward>,
    /// Inactive m-lines of publishers who left, still labelled with whose
    /// they were.
    ended: Vec<TrackLabel>,
    /// m-lines made so far on the subscribe connection; each new forward
    /// gets the next one, so an m-line is never reused for another kind.
    next_mline: u32,
    /// How many m-lines the outstanding subscribe offer has: its answer
    /// must have as many (forwards added since wait for the next offer).
    offered_mlines: usize,
    /// Keyframe requests to this publisher, limited on each of its tees.
    video_keyframes: LimitedRequests,
    audio_keyframes: LimitedRequests,
}

impl Member {
    fn tee(&self, kind: MediaKind) -> &gst::Element {
        match kind {
            MediaKind::Video => &self.video_tee,
            _ => &self.audio_tee,
        }
    }
}

pub struct SfuRouter {
    room: RoomId,
    pipeline: gst::Pipeline,
    settings: WebrtcSettings,
    /// The canvas and chains of the composite recordings are made from.
    recording: McuSettings,
    events: UnboundedSender<MediaEvent>,
    members: Vec<Member>,
    /// The composite and mix, while any recording runs.
    program: Option<SfuProgram>,
}

fn internal(e: anyhow::Error) -> ProtocolError {
    ProtocolError::new(
        ErrorCode::Internal,
        format!("The server could not set up media: {e:#}."),
    )
}

fn kind_name(kind: MediaKind) -> &'static str {
    match kind {
        MediaKind::Video => "video",
        MediaKind::Audio => "audio",
        MediaKind::Other => "other",
    }
}

/// The payload types of the subscribe connection's m-lines. Every forwarded
/// track is offered at these, whatever the publisher used, so that bundled
/// m-lines never give one payload type two codecs; forwarded packets are
/// rewritten to them (or to what the subscriber's answer chose instead).
const SUBSCRIBE_VIDEO_PT: u8 = 96;
const SUBSCRIBE_AUDIO_PT: u8 = 111;

fn subscribe_pt(kind: MediaKind) -> u8 {
    match kind {
        MediaKind::Video => SUBSCRIBE_VIDEO_PT,
        _ => SUBSCRIBE_AUDIO_PT,
    }
}

/// Publishers get at most one keyframe request per this interval from the
/// subscribers' PLIs together, so many subscribers cannot cause a storm.
const KEYFRAME_INTERVAL: Duration = Duration::from_millis(300);

impl SfuRouter {
    pub fn new(
        room: &RoomId,
        recording: McuSettings,
        events: UnboundedSender<MediaEvent>,
    ) -> Result<Self> {
        let settings = recording.webrtc.clone();
        let pipeline = gst::Pipeline::with_name(&format!("sfu-{room}"));
        pipeline
            .set_state(gst::State::Playing)
            .context("starting the room pipeline")?;
        Ok(SfuRouter {
            room: room.clone(),
            pipeline,
            settings,
            recording,
            events,
            members: Vec::new(),
            program: None,
        })
    }

    pub fn bus(&self) -> gst::Bus {
        self.pipeline.bus().expect("a pipeline always has a bus")
    }

    pub fn pipeline(&self) -> &gst::Pipeline {
        &self.pipeline
    }

    pub fn owner_of(&self, source: &gst::Object) -> Option<ParticipantId> {
        members::owner_of(&self.pipeline, source)
    }

    fn member(&self, id: &ParticipantId) -> Option<&Member> {
        self.members.iter().find(|m| &m.id == id)
    }

    fn member_mut(&mut self, id: &ParticipantId) -> Option<&mut Member> {
        self.members.iter_mut().find(|m| &m.id == id)
    }

    fn not_joined() -> ProtocolError {
        ProtocolError::new(ErrorCode::NotJoined, "You are not in this room.")
    }

    /// Adds a participant and forwards everything already published to
    /// them. Returns whether their subscribe connection has tracks to offer.
    pub fn add_participant(&mut self, id: &ParticipantId) -> Result<bool> {
        let member = self
            .build_member(id)
            .with_context(|| format!("adding participant {id}"))?;
        self.members.push(member);
        if let Some(program) = self.program.as_mut()
            && let Err(e) = program.add_participant(&self.pipeline, id)
        {
            tracing::warn!(participant = %id, "no tile in the recording: {e:#}");
        }
        let existing: Vec<(ParticipantId, MediaKind, gst::Caps)> = self
            .members
            .iter()
            .filter(|m| &m.id != id)
            .flat_map(|m| {
                m.published
                    .iter()
                    .map(|(k, c)| (m.id.clone(), *k, c.clone()))
            })
            .collect();
        let any = !existing.is_empty();
        for (publisher, kind, caps) in existing {
            self.forward(&publisher, id, kind, &caps)?;
        }
        Ok(any)
    }

    fn build_member(&self, id: &ParticipantId) -> Result<Member> {
        let name = |part: &str| format!("{id}/{part}");
        // Forwarding needs no jitter buffer: packets go out as they arrive and
        // each subscriber's own buffer smooths them. webrtcbin's would hold
        // every packet for its latency (measured: +55 ms at p50 on loopback).
        let forwarding = WebrtcSettings {
            jitter_latency_ms: 0,
            ..self.settings.clone()
        };
        let publish = webrtc::make_webrtcbin(&name("publish"), &forwarding)?;
        let subscribe = webrtc::make_webrtcbin(&name("subscribe"), &self.settings)?;
        let subscribe_connected = Arc::new(AtomicBool::new(false));
        let connected = subscribe_connected.clone();
        subscribe.connect_notify(Some("connection-state"), move |webrtc, _| {
            connected.store(webrtc::is_connected(webrtc), Ordering::Relaxed);
        });
        let tee = |kind: &str| {
            gst::ElementFactory::make("tee")
                .name(name(&format!("{kind}-tee")))
                .property("allow-not-linked", true)
                .build()
        };
        let video_tee = tee("video")?;
        let audio_tee = tee("audio")?;
        self.pipeline
            .add_many([&publish, &subscribe, &video_tee, &audio_tee])?;
        let limited = |tee: &gst::Element| -> Result<LimitedRequests> {
            Ok(LimitedRequests::install(
                &pads::static_pad(tee, "sink")?,
                KEYFRAME_INTERVAL,
            ))
        };
        let (video_keyframes, audio_keyframes) = (limited(&video_tee)?, limited(&audio_tee)?);
        watch_connection(&publish, &self.events, id, PeerConnection::Publish);
        watch_connection(&subscribe, &self.events, id, PeerConnection::Subscribe);
        self.link_published_tracks(id, &publish, &video_tee, &audio_tee);
        // The subscribe connection only sends; anything it receives is dropped.
        subscribe.connect_pad_added(|webrtc, pad| {
            if pad.direction() == gst::PadDirection::Src {
                members::discard_pad(webrtc, pad);
            }
        });
        for element in [&video_tee, &audio_tee, &subscribe, &publish] {
            element.sync_state_with_parent()?;
        }
        Ok(Member {
            id: id.clone(),
            publish,
            publish_candidates: RemoteCandidates::default(),
            video_tee,
            audio_tee,
            published: Vec::new(),
            subscribe,
            subscribe_candidates: None,
            subscribe_connected,
            negotiation: OfferNegotiation::default(),
            forwards: Vec::new(),
            ended: Vec::new(),
            next_mline: 0,
            offered_mlines: 0,
            video_keyframes,
            audio_keyframes,
        })
    }

    /// A publish src pad must be linked at once or webrtcbin fails
    /// "not-linked": link it to the tee of its kind, or discard it.
    fn link_published_tracks(
        &self,
        id: &ParticipantId,
        publish: &gst::Element,
        video_tee: &gst::Element,
        audio_tee: &gst::Element,
    ) {
        let events = self.events.clone();
        let participant = id.clone();
        let video_in = video_tee.static_pad("sink").map(|p| p.downgrade());
        let audio_in = audio_tee.static_pad("sink").map(|p| p.downgrade());
        publish.connect_pad_added(move |webrtc, pad| {
            if pad.direction() != gst::PadDirection::Src {
                return;
            }
            let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
            let (kind, target) = match webrtc::rtp_media_of(pad).as_deref() {
                Some("video") => (
                    MediaKind::Video,
                    video_in.as_ref().and_then(|p| p.upgrade()),
                ),
                Some("audio") => (
                    MediaKind::Audio,
                    audio_in.as_ref().and_then(|p| p.upgrade()),
                ),
                _ => (MediaKind::Other, None),
            };
            if target.is_some_and(|t| !t.is_linked() && pad.link(&t).is_ok()) {
                let _ = events.send(MediaEvent::TrackPublished {
                    participant: participant.clone(),
                    kind,
                    caps,
                });
            } else {
                members::discard_pad(webrtc, pad);
            }
        });
    }

    /// Links one publisher's track to one subscriber as a new sendonly m-line.
    fn forward(
        &mut self,
        publisher: &ParticipantId,
        subscriber: &ParticipantId,
        kind: MediaKind,
        caps: &gst::Caps,
    ) -> Result<()> {
        let tee = self
            .member(publisher)
            .ok_or_else(|| anyhow!("publisher {publisher} is gone"))?
            .tee(kind)
            .clone();
        let (subscribe, mline) = {
            let sub = self
                .member_mut(subscriber)
                .ok_or_else(|| anyhow!("subscriber {subscriber} is gone"))?;
            sub.next_mline += 1;
            (sub.subscribe.clone(), sub.next_mline - 1)
        };
        let connected = self
            .member(subscriber)
            .ok_or_else(|| anyhow!("subscriber {subscriber} is gone"))?
            .subscribe_connected
            .clone();
        let offered = subscribe_pt(kind);
        let gate = ForwardGate::new(
            &format!("{subscriber}/from-{publisher}-{}", kind_name(kind)),
            connected,
            kind == MediaKind::Video,
            offered,
            // Past the tee's limiter: a subscriber's first picture should not
            // wait out someone else's request.
            || keyframes::request(true),
        );
        self.pipeline.add(&gate.element)?;
        let sink = subscribe
            .request_pad_simple(&format!("sink_{mline}"))
            .ok_or_else(|| anyhow!("webrtcbin gave no sink_{mline} pad"))?;
        pads::static_pad(&gate.element, "src")?.link(&sink)?;
        let transceiver = webrtc::pad_transceiver(&sink)
            .ok_or_else(|| anyhow!("sink_{mline} has no transceiver"))?;
        transceiver.set_direction(WebRTCRTPTransceiverDirection::Sendonly);
        let ssrc = caps.structure(0).and_then(|s| s.get::<u32>("ssrc").ok());
        // With the publisher's SSRC in them, the offer's a=ssrc lines do not
        // depend on a packet having gone through before it is made.
        let mut preferences = webrtc::rtp_caps(kind, offered);
        if let (Some(ssrc), Some(s)) = (ssrc, preferences.make_mut().structure_mut(0)) {
            s.set("ssrc", ssrc);
        }
        transceiver.set_codec_preferences(Some(&preferences));
        gate.element.sync_state_with_parent()?;
        let tee_pad = pads::branch_tee(&tee, &gate.element)?;
        let sub = self
            .member_mut(subscriber)
            .ok_or_else(|| anyhow!("subscriber {subscriber} is gone"))?;
        sub.forwards.push(Forward {
            publisher: publisher.clone(),
            kind,
            mline,
            ssrc,
            tee_pad,
            gate,
            transceiver,
        });
        Ok(())
    }

    /// A publisher's track started arriving: forward it to everyone else.
    /// Returns the subscribers whose subscribe connection changed.
    pub fn track_published(
        &mut self,
        publisher: &ParticipantId,
        kind: MediaKind,
        caps: gst::Caps,
    ) -> Result<Vec<ParticipantId>> {
        let Some(member) = self.member_mut(publisher) else {
            return Ok(Vec::new());
        };
        member.published.retain(|(k, _)| *k != kind);
        member.published.push((kind, caps.clone()));
        let tee = member.tee(kind).clone();
        if let Some(program) = self.program.as_mut()
            && kind != MediaKind::Other
            && let Err(e) =
                program.add_track(&self.pipeline, publisher, kind == MediaKind::Video, &tee)
        {
            tracing::warn!(participant = %publisher, "not in the recording: {e:#}");
        }
        let subscribers: Vec<ParticipantId> = self
            .members
            .iter()
            .filter(|m| &m.id != publisher)
            .map(|m| m.id.clone())
            .collect();
        for subscriber in &subscribers {
            self.forward(publisher, subscriber, kind, &caps)?;
        }
        tracing::debug!(room = %self.room, participant = %publisher, kind = kind_name(kind), "track forwarded");
        Ok(subscribers)
    }

    /// Applies a client's publish offer and returns the answer: every audio
    /// and video m-line the client sends on is received (recvonly), with the
    /// codec it chose; gridmix sends nothing on the publish connection.
    pub async fn answer_publish_offer(
        &mut self,
        id: &ParticipantId,
        sdp: &str,
    ) -> Result<String, ProtocolError> {
        let summary = summarize_offer(sdp)?;
        summary.check_publish()?;
        let usable: Vec<&MediaLine> = summary
            .media
            .iter()
            .filter(|l| l.kind != MediaKind::Other && !l.rejected)
            .collect();
        summary.check_usable(usable.iter().copied())?;
        let description = webrtc::parse_description(WebRTCSDPType::Offer, sdp).map_err(|e| {
            ProtocolError::new(
                ErrorCode::BadSdp,
                format!("The offer is not valid SDP: {e:#}."),
            )
        })?;
        let member = self.member(id).ok_or_else(Self::not_joined)?;
        let publish = member.publish.clone();
        let first_offer = !member.publish_candidates.is_ready();
        webrtc::set_remote_description(&publish, &description)
            .await
            .map_err(|e| {
                ProtocolError::new(ErrorCode::BadSdp, format!("The offer was refused: {e:#}."))
            })?;
        if first_offer {
            for line in &usable {
                let Some(pt) = line.payload_type else {
                    continue;
                };
                if !line.direction.client_sends() {
                    continue;
                }
                let caps = webrtc::rtp_caps(line.kind, pt);
                let transceiver = publish.emit_by_name::<WebRTCRTPTransceiver>(
                    "add-transceiver",
                    &[&WebRTCRTPTransceiverDirection::Recvonly, &caps],
                );
                transceiver.set_codec_preferences(Some(&caps));
            }
        }
        let answer = webrtc::create_answer(&publish, &self.settings)
            .await
            .map_err(internal)?;
        webrtc::set_local_description(&publish, &answer)
            .await
            .map_err(internal)?;
        let member = self.member_mut(id).ok_or_else(|| {
            ProtocolError::new(ErrorCode::NotJoined, "You left during negotiation.")
        })?;
        for (mline, candidate) in member.publish_candidates.ready() {
            webrtc::add_ice_candidate(&publish, mline, &candidate);
        }
        Ok(webrtc::description_text(&answer))
    }

    /// The subscriber's tracks changed: returns the offer to send now, if
    /// one is due (at most one is outstanding; later changes wait for it).
    pub async fn tracks_changed(&mut self, id: &ParticipantId) -> Result<Option<String>> {
        let Some(member) = self.member_mut(id) else {
            return Ok(None);
        };
        match member.negotiation.changed() {
            NextStep::SendOffer => self.make_subscribe_offer(id).await.map(Some),
            NextStep::Wait => Ok(None),
        }
    }

    async fn make_subscribe_offer(&mut self, id: &ParticipantId) -> Result<String> {
        let member = self.member(id).ok_or_else(|| anyhow!("{id} is gone"))?;
        let subscribe = member.subscribe.clone();
        let settings = self.settings.clone();
        let result: Result<String> = async {
            let offer = webrtc::create_offer(&subscribe, &settings).await?;
            webrtc::set_local_description(&subscribe, &offer).await?;
            Ok(webrtc::description_text(&offer))
        }
        .await;
        let member = self.member_mut(id).ok_or_else(|| anyhow!("{id} is gone"))?;
        match result {
            Ok(text) => {
                member.offered_mlines = text.lines().filter(|l| l.starts_with("m=")).count();
                member
                    .subscribe_candidates
                    .get_or_insert_with(RemoteCandidates::default);
                // The stream id of each forwarded m-line is its publisher's id.
                let labels: Vec<TrackLabel> = member
                    .forwards
                    .iter()
                    .map(Forward::label)
                    .chain(member.ended.iter().cloned())
                    .collect();
                let text = label_tracks(&text, &labels);
                tracing::debug!(participant = %id, "subscribe offer:\n{text}");
                Ok(text)
            }
            Err(e) => {
                member.negotiation.failed();
                Err(e)
            }
        }
    }

    /// Applies the client's answer on its subscribe connection; returns the
    /// next offer if tracks changed while this one was outstanding.
    pub async fn apply_subscribe_answer(
        &mut self,
        id: &ParticipantId,
        sdp: &str,
    ) -> Result<Option<String>, ProtocolError> {
        let member = self.member_mut(id).ok_or_else(Self::not_joined)?;
        if !member.negotiation.awaiting_answer() {
            return Err(ProtocolError::new(
                ErrorCode::BadState,
                "There is no subscribe offer outstanding to answer.",
            ));
        }
        let answer = summarize_offer(sdp)?;
        answer.check_answer_to(member.offered_mlines)?;
        let description = webrtc::parse_description(WebRTCSDPType::Answer, sdp).map_err(|e| {
            ProtocolError::new(
                ErrorCode::BadSdp,
                format!("The answer is not valid SDP: {e:#}."),
            )
        })?;
        let subscribe = member.subscribe.clone();
        if let Err(e) = webrtc::set_remote_description(&subscribe, &description).await {
            if let Some(member) = self.member_mut(id) {
                member.negotiation.failed();
            }
            return Err(ProtocolError::new(
                ErrorCode::BadSdp,
                format!("The answer was refused: {e:#}."),
            ));
        }
        let member = self.member_mut(id).ok_or_else(Self::not_joined)?;
        let early = member
            .subscribe_candidates
            .get_or_insert_with(RemoteCandidates::default)
            .ready();
        for (mline, candidate) in early {
            webrtc::add_ice_candidate(&subscribe, mline, &candidate);
        }
        let next = member.negotiation.answered().unwrap_or(NextStep::Wait);
        // Forward at the payload types the subscriber chose, where it did not
        // take the offered ones.
        for forward in &member.forwards {
            let chosen = answer
                .media
                .iter()
                .find(|m| m.index == forward.mline)
                .and_then(|m| m.payload_type);
            if let Some(pt) = chosen {
                forward.gate.state.set_negotiated_pt(pt);
            }
        }
        // New m-lines start with a keyframe from their publishers.
        let publishers: Vec<ParticipantId> = member
            .forwards
            .iter()
            .filter(|f| f.kind == MediaKind::Video)
            .map(|f| f.publisher.clone())
            .collect();
        self.request_keyframes(&publishers);
        match next {
            NextStep::SendOffer => self
                .make_subscribe_offer(id)
                .await
                .map(Some)
                .map_err(internal),
            NextStep::Wait => Ok(None),
        }
    }

    /// Sends the keyframe requests held back by the limiters that are now
    /// due. Called on the room's tick.
    pub fn poll_keyframes(&self) {
        for member in &self.members {
            member.video_keyframes.poll();
            member.audio_keyframes.poll();
        }
    }

    /// A keyframe from each publisher, for subscribers that just connected.
    pub fn request_keyframes(&self, publishers: &[ParticipantId]) {
        for publisher in publishers {
            if let Some(member) = self.member(publisher) {
                member.video_keyframes.ask();
            }
        }
    }

    /// The publishers whose video a participant receives.
    pub fn video_publishers_for(&self, subscriber: &ParticipantId) -> Vec<ParticipantId> {
        self.member(subscriber)
            .map(|m| {
                m.forwards
                    .iter()
                    .filter(|f| f.kind == MediaKind::Video)
                    .map(|f| f.publisher.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn add_remote_candidate(
        &mut self,
        id: &ParticipantId,
        pc: PeerConnection,
        mline: u32,
        candidate: String,
    ) -> Result<(), ProtocolError> {
        let member = self.member_mut(id).ok_or_else(Self::not_joined)?;
        let (webrtc, candidates) = match pc {
            PeerConnection::Publish => (&member.publish, Some(&mut member.publish_candidates)),
            PeerConnection::Subscribe => (&member.subscribe, member.subscribe_candidates.as_mut()),
        };
        let Some(candidates) = candidates else {
            return Err(ProtocolError::new(
                ErrorCode::BadState,
                "There is no subscribe connection yet: the server has not offered one.",
            ));
        };
        if let Some((mline, candidate)) = candidates.add(mline, candidate)? {
            webrtc::add_ice_candidate(webrtc, mline, &candidate);
        }
        Ok(())
    }

    /// Removes a participant: their webrtcbins and tees, their forwards to
    /// others (whose m-lines go inactive). Returns the removed elements, to
    /// be set to NULL off the room task in this order, and the participants
    /// whose subscribe connection changed.
    pub fn remove_participant(
        &mut self,
        id: &ParticipantId,
    ) -> (Vec<gst::Element>, Vec<ParticipantId>) {
        let Some(index) = self.members.iter().position(|m| &m.id == id) else {
            return (Vec::new(), Vec::new());
        };
        let member = self.members.remove(index);
        let mut removed = match self.program.as_mut() {
            Some(program) => program.remove_participant(&self.pipeline, id),
            None => Vec::new(),
        };
        removed.extend(members::remove_elements_of(&self.pipeline, id));
        // What the leaver received: free the pads it held on others' tees.
        for forward in member.forwards {
            if let Some(publisher) = self.member(&forward.publisher) {
                publisher
                    .tee(forward.kind)
                    .release_request_pad(&forward.tee_pad);
            }
        }
        // What the leaver sent: stop it at everyone else.
        let mut changed = Vec::new();
        for other in &mut self.members {
            let (gone, kept): (Vec<Forward>, Vec<Forward>) = std::mem::take(&mut other.forwards)
                .into_iter()
                .partition(|f| &f.publisher == id);
            other.forwards = kept;
            if gone.is_empty() {
                continue;
            }
            for forward in gone {
                forward
                    .transceiver
                    .set_direction(WebRTCRTPTransceiverDirection::Inactive);
                let _ = self.pipeline.remove(&forward.gate.element);
                removed.push(forward.gate.element);
            }
            changed.push(other.id.clone());
        }
        members::sort_for_stopping(&mut removed);
        (removed, changed)
    }

    /// What recordings tap, building the composite and mix from the
    /// forwarded tracks if no recording runs yet.
    pub fn recording_feeds(&mut self) -> Result<Feeds> {
        if self.program.is_none() {
            match self.build_program() {
                Ok(program) => self.program = Some(program),
                Err(e) => {
                    let removed = crate::media::program::remove_program(&self.pipeline);
                    std::thread::spawn(move || {
                        for element in removed {
                            let _ = element.set_state(gst::State::Null);
                        }
                    });
                    return Err(e.context("building the recording composite"));
                }
            }
        }
        Ok(self.program.as_ref().expect("just built").feeds())
    }

    fn build_program(&self) -> Result<SfuProgram> {
        let latency = mixing::mixer_latency(self.settings.jitter_latency_ms);
        let mut program = SfuProgram::new(
            &self.pipeline,
            self.recording.canvas,
            latency,
            self.recording.templates.clone(),
        )?;
        for member in &self.members {
            program.add_participant(&self.pipeline, &member.id)?;
            for (kind, _) in &member.published {
                if *kind != MediaKind::Other {
                    program.add_track(
                        &self.pipeline,
                        &member.id,
                        *kind == MediaKind::Video,
                        member.tee(*kind),
                    )?;
                }
            }
        }
        // The decoders start mid-stream: each publisher's next keyframe
        // starts their picture, asked for now past the limiter, so that the
        // recording's tiles do not also wait out someone else's request.
        for member in &self.members {
            member.video_keyframes.force();
        }
        tracing::info!(room = %self.room, "recording composite built");
        Ok(program)
    }

    /// No recording runs any more: the composite goes. Returns its
    /// elements, still to be set to NULL.
    pub fn close_recording_feeds(&mut self) -> Vec<gst::Element> {
        self.program
            .take()
            .map(|p| p.close(&self.pipeline))
            .unwrap_or_default()
    }
}

/// As for the MCU mixer: dropping the router stops its pipeline. Blocking.
impl Drop for SfuRouter {
    fn drop(&mut self) {
        members::stop_pipeline(&self.pipeline);
    }
}
