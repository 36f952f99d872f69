//! Property-based fuzzing of the signaling layer (a bounded run in
//! `make test`; `PROPTEST_CASES=20000 cargo test --release --test
//! fuzz_signaling` runs it longer):
//!
//! - the parser, on arbitrary bytes and arbitrary JSON: never a panic, and
//!   every refusal has a code and a sentence;
//! - the session and room state machines, on arbitrary sequences of
//!   well-formed-but-wrong messages over a real WebSocket into a real server
//!   (all three room modes): no panic, every message the parser refuses is
//!   answered with its error code, the session still answers afterwards, and
//!   nothing is left behind once the client goes;
//! - the long-poll endpoints, on arbitrary request bodies: an HTTP error
//!   with the protocol's error JSON, never a server error.

mod common;

use common::*;
use gridmix::config::ServeArgs;
use gridmix::protocol::{ErrorCode, ServerMessage, parse_client_message};
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

const GOOD_OFFER: &str = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=rtpmap:111 opus/48000/2\r\na=sendrecv\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\na=rtpmap:96 VP8/90000\r\na=sendrecv\r\n";

/// One client frame: mostly well-formed messages in a wrong place or with
/// wrong values, some malformed ones.
fn client_frame() -> impl Strategy<Value = String> {
    let room = prop_oneof![
        4 => Just("fz-a".to_owned()),
        2 => Just("fz-b".to_owned()),
        1 => Just("bad room!".to_owned()),
        1 => Just(String::new()),
        1 => Just("x".repeat(70)),
    ];
    let name = prop_oneof![
        4 => Just("ada".to_owned()),
        1 => Just(" ".to_owned()),
        1 => Just("\u{7}bell".to_owned()),
        1 => Just("n".repeat(80)),
    ];
    let mode = prop_oneof![
        3 => Just(json!("mesh")),
        1 => Just(json!("sfu")),
        1 => Just(json!("mcu")),
        1 => Just(Value::Null),
        1 => Just(json!("p2p")),
        1 => Just(json!(7)),
    ];
    let sdp = prop_oneof![
        Just("v=0".to_owned()),
        Just(GOOD_OFFER.to_owned()),
        Just(String::new()),
        "[ -~]{0,40}",
        Just("v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n".to_owned()),
    ];
    let peer = prop_oneof![
        Just(Value::Null),
        Just(json!("p1-0000")),
        Just(json!("")),
        Just(json!(42)),
    ];
    prop_oneof![
        4 => (room, name, mode).prop_map(|(room, name, mode)| {
            json!({"type":"join","room":room,"name":name,"mode":mode}).to_string()
        }),
        3 => (sdp.clone(), peer.clone()).prop_map(|(sdp, to)| json!({"type":"offer","sdp":sdp,"to":to}).to_string()),
        2 => (sdp, peer.clone()).prop_map(|(sdp, to)| json!({"type":"answer","sdp":sdp,"to":to}).to_string()),
        3 => ("[ -~]{0,30}", 0u32..4, prop_oneof![Just("publish"), Just("subscribe"), Just("sideways")], peer)
            .prop_map(|(candidate, mline, pc, to)| json!({
                "type":"ice","candidate":candidate,"sdpMLineIndex":mline,"pc":pc,"to":to
            }).to_string()),
        2 => Just(json!({"type":"leave"}).to_string()),
        1 => ("[0-9a-f]{0,32}", any::<u64>()).prop_map(|(token, received)| json!({"type":"resume","token":token,"received":received}).to_string()),
        1 => Just(json!({"type":"dance"}).to_string()),
        1 => Just(json!({"type":"join","room":5}).to_string()),
        1 => Just(json!({"type":"ice","sdpMLineIndex":-1}).to_string()),
        1 => Just("{not json".to_owned()),
        1 => Just("[1,2,3]".to_owned()),
        1 => Just(json!({"type":null}).to_string()),
    ]
}

struct Fixture {
    runtime: tokio::runtime::Runtime,
    server: gridmix::server::Server,
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
            ..ServeArgs::default()
        }));
        Fixture { runtime, server }
    })
}

/// The codes only the parser gives, expected once per frame it refuses.
fn parser_code(frame: &str) -> Option<ErrorCode> {
    match parse_client_message(frame) {
        Err(e) if matches!(e.code, ErrorCode::BadJson | ErrorCode::UnknownType) => Some(e.code),
        _ => None,
    }
}

async fn run_sequence(server: &gridmix::server::Server, frames: &[String]) -> Result<(), String> {
    let mut client = WsClient::connect(server).await;
    for frame in frames {
        client.send(frame).await;
    }
    // A marker: once its error is back, every frame before it was handled.
    let marker = r#"{"type":"fuzz-marker"}"#;
    client.send(marker).await;
    let mut bad_json = 0;
    let mut unknown = 0;
    loop {
        match tokio::time::timeout(Duration::from_secs(20), client.try_recv()).await {
            Ok(Some(ServerMessage::Error { code, message })) => {
                if message.is_empty() {
                    return Err(format!("{code:?} without a sentence"));
                }
                match code {
                    ErrorCode::BadJson => bad_json += 1,
                    ErrorCode::UnknownType if message.contains("fuzz-marker") => break,
                    ErrorCode::UnknownType => unknown += 1,
                    ErrorCode::Internal => return Err(format!("internal error: {message}")),
                    _ => {}
                }
            }
            Ok(Some(_)) => {}
            Ok(None) => return Err("the server closed the connection".into()),
            Err(_) => return Err("the session stopped answering".into()),
        }
    }
    let want_bad_json = frames
        .iter()
        .filter(|f| parser_code(f) == Some(ErrorCode::BadJson))
        .count();
    let want_unknown = frames
        .iter()
        .filter(|f| parser_code(f) == Some(ErrorCode::UnknownType))
        .count();
    if (bad_json, unknown) != (want_bad_json, want_unknown) {
        return Err(format!(
            "bad-json {bad_json} (want {want_bad_json}), unknown-type {unknown} (want {want_unknown})"
        ));
    }
    drop(client);
    wait_until_idle(server, Duration::from_secs(20))
        .await
        .map_err(|e| format!("left behind: {e:#}"))?;
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(48)))]

    #[test]
    fn wrong_message_sequences_get_errors_and_leave_nothing_behind(
        frames in proptest::collection::vec(client_frame(), 1..24)
    ) {
        let fixture = fixture();
        let result = fixture.runtime.block_on(run_sequence(&fixture.server, &frames));
        prop_assert!(!PANICKED.load(Ordering::SeqCst), "a panic (see the log above)");
        prop_assert!(result.is_ok(), "{}", result.unwrap_err());
    }

    #[test]
    fn long_poll_bodies_get_http_errors_never_server_errors(
        body in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..256).prop_map(|b| b),
            arbitrary_json().prop_map(|v| v.to_string().into_bytes()),
            client_frame().prop_map(String::into_bytes),
        ],
        path in prop_oneof![Just("".to_owned()), "/[0-9a-f]{1,32}"],
    ) {
        let fixture = fixture();
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
