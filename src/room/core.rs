//! A room without GStreamer: who is in it (in join order, which is also tile
//! order), the rules of joining, leaving and being removed, what a viewer
//! may send, the mesh relay, and what everyone is told. It drives the room's
//! media through `RoomMedia` and returns what is to be sent as `Effect`s;
//! the room's task (task.rs) delivers them. Tested against a fake media
//! without GStreamer (below).

use crate::ids::{ParticipantId, RoomId};
use crate::media::backend::{MediaOutput, MediaSignal, RoomMedia, quality_needs_mcu};
use crate::media::sdp::{CheckedOffer, summarize_answer, summarize_offer};
use crate::media::speakers::{SpeakerDetector, SpeakerSettings, Speakers};
use crate::protocol::{
    ClientMessage, ErrorCode, IceCandidate, IceServer, Layout, Mode, ParticipantInfo,
    ProtocolError, ServerMessage,
};
use crate::room::layout::{
    self, LayoutError, LayoutErrorCode, LayoutSpec, Placement, SpeakerOrder,
};
use crate::room::mix_choice::MixChoice;
use crate::turn::TurnSettings;

/// What the room's task is to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Hand a message to a participant's session.
    Send(ParticipantId, ServerMessage),
    /// The participant is out of the room: its outbox is dropped, so its
    /// session hears it (and ends, unless it asked to leave).
    Release(ParticipantId),
}

#[derive(Debug, Clone)]
struct Member {
    id: ParticipantId,
    name: String,
    /// False for a viewer's token: it may receive, not send.
    can_publish: bool,
    /// When its TURN credentials are renewed (unix seconds), if it has any.
    renew_credentials_at: Option<u64>,
}

impl Member {
    fn info(&self) -> ParticipantInfo {
        ParticipantInfo {
            id: self.id.to_string(),
            name: self.name.clone(),
        }
    }
}

/// How a room admits people, from the server's settings.
#[derive(Debug, Clone)]
pub struct Admission {
    pub max_participants: usize,
    /// Sent to clients in "joined", in RTCIceServer form.
    pub ice_servers: Vec<IceServer>,
    /// Each participant gets its own short-lived credentials for it.
    pub turn: Option<TurnSettings>,
}

/// An MCU room's composite and mix, as far as who is shown where and who
/// is heard go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Composite {
    /// The canvas, in pixels.
    pub canvas: (u32, u32),
    /// Most participants shown at once.
    pub max_visible: usize,
    /// Most voices mixed at once, the pinned one aside (top-k audio).
    pub max_mixed: usize,
}

/// Who is shown where, in a room with a composite.
struct Arrangement {
    composite: Composite,
    spec: LayoutSpec<ParticipantId>,
    order: SpeakerOrder<ParticipantId>,
    /// As the media was last told.
    placements: Vec<Placement<ParticipantId>>,
}

pub struct RoomCore {
    room: RoomId,
    mode: Mode,
    admission: Admission,
    /// In join order.
    members: Vec<Member>,
    /// Who speaks, from the audio levels the media measures.
    speakers: SpeakerDetector<ParticipantId>,
    /// MCU rooms: the layout of the composite.
    arrangement: Option<Arrangement>,
    /// MCU rooms: whose voices are mixed.
    mix: Option<MixChoice<ParticipantId>>,
}

impl RoomCore {
    pub fn new(
        room: RoomId,
        mode: Mode,
        admission: Admission,
        composite: Option<Composite>,
    ) -> Self {
        RoomCore {
            room,
            mode,
            admission,
            members: Vec::new(),
            speakers: SpeakerDetector::new(SpeakerSettings::default()),
            mix: composite.map(|c| MixChoice::new(c.max_mixed)),
            arrangement: composite.map(|composite| Arrangement {
                composite,
                spec: LayoutSpec::default(),
                order: SpeakerOrder::default(),
                placements: Vec::new(),
            }),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn contains(&self, id: &ParticipantId) -> bool {
        self.members.iter().any(|m| &m.id == id)
    }

    /// Everyone in the room, in join order.
    pub fn participants(&self) -> Vec<ParticipantInfo> {
        self.members.iter().map(Member::info).collect()
    }

    /// Whose voices are mixed now (MCU rooms).
    pub fn mixed(&self) -> Vec<String> {
        self.mix.as_ref().map_or_else(Vec::new, |mix| {
            mix.mixed().iter().map(ToString::to_string).collect()
        })
    }

    pub fn ids(&self) -> Vec<ParticipantId> {
        self.members.iter().map(|m| m.id.clone()).collect()
    }

    /// A new participant, told "joined"; the others told of it.
    pub fn join(
        &mut self,
        media: &mut dyn RoomMedia,
        id: ParticipantId,
        name: String,
        can_publish: bool,
        now_unix: u64,
    ) -> Result<Vec<Effect>, ProtocolError> {
        let max = self.admission.max_participants;
        if self.members.len() >= max {
            return Err(ProtocolError::new(
                ErrorCode::RoomFull,
                format!("The room is full ({max} participants)."),
            ));
        }
        media.add_participant(&id, &name).map_err(|e| {
            tracing::error!(participant = %id, "could not add participant: {e:#}");
            ProtocolError::new(
                ErrorCode::Internal,
                "The server could not add you to the room's media.",
            )
        })?;
        let newcomer = Member {
            id: id.clone(),
            name,
            can_publish,
            renew_credentials_at: self
                .admission
                .turn
                .as_ref()
                .map(|turn| now_unix.saturating_add(turn.renew_after_secs())),
        };
        let ice_servers = self.ice_servers_for(&id, now_unix);
        let mut effects = vec![Effect::Send(
            id.clone(),
            ServerMessage::Joined {
                room: self.room.to_string(),
                participant: id.to_string(),
                mode: self.mode,
                participants: self.participants(),
                ice_servers,
                resume_token: None,
            },
        )];
        effects.extend(self.tell_others(
            &id,
            ServerMessage::ParticipantJoined {
                participant: newcomer.info(),
            },
        ));
        tracing::info!(participant = %id, name = %newcomer.name, count = self.members.len() + 1, "joined");
        self.members.push(newcomer);
        let rearranged = self.rearrange(media, false);
        // Joining changed nothing on the composite (the newcomer is not
        // shown): the media still learns where the newcomer is not, and
        // the newcomer learns the layout.
        if rearranged.is_empty()
            && let Some(arrangement) = &self.arrangement
        {
            media.arrange(&arrangement.placements);
            effects.extend(self.layout_message().map(|m| Effect::Send(id, m)));
        }
        effects.extend(rearranged);
        effects.extend(self.media_outputs(media));
        Ok(effects)
    }

    /// The ICE servers for one participant: the shared ones, and TURN with
    /// credentials of its own valid from `now_unix`.
    fn ice_servers_for(&self, id: &ParticipantId, now_unix: u64) -> Vec<IceServer> {
        let mut ice_servers = self.admission.ice_servers.clone();
        if let Some(turn) = &self.admission.turn {
            ice_servers.push(turn.ice_server(id.as_str(), now_unix));
        }
        ice_servers
    }

    /// Fresh TURN credentials, as "ice-servers", for everyone whose
    /// credentials are half-way through their lifetime: a long call keeps
    /// valid ones for the connections it opens later (a mesh newcomer, an
    /// ICE restart), while those handed out stay short-lived.
    pub fn renew_credentials(&mut self, now_unix: u64) -> Vec<Effect> {
        let Some(renew_after) = self.admission.turn.as_ref().map(|t| t.renew_after_secs()) else {
            return Vec::new();
        };
        let due: Vec<ParticipantId> = self
            .members
            .iter_mut()
            .filter(|m| m.renew_credentials_at.is_some_and(|at| at <= now_unix))
            .map(|m| {
                m.renew_credentials_at = Some(now_unix.saturating_add(renew_after));
                m.id.clone()
            })
            .collect();
        due.into_iter()
            .map(|id| {
                let ice_servers = self.ice_servers_for(&id, now_unix);
                Effect::Send(id, ServerMessage::IceServers { ice_servers })
            })
            .collect()
    }

    /// A participant's signaling: relayed to a peer (mesh) or handed to the
    /// media; an error goes back to the sender.
    pub fn signal(
        &mut self,
        media: &mut dyn RoomMedia,
        from: &ParticipantId,
        message: ClientMessage,
    ) -> Vec<Effect> {
        let mut effects = match self.route(media, from, message) {
            Ok(effects) => effects,
            Err(e) => vec![Effect::Send(from.clone(), e.to_message())],
        };
        effects.extend(self.media_outputs(media));
        effects
    }

    fn route(
        &mut self,
        media: &mut dyn RoomMedia,
        from: &ParticipantId,
        message: ClientMessage,
    ) -> Result<Vec<Effect>, ProtocolError> {
        let member =
            self.members.iter().find(|m| &m.id == from).ok_or_else(|| {
                ProtocolError::new(ErrorCode::NotJoined, "You are not in this room.")
            })?;
        if !member.can_publish {
            refuse_publishing(self.mode, &message)?;
        }
        match (self.mode, message) {
            (
                _,
                ClientMessage::Join { .. } | ClientMessage::Leave | ClientMessage::Resume { .. },
            ) => Err(ProtocolError::new(
                ErrorCode::BadState,
                "join and leave are handled by the session, not the room.",
            )),
            (Mode::Mesh, ClientMessage::Offer { sdp, to }) => {
                self.relay(from, to, |from| ServerMessage::Offer {
                    sdp,
                    from,
                    new_connection: false,
                })
            }
            (Mode::Mesh, ClientMessage::Answer { sdp, to }) => {
                self.relay(from, to, |from| ServerMessage::Answer { sdp, from })
            }
            (Mode::Mesh, ClientMessage::Ice(ice)) => {
                let to = ice.to.clone();
                self.relay(from, to, |from| {
                    ServerMessage::Ice(IceCandidate {
                        to: None,
                        from,
                        ..ice
                    })
                })
            }
            (Mode::Mcu, ClientMessage::Quality { max }) => {
                media.signal(from, MediaSignal::Quality(max))?;
                Ok(Vec::new())
            }
            (_, ClientMessage::Quality { .. }) => Err(quality_needs_mcu()),
            (_, ClientMessage::Offer { sdp, .. }) => {
                let offer = CheckedOffer::publish(sdp)?;
                media.signal(from, MediaSignal::PublishOffer(offer))?;
                Ok(Vec::new())
            }
            (_, ClientMessage::Answer { sdp, .. }) => {
                media.signal(from, MediaSignal::SubscribeAnswer(sdp))?;
                Ok(Vec::new())
            }
            (_, ClientMessage::Ice(ice)) => {
                media.signal(
                    from,
                    MediaSignal::Candidate {
                        pc: ice.pc,
                        mline: ice.sdp_mline_index,
                        candidate: ice.candidate,
                    },
                )?;
                Ok(Vec::new())
            }
        }
    }

    /// Mesh: a message to the participant `to` names, saying who it is from.
    fn relay(
        &self,
        from: &ParticipantId,
        to: Option<String>,
        message: impl FnOnce(Option<String>) -> ServerMessage,
    ) -> Result<Vec<Effect>, ProtocolError> {
        let Some(to) = to else {
            return Err(ProtocolError::new(
                ErrorCode::BadMessage,
                "In a mesh room, offer, answer and ice must say \"to\" which participant they are for.",
            ));
        };
        let Some(target) = self.members.iter().find(|m| m.id.as_str() == to) else {
            return Err(ProtocolError::new(
                ErrorCode::UnknownParticipant,
                format!(
                    "There is no participant \"{}\" in this room.",
                    to.chars().take(40).collect::<String>()
                ),
            ));
        };
        if &target.id == from {
            return Err(ProtocolError::new(
                ErrorCode::BadMessage,
                "A participant cannot send signaling to itself.",
            ));
        }
        Ok(vec![Effect::Send(
            target.id.clone(),
            message(Some(from.to_string())),
        )])
    }

    /// A participant leaves (its own "leave", or its session ended).
    pub fn leave(&mut self, media: &mut dyn RoomMedia, id: &ParticipantId) -> Vec<Effect> {
        self.remove(media, id, None, "left")
    }

    /// Takes a participant out of the room and its media, telling it `told`
    /// first (why it was removed) and the others that it left.
    pub fn remove(
        &mut self,
        media: &mut dyn RoomMedia,
        id: &ParticipantId,
        told: Option<ProtocolError>,
        why: &str,
    ) -> Vec<Effect> {
        let Some(index) = self.members.iter().position(|m| &m.id == id) else {
            return Vec::new();
        };
        let mut effects = Vec::new();
        if let Some(told) = told {
            effects.push(Effect::Send(id.clone(), told.to_message()));
        }
        self.members.remove(index);
        self.speakers.remove(id);
        media.remove_participant(id);
        if let Some(mix) = self.mix.as_mut() {
            mix.forget(id);
        }
        if let Some(arrangement) = self.arrangement.as_mut() {
            arrangement.order.forget(id);
            if arrangement.spec.pin.as_ref() == Some(id) {
                arrangement.spec.pin = None;
            }
        }
        tracing::info!(participant = %id, count = self.members.len(), "{why}");
        effects.push(Effect::Release(id.clone()));
        effects.extend(self.tell_others(
            id,
            ServerMessage::ParticipantLeft {
                participant: id.to_string(),
            },
        ));
        effects.extend(self.rearrange(media, false));
        self.remix(media, std::time::Instant::now());
        effects.extend(self.media_outputs(media));
        effects
    }

    /// Everyone out, each told `told` (the room's media failed, or it
    /// closes).
    pub fn remove_everyone(
        &mut self,
        media: &mut dyn RoomMedia,
        told: Option<ProtocolError>,
        why: &str,
    ) -> Vec<Effect> {
        let mut effects = Vec::new();
        for id in self.ids() {
            effects.extend(self.remove(media, &id, told.clone(), why));
        }
        effects
    }

    /// What the media has for the room (after an event, a tick or a
    /// signal): messages to deliver, participants to remove.
    pub fn media_outputs(&mut self, media: &mut dyn RoomMedia) -> Vec<Effect> {
        let mut effects = Vec::new();
        loop {
            let outputs = media.take_outputs();
            if outputs.is_empty() {
                return effects;
            }
            for output in outputs {
                match output {
                    MediaOutput::Send(id, message) if self.contains(&id) => {
                        effects.push(Effect::Send(id, message));
                    }
                    // For someone no longer here: nothing to do.
                    MediaOutput::Send(..) => {}
                    MediaOutput::Failed(id, told) => {
                        tracing::warn!(participant = %id, "removed: {}", told.message);
                        effects.extend(self.remove(media, &id, Some(told), "media failed"));
                    }
                }
            }
        }
    }

    /// One audio level of a participant's voice (dBov), as the media
    /// measured it at `at`.
    pub fn audio_level(&mut self, id: &ParticipantId, at: std::time::Instant, dbov: f64) {
        if self.contains(id) {
            self.speakers.add_level(id, at, dbov);
            if let Some(mix) = self.mix.as_mut() {
                mix.reading(id, at, dbov > self.speakers.threshold_dbov());
            }
        }
    }

    /// Re-decides whose voices are mixed (MCU rooms); the media is told
    /// of a change.
    fn remix(&mut self, media: &mut dyn RoomMedia, now: std::time::Instant) {
        let joined = self.ids();
        let pin = self.arrangement.as_ref().and_then(|a| a.spec.pin.as_ref());
        let Some(mix) = self.mix.as_mut() else {
            return;
        };
        if let Some(mixed) = mix.choose(&joined, pin, now) {
            media.mix(&mixed);
        }
    }

    /// Re-decides who speaks; everyone hears of a change, and of the
    /// composite's new layout if it changes with it.
    pub fn update_speakers(
        &mut self,
        media: &mut dyn RoomMedia,
        now: std::time::Instant,
    ) -> Vec<Effect> {
        self.remix(media, now);
        let Some(speakers) = self.speakers.update(now) else {
            return Vec::new();
        };
        if let Some(arrangement) = self.arrangement.as_mut() {
            arrangement.order.heard(&speakers);
        }
        let mut effects = self.tell_everyone(speakers_message(&speakers));
        effects.extend(self.rearrange(media, false));
        effects
    }

    /// A new layout for the composite, from the room's admin: applied at
    /// once and announced to everyone. Returns it as announced.
    pub fn set_layout(
        &mut self,
        media: &mut dyn RoomMedia,
        spec: &LayoutSpec<String>,
    ) -> Result<(Layout, Vec<Effect>), LayoutError> {
        let members = &self.members;
        let Some(arrangement) = self.arrangement.as_mut() else {
            return Err(layout::not_composited(self.mode));
        };
        let spec = spec
            .map(|name| {
                members
                    .iter()
                    .find(|m| m.id.as_str() == name)
                    .map(|m| m.id.clone())
                    .ok_or_else(|| name.chars().take(40).collect())
            })
            .map_err(|name| {
                LayoutError::new(
                    LayoutErrorCode::UnknownParticipant,
                    format!("There is no participant \"{name}\" in this room."),
                )
            })?;
        media.show_captions(spec.captions);
        arrangement.spec = spec;
        // A pinned participant is heard, whether or not they speak.
        self.remix(media, std::time::Instant::now());
        let effects = self.rearrange(media, true);
        let layout = self.layout().expect("a room with a composite");
        Ok((layout, effects))
    }

    /// The composite's layout as everyone was last told it (none in rooms
    /// without a composite).
    pub fn layout(&self) -> Option<Layout> {
        let arrangement = self.arrangement.as_ref()?;
        Some(Layout {
            layout: arrangement.spec.kind,
            pin: arrangement.spec.pin.as_ref().map(ToString::to_string),
            captions: arrangement.spec.captions,
            tiles: layout::tiles_message(&arrangement.placements, arrangement.composite.canvas),
        })
    }

    fn layout_message(&self) -> Option<ServerMessage> {
        self.layout().map(ServerMessage::Layout)
    }

    /// Works out who is shown where; if that changed (or `announce`), the
    /// media moves the tiles and everyone is told.
    fn rearrange(&mut self, media: &mut dyn RoomMedia, announce: bool) -> Vec<Effect> {
        let joined = self.ids();
        let Some(arrangement) = self.arrangement.as_mut() else {
            return Vec::new();
        };
        let precedence = arrangement
            .order
            .precedence(arrangement.spec.pin.as_ref(), &joined);
        let placements = layout::arrange(
            &arrangement.spec,
            &joined,
            &precedence,
            arrangement.composite.canvas,
            arrangement.composite.max_visible,
        );
        if placements == arrangement.placements && !announce {
            return Vec::new();
        }
        if placements != arrangement.placements {
            media.arrange(&placements);
            arrangement.placements = placements;
        }
        match self.layout_message() {
            Some(message) => self.tell_everyone(message),
            None => Vec::new(),
        }
    }

    /// A message to everyone in the room.
    pub fn tell_everyone(&self, message: ServerMessage) -> Vec<Effect> {
        self.members
            .iter()
            .map(|m| Effect::Send(m.id.clone(), message.clone()))
            .collect()
    }

    fn tell_others(&self, except: &ParticipantId, message: ServerMessage) -> Vec<Effect> {
        self.members
            .iter()
            .filter(|m| &m.id != except)
            .map(|m| Effect::Send(m.id.clone(), message.clone()))
            .collect()
    }
}

fn speakers_message(speakers: &Speakers<ParticipantId>) -> ServerMessage {
    ServerMessage::Speakers {
        active: speakers.active.iter().map(ToString::to_string).collect(),
        dominant: speakers.dominant.as_ref().map(ToString::to_string),
    }
}

/// A viewer (a token with canPublish false) may receive but not send: an
/// offer (or, in a mesh room, an answer) whose m-lines send media is refused.
/// MCU viewers offer recvonly; SFU viewers never open the publish
/// connection; mesh viewers offer recvonly and answer recvonly.
fn refuse_publishing(mode: Mode, message: &ClientMessage) -> Result<(), ProtocolError> {
    let summary = match (mode, message) {
        (_, ClientMessage::Offer { sdp, .. }) => summarize_offer(sdp)?,
        (Mode::Mesh, ClientMessage::Answer { sdp, .. }) => summarize_answer(sdp)?,
        _ => return Ok(()),
    };
    if mode == Mode::Sfu
        || summary
            .media
            .iter()
            .any(|m| !m.rejected && m.direction.client_sends())
    {
        return Err(ProtocolError::new(
            ErrorCode::Forbidden,
            "Your room token does not allow publishing: offer recvonly m-lines (and in an SFU room, do not open the publish connection).",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::events::MediaEvent;
    use crate::media::program::Feeds;

    /// What the room asked of its media, and what the media answers.
    #[derive(Default)]
    struct FakeMedia {
        calls: Vec<String>,
        /// Refuse to add participants (their media cannot be built).
        refuse_adding: bool,
        /// What `signal` answers.
        signal_result: Option<ProtocolError>,
        outputs: Vec<MediaOutput>,
        /// Each set of voices the room asked to be mixed, in turn.
        mixes: Vec<String>,
    }

    impl RoomMedia for FakeMedia {
        fn add_participant(&mut self, id: &ParticipantId, _: &str) -> anyhow::Result<()> {
            self.calls.push(format!("add {id}"));
            if self.refuse_adding {
                anyhow::bail!("no media today");
            }
            Ok(())
        }
        fn remove_participant(&mut self, id: &ParticipantId) {
            self.calls.push(format!("remove {id}"));
        }
        fn signal(&mut self, id: &ParticipantId, signal: MediaSignal) -> Result<(), ProtocolError> {
            let what = match signal {
                MediaSignal::PublishOffer(_) => "offer",
                MediaSignal::SubscribeAnswer(_) => "answer",
                MediaSignal::Candidate { .. } => "candidate",
                MediaSignal::Quality(_) => "quality",
            };
            self.calls.push(format!("{what} {id}"));
            self.signal_result.clone().map_or(Ok(()), Err)
        }
        fn on_event(&mut self, _: MediaEvent) {}
        fn tick(&mut self) {}
        fn take_outputs(&mut self) -> Vec<MediaOutput> {
            std::mem::take(&mut self.outputs)
        }
        fn pipeline(&self) -> Option<&gst::Pipeline> {
            None
        }
        fn owner_of(&self, _: &gst::Object) -> Option<ParticipantId> {
            None
        }
        fn recording_feeds(&mut self) -> anyhow::Result<Feeds> {
            anyhow::bail!("not here")
        }
        fn close_recording_feeds(&mut self) {}
        fn arrange(&mut self, placements: &[Placement<ParticipantId>]) {
            let shown: Vec<String> = placements
                .iter()
                .map(|p| format!("{}{}", p.participant, if p.main { "*" } else { "" }))
                .collect();
            self.calls.push(format!("arrange {}", shown.join(",")));
        }
        fn mix(&mut self, mixed: &[ParticipantId]) {
            let mixed: Vec<String> = mixed.iter().map(ToString::to_string).collect();
            self.mixes.push(mixed.join(","));
        }
        fn show_captions(&mut self, shown: bool) {
            self.calls
                .push(format!("captions {}", if shown { "on" } else { "off" }));
        }
    }

    fn room(mode: Mode, max: usize) -> RoomCore {
        room_with(mode, max, None)
    }

    fn room_with(mode: Mode, max: usize, composite: Option<Composite>) -> RoomCore {
        RoomCore::new(
            RoomId::parse("test").unwrap(),
            mode,
            Admission {
                max_participants: max,
                ice_servers: vec![IceServer {
                    urls: vec!["stun:stun.example.org:3478".into()],
                    username: None,
                    credential: None,
                }],
                turn: None,
            },
            composite,
        )
    }

    fn id(n: &str) -> ParticipantId {
        ParticipantId::from_existing(n)
    }

    fn join(
        core: &mut RoomCore,
        media: &mut FakeMedia,
        who: &str,
        can_publish: bool,
    ) -> Vec<Effect> {
        core.join(media, id(who), who.to_owned(), can_publish, 0)
            .unwrap()
    }

    const PUBLISH_OFFER: &str = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\na=rtpmap:96 VP8/90000\r\na=sendrecv\r\n";

    fn offer(sdp: &str) -> ClientMessage {
        ClientMessage::Offer {
            sdp: sdp.to_owned(),
            to: None,
        }
    }

    fn error_to(effects: &[Effect], who: &str) -> Option<ErrorCode> {
        effects.iter().find_map(|e| match e {
            Effect::Send(to, ServerMessage::Error { code, .. }) if to.as_str() == who => {
                Some(*code)
            }
            _ => None,
        })
    }

    #[test]
    fn everyone_hears_who_speaks_and_a_leaver_stops_counting() {
        let (mut core, mut media) = (room(Mode::Mcu, 4), FakeMedia::default());
        for who in ["ada", "bo", "cy"] {
            join(&mut core, &mut media, who, true);
        }
        let start = std::time::Instant::now();
        let mut told = Vec::new();
        for step in 1..=30u32 {
            let at = start + std::time::Duration::from_millis(50 * u64::from(step));
            core.audio_level(&id("ada"), at, -20.0);
            core.audio_level(&id("bo"), at, -90.0);
            // Levels of someone not in the room are not anyone's.
            core.audio_level(&id("ghost"), at, -5.0);
            told.extend(core.update_speakers(&mut media, at));
        }
        let expected = ServerMessage::Speakers {
            active: vec!["ada".into()],
            dominant: Some("ada".into()),
        };
        let mut heard: Vec<&str> = told
            .iter()
            .filter_map(|e| match e {
                Effect::Send(to, message) if *message == expected => Some(to.as_str()),
                _ => None,
            })
            .collect();
        heard.sort();
        assert_eq!(heard, ["ada", "bo", "cy"], "{told:?}");
        assert_eq!(told.len(), 3, "one change, told once each: {told:?}");
        // Ada leaves: she is no longer active nor dominant.
        core.leave(&mut media, &id("ada"));
        let after = core.update_speakers(&mut media, start + std::time::Duration::from_secs(2));
        let none = ServerMessage::Speakers {
            active: vec![],
            dominant: None,
        };
        assert!(
            after
                .iter()
                .all(|e| matches!(e, Effect::Send(_, m) if *m == none))
                && after.len() == 2,
            "{after:?}"
        );
    }

    fn layouts_sent(effects: &[Effect]) -> Vec<(String, Layout)> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Send(to, ServerMessage::Layout(layout)) => {
                    Some((to.to_string(), layout.clone()))
                }
                _ => None,
            })
            .collect()
    }

    const COMPOSITE: Composite = Composite {
        canvas: (1280, 720),
        max_visible: 16,
        max_mixed: 3,
    };

    #[test]
    fn the_composite_follows_joins_leaves_speakers_and_the_layout_set() {
        let mut core = room_with(Mode::Mcu, 8, Some(COMPOSITE));
        let mut media = FakeMedia::default();
        join(&mut core, &mut media, "ada", true);
        let effects = join(&mut core, &mut media, "bo", true);
        let told = layouts_sent(&effects);
        assert_eq!(told.len(), 2, "both hear of the new tile: {told:?}");
        assert_eq!(told[0].1.tiles.len(), 2);
        assert_eq!(media.calls.last().unwrap(), "arrange ada,bo");
        join(&mut core, &mut media, "cy", true);

        let speaker = layout::parse_layout_request(br#"{"layout":"speaker"}"#).unwrap();
        let (layout, effects) = core.set_layout(&mut media, &speaker).unwrap();
        assert_eq!(layouts_sent(&effects).len(), 3);
        assert_eq!(layout.tiles.iter().filter(|t| t.main).count(), 1);
        assert_eq!(media.calls.last().unwrap(), "arrange ada*,bo,cy");

        // Cy speaks: the main tile goes to cy.
        let start = std::time::Instant::now();
        let mut effects = Vec::new();
        for step in 1..=30u32 {
            let at = start + std::time::Duration::from_millis(50 * u64::from(step));
            core.audio_level(&id("cy"), at, -20.0);
            effects.extend(core.update_speakers(&mut media, at));
        }
        assert_eq!(media.calls.last().unwrap(), "arrange cy*,ada,bo");
        assert!(
            layouts_sent(&effects)
                .iter()
                .all(|(_, l)| l.tiles[0].participant == "cy")
        );

        // A pin holds the main tile though cy speaks; unknown names are refused.
        let pin_bo = layout::parse_layout_request(br#"{"layout":"speaker","pin":"bo"}"#).unwrap();
        let (layout, _) = core.set_layout(&mut media, &pin_bo).unwrap();
        assert_eq!(layout.pin.as_deref(), Some("bo"));
        assert_eq!(media.calls.last().unwrap(), "arrange bo*,ada,cy");
        let ghost = layout::parse_layout_request(br#"{"layout":"grid","pin":"ghost"}"#).unwrap();
        assert_eq!(
            core.set_layout(&mut media, &ghost).unwrap_err().code,
            LayoutErrorCode::UnknownParticipant
        );
        // The pinned one leaves: the pin goes with them, the speaker is main.
        let effects = core.leave(&mut media, &id("bo"));
        let told = layouts_sent(&effects);
        assert_eq!(told.len(), 2);
        assert_eq!(told[0].1.pin, None);
        assert_eq!(media.calls.last().unwrap(), "arrange cy*,ada");
        // Setting the same layout again still tells everyone.
        let (_, effects) = core.set_layout(&mut media, &speaker).unwrap();
        assert_eq!(layouts_sent(&effects).len(), 2);
    }

    #[test]
    fn captions_are_on_until_a_layout_turns_them_off_and_a_later_put_without_them_turns_them_on() {
        let mut core = room_with(Mode::Mcu, 8, Some(COMPOSITE));
        let mut media = FakeMedia::default();
        let effects = join(&mut core, &mut media, "ada", true);
        assert!(layouts_sent(&effects).iter().all(|(_, l)| l.captions));
        let off = layout::parse_layout_request(br#"{"layout":"grid","captions":false}"#).unwrap();
        let (layout, effects) = core.set_layout(&mut media, &off).unwrap();
        assert!(!layout.captions);
        assert!(layouts_sent(&effects).iter().all(|(_, l)| !l.captions));
        assert!(
            media.calls.contains(&"captions off".to_owned()),
            "{:?}",
            media.calls
        );
        // A joiner learns the layout in force.
        let effects = join(&mut core, &mut media, "bo", true);
        assert!(layouts_sent(&effects).iter().all(|(_, l)| !l.captions));
        let speaker = layout::parse_layout_request(br#"{"layout":"speaker"}"#).unwrap();
        let (layout, _) = core.set_layout(&mut media, &speaker).unwrap();
        assert!(layout.captions);
        assert_eq!(
            media
                .calls
                .iter()
                .filter(|c| c.starts_with("captions"))
                .collect::<Vec<_>>(),
            ["captions off", "captions on"]
        );
    }

    #[test]
    fn the_media_mixes_who_speaks_the_pinned_one_and_fills_a_leaver_s_place() {
        let mut core = room_with(
            Mode::Mcu,
            8,
            Some(Composite {
                max_mixed: 1,
                ..COMPOSITE
            }),
        );
        let mut media = FakeMedia::default();
        for who in ["ada", "bo", "cy"] {
            join(&mut core, &mut media, who, true);
        }
        let start = std::time::Instant::now();
        let at = |ms: u64| start + std::time::Duration::from_millis(ms);
        core.audio_level(&id("ada"), at(0), -90.0);
        core.audio_level(&id("bo"), at(0), -90.0);
        core.update_speakers(&mut media, at(0));
        assert_eq!(media.mixes, ["ada"]);
        core.audio_level(&id("bo"), at(2000), -20.0);
        core.update_speakers(&mut media, at(2000));
        assert_eq!(media.mixes.last().unwrap(), "bo");
        assert_eq!(core.mixed(), ["bo"]);
        let pin_cy = layout::parse_layout_request(br#"{"layout":"grid","pin":"cy"}"#).unwrap();
        core.set_layout(&mut media, &pin_cy).unwrap();
        assert_eq!(media.mixes.last().unwrap(), "bo,cy");
        core.leave(&mut media, &id("bo"));
        assert_eq!(media.mixes.last().unwrap(), "cy,ada");
    }

    #[test]
    fn a_joiner_who_is_not_shown_still_learns_the_layout_and_other_rooms_have_none() {
        let mut core = room_with(
            Mode::Mcu,
            8,
            Some(Composite {
                max_visible: 1,
                ..COMPOSITE
            }),
        );
        let mut media = FakeMedia::default();
        join(&mut core, &mut media, "ada", true);
        let effects = join(&mut core, &mut media, "bo", true);
        let told = layouts_sent(&effects);
        assert_eq!(told.len(), 1, "{told:?}");
        assert_eq!(told[0].0, "bo");
        assert_eq!(told[0].1.tiles.len(), 1);
        assert_eq!(
            media.calls.last().unwrap(),
            "arrange ada",
            "bo is off the composite"
        );

        let mut sfu = room(Mode::Sfu, 8);
        let effects = join(&mut sfu, &mut media, "cy", true);
        assert!(layouts_sent(&effects).is_empty());
        let grid = layout::parse_layout_request(br#"{"layout":"grid"}"#).unwrap();
        assert_eq!(
            sfu.set_layout(&mut media, &grid).unwrap_err().code,
            LayoutErrorCode::NotComposited
        );
        assert!(sfu.layout().is_none());
    }

    #[test]
    fn a_joiner_gets_joined_with_those_there_and_they_hear_of_it() {
        let (mut core, mut media) = (room(Mode::Mcu, 4), FakeMedia::default());
        join(&mut core, &mut media, "ada", true);
        let effects = join(&mut core, &mut media, "bo", true);
        let Effect::Send(
            to,
            ServerMessage::Joined {
                participants,
                ice_servers,
                mode,
                ..
            },
        ) = &effects[0]
        else {
            panic!("{effects:?}")
        };
        assert_eq!(to.as_str(), "bo");
        assert_eq!(*mode, Mode::Mcu);
        assert_eq!(
            participants
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>(),
            ["ada"]
        );
        assert_eq!(ice_servers.len(), 1);
        assert!(matches!(
            &effects[1],
            Effect::Send(to, ServerMessage::ParticipantJoined { participant }) if to.as_str() == "ada" && participant.name == "bo"
        ));
        assert_eq!(effects.len(), 2);
        assert_eq!(media.calls, ["add ada", "add bo"]);
        assert_eq!(core.participants().len(), 2);
    }

    /// The TURN username each renewal hands to `who` in `effects`.
    fn renewed_usernames(effects: &[Effect]) -> Vec<(String, String)> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Send(to, ServerMessage::IceServers { ice_servers }) => Some((
                    to.to_string(),
                    ice_servers.iter().find_map(|s| s.username.clone())?,
                )),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn turn_credentials_are_renewed_half_way_for_those_still_in_the_room() {
        let mut core = room(Mode::Mesh, 4);
        core.admission.turn = Some(TurnSettings {
            url: "turn:turn.example.org:3478".into(),
            secret: "s".into(),
            ttl: std::time::Duration::from_secs(600),
        });
        let mut media = FakeMedia::default();
        core.join(&mut media, id("ada"), "ada".into(), true, 1000)
            .unwrap();
        core.join(&mut media, id("bo"), "bo".into(), false, 1100)
            .unwrap();
        // Nothing before half of Ada's ten minutes.
        assert!(core.renew_credentials(1299).is_empty());
        let at_1300 = core.renew_credentials(1300);
        assert_eq!(
            renewed_usernames(&at_1300),
            [("ada".into(), "1900:ada".into())]
        );
        // The shared servers come along, as in "joined".
        let Effect::Send(_, ServerMessage::IceServers { ice_servers }) = &at_1300[0] else {
            panic!("{at_1300:?}")
        };
        assert_eq!(ice_servers[0].urls, ["stun:stun.example.org:3478"]);
        assert_eq!(ice_servers.len(), 2);
        // Once per half-life each; a viewer too (it receives through TURN).
        assert!(core.renew_credentials(1301).is_empty());
        assert_eq!(
            renewed_usernames(&core.renew_credentials(1400)),
            [("bo".into(), "2000:bo".into())]
        );
        core.leave(&mut media, &id("ada"));
        // Whoever left gets no more.
        assert_eq!(
            renewed_usernames(&core.renew_credentials(1700)),
            [("bo".into(), "2300:bo".into())]
        );
        // A room without TURN never sends any.
        let mut plain = room(Mode::Mesh, 4);
        plain
            .join(&mut media, id("cy"), "cy".into(), true, 0)
            .unwrap();
        assert!(plain.renew_credentials(u64::MAX).is_empty());
    }

    #[test]
    fn a_full_room_refuses_and_a_media_failure_is_internal() {
        let (mut core, mut media) = (room(Mode::Sfu, 1), FakeMedia::default());
        join(&mut core, &mut media, "ada", true);
        let e = core
            .join(&mut media, id("bo"), "bo".into(), true, 0)
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::RoomFull);
        assert!(e.message.contains('1'), "{}", e.message);
        let (mut core, mut media) = (
            room(Mode::Sfu, 4),
            FakeMedia {
                refuse_adding: true,
                ..FakeMedia::default()
            },
        );
        let e = core
            .join(&mut media, id("ada"), "ada".into(), true, 0)
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::Internal);
        assert!(core.is_empty(), "nobody joined");
    }

    #[test]
    fn leaving_releases_the_participant_and_tells_the_others() {
        let (mut core, mut media) = (room(Mode::Mcu, 4), FakeMedia::default());
        for who in ["ada", "bo", "cy"] {
            join(&mut core, &mut media, who, true);
        }
        let effects = core.leave(&mut media, &id("bo"));
        assert_eq!(effects[0], Effect::Release(id("bo")));
        let told: Vec<&str> = effects[1..]
            .iter()
            .map(|e| match e {
                Effect::Send(to, ServerMessage::ParticipantLeft { participant }) => {
                    assert_eq!(participant, "bo");
                    to.as_str()
                }
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(told, ["ada", "cy"]);
        assert!(media.calls.contains(&"remove bo".to_owned()));
        // Leaving twice (a leave, then the session's end) does nothing more.
        assert!(core.leave(&mut media, &id("bo")).is_empty());
        assert_eq!(core.ids(), [id("ada"), id("cy")]);
    }

    #[test]
    fn a_media_failure_removes_only_that_participant_and_tells_it_why() {
        let (mut core, mut media) = (room(Mode::Sfu, 4), FakeMedia::default());
        join(&mut core, &mut media, "ada", true);
        join(&mut core, &mut media, "bo", true);
        media.outputs.push(MediaOutput::Send(
            id("ada"),
            ServerMessage::Offer {
                sdp: "v=0".into(),
                from: None,
                new_connection: false,
            },
        ));
        media.outputs.push(MediaOutput::Failed(
            id("bo"),
            ProtocolError::new(ErrorCode::MediaFailed, "Your media failed."),
        ));
        // A message for someone gone is dropped.
        media.outputs.push(MediaOutput::Send(
            id("zed"),
            ServerMessage::Offer {
                sdp: "v=0".into(),
                from: None,
                new_connection: false,
            },
        ));
        let effects = core.media_outputs(&mut media);
        assert!(
            matches!(&effects[0], Effect::Send(to, ServerMessage::Offer { .. }) if to.as_str() == "ada")
        );
        assert_eq!(error_to(&effects, "bo"), Some(ErrorCode::MediaFailed));
        assert!(effects.contains(&Effect::Release(id("bo"))));
        assert!(effects.iter().any(
            |e| matches!(e, Effect::Send(to, ServerMessage::ParticipantLeft { participant }) if to.as_str() == "ada" && participant == "bo")
        ));
        assert!(
            !effects
                .iter()
                .any(|e| matches!(e, Effect::Send(to, _) if to.as_str() == "zed"))
        );
        assert_eq!(core.ids(), [id("ada")]);
    }

    #[test]
    fn quality_goes_to_an_mcu_room_s_media_and_is_refused_elsewhere() {
        let low = || ClientMessage::Quality {
            max: crate::protocol::Quality::Low,
        };
        let (mut core, mut media) = (room(Mode::Mcu, 4), FakeMedia::default());
        join(&mut core, &mut media, "ada", true);
        let effects = core.signal(&mut media, &id("ada"), low());
        assert_eq!(error_to(&effects, "ada"), None);
        assert_eq!(media.calls.last().unwrap(), "quality ada");
        for mode in [Mode::Sfu, Mode::Mesh] {
            let (mut core, mut media) = (room(mode, 4), FakeMedia::default());
            join(&mut core, &mut media, "ada", true);
            let effects = core.signal(&mut media, &id("ada"), low());
            assert_eq!(
                error_to(&effects, "ada"),
                Some(ErrorCode::BadState),
                "{mode}"
            );
            assert!(!media.calls.iter().any(|c| c.starts_with("quality")));
        }
    }

    #[test]
    fn a_viewer_may_receive_but_never_send() {
        let (mut core, mut media) = (room(Mode::Mcu, 4), FakeMedia::default());
        join(&mut core, &mut media, "viewer", false);
        let effects = core.signal(&mut media, &id("viewer"), offer(PUBLISH_OFFER));
        assert_eq!(error_to(&effects, "viewer"), Some(ErrorCode::Forbidden));
        assert!(
            !media.calls.contains(&"offer viewer".to_owned()),
            "{:?}",
            media.calls
        );
        let receiving = PUBLISH_OFFER.replace("a=sendrecv", "a=recvonly");
        let effects = core.signal(&mut media, &id("viewer"), offer(&receiving));
        assert_eq!(error_to(&effects, "viewer"), None);
        assert!(media.calls.contains(&"offer viewer".to_owned()));
        // In an SFU room a viewer opens no publish connection at all; a
        // subscribe answer is fine.
        let (mut core, mut media) = (room(Mode::Sfu, 4), FakeMedia::default());
        join(&mut core, &mut media, "viewer", false);
        let effects = core.signal(&mut media, &id("viewer"), offer(&receiving));
        assert_eq!(error_to(&effects, "viewer"), Some(ErrorCode::Forbidden));
        let answer = ClientMessage::Answer {
            sdp: receiving.clone(),
            to: None,
        };
        assert_eq!(
            error_to(&core.signal(&mut media, &id("viewer"), answer), "viewer"),
            None
        );
        // In a mesh room its answers must not send either.
        let (mut core, mut media) = (room(Mode::Mesh, 4), FakeMedia::default());
        join(&mut core, &mut media, "peer", true);
        join(&mut core, &mut media, "viewer", false);
        let sending_answer = ClientMessage::Answer {
            sdp: PUBLISH_OFFER.to_owned(),
            to: Some("peer".into()),
        };
        let effects = core.signal(&mut media, &id("viewer"), sending_answer);
        assert_eq!(error_to(&effects, "viewer"), Some(ErrorCode::Forbidden));
    }

    #[test]
    fn offers_are_checked_before_the_media_sees_them() {
        let (mut core, mut media) = (room(Mode::Mcu, 4), FakeMedia::default());
        join(&mut core, &mut media, "ada", true);
        let two_videos = PUBLISH_OFFER.to_owned()
            + "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=rtpmap:96 VP8/90000\r\n";
        let effects = core.signal(&mut media, &id("ada"), offer(&two_videos));
        assert_eq!(error_to(&effects, "ada"), Some(ErrorCode::BadSdp));
        assert_eq!(media.calls, ["add ada"], "the media never saw it");
        // The media's own refusal goes back to the sender too.
        media.signal_result = Some(ProtocolError::new(ErrorCode::BadState, "not now"));
        let effects = core.signal(&mut media, &id("ada"), offer(PUBLISH_OFFER));
        assert_eq!(error_to(&effects, "ada"), Some(ErrorCode::BadState));
    }

    #[test]
    fn mesh_relays_name_the_sender_and_refuse_nobody_and_oneself() {
        let (mut core, mut media) = (room(Mode::Mesh, 4), FakeMedia::default());
        join(&mut core, &mut media, "ada", true);
        join(&mut core, &mut media, "bo", true);
        let to = |who: &str| ClientMessage::Offer {
            sdp: "v=0 hi".into(),
            to: Some(who.into()),
        };
        let effects = core.signal(&mut media, &id("ada"), to("bo"));
        assert_eq!(
            effects,
            [Effect::Send(
                id("bo"),
                ServerMessage::Offer {
                    sdp: "v=0 hi".into(),
                    from: Some("ada".into()),
                    new_connection: false,
                }
            )]
        );
        assert_eq!(
            error_to(&core.signal(&mut media, &id("ada"), to("nobody")), "ada"),
            Some(ErrorCode::UnknownParticipant)
        );
        assert_eq!(
            error_to(&core.signal(&mut media, &id("ada"), to("ada")), "ada"),
            Some(ErrorCode::BadMessage)
        );
        let untargeted = ClientMessage::Offer {
            sdp: "v=0".into(),
            to: None,
        };
        assert_eq!(
            error_to(&core.signal(&mut media, &id("ada"), untargeted), "ada"),
            Some(ErrorCode::BadMessage)
        );
        assert_eq!(
            media.calls,
            ["add ada", "add bo"],
            "a mesh room's media is never asked"
        );
    }

    #[test]
    fn someone_not_in_the_room_cannot_signal_and_a_closing_room_tells_everyone() {
        let (mut core, mut media) = (room(Mode::Mcu, 4), FakeMedia::default());
        join(&mut core, &mut media, "ada", true);
        join(&mut core, &mut media, "bo", true);
        let effects = core.signal(&mut media, &id("ghost"), offer(PUBLISH_OFFER));
        assert_eq!(error_to(&effects, "ghost"), Some(ErrorCode::NotJoined));
        let failure = ProtocolError::new(ErrorCode::Internal, "The room's media pipeline failed.");
        let effects = core.remove_everyone(&mut media, Some(failure), "room pipeline failed");
        assert_eq!(error_to(&effects, "ada"), Some(ErrorCode::Internal));
        assert_eq!(error_to(&effects, "bo"), Some(ErrorCode::Internal));
        assert!(
            effects.contains(&Effect::Release(id("ada")))
                && effects.contains(&Effect::Release(id("bo")))
        );
        assert!(core.is_empty());
    }

    #[test]
    fn a_participant_waiting_for_a_resume_stays_until_it_leaves() {
        // The session keeps a dropped client's place: the room sees nothing
        // until the session leaves for it, and meanwhile still routes to it.
        let (mut core, mut media) = (room(Mode::Mesh, 4), FakeMedia::default());
        join(&mut core, &mut media, "ada", true);
        join(&mut core, &mut media, "away", true);
        let relay = ClientMessage::Answer {
            sdp: "v=0".into(),
            to: Some("away".into()),
        };
        let effects = core.signal(&mut media, &id("ada"), relay);
        assert!(
            matches!(&effects[..], [Effect::Send(to, ServerMessage::Answer { .. })] if to.as_str() == "away")
        );
        let effects = core.leave(&mut media, &id("away"));
        assert!(effects.contains(&Effect::Release(id("away"))));
        assert_eq!(core.ids(), [id("ada")]);
    }
}
