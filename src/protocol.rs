//! The signaling protocol: JSON text frames tagged by "type".
//!
//! This module is pure data: no I/O. The message and field names are a
//! contract with outside clients (see README.md, "Protocol"); add, never rename.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;

/// Room topology. Fixed by a room's first joiner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Mcu,
    Sfu,
    Mesh,
}

/// The best picture a receiver wants from an MCU room: a low-power device
/// that cannot decode 720p, or a link that cannot carry it, asks for less.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Quality {
    Low,
    Medium,
    #[default]
    High,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Mcu => "mcu",
            Mode::Sfu => "sfu",
            Mode::Mesh => "mesh",
        })
    }
}

/// Which of a participant's two peer connections a message belongs to.
/// "publish": the client offers and the server answers.
/// "subscribe": the server offers and the client answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PeerConnection {
    #[default]
    Publish,
    Subscribe,
}

/// A trickled ICE candidate, in the browser's RTCIceCandidate field names.
/// An empty `candidate` marks the end of candidates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceCandidate {
    pub candidate: String,
    #[serde(rename = "sdpMLineIndex")]
    pub sdp_mline_index: u32,
    #[serde(rename = "sdpMid", default, skip_serializing_if = "Option::is_none")]
    pub sdp_mid: Option<String>,
    #[serde(default)]
    pub pc: PeerConnection,
    /// Mesh rooms: the participant a client's candidate is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// Mesh rooms: the participant a relayed candidate comes from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ClientMessage {
    Join {
        room: String,
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mode: Option<Mode>,
        /// A room token (JWT HS256); required when the server has an auth secret.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<String>,
        /// MCU rooms: the best encoding to send, as "quality" would ask,
        /// so a low-power device gets what it can decode from its first frame.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        quality: Option<Quality>,
    },
    /// Takes over a session whose connection dropped, keeping its
    /// participant id and media. `received` is how many session messages the
    /// client got (everything but "resumed"), so the server resends the rest.
    Resume {
        token: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        received: Option<u64>,
    },
    Offer {
        sdp: String,
        /// Mesh rooms: the participant the offer is for.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<String>,
    },
    Answer {
        sdp: String,
        /// Mesh rooms: the participant the answer is for.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<String>,
    },
    Ice(IceCandidate),
    /// MCU rooms: the best encoding of the composite to send this client.
    Quality {
        max: Quality,
    },
    Leave,
}

/// Someone in a room, as other participants see them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParticipantInfo {
    pub id: String,
    pub name: String,
}

/// An ICE server in the browser's RTCIceServer form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ServerMessage {
    Joined {
        room: String,
        participant: String,
        mode: Mode,
        participants: Vec<ParticipantInfo>,
        #[serde(rename = "iceServers")]
        ice_servers: Vec<IceServer>,
        /// Sent back in "resume" after a dropped connection.
        #[serde(
            rename = "resumeToken",
            default,
            skip_serializing_if = "Option::is_none"
        )]
        resume_token: Option<String>,
    },
    /// The session was taken over by this connection; the messages it missed
    /// follow, in order.
    Resumed {
        participant: String,
        /// How many session messages are resent after this one.
        replayed: u64,
    },
    ParticipantJoined {
        participant: ParticipantInfo,
    },
    ParticipantLeft {
        participant: String,
    },
    Offer {
        sdp: String,
        /// Mesh rooms: the participant who made the offer.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<String>,
        /// SFU rooms: this offer opens a new subscribe connection, which
        /// replaces the old one (answer it on a new peer connection, and
        /// close the old once the new is connected).
        #[serde(
            rename = "newConnection",
            default,
            skip_serializing_if = "std::ops::Not::not"
        )]
        new_connection: bool,
    },
    Answer {
        sdp: String,
        /// Mesh rooms: the participant who answered.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<String>,
    },
    Ice(IceCandidate),
    /// A recording of the room started or stopped (failures included: the
    /// HTTP API says why).
    Recording {
        state: RecordingState,
        id: String,
        /// "webm", "mp4" or "hls".
        #[serde(default, skip_serializing_if = "Option::is_none")]
        format: Option<String>,
        /// Where the recording is served (HLS: the live playlist), under
        /// /recordings/.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        url: Option<String>,
    },
    /// Fresh TURN credentials (the same servers as "joined"), sent half-way
    /// through the lifetime of the last ones: for the peer connections the
    /// client opens from now on (`RTCPeerConnection.setConfiguration`).
    IceServers {
        #[serde(rename = "iceServers")]
        ice_servers: Vec<IceServer>,
    },
    /// Who is speaking, sent to everyone when it changes (MCU rooms): the
    /// active speakers, longest first, and the dominant one (the last to
    /// have been, while nobody speaks; none before anyone has).
    Speakers {
        active: Vec<String>,
        dominant: Option<String>,
    },
    /// Where each participant is on the MCU composite, sent to everyone on
    /// every change (joins, leaves, speaker switches, a new layout), so a
    /// client can draw names and rings over the one video it receives.
    /// Participants not listed are not on the composite.
    Layout(Layout),
    /// To one participant of an MCU room: its video is not on the
    /// composite (more senders than visible tiles), and the server drops
    /// it unread; the client may stop sending video until resumed.
    VideoPaused,
    /// Its video is on the composite again: the client sends it again.
    VideoResumed,
    Error {
        code: ErrorCode,
        message: String,
    },
}

/// How an MCU room arranges its composite.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LayoutKind {
    /// Everyone the same size, in join order.
    #[default]
    Grid,
    /// The dominant (or pinned) speaker large, the others in a strip.
    Speaker,
    /// Rectangles the room's admin chose.
    Custom,
}

impl LayoutKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LayoutKind::Grid => "grid",
            LayoutKind::Speaker => "speaker",
            LayoutKind::Custom => "custom",
        }
    }
}

/// A share of the canvas's width or height, kept to four decimals (so
/// messages compare exactly); on the wire a number from 0 to 1.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Fraction(u32);

impl Fraction {
    const SCALE: f64 = 10_000.0;

    /// `part` of `whole`, clamped to 0..=1.
    pub fn of(part: i32, whole: u32) -> Fraction {
        if whole == 0 {
            return Fraction(0);
        }
        Fraction::from_f64(f64::from(part) / f64::from(whole))
    }

    pub fn from_f64(value: f64) -> Fraction {
        Fraction((value.clamp(0.0, 1.0) * Self::SCALE).round() as u32)
    }

    pub fn as_f64(self) -> f64 {
        f64::from(self.0) / Self::SCALE
    }
}

impl Serialize for Fraction {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(self.as_f64())
    }
}

impl<'de> Deserialize<'de> for Fraction {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = f64::deserialize(deserializer)?;
        if !(0.0..=1.0).contains(&value) {
            return Err(serde::de::Error::custom(
                "a fraction of the canvas is 0 to 1",
            ));
        }
        Ok(Fraction::from_f64(value))
    }
}

/// An MCU composite's layout, as a "layout" message and the layout API
/// give it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    pub layout: LayoutKind,
    /// Who holds the main tile whoever speaks.
    pub pin: Option<String>,
    /// Whether the server draws names on the tiles of recordings. The
    /// composite a participant receives never has them: clients draw names
    /// from `tiles`.
    pub captions: bool,
    pub tiles: Vec<LayoutTile>,
}

/// One participant's tile on the composite, in shares of the canvas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayoutTile {
    pub participant: String,
    pub x: Fraction,
    pub y: Fraction,
    pub width: Fraction,
    pub height: Fraction,
    /// Higher is drawn over lower.
    pub z: u32,
    /// The main tile of a speaker layout (or a pinned one).
    pub main: bool,
}

/// What a "recording" message announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordingState {
    Started,
    Stopped,
}

/// Stable, machine-matchable error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorCode {
    /// The frame is not JSON, or not a JSON object with a string "type".
    BadJson,
    /// The "type" is not one this server knows.
    UnknownType,
    /// A known type with missing or ill-typed fields.
    BadMessage,
    /// A message other than "join" before joining.
    NotJoined,
    /// A second "join" on a connection that already joined.
    AlreadyJoined,
    /// The SDP could not be parsed or offers nothing the server can use.
    BadSdp,
    /// The join asked for another mode than the room has.
    ModeMismatch,
    /// The room has its maximum number of participants.
    RoomFull,
    /// A message that makes no sense in the current negotiation state.
    BadState,
    /// Room or display name empty or too long.
    BadName,
    /// The participant's media connection failed (ICE/DTLS); they were removed.
    ConnectionFailed,
    /// The participant's media chain or a negotiation with it failed on the
    /// server; they were removed.
    MediaFailed,
    /// A mesh relay named a participant who is not in the room.
    UnknownParticipant,
    /// The server failed while handling a valid request.
    Internal,
    /// Missing, invalid, expired or wrong-room token (or API secret).
    Unauthorized,
    /// The token does not allow this (a viewer's token publishing media), or
    /// the page's origin is not allowed.
    Forbidden,
    /// The message is larger than the server accepts.
    TooLarge,
    /// Too many messages per second on this connection.
    RateLimited,
    /// Too many ICE candidates from this session.
    TooManyCandidates,
    /// The server has its maximum number of rooms.
    TooManyRooms,
    /// No join within the time allowed after connecting.
    JoinTimeout,
    /// The session to resume has ended, or the token is unknown.
    ResumeFailed,
    /// A long-poll session id that does not exist (any more).
    UnknownSession,
    /// A newer join with the same token identity took this participant's
    /// place (`--max-connections-per-identity`).
    Replaced,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadJson => "bad-json",
            ErrorCode::UnknownType => "unknown-type",
            ErrorCode::BadMessage => "bad-message",
            ErrorCode::NotJoined => "not-joined",
            ErrorCode::AlreadyJoined => "already-joined",
            ErrorCode::BadSdp => "bad-sdp",
            ErrorCode::ModeMismatch => "mode-mismatch",
            ErrorCode::RoomFull => "room-full",
            ErrorCode::BadState => "bad-state",
            ErrorCode::BadName => "bad-name",
            ErrorCode::ConnectionFailed => "connection-failed",
            ErrorCode::MediaFailed => "media-failed",
            ErrorCode::UnknownParticipant => "unknown-participant",
            ErrorCode::Internal => "internal",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::TooLarge => "too-large",
            ErrorCode::RateLimited => "rate-limited",
            ErrorCode::TooManyCandidates => "too-many-candidates",
            ErrorCode::TooManyRooms => "too-many-rooms",
            ErrorCode::JoinTimeout => "join-timeout",
            ErrorCode::ResumeFailed => "resume-failed",
            ErrorCode::UnknownSession => "unknown-session",
            ErrorCode::Replaced => "replaced",
        }
    }

    /// Every code, for documentation and tests.
    pub const ALL: [ErrorCode; 24] = [
        ErrorCode::BadJson,
        ErrorCode::UnknownType,
        ErrorCode::BadMessage,
        ErrorCode::NotJoined,
        ErrorCode::AlreadyJoined,
        ErrorCode::BadSdp,
        ErrorCode::ModeMismatch,
        ErrorCode::RoomFull,
        ErrorCode::BadState,
        ErrorCode::BadName,
        ErrorCode::ConnectionFailed,
        ErrorCode::MediaFailed,
        ErrorCode::UnknownParticipant,
        ErrorCode::Internal,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::TooLarge,
        ErrorCode::RateLimited,
        ErrorCode::TooManyCandidates,
        ErrorCode::TooManyRooms,
        ErrorCode::JoinTimeout,
        ErrorCode::ResumeFailed,
        ErrorCode::UnknownSession,
        ErrorCode::Replaced,
    ];

    /// The HTTP status that goes with the code, for the HTTP transports.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::UnknownSession | ErrorCode::ResumeFailed => 404,
            ErrorCode::TooLarge => 413,
            ErrorCode::RateLimited => 429,
            ErrorCode::Internal => 500,
            ErrorCode::TooManyRooms | ErrorCode::RoomFull => 503,
            _ => 400,
        }
    }
}

/// An error to report to a client: a stable code plus a sentence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", code.as_str())]
pub struct ProtocolError {
    pub code: ErrorCode,
    pub message: String,
}

impl ProtocolError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub fn to_message(&self) -> ServerMessage {
        ServerMessage::Error {
            code: self.code,
            message: self.message.clone(),
        }
    }
}

const CLIENT_TYPES: &[&str] = &[
    "join", "offer", "answer", "ice", "quality", "leave", "resume",
];

/// Parses one client text frame, telling apart "not JSON", "unknown type" and
/// "known type with bad fields" so that each gets its own error code.
pub fn parse_client_message(text: &str) -> Result<ClientMessage, ProtocolError> {
    let value: Value = serde_json::from_str(text).map_err(|e| {
        ProtocolError::new(
            ErrorCode::BadJson,
            format!("The message is not valid JSON: {e}."),
        )
    })?;
    parse_client_value(value)
}

/// As `parse_client_message`, for a message already parsed as JSON (one
/// element of a long-poll batch).
pub fn parse_client_value(value: Value) -> Result<ClientMessage, ProtocolError> {
    let Some(kind) = value.get("type").and_then(Value::as_str) else {
        return Err(ProtocolError::new(
            ErrorCode::BadJson,
            "The message must be a JSON object with a string \"type\".",
        ));
    };
    if !CLIENT_TYPES.contains(&kind) {
        let kind: String = kind.chars().take(40).collect();
        return Err(ProtocolError::new(
            ErrorCode::UnknownType,
            format!("Unknown message type \"{kind}\"."),
        ));
    }
    let kind = kind.to_owned();
    serde_json::from_value(value).map_err(|e| {
        ProtocolError::new(
            ErrorCode::BadMessage,
            format!("The \"{kind}\" message is malformed: {e}."),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn golden_client() -> Vec<(ClientMessage, Value)> {
        vec![
            (
                ClientMessage::Join {
                    room: "standup".into(),
                    name: "Ada".into(),
                    mode: Some(Mode::Mcu),
                    token: None,
                    quality: Some(Quality::Low),
                },
                json!({"type":"join","room":"standup","name":"Ada","mode":"mcu","quality":"low"}),
            ),
            (
                ClientMessage::Join {
                    room: "standup".into(),
                    name: "Ada".into(),
                    mode: None,
                    token: Some("eyJ0".into()),
                    quality: None,
                },
                json!({"type":"join","room":"standup","name":"Ada","token":"eyJ0"}),
            ),
            (
                ClientMessage::Resume {
                    token: "r1".into(),
                    received: Some(7),
                },
                json!({"type":"resume","token":"r1","received":7}),
            ),
            (
                ClientMessage::Resume {
                    token: "r1".into(),
                    received: None,
                },
                json!({"type":"resume","token":"r1"}),
            ),
            (
                ClientMessage::Join {
                    room: "r".into(),
                    name: "n".into(),
                    mode: None,
                    token: None,
                    quality: None,
                },
                json!({"type":"join","room":"r","name":"n"}),
            ),
            (
                ClientMessage::Offer {
                    sdp: "v=0".into(),
                    to: None,
                },
                json!({"type":"offer","sdp":"v=0"}),
            ),
            (
                ClientMessage::Offer {
                    sdp: "v=0".into(),
                    to: Some("p2".into()),
                },
                json!({"type":"offer","sdp":"v=0","to":"p2"}),
            ),
            (
                ClientMessage::Answer {
                    sdp: "v=0".into(),
                    to: None,
                },
                json!({"type":"answer","sdp":"v=0"}),
            ),
            (
                ClientMessage::Ice(IceCandidate {
                    candidate: "candidate:1 1 UDP 1 127.0.0.1 5000 typ host".into(),
                    sdp_mline_index: 0,
                    sdp_mid: Some("0".into()),
                    pc: PeerConnection::Subscribe,
                    to: None,
                    from: None,
                }),
                json!({"type":"ice","candidate":"candidate:1 1 UDP 1 127.0.0.1 5000 typ host",
                       "sdpMLineIndex":0,"sdpMid":"0","pc":"subscribe"}),
            ),
            (
                ClientMessage::Ice(IceCandidate {
                    candidate: String::new(),
                    sdp_mline_index: 1,
                    sdp_mid: None,
                    pc: PeerConnection::Publish,
                    to: Some("p1".into()),
                    from: None,
                }),
                json!({"type":"ice","candidate":"","sdpMLineIndex":1,"pc":"publish","to":"p1"}),
            ),
            (
                ClientMessage::Quality { max: Quality::Low },
                json!({"type":"quality","max":"low"}),
            ),
            (ClientMessage::Leave, json!({"type":"leave"})),
        ]
    }

    fn golden_server() -> Vec<(ServerMessage, Value)> {
        vec![
            (
                ServerMessage::Joined {
                    room: "r".into(),
                    participant: "p2".into(),
                    mode: Mode::Mcu,
                    participants: vec![ParticipantInfo {
                        id: "p1".into(),
                        name: "Ada".into(),
                    }],
                    ice_servers: vec![IceServer {
                        urls: vec!["stun:stun.example.org:3478".into()],
                        username: None,
                        credential: None,
                    }],
                    resume_token: None,
                },
                json!({"type":"joined","room":"r","participant":"p2","mode":"mcu",
                       "participants":[{"id":"p1","name":"Ada"}],
                       "iceServers":[{"urls":["stun:stun.example.org:3478"]}]}),
            ),
            (
                ServerMessage::Joined {
                    room: "r".into(),
                    participant: "p2".into(),
                    mode: Mode::Sfu,
                    participants: vec![],
                    ice_servers: vec![IceServer {
                        urls: vec!["turn:turn.example.org:3478".into()],
                        username: Some("1700000000:p2".into()),
                        credential: Some("c2VjcmV0".into()),
                    }],
                    resume_token: Some("9f8e".into()),
                },
                json!({"type":"joined","room":"r","participant":"p2","mode":"sfu",
                       "participants":[],
                       "iceServers":[{"urls":["turn:turn.example.org:3478"],
                                      "username":"1700000000:p2","credential":"c2VjcmV0"}],
                       "resumeToken":"9f8e"}),
            ),
            (
                ServerMessage::Resumed {
                    participant: "p2".into(),
                    replayed: 3,
                },
                json!({"type":"resumed","participant":"p2","replayed":3}),
            ),
            (
                ServerMessage::ParticipantJoined {
                    participant: ParticipantInfo {
                        id: "p3".into(),
                        name: "Bo".into(),
                    },
                },
                json!({"type":"participant-joined","participant":{"id":"p3","name":"Bo"}}),
            ),
            (
                ServerMessage::ParticipantLeft {
                    participant: "p3".into(),
                },
                json!({"type":"participant-left","participant":"p3"}),
            ),
            (
                ServerMessage::Offer {
                    sdp: "v=0".into(),
                    from: None,
                    new_connection: false,
                },
                json!({"type":"offer","sdp":"v=0"}),
            ),
            (
                ServerMessage::Offer {
                    sdp: "v=0".into(),
                    from: None,
                    new_connection: true,
                },
                json!({"type":"offer","sdp":"v=0","newConnection":true}),
            ),
            (
                ServerMessage::Answer {
                    sdp: "v=0".into(),
                    from: Some("p1".into()),
                },
                json!({"type":"answer","sdp":"v=0","from":"p1"}),
            ),
            (
                ServerMessage::Ice(IceCandidate {
                    candidate: String::new(),
                    sdp_mline_index: 1,
                    sdp_mid: None,
                    pc: PeerConnection::Publish,
                    to: None,
                    from: None,
                }),
                json!({"type":"ice","candidate":"","sdpMLineIndex":1,"pc":"publish"}),
            ),
            (
                ServerMessage::Recording {
                    state: RecordingState::Started,
                    id: "20250301-141503-9f3c".into(),
                    format: Some("hls".into()),
                    url: Some("/recordings/standup-20250301-141503-9f3c/index.m3u8".into()),
                },
                json!({"type":"recording","state":"started","id":"20250301-141503-9f3c","format":"hls",
                       "url":"/recordings/standup-20250301-141503-9f3c/index.m3u8"}),
            ),
            (
                ServerMessage::Recording {
                    state: RecordingState::Stopped,
                    id: "20250301-141503-9f3c".into(),
                    format: None,
                    url: None,
                },
                json!({"type":"recording","state":"stopped","id":"20250301-141503-9f3c"}),
            ),
            (
                ServerMessage::Speakers {
                    active: vec!["p1-aaaa".into(), "p2-bbbb".into()],
                    dominant: Some("p2-bbbb".into()),
                },
                json!({"type":"speakers","active":["p1-aaaa","p2-bbbb"],"dominant":"p2-bbbb"}),
            ),
            (
                ServerMessage::Layout(Layout {
                    layout: LayoutKind::Speaker,
                    pin: None,
                    captions: false,
                    tiles: vec![LayoutTile {
                        participant: "p1-aaaa".into(),
                        x: Fraction::of(160, 1280),
                        y: Fraction::of(0, 720),
                        width: Fraction::of(960, 1280),
                        height: Fraction::of(540, 720),
                        z: 1,
                        main: true,
                    }],
                }),
                json!({"type":"layout","layout":"speaker","pin":null,"captions":false,"tiles":[
                    {"participant":"p1-aaaa","x":0.125,"y":0.0,"width":0.75,"height":0.75,"z":1,"main":true}
                ]}),
            ),
            (ServerMessage::VideoPaused, json!({"type":"video-paused"})),
            (ServerMessage::VideoResumed, json!({"type":"video-resumed"})),
            (
                ServerMessage::Speakers {
                    active: vec![],
                    dominant: None,
                },
                json!({"type":"speakers","active":[],"dominant":null}),
            ),
            (
                ServerMessage::Error {
                    code: ErrorCode::RoomFull,
                    message: "The room is full.".into(),
                },
                json!({"type":"error","code":"room-full","message":"The room is full."}),
            ),
        ]
    }

    #[test]
    fn client_messages_match_golden_json_both_ways() {
        for (msg, golden) in golden_client() {
            assert_eq!(serde_json::to_value(&msg).unwrap(), golden);
            assert_eq!(parse_client_message(&golden.to_string()).unwrap(), msg);
        }
    }

    #[test]
    fn server_messages_match_golden_json_both_ways() {
        for (msg, golden) in golden_server() {
            assert_eq!(serde_json::to_value(&msg).unwrap(), golden);
            let back: ServerMessage = serde_json::from_value(golden).unwrap();
            assert_eq!(back, msg);
        }
    }

    #[test]
    fn ice_pc_defaults_to_publish() {
        let msg =
            parse_client_message(r#"{"type":"ice","candidate":"","sdpMLineIndex":0}"#).unwrap();
        let ClientMessage::Ice(ice) = msg else {
            panic!("not ice")
        };
        assert_eq!(ice.pc, PeerConnection::Publish);
        assert_eq!(ice.sdp_mid, None);
    }

    #[test]
    fn error_codes_serialize_as_their_stable_strings() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            assert_eq!(serde_json::to_value(code).unwrap(), json!(code.as_str()));
            assert!(seen.insert(code.as_str()), "{} twice", code.as_str());
        }
    }

    #[test]
    fn malformed_input_gets_distinct_codes() {
        let code = |t: &str| parse_client_message(t).unwrap_err().code;
        assert_eq!(code("{not json"), ErrorCode::BadJson);
        assert_eq!(code("[1,2]"), ErrorCode::BadJson);
        assert_eq!(code(r#"{"type":5}"#), ErrorCode::BadJson);
        assert_eq!(code(r#"{"type":"dance"}"#), ErrorCode::UnknownType);
        assert_eq!(code(r#"{"type":"join","room":"r"}"#), ErrorCode::BadMessage);
        assert_eq!(
            code(r#"{"type":"join","room":"r","name":"n","mode":"p2p"}"#),
            ErrorCode::BadMessage
        );
        assert_eq!(code(r#"{"type":"offer"}"#), ErrorCode::BadMessage);
        assert_eq!(code(r#"{"type":"resume"}"#), ErrorCode::BadMessage);
        assert_eq!(
            code(r#"{"type":"join","room":"r","name":"n","token":5}"#),
            ErrorCode::BadMessage
        );
    }
}
