//! Property-based fuzzing of the signaling layer (a bounded run in
//! `make test`; `PROPTEST_CASES=20000 cargo test --release --test
//! fuzz_signaling` runs it longer):
//!
//! - the parser, on arbitrary bytes and arbitrary JSON: never a panic, and
//!   every refusal has a code and a sentence;
//! - the session and room state machines, on arbitrary sequences of
//!   well-formed-but-wrong messages over a real WebSocket into a real server
//!   (all three room modes): no panic, every message gets exactly the error
//!   code the protocol promises for it (an independent model of a session,
//!   written from the README, is the oracle), the session still answers
//!   afterwards, and nothing is left behind once the client goes;
//! - the long-poll endpoints, on arbitrary request bodies: an HTTP error
//!   with the protocol's error JSON, never a server error; and on arbitrary
//!   poll query strings (numbers at and past the edge of u64 included): an
//!   answer, never a panic, and the session lives on. Each such case runs
//!   under a timeout that names the step it was stuck at.

mod common;

use common::*;
use gridmix::config::ServeArgs;
use gridmix::protocol::{ErrorCode, Mode, ServerMessage, parse_client_message};
use proptest::prelude::*;
use serde_json::{Value, json};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

static PANICKED: AtomicBool = AtomicBool::new(false);

/// Records any panic outside this file (the server's tasks included);
/// proptest's own reports of a failed case are panics in this file.
fn watch_for_panics() {
    static HOOK: OnceLock<()> = OnceLock::new();
    HOOK.get_or_init(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !info
                .location()
                .is_some_and(|l| l.file().starts_with("tests/"))
            {
                PANICKED.store(true, Ordering::SeqCst);
            }
            default(info);
        }));
    });
}

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(2000)))]

    #[test]
    fn the_parser_refuses_arbitrary_bytes_with_a_code_and_a_sentence(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let text = String::from_utf8_lossy(&bytes);
        if let Err(e) = parse_client_message(&text) {
            prop_assert!(!e.message.is_empty());
        }
    }

    #[test]
    fn the_parser_survives_arbitrary_json(value in arbitrary_json()) {
        let text = value.to_string();
        match parse_client_message(&text) {
            Ok(message) => {
                // What parses serializes back to something that parses the same.
                let again = serde_json::to_string(&message).unwrap();
                prop_assert_eq!(parse_client_message(&again).unwrap(), message);
            }
            Err(e) => prop_assert!(!e.message.is_empty()),
        }
    }
}

fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        "[a-z\\-]{0,12}".prop_map(Value::String),
        prop_oneof![
            Just("join"),
            Just("offer"),
            Just("answer"),
            Just("ice"),
            Just("leave"),
            Just("resume")
        ]
        .prop_map(|s| Value::String(s.to_owned())),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("type".to_owned()),
                    Just("room".to_owned()),
                    Just("name".to_owned()),
                    Just("mode".to_owned()),
                    Just("sdp".to_owned()),
                    Just("to".to_owned()),
                    Just("candidate".to_owned()),
                    Just("sdpMLineIndex".to_owned()),
                    Just("pc".to_owned()),
                    Just("token".to_owned()),
                    Just("received".to_owned()),
                    "[a-z]{1,6}",
                ],
                inner,
                0..6,
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A complete offer but for candidates: ICE credentials, a DTLS
/// fingerprint, one bundled Opus and one VP8 m-line, sendrecv.
const GOOD_OFFER: &str = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n\
a=fingerprint:sha-256 8B:87:09:8A:5D:C2:F3:33:EF:C5:B1:F6:84:3A:3D:D6:A3:E2:9C:17:4C:E7:46:3B:1B:CE:84:98:DD:8E:AF:7B\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=ice-ufrag:fUzZ\r\na=ice-pwd:fuzzfuzzfuzzfuzzfuzzfuzz\r\n\
a=setup:actpass\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\na=sendrecv\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\na=ice-ufrag:fUzZ\r\na=ice-pwd:fuzzfuzzfuzzfuzzfuzzfuzz\r\n\
a=setup:actpass\r\na=rtcp-mux\r\na=rtpmap:96 VP8/90000\r\na=sendrecv\r\n";

/// A room id, and whether the README's rule admits it (1-64 of letters,
/// digits, '-', '_', '.').
#[derive(Debug, Clone, Copy)]
enum Room {
    A,
    B,
    Punctuated,
    Empty,
    TooLong,
}

/// A display name, and whether the README's rule admits it (1-64
/// printable characters once trimmed).
#[derive(Debug, Clone, Copy)]
enum Name {
    Ada,
    Blank,
    Control,
    TooLong,
}

/// The "mode" field as sent.
#[derive(Debug, Clone, Copy, PartialEq)]
enum ModeField {
    Mesh,
    Sfu,
    Mcu,
    Null,
    Unknown,
    Number,
}

/// An offer's or answer's SDP.
#[derive(Debug, Clone)]
enum Sdp {
    /// A version line and nothing else.
    Bare,
    /// A complete offer (GOOD_OFFER).
    Usable,
    Empty,
    /// Printable junk (never an m-line).
    Junk(String),
    /// A VP8 payload type without its rtpmap.
    NoCodec,
}

/// The "to" field as sent.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Peer {
    Absent,
    /// No participant can have it: ids are numbered from 1.
    Nobody,
    Empty,
    Number,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Pc {
    Publish,
    Subscribe,
    Sideways,
}

/// One generated client frame: mostly well-formed messages in a wrong place
/// or with wrong values, some malformed ones.
#[derive(Debug, Clone)]
enum Frame {
    Join(Room, Name, ModeField),
    Offer(Sdp, Peer),
    Answer(Sdp, Peer),
    Ice(String, u32, Pc, Peer),
    Leave,
    Resume(String, u64),
    UnknownType,
    RoomNotAString,
    NegativeMLine,
    NotJson,
    Array,
    NullType,
}

impl Frame {
    fn text(&self) -> String {
        let peer = |p: &Peer| match p {
            Peer::Absent => Value::Null,
            Peer::Nobody => json!("p0-0000"),
            Peer::Empty => json!(""),
            Peer::Number => json!(42),
        };
        let sdp = |s: &Sdp| match s {
            Sdp::Bare => "v=0".to_owned(),
            Sdp::Usable => GOOD_OFFER.to_owned(),
            Sdp::Empty => String::new(),
            Sdp::Junk(j) => j.clone(),
            Sdp::NoCodec => "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n".to_owned(),
        };
        match self {
            Frame::Join(room, name, mode) => {
                let room = match room {
                    Room::A => "fz-a".to_owned(),
                    Room::B => "fz-b".to_owned(),
                    Room::Punctuated => "bad room!".to_owned(),
                    Room::Empty => String::new(),
                    Room::TooLong => "x".repeat(70),
                };
                let name = match name {
                    Name::Ada => "ada".to_owned(),
                    Name::Blank => " ".to_owned(),
                    Name::Control => "\u{7}bell".to_owned(),
                    Name::TooLong => "n".repeat(80),
                };
                let mode = match mode {
                    ModeField::Mesh => json!("mesh"),
                    ModeField::Sfu => json!("sfu"),
                    ModeField::Mcu => json!("mcu"),
                    ModeField::Null => Value::Null,
                    ModeField::Unknown => json!("p2p"),
                    ModeField::Number => json!(7),
                };
                json!({"type":"join","room":room,"name":name,"mode":mode}).to_string()
            }
            Frame::Offer(s, to) => json!({"type":"offer","sdp":sdp(s),"to":peer(to)}).to_string(),
            Frame::Answer(s, to) => json!({"type":"answer","sdp":sdp(s),"to":peer(to)}).to_string(),
            Frame::Ice(candidate, mline, pc, to) => {
                let pc = match pc {
                    Pc::Publish => "publish",
                    Pc::Subscribe => "subscribe",
                    Pc::Sideways => "sideways",
                };
                json!({"type":"ice","candidate":candidate,"sdpMLineIndex":mline,"pc":pc,"to":peer(to)})
                    .to_string()
            }
            Frame::Leave => json!({"type":"leave"}).to_string(),
            Frame::Resume(token, received) => {
                json!({"type":"resume","token":token,"received":received}).to_string()
            }
            Frame::UnknownType => json!({"type":"dance"}).to_string(),
            Frame::RoomNotAString => json!({"type":"join","room":5}).to_string(),
            Frame::NegativeMLine => json!({"type":"ice","sdpMLineIndex":-1}).to_string(),
            Frame::NotJson => "{not json".to_owned(),
            Frame::Array => "[1,2,3]".to_owned(),
            Frame::NullType => json!({"type":null}).to_string(),
        }
    }
}

/// Where one client's session is, as the README's protocol section has it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Model {
    NotJoined,
    /// Alone in a room of this mode (the only client: nobody else to relay
    /// to, no server offer outstanding).
    Joined(Mode),
}

/// The oracle: the error code the README promises for `frame` in `state`
/// (None: no error), and the state after it. Written from the protocol's
/// rules, not from the server's code.
fn expect(state: Model, frame: &Frame) -> (Option<ErrorCode>, Model) {
    use ErrorCode::*;
    let same = |code| (Some(code), state);
    match frame {
        // Not an object with a string "type".
        Frame::NotJson | Frame::Array | Frame::NullType => same(BadJson),
        Frame::UnknownType => same(UnknownType),
        // Known types with ill-typed fields.
        Frame::RoomNotAString | Frame::NegativeMLine => same(BadMessage),
        Frame::Join(_, _, ModeField::Unknown | ModeField::Number) => same(BadMessage),
        Frame::Offer(_, Peer::Number) | Frame::Answer(_, Peer::Number) => same(BadMessage),
        Frame::Ice(_, _, Pc::Sideways, _) | Frame::Ice(_, _, _, Peer::Number) => same(BadMessage),
        Frame::Join(..) | Frame::Resume(..) if state != Model::NotJoined => same(AlreadyJoined),
        Frame::Join(Room::Punctuated | Room::Empty | Room::TooLong, _, _) => same(BadName),
        Frame::Join(_, Name::Blank | Name::Control | Name::TooLong, _) => same(BadName),
        Frame::Join(_, Name::Ada, mode) => {
            // Alone, so the room is new and takes the mode asked (MCU when
            // none is).
            let mode = match mode {
                ModeField::Mesh => Mode::Mesh,
                ModeField::Sfu => Mode::Sfu,
                _ => Mode::Mcu,
            };
            (None, Model::Joined(mode))
        }
        // Random tokens name no session.
        Frame::Resume(..) => same(ResumeFailed),
        Frame::Leave if state == Model::NotJoined => same(NotJoined),
        Frame::Leave => (None, Model::NotJoined),
        Frame::Offer(..) | Frame::Answer(..) | Frame::Ice(..) => {
            let Model::Joined(mode) = state else {
                return same(NotJoined);
            };
            (signal_error(mode, frame), state)
        }
    }
}

/// A well-formed offer, answer or candidate from a participant alone in a
/// room of `mode`.
fn signal_error(mode: Mode, frame: &Frame) -> Option<ErrorCode> {
    use ErrorCode::*;
    let to = match frame {
        Frame::Offer(_, to) | Frame::Answer(_, to) | Frame::Ice(_, _, _, to) => *to,
        _ => unreachable!("not a signal"),
    };
    match (mode, frame) {
        // Mesh: relayed to the peer named by "to", who is never there.
        (Mode::Mesh, _) if to == Peer::Absent => Some(BadMessage),
        (Mode::Mesh, _) => Some(UnknownParticipant),
        // The client's offer on the publish connection: answered if it
        // offers Opus or VP8 on an m-line.
        (_, Frame::Offer(Sdp::Usable, _)) => None,
        (_, Frame::Offer(..)) => Some(BadSdp),
        // No server offer is outstanding: alone in an SFU room there is
        // nothing to subscribe to, and an MCU room never offers.
        (_, Frame::Answer(..)) => Some(BadState),
        (_, Frame::Ice(_, _, Pc::Subscribe, _)) => Some(BadState),
        // Publish candidates are kept until the offer, then applied; a
        // malformed one is webrtcbin's to ignore.
        (_, Frame::Ice(..)) => None,
        _ => unreachable!("not a signal"),
    }
}

fn client_frame() -> impl Strategy<Value = Frame> {
    let room = prop_oneof![
        4 => Just(Room::A),
        2 => Just(Room::B),
        1 => Just(Room::Punctuated),
        1 => Just(Room::Empty),
        1 => Just(Room::TooLong),
    ];
    let name = prop_oneof![
        4 => Just(Name::Ada),
        1 => Just(Name::Blank),
        1 => Just(Name::Control),
        1 => Just(Name::TooLong),
    ];
    let mode = prop_oneof![
        3 => Just(ModeField::Mesh),
        1 => Just(ModeField::Sfu),
        1 => Just(ModeField::Mcu),
        1 => Just(ModeField::Null),
        1 => Just(ModeField::Unknown),
        1 => Just(ModeField::Number),
    ];
    let sdp = prop_oneof![
        Just(Sdp::Bare),
        Just(Sdp::Usable),
        Just(Sdp::Empty),
        "[ -~]{0,40}".prop_map(Sdp::Junk),
        Just(Sdp::NoCodec),
    ];
    let peer = prop_oneof![
        Just(Peer::Absent),
        Just(Peer::Nobody),
        Just(Peer::Empty),
        Just(Peer::Number),
    ];
    let pc = prop_oneof![Just(Pc::Publish), Just(Pc::Subscribe), Just(Pc::Sideways)];
    prop_oneof![
        4 => (room, name, mode).prop_map(|(r, n, m)| Frame::Join(r, n, m)),
        3 => (sdp.clone(), peer.clone()).prop_map(|(s, p)| Frame::Offer(s, p)),
        2 => (sdp, peer.clone()).prop_map(|(s, p)| Frame::Answer(s, p)),
        3 => ("[ -~]{0,30}", 0u32..4, pc, peer).prop_map(|(c, m, pc, p)| Frame::Ice(c, m, pc, p)),
        2 => Just(Frame::Leave),
        1 => ("[0-9a-f]{0,32}", any::<u64>()).prop_map(|(t, r)| Frame::Resume(t, r)),
        1 => Just(Frame::UnknownType),
        1 => Just(Frame::RoomNotAString),
        1 => Just(Frame::NegativeMLine),
        1 => Just(Frame::NotJson),
        1 => Just(Frame::Array),
        1 => Just(Frame::NullType),
    ]
}

struct Fixture {
    runtime: tokio::runtime::Runtime,
    server: gridmix::server::Server,
    /// One case at a time on the shared server, whichever test it is from:
    /// a case that checks the server is idle must not see another's session.
    one_case: std::sync::Mutex<()>,
}

impl Fixture {
    fn one_case(&self) -> std::sync::MutexGuard<'_, ()> {
        self.one_case.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        watch_for_panics();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let server = runtime.block_on(start_server(ServeArgs {
            resume_grace: Duration::from_millis(100),
            max_participants: 3,
            max_rooms: 4,
            // Every case opens rooms from this one address.
            room_creations_per_ip: usize::MAX,
            ..ServeArgs::default()
        }));
        Fixture {
            runtime,
            server,
            one_case: std::sync::Mutex::new(()),
        }
    })
}

fn sorted(mut codes: Vec<ErrorCode>) -> Vec<ErrorCode> {
    codes.sort_by_key(|c| c.as_str());
    codes
}

async fn run_sequence(server: &gridmix::server::Server, frames: &[Frame]) -> Result<(), String> {
    let mut state = Model::NotJoined;
    let mut want = Vec::new();
    for frame in frames {
        let (code, next) = expect(state, frame);
        want.extend(code);
        state = next;
    }
    // From an empty server: a failed case (shrinking runs many) may have
    // left its session waiting out its resume grace.
    wait_until_idle(server, Duration::from_secs(20))
        .await
        .map_err(|e| format!("left behind before the case: {e:#}"))?;
    let mut client = WsClient::connect(server).await;
    for frame in frames {
        client.send(&frame.text()).await;
    }
    // Every error promised, in any order (the session answers some at once,
    // the room others as it gets to them)...
    let mut got = Vec::new();
    while got.len() < want.len() {
        match tokio::time::timeout(Duration::from_secs(10), client.try_recv()).await {
            Ok(Some(ServerMessage::Error { code, message })) => {
                if message.is_empty() {
                    return Err(format!("{code:?} without a sentence"));
                }
                got.push(code);
            }
            Ok(Some(_)) => {}
            Ok(None) => return Err("the server closed the connection".into()),
            Err(_) => {
                return Err(format!(
                    "errors {:?}, want {:?} (frames in order: {:?})",
                    sorted(got),
                    sorted(want),
                    frames.iter().map(expect_trace).collect::<Vec<_>>()
                ));
            }
        }
    }
    // ...and no other before a marker the session answers itself.
    client.send(r#"{"type":"fuzz-marker"}"#).await;
    loop {
        match tokio::time::timeout(Duration::from_secs(10), client.try_recv()).await {
            Ok(Some(ServerMessage::Error {
                code: ErrorCode::UnknownType,
                message,
            })) if message.contains("fuzz-marker") => break,
            Ok(Some(ServerMessage::Error { code, .. })) => got.push(code),
            Ok(Some(_)) => {}
            Ok(None) => return Err("the server closed the connection".into()),
            Err(_) => return Err("the session stopped answering".into()),
        }
    }
    if sorted(got.clone()) != sorted(want.clone()) {
        return Err(format!("errors {:?}, want {:?}", sorted(got), sorted(want)));
    }
    drop(client);
    wait_until_idle(server, Duration::from_secs(20))
        .await
        .map_err(|e| format!("left behind: {e:#}"))?;
    Ok(())
}

/// A frame as text, for a failure's report.
fn expect_trace(frame: &Frame) -> String {
    frame.text().chars().take(80).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(48)))]

    #[test]
    fn wrong_message_sequences_get_errors_and_leave_nothing_behind(
        frames in proptest::collection::vec(client_frame(), 1..24)
    ) {
        let fixture = fixture();
        let _one = fixture.one_case();
        let result = fixture.runtime.block_on(run_sequence(&fixture.server, &frames));
        prop_assert!(!PANICKED.load(Ordering::SeqCst), "a panic (see the log above)");
        prop_assert!(result.is_ok(), "{}", result.unwrap_err());
    }

    #[test]
    fn long_poll_bodies_get_http_errors_never_server_errors(
        body in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..256).prop_map(|b| b),
            arbitrary_json().prop_map(|v| v.to_string().into_bytes()),
            client_frame().prop_map(|f| f.text().into_bytes()),
        ],
        path in prop_oneof![Just("".to_owned()), "/[0-9a-f]{1,32}"],
    ) {
        let fixture = fixture();
        let _one = fixture.one_case();
        let url = format!("{}{path}", fixture.server.poll_url());
        let (status, json_error) = fixture.runtime.block_on(async {
            let response = reqwest::Client::new().post(&url).body(body).send().await.unwrap();
            let status = response.status();
            let json: Option<Value> = response.json().await.ok();
            let is_error = json.as_ref().is_some_and(|j| j["type"] == "error" && j["code"].is_string());
            // A join that got in: leave again.
            if let Some(session) = json.as_ref().and_then(|j| j["session"].as_str()) {
                let _ = reqwest::Client::new().delete(format!("{}/{session}", fixture.server.poll_url())).send().await;
            }
            (status, is_error)
        });
        prop_assert!(!PANICKED.load(Ordering::SeqCst));
        prop_assert!(status.as_u16() < 500 || status.as_u16() == 503, "{status}");
        prop_assert!(status.is_success() || json_error, "{status} without the error JSON");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(48)))]

    #[test]
    fn long_poll_queries_never_panic_and_leave_the_session_alive(
        query in prop_oneof![
            any::<u64>().prop_map(|n| format!("after={n}")),
            Just(format!("after={}", u64::MAX)),
            "[0-9]{19,30}".prop_map(|n| format!("after={n}")),
            "-?[0-9]{1,5}".prop_map(|n| format!("after={n}")),
            "[ -~]{0,40}",
        ],
    ) {
        let fixture = fixture();
        let _one = fixture.one_case();
        let step = std::sync::Mutex::new("start");
        let outcome = fixture.runtime.block_on(async {
            tokio::time::timeout(
                Duration::from_secs(60),
                poll_query_case(&fixture.server, &query, &step),
            )
            .await
        });
        prop_assert!(!PANICKED.load(Ordering::SeqCst), "a panic (see the log above)");
        let step = *step.lock().unwrap();
        prop_assert!(outcome.is_ok(), "?{query}: stuck for 60 s at: {step}");
        let outcome = outcome.unwrap();
        prop_assert!(outcome.is_ok(), "{}", outcome.unwrap_err());
    }
}

/// One poll-query case: a long-poll session polled with `query`, then
/// normally, then closed; the server must be idle again afterwards.
async fn poll_query_case(
    server: &gridmix::server::Server,
    query: &str,
    step: &std::sync::Mutex<&'static str>,
) -> Result<(), String> {
    let at = |s| *step.lock().unwrap() = s;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())?;
    at("join");
    let opened: Value = http
        .post(server.poll_url())
        .json(&json!({"type":"join","room":"fuzz-poll","name":"poller","mode":"mesh"}))
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    let session = opened["session"].as_str().ok_or("no session")?.to_owned();
    let url = format!("{}/{session}", server.poll_url());
    // A poll may wait for messages that never come: not waited for.
    at("fuzzed poll");
    let fuzzed = http
        .get(format!("{url}?{query}"))
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    if let Ok(response) = &fuzzed
        && response.status().as_u16() >= 500
    {
        return Err(format!("?{query} answered {}", response.status()));
    }
    at("normal poll");
    let again = http
        .get(format!("{url}?after=0"))
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    if again.as_ref().is_ok_and(|r| r.status() == 404) {
        return Err(format!("after ?{query} the session was gone"));
    }
    at("delete");
    let _ = http.delete(&url).send().await;
    at("idle");
    wait_until_idle(server, Duration::from_secs(10))
        .await
        .map_err(|e| format!("after ?{query}: {e}"))
}
