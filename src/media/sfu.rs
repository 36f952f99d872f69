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
//! subscribe connection, offered at the subscribe payload types (VP8 96,
//! Opus 111) and sent at whatever the answer chose, with the publisher's
//! participant id as its MediaStream id (a=msid), its SSRC and the MID
//! header extension. A departed
//! publisher's m-lines are set inactive; new tracks always get new m-lines
//! (webrtcbin 1.22 cannot reuse one), and once the inactive ones pile up the
//! subscriber gets a fresh subscribe connection (media/subscription.rs).
//!
//! A gate (forward.rs) has no thread of its own, unlike a queue: the
//! publisher's receiving thread sends each packet to every subscriber
//! itself. A queue per forward
//! put a thread hand-off on every forwarded packet, and those hand-offs were
//! most of the SFU's CPU (see README, Performance). The gate drops packets
//! until the subscriber has answered an offer with the track and its
//! connection is up, because webrtcbin holds packets
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
use crate::media::backend::{
    MediaOutput, MediaSignal, RoomMedia, connection_output, quality_needs_mcu,
};
use crate::media::events::MediaEvent;
use crate::media::forward::ForwardGate;
use crate::media::forwarding_buffer;
use crate::media::keyframes::{self, LimitedRequests};
use crate::media::levels;
use crate::media::mcu::McuSettings;
use crate::media::members::{self, Owners};
use crate::media::mixing;
use crate::media::pads;
use crate::media::peer::{Peer, Role, Step, StepFailure};
use crate::media::program::{Feeds, SfuProgram};
use crate::media::sdp::{
    CheckedOffer, MID_EXTENSION, MediaKind, MediaLine, label_tracks, summarize_answer,
    summarize_offer,
};
use crate::media::subscription::{Forward, Subscription};
use crate::media::webrtc::{self, WebrtcSettings};
use crate::protocol::{ErrorCode, PeerConnection, ProtocolError, ServerMessage};
use anyhow::{Context, Result, anyhow};
use gst::prelude::*;
use gst_webrtc::{WebRTCPeerConnectionState, WebRTCRTPTransceiver, WebRTCRTPTransceiverDirection};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedSender;

struct Member {
    id: ParticipantId,
    /// As written on its tile in recordings.
    name: String,
    /// The client offers what it sends; the server answers recvonly.
    publish: Peer,
    /// The lines of the publish offer being negotiated.
    publish_lines: Vec<MediaLine>,
    /// Whether the first publish offer's transceivers are there.
    publish_attached: bool,
    video_tee: gst::Element,
    audio_tee: gst::Element,
    /// The levels in the publisher's audio packets (RFC 6464): who speaks.
    rtp_levels: Arc<levels::RtpLevels>,
    /// The tracks this participant publishes, with their RTP caps.
    published: Vec<(MediaKind, gst::Caps)>,
    /// The server offers everyone else's tracks on it; the client answers.
    subscription: Subscription,
    /// The subscription a fresh one replaced: it goes on forwarding until
    /// the fresh one is connected, so the subscriber sees no gap.
    replaced: Option<Subscription>,
    /// Whether a subscribe offer was ever sent: before it, the subscribe
    /// connection does not exist for the client.
    subscribe_offered: bool,
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
    /// Whose each participant element is.
    owners: Owners,
    /// The composite and mix, while any recording runs.
    program: Option<SfuProgram>,
    outputs: Vec<MediaOutput>,
}

fn not_joined() -> ProtocolError {
    ProtocolError::new(ErrorCode::NotJoined, "You are not in this room.")
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

/// The id the subscribe offers give the MID header extension, on every
/// m-line (bundled m-lines must agree on it).
const MID_EXTENSION_ID: u8 = 1;

/// What a subscribe m-line offers: the codec at the subscribe payload
/// type; the publisher's SSRC, so that the offer's a=ssrc lines do not
/// depend on a packet having gone through first; and the MID header
/// extension, which webrtcbin 1.22 offers only when the codec preferences
/// carry it.
fn subscribe_preferences(kind: MediaKind, pt: u8, ssrc: Option<u32>) -> gst::Caps {
    let mut preferences = webrtc::rtp_caps(kind, pt);
    if let Some(s) = preferences.make_mut().structure_mut(0) {
        if let Some(ssrc) = ssrc {
            s.set("ssrc", ssrc);
        }
        s.set(format!("extmap-{MID_EXTENSION_ID}"), MID_EXTENSION);
    }
    preferences
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
            owners: Owners::default(),
            program: None,
            outputs: Vec::new(),
        })
    }

    fn member(&self, id: &ParticipantId) -> Option<&Member> {
        self.members.iter().find(|m| &m.id == id)
    }

    fn member_mut(&mut self, id: &ParticipantId) -> Option<&mut Member> {
        self.members.iter_mut().find(|m| &m.id == id)
    }

    /// Adds a participant and forwards everything already published to
    /// them (offered on their subscribe connection at once).
    fn add(&mut self, id: &ParticipantId, name: &str) -> Result<()> {
        let member = self
            .build_member(id, name)
            .with_context(|| format!("adding participant {id}"))?;
        self.members.push(member);
        if let Some(program) = self.program.as_mut()
            && let Err(e) = program.add_participant(id, name)
        {
            tracing::warn!(participant = %id, "no tile in the recording: {e:#}");
        }
        if self.forward_everything_to(id)? {
            self.tracks_changed(std::slice::from_ref(id));
        }
        Ok(())
    }

    /// Forwards everything the others publish to `subscriber`'s
    /// subscription; whether there was anything.
    fn forward_everything_to(&mut self, subscriber: &ParticipantId) -> Result<bool> {
        let existing: Vec<(ParticipantId, MediaKind, gst::Caps)> = self
            .members
            .iter()
            .filter(|m| &m.id != subscriber)
            .flat_map(|m| {
                m.published
                    .iter()
                    .map(|(k, c)| (m.id.clone(), *k, c.clone()))
            })
            .collect();
        let any = !existing.is_empty();
        for (publisher, kind, caps) in existing {
            self.forward(&publisher, subscriber, kind, &caps)?;
        }
        Ok(any)
    }

    fn build_member(&self, id: &ParticipantId, display_name: &str) -> Result<Member> {
        let name = |part: &str| format!("{id}/{part}");
        // Forwarding needs no jitter buffer: packets go out as they arrive and
        // each subscriber's own buffer smooths them. webrtcbin's would hold
        // every packet for its latency (measured: +55 ms at p50 on loopback).
        let forwarding = WebrtcSettings {
            jitter_latency_ms: 0,
            ..self.settings.clone()
        };
        let publish = Peer::new(
            &name("publish"),
            &forwarding,
            id,
            PeerConnection::Publish,
            Role::Answerer,
            &self.events,
        )?;
        // Received packets are forwarded by the thread that received them.
        forwarding_buffer::install(publish.element());
        let tee = |kind: &str| {
            gst::ElementFactory::make("tee")
                .name(name(&format!("{kind}-tee")))
                .property("allow-not-linked", true)
                .build()
        };
        let video_tee = tee("video")?;
        let audio_tee = tee("audio")?;
        self.owners.add(
            self.pipeline.upcast_ref(),
            id,
            &[
                publish.element().clone(),
                video_tee.clone(),
                audio_tee.clone(),
            ],
        )?;
        let subscription = Subscription::new(
            &self.pipeline,
            &self.owners,
            &self.settings,
            id,
            0,
            &self.events,
        )?;
        let limited = |tee: &gst::Element| -> Result<LimitedRequests> {
            Ok(LimitedRequests::install(
                &pads::static_pad(tee, "sink")?,
                KEYFRAME_INTERVAL,
            ))
        };
        let (video_keyframes, audio_keyframes) = (limited(&video_tee)?, limited(&audio_tee)?);
        // Nothing is decoded here: who speaks is read from the levels the
        // publisher puts in its audio packets, where it does.
        let rtp_levels = Arc::new(levels::RtpLevels::default());
        rtp_levels.watch(&pads::static_pad(&audio_tee, "sink")?, &audio_tee);
        members::link_received_tracks(
            publish.element(),
            &video_tee,
            &audio_tee,
            &self.owners,
            id,
            &self.events,
        );
        for element in [
            &video_tee,
            &audio_tee,
            subscription.peer.element(),
            publish.element(),
        ] {
            element.sync_state_with_parent()?;
        }
        Ok(Member {
            id: id.clone(),
            name: display_name.to_owned(),
            publish,
            publish_lines: Vec::new(),
            publish_attached: false,
            video_tee,
            audio_tee,
            rtp_levels,
            published: Vec::new(),
            subscription,
            replaced: None,
            subscribe_offered: false,
            video_keyframes,
            audio_keyframes,
        })
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
        let sub = self
            .member_mut(subscriber)
            .ok_or_else(|| anyhow!("subscriber {subscriber} is gone"))?;
        let subscription = &mut sub.subscription;
        let connected = subscription.connected.clone();
        let subscribe = subscription.peer.element().clone();
        let mline = subscription.next_mline;
        subscription.next_mline += 1;
        let offered = subscribe_pt(kind);
        let gate = ForwardGate::new(
            &subscription.gate_name(subscriber, publisher, kind),
            connected,
            kind == MediaKind::Video,
            offered,
            // Past the tee's limiter: a subscriber's first picture should not
            // wait out someone else's request.
            || keyframes::request(true),
        );
        self.owners.add(
            self.pipeline.upcast_ref(),
            subscriber,
            std::slice::from_ref(&gate.element),
        )?;
        let sink = subscribe
            .request_pad_simple(&format!("sink_{mline}"))
            .ok_or_else(|| anyhow!("webrtcbin gave no sink_{mline} pad"))?;
        // Its caps at once, before anything else: an offer made meanwhile
        // (off this task) fails on a transceiver without them (peer.rs).
        let transceiver = webrtc::pad_transceiver(&sink)
            .ok_or_else(|| anyhow!("sink_{mline} has no transceiver"))?;
        let ssrc = caps.structure(0).and_then(|s| s.get::<u32>("ssrc").ok());
        transceiver.set_codec_preferences(Some(&subscribe_preferences(kind, offered, ssrc)));
        transceiver.set_direction(WebRTCRTPTransceiverDirection::Sendonly);
        pads::static_pad(&gate.element, "src")?.link(&sink)?;
        gate.element.sync_state_with_parent()?;
        let tee_pad = pads::branch_tee(&tee, &gate.element)?;
        let sub = self
            .member_mut(subscriber)
            .ok_or_else(|| anyhow!("subscriber {subscriber} is gone"))?;
        sub.subscription.forwards.push(Forward {
            publisher: publisher.clone(),
            kind,
            mline,
            ssrc,
            tee_pad,
            gate,
            transceiver,
            offered: false,
            mid: None,
        });
        Ok(())
    }

    /// A publisher's track started arriving: forward it to everyone else.
    /// Returns the subscribers whose subscribe connection changed.
    fn track_published(
        &mut self,
        publisher: &ParticipantId,
        kind: MediaKind,
        caps: gst::Caps,
    ) -> Result<()> {
        let Some(member) = self.member_mut(publisher) else {
            return Ok(());
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
        tracing::debug!(room = %self.room, participant = %publisher, kind = kind.name(), "track forwarded");
        self.tracks_changed(&subscribers);
        Ok(())
    }

    /// The subscribers' tracks changed: an offer goes to each now, or after
    /// the answer to the one outstanding. A subscriber whose subscription
    /// has worn (the m-lines of publishers who left pile up) and has no
    /// negotiation under way gets a fresh one instead.
    fn tracks_changed(&mut self, subscribers: &[ParticipantId]) {
        for subscriber in subscribers {
            let Some(member) = self.member_mut(subscriber) else {
                continue;
            };
            let subscription = &member.subscription;
            let renew = member.subscribe_offered
                && member.replaced.is_none()
                && subscription.worn()
                && !subscription.forwards.is_empty()
                && subscription.settled();
            if renew {
                match self.renew_subscription(subscriber) {
                    Ok(()) => continue,
                    Err(e) => tracing::warn!(
                        participant = %subscriber,
                        "no fresh subscribe connection, the old one goes on: {e:#}"
                    ),
                }
            }
            if let Some(member) = self.member_mut(subscriber) {
                member.subscription.peer.changed();
            }
        }
    }

    /// Replaces a subscriber's subscription by a fresh one with everything
    /// published now and offers it; the old one forwards on until the
    /// fresh one is connected (`close_replaced`).
    fn renew_subscription(&mut self, subscriber: &ParticipantId) -> Result<()> {
        let generation = self
            .member(subscriber)
            .ok_or_else(|| anyhow!("subscriber {subscriber} is gone"))?
            .subscription
            .generation
            + 1;
        let fresh = Subscription::new(
            &self.pipeline,
            &self.owners,
            &self.settings,
            subscriber,
            generation,
            &self.events,
        )?;
        if let Err(e) = fresh.peer.element().sync_state_with_parent() {
            members::stop_off_thread(fresh.close(&self.owners, &self.pipeline));
            return Err(e.into());
        }
        let member = self
            .member_mut(subscriber)
            .ok_or_else(|| anyhow!("subscriber {subscriber} is gone"))?;
        let old = std::mem::replace(&mut member.subscription, fresh);
        tracing::info!(
            participant = %subscriber,
            generation,
            ended = old.ended.len(),
            live = old.forwards.len(),
            "a fresh subscribe connection replaces one with more ended m-lines than it can reuse"
        );
        // Nothing the old connection does is the subscriber's state now.
        old.peer.mute();
        member.replaced = Some(old);
        if let Err(e) = self.forward_everything_to(subscriber) {
            tracing::warn!(participant = %subscriber, "a track is missing from the fresh subscribe connection: {e:#}");
        }
        if let Some(member) = self.member_mut(subscriber) {
            member.subscription.peer.changed();
        }
        Ok(())
    }

    /// The fresh subscription is connected: the one it replaced goes.
    fn close_replaced(&mut self, subscriber: &ParticipantId) {
        let Some(old) = self
            .member_mut(subscriber)
            .and_then(|member| member.replaced.take())
        else {
            return;
        };
        tracing::info!(participant = %subscriber, "the replaced subscribe connection is closed");
        members::stop_off_thread(old.close(&self.owners, &self.pipeline));
    }

    /// A client's offer on its publish connection: applied off the room's
    /// task; every audio and video m-line the client sends on is received
    /// (recvonly) with the codec it chose (gridmix sends nothing on the
    /// publish connection); answered once applied.
    fn publish_offer(
        &mut self,
        id: &ParticipantId,
        offer: CheckedOffer,
    ) -> Result<(), ProtocolError> {
        let lines: Vec<MediaLine> = offer
            .summary
            .media
            .iter()
            .filter(|l| l.kind != MediaKind::Other && !l.rejected)
            .cloned()
            .collect();
        offer.summary.check_usable(&lines)?;
        let member = self.member_mut(id).ok_or_else(not_joined)?;
        member.publish.receive_offer(&offer.text)?;
        member.publish_lines = lines;
        Ok(())
    }

    /// The client's answer on its subscribe connection, to the offer
    /// outstanding.
    fn subscribe_answer(&mut self, id: &ParticipantId, sdp: &str) -> Result<(), ProtocolError> {
        let member = self.member_mut(id).ok_or_else(not_joined)?;
        if !member.subscription.peer.awaiting_answer() {
            return Err(ProtocolError::new(
                ErrorCode::BadState,
                "There is no subscribe offer outstanding to answer.",
            ));
        }
        let answer = summarize_answer(sdp)?;
        answer.check_answer_to(member.subscription.offered_mlines)?;
        member.subscription.peer.receive_answer(sdp)?;
        member.subscription.pending_answer = Some(answer);
        Ok(())
    }

    /// A negotiation step of one of a participant's connections came back.
    fn negotiated(
        &mut self,
        id: &ParticipantId,
        pc: PeerConnection,
        result: Result<Step, StepFailure>,
    ) {
        let Some(member) = self.members.iter_mut().find(|m| &m.id == id) else {
            return;
        };
        let peer = match pc {
            PeerConnection::Publish => &mut member.publish,
            PeerConnection::Subscribe => &mut member.subscription.peer,
        };
        match peer.step_done(result) {
            Ok(Step::OfferApplied) => {
                if !member.publish_attached {
                    member.publish_attached = true;
                    for line in &member.publish_lines {
                        let Some(pt) = line.payload_type else {
                            continue;
                        };
                        if !line.direction.client_sends() {
                            continue;
                        }
                        let caps = member
                            .rtp_levels
                            .answer_caps(line, webrtc::rtp_caps(line.kind, pt));
                        let transceiver = member
                            .publish
                            .element()
                            .emit_by_name::<WebRTCRTPTransceiver>(
                                "add-transceiver",
                                &[&WebRTCRTPTransceiverDirection::Recvonly, &caps],
                            );
                        transceiver.set_codec_preferences(Some(&caps));
                    }
                }
                member.publish.answer();
            }
            Ok(Step::Answered(sdp)) => {
                tracing::info!(participant = %id, "publish offer answered");
                self.outputs.push(MediaOutput::Send(
                    id.clone(),
                    ServerMessage::Answer { sdp, from: None },
                ));
            }
            Ok(Step::Offered(text)) => {
                member.subscribe_offered = true;
                let subscription = &mut member.subscription;
                let new_connection = subscription.opens_new_connection();
                let mlines = text.lines().filter(|l| l.starts_with("m=")).count();
                subscription.offered(summarize_offer(&text).ok().as_ref(), mlines);
                // The stream id of each forwarded m-line is its publisher's id.
                let sdp = label_tracks(&text, &subscription.labels());
                tracing::info!(participant = %id, new_connection, "subscribe offer sent");
                tracing::debug!(participant = %id, "subscribe offer:\n{sdp}");
                self.outputs.push(MediaOutput::Send(
                    id.clone(),
                    ServerMessage::Offer {
                        sdp,
                        from: None,
                        new_connection,
                    },
                ));
                // The client has a connection to add them to now.
                self.outputs.append(&mut subscription.held_candidates);
            }
            Ok(Step::AnswerApplied) => {
                tracing::info!(participant = %id, "subscribe answer applied");
                let subscription = &mut member.subscription;
                let refused = match subscription.pending_answer.take() {
                    Some(answer) => {
                        let refused = subscription.take_refused(&answer);
                        subscription.open_answered(&answer, subscribe_pt);
                        refused
                    }
                    None => Vec::new(),
                };
                self.drop_refused(id, refused);
                // New m-lines start with a keyframe from their publishers.
                let publishers = self.video_publishers_for(id);
                self.request_keyframes(&publishers);
            }
            Err(failure) => {
                member.subscription.pending_answer = None;
                tracing::info!(participant = %id, "{pc:?} negotiation failed: {}", failure.message);
                self.outputs.push(if failure.refused {
                    MediaOutput::Send(id.clone(), failure.to_error().to_message())
                } else {
                    MediaOutput::Failed(id.clone(), failure.to_error())
                });
            }
        }
    }

    /// Forwards a subscriber's answer refused: each is logged and taken out
    /// of the pipeline; its publisher and everyone else's forwards of it go
    /// on as they were.
    fn drop_refused(&mut self, subscriber: &ParticipantId, refused: Vec<Forward>) {
        if refused.is_empty() {
            return;
        }
        let mut removed = Vec::new();
        for forward in refused {
            tracing::warn!(
                participant = %subscriber,
                publisher = %forward.publisher,
                "the subscriber refused the {} m-line {}: that track is not forwarded to them",
                forward.kind.name(),
                forward.mline
            );
            let Some(index) = self.members.iter().position(|m| &m.id == subscriber) else {
                continue;
            };
            let subscription = &mut self.members[index].subscription;
            removed.push(subscription.retire(forward, &self.owners, &self.pipeline));
        }
        members::stop_off_thread(removed);
    }

    /// Sends the keyframe requests held back by the limiters that are now
    /// due. Called on the room's tick.
    fn poll_keyframes(&self) {
        for member in &self.members {
            member.video_keyframes.poll();
            member.audio_keyframes.poll();
        }
    }

    /// A keyframe from each publisher, for subscribers that just connected.
    fn request_keyframes(&self, publishers: &[ParticipantId]) {
        for publisher in publishers {
            if let Some(member) = self.member(publisher) {
                member.video_keyframes.ask();
            }
        }
    }

    /// The publishers whose video a participant receives.
    fn video_publishers_for(&self, subscriber: &ParticipantId) -> Vec<ParticipantId> {
        self.member(subscriber)
            .map(|m| {
                m.subscription
                    .forwards
                    .iter()
                    .filter(|f| f.kind == MediaKind::Video)
                    .map(|f| f.publisher.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn candidate(
        &mut self,
        id: &ParticipantId,
        pc: PeerConnection,
        mline: u32,
        candidate: String,
    ) -> Result<(), ProtocolError> {
        let member = self.member_mut(id).ok_or_else(not_joined)?;
        match pc {
            PeerConnection::Publish => member.publish.add_candidate(mline, candidate),
            PeerConnection::Subscribe if member.subscribe_offered => {
                member.subscription.peer.add_candidate(mline, candidate)
            }
            PeerConnection::Subscribe => Err(ProtocolError::new(
                ErrorCode::BadState,
                "There is no subscribe connection yet: the server has not offered one.",
            )),
        }
    }

    /// Removes a participant: their webrtcbins and tees, their forwards to
    /// others (whose m-lines go inactive, offered to each anew), all stopped
    /// off the room's task.
    fn remove(&mut self, id: &ParticipantId) {
        let Some(index) = self.members.iter().position(|m| &m.id == id) else {
            return;
        };
        let member = self.members.remove(index);
        let mut removed = match self.program.as_mut() {
            Some(program) => program.remove_participant(&self.pipeline, id),
            None => Vec::new(),
        };
        // What the leaver received: its subscriptions, with the pads they
        // held on others' tees.
        for subscription in std::iter::once(member.subscription).chain(member.replaced) {
            removed.extend(subscription.close(&self.owners, &self.pipeline));
        }
        removed.extend(self.owners.remove_all(&self.pipeline, id));
        // What the leaver sent: stop it at everyone else.
        let mut changed = Vec::new();
        for other in &mut self.members {
            if let Some(replaced) = other.replaced.as_mut() {
                for forward in replaced.take_from(id) {
                    removed.push(replaced.retire(forward, &self.owners, &self.pipeline));
                }
            }
            let gone = other.subscription.take_from(id);
            if gone.is_empty() {
                continue;
            }
            for forward in gone {
                removed.push(
                    other
                        .subscription
                        .retire(forward, &self.owners, &self.pipeline),
                );
            }
            changed.push(other.id.clone());
        }
        members::sort_for_stopping(&mut removed);
        members::stop_off_thread(removed);
        self.tracks_changed(&changed);
    }

    /// What recordings tap, building the composite and mix from the
    /// forwarded tracks if no recording runs yet.
    fn feeds(&mut self) -> Result<Feeds> {
        if self.program.is_none() {
            match self.build_program() {
                Ok(program) => self.program = Some(program),
                Err(e) => {
                    members::stop_off_thread(crate::media::program::remove_program(&self.pipeline));
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
            program.add_participant(&member.id, &member.name)?;
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
}

impl RoomMedia for SfuRouter {
    fn add_participant(&mut self, id: &ParticipantId, name: &str) -> Result<()> {
        self.add(id, name)
    }

    fn remove_participant(&mut self, id: &ParticipantId) {
        self.remove(id);
    }

    fn signal(&mut self, id: &ParticipantId, signal: MediaSignal) -> Result<(), ProtocolError> {
        match signal {
            MediaSignal::PublishOffer(offer) => self.publish_offer(id, offer),
            MediaSignal::SubscribeAnswer(sdp) => self.subscribe_answer(id, &sdp),
            MediaSignal::Candidate {
                pc,
                mline,
                candidate,
            } => self.candidate(id, pc, mline, candidate),
            MediaSignal::Quality(_) => Err(quality_needs_mcu()),
        }
    }

    fn on_event(&mut self, event: MediaEvent) {
        if let Some(output) = connection_output(&event) {
            // A subscribe connection's candidates wait for its first offer.
            let held = match &event {
                MediaEvent::IceCandidate {
                    participant,
                    pc: PeerConnection::Subscribe,
                    ..
                } => self
                    .member_mut(participant)
                    .map(|m| &mut m.subscription)
                    .filter(|s| s.offers_sent == 0),
                _ => None,
            };
            match held {
                Some(subscription) => subscription.held_candidates.push(output),
                None => self.outputs.push(output),
            }
        }
        match event {
            MediaEvent::ConnectionState {
                participant,
                pc,
                state,
            } => {
                tracing::info!(participant = %participant, "{pc:?} connection {state:?}");
                if pc == PeerConnection::Subscribe && state == WebRTCPeerConnectionState::Connected
                {
                    self.close_replaced(&participant);
                    let publishers = self.video_publishers_for(&participant);
                    self.request_keyframes(&publishers);
                }
            }
            MediaEvent::TrackPublished {
                participant,
                kind,
                caps,
            } => {
                if let Err(e) = self.track_published(&participant, kind, caps) {
                    tracing::error!(participant = %participant, "could not forward a track: {e:#}");
                }
            }
            MediaEvent::Negotiated {
                participant,
                pc,
                result,
            } => self.negotiated(&participant, pc, result),
            MediaEvent::IceCandidate { .. } | MediaEvent::RungReached { .. } => {}
        }
    }

    fn tick(&mut self) {
        self.poll_keyframes();
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

    /// No recording runs any more: the composite goes.
    fn close_recording_feeds(&mut self) {
        if let Some(program) = self.program.take() {
            members::stop_off_thread(program.close(&self.pipeline));
        }
    }
}

/// As for the MCU mixer: dropping the router stops its pipeline. Blocking.
impl Drop for SfuRouter {
    fn drop(&mut self) {
        members::stop_pipeline(&self.pipeline);
    }
}
