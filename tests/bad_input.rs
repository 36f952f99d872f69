//! Bad input never crashes or wedges the server: each mistake gets its error
//! code, and the room goes on serving everyone else with real media.

mod common;

use common::*;
use gridmix::bot::Bot;
use gridmix::config::ServeArgs;
use gridmix::protocol::{ErrorCode, ServerMessage};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

const TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_malformed_message_gets_its_code_and_the_room_keeps_working() {
    let server = start_server(ServeArgs::default()).await;
    let mut raw = WsClient::connect(&server).await;

    raw.send("{not json").await;
    raw.expect_error(ErrorCode::BadJson).await;
    raw.send_frame(Message::Binary(vec![1, 2, 3].into())).await;
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

    raw.join_with(serde_json::json!({"type":"join","room":"bad-input","name":"raw"}))
        .await;
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
    let mut a = WsClient::connect(&server).await;
    let mut b = WsClient::connect(&server).await;
    let mut c = WsClient::connect(&server).await;
    a.join("small", "a", "mcu").await;
    b.join("small", "b", "mcu").await;
    c.send(r#"{"type":"join","room":"small","name":"c"}"#).await;
    c.expect_error(ErrorCode::RoomFull).await;
    c.send(r#"{"type":"join","room":"small","name":"c","mode":"sfu"}"#)
        .await;
    c.expect_error(ErrorCode::ModeMismatch).await;

    // A leaves; once B has heard so, C fits, and B hears of C.
    a.send(r#"{"type":"leave"}"#).await;
    b.recv_until("a left", |m| {
        matches!(m, ServerMessage::ParticipantLeft { .. })
    })
    .await;
    c.join("small", "c", "mcu").await;
    b.recv_until("c joined", |m| {
        matches!(m, ServerMessage::ParticipantJoined { participant } if participant.name == "c")
    })
    .await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sfu_mistakes_get_errors_and_the_room_keeps_forwarding() {
    let server = start_server(ServeArgs::default()).await;
    let (mut raw, _) = joined_client(&server, "sfu-bad", "raw", "sfu").await;
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
    let mut wrong_mode = WsClient::connect(&server).await;
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
    let (mut raw, raw_id) = joined_client(&server, "mesh-bad", "raw", "mesh").await;
    let (mut other, other_id) = joined_client(&server, "mesh-bad", "other", "mesh").await;
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
    let (offer, _) = other
        .recv_until("the relayed offer", |m| {
            matches!(m, ServerMessage::Offer { .. })
        })
        .await;
    assert!(
        matches!(&offer, ServerMessage::Offer { sdp, from, .. } if sdp == "v=0 hello" && from.as_deref() == Some(raw_id.as_str())),
        "{offer:?}"
    );
    // Once the other has left, a relay to it is an error, not a crash.
    other.send(r#"{"type":"leave"}"#).await;
    raw.recv_until(
        "the other left",
        |m| matches!(m, ServerMessage::ParticipantLeft { participant } if *participant == other_id),
    )
    .await;
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

/// A folder of pipeline templates with one chain replaced.
fn pipelines_with(test: &str, file: &str, chain: &str) -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("pipelines-{test}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(file), chain).unwrap();
    dir
}

/// A media chain that cannot be built for one participant (here an
/// operator's audio-encode.gst that does not encode) costs that participant,
/// not the room: it gets `media-failed` with a sentence, is removed and its
/// session ends (the server closes its connection: no later `join-timeout`);
/// the others stay, and are told it left.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_participant_whose_media_cannot_be_built_gets_media_failed_and_the_room_goes_on() {
    // Parses and has its two pads, so start-up accepts it; its raw output
    // cannot link to the Opus payloader when a listener's mix is built.
    let pipelines = pipelines_with("media-failed", "audio-encode.gst", "audioconvert\n");
    let server = start_server(ServeArgs {
        pipelines: Some(pipelines),
        ..ServeArgs::default()
    })
    .await;
    let (mut stayer, _) = joined_client(&server, "media-failed", "stayer", "mcu").await;
    let mut config = bot_config(&server, "media-failed", "broken", 0xff0000, 500.0);
    config.resume = false;
    let broken = Bot::join(config).await.unwrap();
    let broken_id = broken.id().to_owned();
    let state = broken
        .wait_for_state(TIMEOUT, |s| !s.errors.is_empty() && s.disconnected)
        .await
        .expect("the participant is told, and its connection closed");
    assert_eq!(state.errors.len(), 1, "{:?}", state.errors);
    let (code, message) = &state.errors[0];
    assert_eq!(*code, ErrorCode::MediaFailed, "{message}");
    assert!(
        message.contains("removed") && message.len() > 40,
        "{message}"
    );
    stayer
        .recv_until("the broken participant left", |m| {
            matches!(m, ServerMessage::ParticipantLeft { participant } if *participant == broken_id)
        })
        .await;
    // The room still takes people and talks to them.
    let (mut late, late_id) = joined_client(&server, "media-failed", "late", "mcu").await;
    stayer
        .recv_until("the late one joined", |m| {
            matches!(m, ServerMessage::ParticipantJoined { participant } if participant.id == late_id)
        })
        .await;
    late.send(r#"{"type":"answer","sdp":"v=0"}"#).await;
    late.expect_error(ErrorCode::BadState).await;
    broken.leave().await;
    late.leave().await;
    stayer.leave().await;
    wait_until_idle(&server, TIMEOUT).await.expect("all gone");
    server.shut_down().await;
}

/// A room whose media cannot start (an operator's video-encode.gst that
/// cannot take the composite) refuses the join with `internal` and a
/// sentence; nothing is left open, and the server goes on serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_room_whose_pipeline_cannot_start_refuses_the_join_with_internal() {
    // Parses and has its two pads; its sink takes RTP, not raw video.
    let pipelines = pipelines_with("internal", "video-encode.gst", "rtpvp8depay\n");
    let server = start_server(ServeArgs {
        pipelines: Some(pipelines),
        ..ServeArgs::default()
    })
    .await;
    let mut client = WsClient::connect(&server).await;
    client
        .send(r#"{"type":"join","room":"no-pipeline","name":"x","mode":"mcu"}"#)
        .await;
    let said = client.expect_error(ErrorCode::Internal).await;
    assert!(said.contains("pipeline"), "{said}");
    // The same connection can still join a mesh room, which needs no media.
    client.join("meshy", "x", "mesh").await;
    client.leave().await;
    wait_until_idle(&server, TIMEOUT).await.expect("all gone");
    server.shut_down().await;
}

/// A complete publish offer whose only candidate is a UDP port that never
/// answers: ICE fails (libnice gives up a few seconds after its checks
/// fail), the participant gets `connection-failed` and is removed, and the
/// others are told.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_participant_whose_ice_fails_gets_connection_failed_and_is_removed() {
    let server = start_server(ServeArgs::default()).await;
    let (mut stayer, _) = joined_client(&server, "ice-fails", "stayer", "mcu").await;
    let (mut doomed, doomed_id) = joined_client(&server, "ice-fails", "doomed", "mcu").await;
    // Bound, so nothing else takes the port, and never read.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let offer = DEAD_END_OFFER;
    doomed
        .send(&serde_json::json!({"type":"offer","sdp":offer}).to_string())
        .await;
    doomed
        .recv_until("the answer", |m| matches!(m, ServerMessage::Answer { .. }))
        .await;
    doomed
        .send(
            &serde_json::json!({"type":"ice","sdpMLineIndex":0,
                "candidate":format!("candidate:1 1 UDP 2122252543 127.0.0.1 {port} typ host")})
            .to_string(),
        )
        .await;
    doomed
        .send(r#"{"type":"ice","sdpMLineIndex":0,"candidate":""}"#)
        .await;
    let said = doomed.expect_error(ErrorCode::ConnectionFailed).await;
    assert!(said.contains("removed"), "{said}");
    stayer
        .recv_until("the doomed one left", |m| {
            matches!(m, ServerMessage::ParticipantLeft { participant } if *participant == doomed_id)
        })
        .await;
    drop(silent);
    // Its session is over: the server closes the connection.
    assert_eq!(doomed.ending().await, Ending::CloseFrame);
    stayer.leave().await;
    wait_until_idle(&server, TIMEOUT).await.expect("all gone");
    server.shut_down().await;
}

/// What a browser offers, minus the candidates: ICE credentials, a DTLS
/// fingerprint, one bundled Opus and one VP8 m-line.
const DEAD_END_OFFER: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n\
a=fingerprint:sha-256 8B:87:09:8A:5D:C2:F3:33:EF:C5:B1:F6:84:3A:3D:D6:A3:E2:9C:17:4C:E7:46:3B:1B:CE:84:98:DD:8E:AF:7B\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=ice-ufrag:dEaD\r\na=ice-pwd:deadenddeadenddeadend00\r\n\
a=setup:actpass\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\na=sendrecv\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\na=ice-ufrag:dEaD\r\na=ice-pwd:deadenddeadenddeadend00\r\n\
a=setup:actpass\r\na=rtcp-mux\r\na=rtpmap:96 VP8/90000\r\na=rtcp-fb:96 nack pli\r\na=sendrecv\r\n";

/// A client that stops reading does not hold its session forever: over
/// WebSocket once about 500 messages wait for it (its socket buffers full,
/// then the server's queues), over long-poll once 1024 are unacknowledged;
/// then its session ends, the room lets it go and its socket is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_that_stops_reading_is_let_go_on_either_transport() {
    let server = start_server(ServeArgs {
        // Removal must come from the unread messages, not the poll timeout.
        poll_timeout: Duration::from_secs(600),
        messages_per_second: 100_000.0,
        message_burst: 100_000,
        ..ServeArgs::default()
    })
    .await;
    let (mut watcher, _) = joined_client(&server, "unread", "watcher", "mesh").await;
    let http = reqwest::Client::new();
    // The sender: long-poll, so it needs to read nothing itself.
    let opened = poll_join(
        &server,
        serde_json::json!({"type":"join","room":"unread","name":"sender","mode":"mesh"}),
    )
    .await;
    let sender_url = format!("{}/{}", server.poll_url(), opened.session);

    // WebSocket: joins, then never reads a frame.
    let (mut deaf_ws, _) = tokio_tungstenite::connect_async(server.ws_url())
        .await
        .unwrap();
    {
        use futures::SinkExt;
        deaf_ws
            .send(Message::Text(
                r#"{"type":"join","room":"unread","name":"deaf-ws","mode":"mesh"}"#.into(),
            ))
            .await
            .unwrap();
    }
    let (deaf_ws_joined, _) = watcher
        .recv_until("deaf-ws joined", |m| {
            matches!(m, ServerMessage::ParticipantJoined { participant } if participant.name == "deaf-ws")
        })
        .await;
    let ServerMessage::ParticipantJoined { participant: deaf } = deaf_ws_joined else {
        unreachable!()
    };
    // 56 KB offers (as JSON), 16 to a request (the body limit is 1 MiB),
    // until it is let go: its socket buffers hold a few MB, the queues 500
    // messages.
    let sdp = format!("v=0\r\n{}", "a=x\r\n".repeat(8_000));
    let batch: Vec<serde_json::Value> = (0..16)
        .map(|_| serde_json::json!({"type":"offer","sdp":sdp,"to":deaf.id}))
        .collect();
    let mut sent = 0;
    let in_room = |id: String| {
        let registry = server.registry().clone();
        async move {
            registry
                .snapshot()
                .await
                .iter()
                .any(|r| r.participants.iter().any(|p| p.id == id))
        }
    };
    while in_room(deaf.id.clone()).await {
        assert!(
            sent < 4000,
            "still in the room after {sent} unread messages"
        );
        let posted = http.post(&sender_url).json(&batch).send().await.unwrap();
        assert!(posted.status().is_success(), "{}", posted.status());
        sent += batch.len();
    }
    watcher
        .recv_until("deaf-ws left", |m| {
            matches!(m, ServerMessage::ParticipantLeft { participant } if *participant == deaf.id)
        })
        .await;
    eprintln!("the WebSocket client that stopped reading was let go after {sent} messages");
    // And its socket is closed, though it still reads nothing: the writer
    // blocked on its full buffers is aborted, not left holding them.
    let client_end = match deaf_ws.get_ref() {
        tokio_tungstenite::MaybeTlsStream::Plain(tcp) => tcp.local_addr().unwrap(),
        _ => unreachable!("plain TCP on loopback"),
    };
    const ESTABLISHED: u8 = 1;
    eventually(TIMEOUT, || async {
        let state = tcp_state(server.local_addr(), client_end);
        anyhow::ensure!(state != Some(ESTABLISHED), "the server's end is {state:?}");
        Ok(())
    })
    .await
    .expect("the server closed the unread socket");
    drop(deaf_ws);

    // Long-poll: joins, then never polls again.
    let deaf_poll = poll_join(
        &server,
        serde_json::json!({"type":"join","room":"unread","name":"deaf-poll","mode":"mesh"}),
    )
    .await;
    let ServerMessage::Joined {
        participant: deaf_poll_id,
        ..
    } = &deaf_poll.messages[0].message
    else {
        panic!("joined")
    };
    let small: Vec<serde_json::Value> = (0..64)
        .map(|_| serde_json::json!({"type":"offer","sdp":"v=0","to":deaf_poll_id}))
        .collect();
    // 1024 kept: the seventeenth batch of 64 overflows it.
    for _ in 0..17 {
        let posted = http.post(&sender_url).json(&small).send().await.unwrap();
        assert!(posted.status().is_success(), "{}", posted.status());
    }
    watcher
        .recv_until("deaf-poll left", |m| {
            matches!(m, ServerMessage::ParticipantLeft { participant } if participant == deaf_poll_id)
        })
        .await;
    let deaf_poll_url = format!("{}/{}", server.poll_url(), deaf_poll.session);
    eventually(TIMEOUT, || async {
        let status = http.get(&deaf_poll_url).send().await?.status();
        anyhow::ensure!(status == 404, "GET answers {status}");
        Ok(())
    })
    .await
    .expect("its long-poll session ended");
    let _ = http.delete(&sender_url).send().await;
    watcher.leave().await;
    wait_until_idle(&server, TIMEOUT).await.expect("all gone");
    server.shut_down().await;
}
