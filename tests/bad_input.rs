//! Bad input never crashes or wedges the server: each mistake gets its error
//! code, and the room goes on serving everyone else with real media.

mod common;

use common::*;
use futures::{SinkExt, StreamExt};
use gridmix::bot::Bot;
use gridmix::config::ServeArgs;
use gridmix::protocol::{ErrorCode, ServerMessage};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

const TIMEOUT: Duration = Duration::from_secs(30);

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A hand-driven signaling client, for sending what no well-behaved client would.
struct RawClient {
    ws: Ws,
}

impl RawClient {
    async fn connect(server: &gridmix::server::Server) -> RawClient {
        let (ws, _) = tokio_tungstenite::connect_async(server.ws_url())
            .await
            .expect("websocket connects");
        RawClient { ws }
    }

    async fn send(&mut self, text: &str) {
        self.ws
            .send(Message::Text(text.to_owned().into()))
            .await
            .expect("send");
    }

    async fn recv(&mut self) -> ServerMessage {
        loop {
            let frame = tokio::time::timeout(TIMEOUT, self.ws.next())
                .await
                .expect("a reply in time")
                .expect("socket open")
                .expect("readable frame");
            if let Message::Text(text) = frame {
                return serde_json::from_str(text.as_str())
                    .expect("server sends protocol messages");
            }
        }
    }

    /// The next error, skipping other messages (ICE, participant events).
    async fn expect_error(&mut self, code: ErrorCode) {
        loop {
            if let ServerMessage::Error { code: got, message } = self.recv().await {
                assert_eq!(got, code, "message: {message}");
                assert!(!message.is_empty());
                return;
            }
        }
    }

    async fn join(&mut self, room: &str, name: &str) -> String {
        self.send(&format!(
            r#"{{"type":"join","room":"{room}","name":"{name}"}}"#
        ))
        .await;
        match self.recv().await {
            ServerMessage::Joined { participant, .. } => participant,
            other => panic!("expected joined, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_malformed_message_gets_its_code_and_the_room_keeps_working() {
    let server = start_server(ServeArgs::default()).await;
    let mut raw = RawClient::connect(&server).await;

    raw.send("{not json").await;
    raw.expect_error(ErrorCode::BadJson).await;
    raw.ws
        .send(Message::Binary(vec![1, 2, 3].into()))
        .await
        .unwrap();
    raw.expect_error(ErrorCode::BadJson).await;
    raw.send(r#"{"type":"dance"}"#).await;
    raw.expect_error(ErrorCode::UnknownType).await;
    raw.send(r#"{"type":"join","room":"r"}"#).await;
    raw.expect_error(ErrorCode::BadMessage).await;
    raw.send(r#"{"type":"offer","sdp":"v=0"}"#).await;
    raw.expect_error(ErrorCode::NotJoined).await;
    raw.send(r#"{"type":"join","room":"no/slashes","name":"x"}"#)
        .await;
    raw.expect_error(ErrorCode::BadName).await;

    raw.join("bad-input", "raw").await;
    raw.send(r#"{"type":"join","room":"bad-input","name":"again"}"#)
        .await;
    raw.expect_error(ErrorCode::AlreadyJoined).await;
    raw.send(r#"{"type":"offer","sdp":"hello"}"#).await;
    raw.expect_error(ErrorCode::BadSdp).await;
    raw.send(r#"{"type":"offer","sdp":"v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"}"#)
        .await;
    raw.expect_error(ErrorCode::BadSdp).await;
    let h264_only = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 102\r\na=rtpmap:102 H264/90000\r\na=sendrecv\r\n";
    raw.send(&serde_json::json!({"type":"offer","sdp":h264_only}).to_string())
        .await;
    raw.expect_error(ErrorCode::BadSdp).await;
    raw.send(r#"{"type":"answer","sdp":"v=0"}"#).await;
    raw.expect_error(ErrorCode::BadState).await;
    raw.send(r#"{"type":"ice","candidate":"x","sdpMLineIndex":0,"pc":"subscribe"}"#)
        .await;
    raw.expect_error(ErrorCode::BadState).await;

    // The room still serves real media: a bot joining now sees the raw
    // client's placeholder tile and its own colour.
    let bot = Bot::join(bot_config(&server, "bad-input", "bot", 0xff0000, 500.0))
        .await
        .unwrap();
    wait_for_tiles(&bot, &[PLACEHOLDER, 0xff0000], TIMEOUT)
        .await
        .expect("composite after bad input");
    bot.leave().await;
    server.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn full_rooms_and_wrong_modes_are_refused() {
    let server = start_server(ServeArgs {
        max_participants: 2,
        ..ServeArgs::default()
    })
    .await;
    let mut a = RawClient::connect(&server).await;
    let mut b = RawClient::connect(&server).await;
    let mut c = RawClient::connect(&server).await;
    a.join("small", "a").await;
    b.join("small", "b").await;
    c.send(r#"{"type":"join","room":"small","name":"c"}"#).await;
    c.expect_error(ErrorCode::RoomFull).await;
    c.send(r#"{"type":"join","room":"small","name":"c","mode":"sfu"}"#)
        .await;
    c.expect_error(ErrorCode::ModeMismatch).await;

    // A leaves; once B has heard so, C fits, and B hears of C.
    a.send(r#"{"type":"leave"}"#).await;
    while !matches!(b.recv().await, ServerMessage::ParticipantLeft { .. }) {}
    c.join("small", "c").await;
    loop {
        if let ServerMessage::ParticipantJoined { participant } = b.recv().await
            && participant.name == "c"
        {
            break;
        }
    }
    server.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_socket_dropped_mid_negotiation_removes_only_that_participant() {
    // A dropped socket keeps its participant for the resume grace period;
    // a short one here, so the vanished bot is removed within the test's wait.
    let server = start_server(ServeArgs {
        resume_grace: Duration::from_secs(2),
        ..ServeArgs::default()
    })
    .await;
    let stayer = Bot::join(bot_config(&server, "drop", "stayer", 0x0000ff, 600.0))
        .await
        .unwrap();
    wait_for_tiles(&stayer, &[0x0000ff], TIMEOUT)
        .await
        .expect("alone in the room");

    // Bot::join returns as soon as its offer is sent: vanishing now drops the
    // socket while the server is negotiating with it.
    let dropper = Bot::join(bot_config(&server, "drop", "dropper", 0x00ff00, 900.0))
        .await
        .unwrap();
    let dropper_id = dropper.id().to_owned();
    dropper.vanish().await;
    stayer
        .wait_for_state(TIMEOUT, |s| s.others.iter().all(|p| p.id != dropper_id))
        .await
        .expect("the stayer is told the dropper left");
    wait_for_tiles(&stayer, &[0x0000ff], TIMEOUT)
        .await
        .expect("back to one tile");

    let late = Bot::join(bot_config(&server, "drop", "late", 0xff0000, 1300.0))
        .await
        .unwrap();
    wait_for_tiles(&stayer, &[0x0000ff, 0xff0000], TIMEOUT)
        .await
        .expect("the room still grows");
    wait_for_tones(&stayer, &[1300.0], &[600.0, 900.0], TIMEOUT)
        .await
        .expect("the stayer hears the late bot");
    assert!(
        stayer.state().errors.is_empty(),
        "{:?}",
        stayer.state().errors
    );
    late.leave().await;
    stayer.leave().await;
    server.shut_down().await;
}

/// Joins a raw client to `room` in `mode`.
async fn join_raw(
    server: &gridmix::server::Server,
    room: &str,
    name: &str,
    mode: &str,
) -> (RawClient, String) {
    let mut raw = RawClient::connect(server).await;
    raw.send(&format!(
        r#"{{"type":"join","room":"{room}","name":"{name}","mode":"{mode}"}}"#
    ))
    .await;
    match raw.recv().await {
        ServerMessage::Joined { participant, .. } => (raw, participant),
        other => panic!("expected joined, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sfu_mistakes_get_errors_and_the_room_keeps_forwarding() {
    let server = start_server(ServeArgs::default()).await;
    let (mut raw, _) = join_raw(&server, "sfu-bad", "raw", "sfu").await;
    raw.send(r#"{"type":"answer","sdp":"v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"}"#)
        .await;
    raw.expect_error(ErrorCode::BadState).await;
    raw.send(r#"{"type":"ice","candidate":"candidate:1 1 UDP 1 127.0.0.1 9 typ host","sdpMLineIndex":0,"pc":"subscribe"}"#)
        .await;
    raw.expect_error(ErrorCode::BadState).await;
    raw.send(r#"{"type":"offer","sdp":"v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"}"#)
        .await;
    raw.expect_error(ErrorCode::BadSdp).await;
    raw.send(r#"{"type":"offer","sdp":"not sdp"}"#).await;
    raw.expect_error(ErrorCode::BadSdp).await;
    raw.send(r#"{"type":"join","room":"sfu-bad","name":"again","mode":"mcu"}"#)
        .await;
    raw.expect_error(ErrorCode::AlreadyJoined).await;
    let mut wrong_mode = RawClient::connect(&server).await;
    wrong_mode
        .send(r#"{"type":"join","room":"sfu-bad","name":"m","mode":"mcu"}"#)
        .await;
    wrong_mode.expect_error(ErrorCode::ModeMismatch).await;

    // The room still forwards real media between two bots.
    let members = vec![
        join_member(
            &server,
            "sfu-bad",
            "a",
            gridmix::protocol::Mode::Sfu,
            (0xff0000, 500.0),
            false,
        )
        .await,
        join_member(
            &server,
            "sfu-bad",
            "b",
            gridmix::protocol::Mode::Sfu,
            (0x0000ff, 900.0),
            false,
        )
        .await,
    ];
    wait_for_full_exchange(&members, TIMEOUT)
        .await
        .expect("forwarding after bad input");
    assert_no_errors(&members);
    for m in members {
        m.bot.leave().await;
    }
    server.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mesh_relays_to_unknown_or_departed_participants_get_errors() {
    let server = start_server(ServeArgs::default()).await;
    let (mut raw, raw_id) = join_raw(&server, "mesh-bad", "raw", "mesh").await;
    let (mut other, other_id) = join_raw(&server, "mesh-bad", "other", "mesh").await;
    raw.send(r#"{"type":"offer","sdp":"v=0","to":"p999-nobody"}"#)
        .await;
    raw.expect_error(ErrorCode::UnknownParticipant).await;
    raw.send(r#"{"type":"offer","sdp":"v=0"}"#).await;
    raw.expect_error(ErrorCode::BadMessage).await;
    raw.send(&format!(
        r#"{{"type":"answer","sdp":"v=0","to":"{raw_id}"}}"#
    ))
    .await;
    raw.expect_error(ErrorCode::BadMessage).await;
    raw.send(r#"{"type":"ice","candidate":"","sdpMLineIndex":0,"to":"p999-nobody"}"#)
        .await;
    raw.expect_error(ErrorCode::UnknownParticipant).await;

    // A relay between the two arrives with "from".
    raw.send(&format!(
        r#"{{"type":"offer","sdp":"v=0 hello","to":"{other_id}"}}"#
    ))
    .await;
    loop {
        if let ServerMessage::Offer { sdp, from } = other.recv().await {
            assert_eq!(sdp, "v=0 hello");
            assert_eq!(from.as_deref(), Some(raw_id.as_str()));
            break;
        }
    }
    // Once the other has left, a relay to it is an error, not a crash.
    other.send(r#"{"type":"leave"}"#).await;
    loop {
        if let ServerMessage::ParticipantLeft { participant } = raw.recv().await {
            assert_eq!(participant, other_id);
            break;
        }
    }
    raw.send(&format!(
        r#"{{"type":"answer","sdp":"v=0","to":"{other_id}"}}"#
    ))
    .await;
    raw.expect_error(ErrorCode::UnknownParticipant).await;

    // The room goes on: two bots joining now exchange media.
    let members = vec![
        join_member(
            &server,
            "mesh-bad",
            "a",
            gridmix::protocol::Mode::Mesh,
            (0xff0000, 500.0),
            false,
        )
        .await,
        join_member(
            &server,
            "mesh-bad",
            "b",
            gridmix::protocol::Mode::Mesh,
            (0x0000ff, 900.0),
            false,
        )
        .await,
    ];
    wait_for_tracks_from(&members[1], &[&members[0]], TIMEOUT)
        .await
        .expect("b receives a after bad input");
    wait_for_tracks_from(&members[0], &[&members[1]], TIMEOUT)
        .await
        .expect("a receives b after bad input");
    assert_no_errors(&members);
    for m in members {
        m.bot.leave().await;
    }
    server.shut_down().await;
}
