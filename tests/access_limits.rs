//! Who may come in and how much they may send: room tokens (valid,
//! expired, wrong room, tampered, a viewer publishing), the API secret, the
//! origin check, and each limit with its error code while the room goes on
//! serving everyone else.

mod common;

use common::*;
use gridmix::auth::{issue_token, unix_now};
use gridmix::bot::Bot;
use gridmix::config::ServeArgs;
use gridmix::protocol::{ErrorCode, Mode, ServerMessage};
use serde_json::json;
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const TIMEOUT: Duration = Duration::from_secs(30);
const SECRET: &str = "correct horse battery staple";
const HOUR: Duration = Duration::from_secs(3600);
/// An offer that sends VP8 video.
const SENDING_OFFER: &str = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\na=rtpmap:96 VP8/90000\r\na=sendrecv\r\n";

fn token(room: &str, identity: &str) -> String {
    issue_token(SECRET, room, identity, HOUR, true, unix_now()).unwrap()
}

fn join_text(room: &str, name: &str, mode: &str, token: &str) -> String {
    json!({"type":"join","room":room,"name":name,"mode":mode,"token":token}).to_string()
}

async fn authed_server() -> gridmix::server::Server {
    start_server(ServeArgs {
        auth_secret: Some(SECRET.to_owned()),
        ..ServeArgs::default()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn room_tokens_admit_to_their_room_only() {
    let server = authed_server().await;
    let mut ws = WsClient::connect(&server).await;
    ws.send(r#"{"type":"join","room":"vip","name":"x","mode":"mesh"}"#)
        .await;
    let said = ws.expect_error(ErrorCode::Unauthorized).await;
    assert!(said.contains("token"), "{said}");

    let expired = issue_token(SECRET, "vip", "eve", HOUR, true, unix_now() - 2 * 3600).unwrap();
    ws.send(&join_text("vip", "x", "mesh", &expired)).await;
    assert!(
        ws.expect_error(ErrorCode::Unauthorized)
            .await
            .contains("expired")
    );
    ws.send(&join_text("other-room", "x", "mesh", &token("vip", "eve")))
        .await;
    assert!(
        ws.expect_error(ErrorCode::Unauthorized)
            .await
            .contains("another room")
    );
    // Tampered: the claims say "other-room", the signature is vip's.
    let good = token("vip", "eve");
    let forged_claims = token("other-room", "eve");
    let parts: Vec<&str> = good.split('.').collect();
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        forged_claims.split('.').nth(1).unwrap(),
        parts[2]
    );
    ws.send(&join_text("other-room", "x", "mesh", &forged))
        .await;
    ws.expect_error(ErrorCode::Unauthorized).await;
    let foreign = issue_token("another secret", "vip", "eve", HOUR, true, unix_now()).unwrap();
    ws.send(&join_text("vip", "x", "mesh", &foreign)).await;
    ws.expect_error(ErrorCode::Unauthorized).await;

    // The right token gets in, on the same connection.
    ws.send(&join_text("vip", "alice", "mesh", &good)).await;
    assert!(matches!(ws.recv().await, ServerMessage::Joined { .. }));

    // Long-poll: the same check, answered with HTTP 401 and the error JSON.
    let http = reqwest::Client::new();
    let refused = http
        .post(server.poll_url())
        .json(&json!({"type":"join","room":"vip","name":"p","mode":"mesh","token": expired}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["type"], "error");
    assert_eq!(body["code"], "unauthorized");
    let admitted = http
        .post(server.poll_url())
        .json(&json!({"type":"join","room":"vip","name":"p","mode":"mesh","token": good}))
        .send()
        .await
        .unwrap();
    assert_eq!(admitted.status(), 200);
    let opened: gridmix::signaling::poll::Opened = admitted.json().await.unwrap();
    let _ = http
        .delete(format!("{}/{}", server.poll_url(), opened.session))
        .send()
        .await;
    ws.send(r#"{"type":"leave"}"#).await;
    drop(ws);
    wait_until_idle(&server, TIMEOUT).await.expect("all gone");
    server.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_http_api_wants_the_secret_as_a_bearer_token() {
    let server = authed_server().await;
    let base = format!("http://{}", server.local_addr());
    let http = reqwest::Client::new();
    // Any path under /api, including routes that do not exist (yet).
    for path in ["/api/rooms", "/api/rooms/demo/recordings", "/api"] {
        let response = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(response.status(), 401, "{path}");
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["code"], "unauthorized", "{path}");
        let wrong = http
            .get(format!("{base}{path}"))
            .bearer_auth("guess")
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 401, "{path}");
    }
    let rooms = http
        .get(format!("{base}/api/rooms"))
        .bearer_auth(SECRET)
        .send()
        .await
        .unwrap();
    assert_eq!(rooms.status(), 200);
    assert_eq!(rooms.json::<serde_json::Value>().await.unwrap(), json!([]));
    // What is not the API stays open: the page and the health check.
    for path in ["/healthz", "/"] {
        let response = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
    server.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_viewer_token_receives_but_cannot_publish() {
    let server = authed_server().await;
    let mut config = bot_config(&server, "stage", "speaker", 0xff0000, 500.0);
    config.token = Some(token("stage", "speaker"));
    let speaker = Bot::join(config).await.expect("the speaker joins");
    let viewer_token = issue_token(SECRET, "stage", "vic", HOUR, false, unix_now()).unwrap();

    // A viewer offering to send media is refused, and stays in the room.
    let mut raw = WsClient::connect(&server).await;
    raw.send(&join_text("stage", "sneaky", "mcu", &viewer_token))
        .await;
    assert!(matches!(raw.recv().await, ServerMessage::Joined { .. }));
    raw.send(&json!({"type":"offer","sdp":SENDING_OFFER}).to_string())
        .await;
    assert!(
        raw.expect_error(ErrorCode::Forbidden)
            .await
            .contains("publish")
    );

    // A viewer that offers to receive only gets the composite: the speaker's
    // tile, the sneaky viewer's grey one and its own.
    let mut config = bot_config(&server, "stage", "viewer", 0, 0.0);
    config.token = Some(viewer_token.clone());
    config.send_audio = false;
    config.send_video = false;
    let viewer = Bot::join(config).await.expect("the viewer joins");
    wait_for_tiles(&viewer, &[0xff0000, PLACEHOLDER, PLACEHOLDER], TIMEOUT)
        .await
        .expect("the viewer watches");
    wait_for_tones(&viewer, &[500.0], &[], TIMEOUT)
        .await
        .expect("the viewer hears the speaker");
    assert!(
        viewer.state().errors.is_empty(),
        "{:?}",
        viewer.state().errors
    );

    // SFU: a viewer's publish offer is refused whatever it says.
    let mut sfu = WsClient::connect(&server).await;
    let sfu_viewer = issue_token(SECRET, "stage-sfu", "vic", HOUR, false, unix_now()).unwrap();
    sfu.send(&join_text("stage-sfu", "v", "sfu", &sfu_viewer))
        .await;
    assert!(matches!(sfu.recv().await, ServerMessage::Joined { .. }));
    sfu.send(&json!({"type":"offer","sdp":SENDING_OFFER}).to_string())
        .await;
    sfu.expect_error(ErrorCode::Forbidden).await;

    for client in [&mut raw, &mut sfu] {
        client.send(r#"{"type":"leave"}"#).await;
    }
    drop((raw, sfu));
    viewer.leave().await;
    speaker.leave().await;
    wait_until_idle(&server, TIMEOUT).await.expect("all gone");
    server.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn oversized_messages_and_floods_get_their_codes_and_the_room_goes_on() {
    let server = start_server(ServeArgs {
        resume_grace: Duration::from_secs(1),
        ..ServeArgs::default()
    })
    .await;
    let blue = Bot::join(bot_config(&server, "limits", "blue", 0x0000ff, 900.0))
        .await
        .unwrap();
    let mut raw = WsClient::connect(&server).await;
    raw.join("limits", "raw", "mcu").await;

    // 80 KiB of SDP: too large, and the connection stays usable.
    let huge_sdp = format!("v=0\r\n{}", "a=x\r\n".repeat(16 * 1024));
    raw.send(&json!({"type":"offer","sdp":huge_sdp}).to_string())
        .await;
    let said = raw.expect_error(ErrorCode::TooLarge).await;
    assert!(said.contains("65536"), "{said}");
    raw.send(r#"{"type":"dance"}"#).await;
    raw.expect_error(ErrorCode::UnknownType).await;

    // A flood: 400 messages at once. The first burst is handled (each an
    // unknown-type error), then one rate-limited error, then silence.
    for _ in 0..400 {
        raw.send(r#"{"type":"dance"}"#).await;
    }
    let mut unknown = 0;
    let mut limited = 0;
    let mut other = Vec::new();
    while unknown + limited < 400 {
        let next = tokio::time::timeout(Duration::from_secs(2), raw.try_recv()).await;
        match next {
            Ok(Some(ServerMessage::Error {
                code: ErrorCode::UnknownType,
                ..
            })) => unknown += 1,
            Ok(Some(ServerMessage::Error {
                code: ErrorCode::RateLimited,
                ..
            })) => limited += 1,
            Ok(Some(m)) => other.push(m),
            // Silence: the rest were dropped.
            Err(_) => break,
            Ok(None) => panic!("the flood closed the socket"),
        }
    }
    assert!(limited >= 1, "rate-limited said at least once");
    assert!(
        (90..200).contains(&unknown),
        "the burst and a little more handled, the rest dropped: {unknown}"
    );

    // The room kept serving blue all along; blue sees its tile and the raw
    // client's grey one.
    wait_for_tiles(&blue, &[0x0000ff, PLACEHOLDER], TIMEOUT)
        .await
        .expect("blue still served");
    assert!(blue.state().errors.is_empty());

    // A frame beyond 16 times the limit is not read at all: the socket closes.
    raw.send(&"x".repeat(2 * 1024 * 1024)).await;
    while raw.try_recv().await.is_some() {}
    blue.wait_for_state(TIMEOUT, |s| s.others.is_empty())
        .await
        .expect("the raw client is removed once its resume grace is over");
    blue.leave().await;
    wait_until_idle(&server, TIMEOUT).await.expect("all gone");
    server.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn candidate_storms_full_rooms_and_too_many_rooms_are_refused() {
    let server = start_server(ServeArgs {
        max_candidates: 5,
        max_participants: 2,
        max_rooms: 2,
        ..ServeArgs::default()
    })
    .await;
    let mut a = WsClient::connect(&server).await;
    let (a_id, _) = a.join("one", "a", "mesh").await;
    let mut b = WsClient::connect(&server).await;
    let (b_id, _) = b.join("one", "b", "mesh").await;
    let candidate = json!({"type":"ice","candidate":"candidate:1 1 UDP 1 127.0.0.1 9 typ host","sdpMLineIndex":0,"to":b_id}).to_string();
    for _ in 0..6 {
        a.send(&candidate).await;
    }
    a.expect_error(ErrorCode::TooManyCandidates).await;
    let mut relayed = 0;
    while relayed < 5 {
        if let ServerMessage::Ice(_) = b.recv().await {
            relayed += 1;
        }
    }

    let mut c = WsClient::connect(&server).await;
    c.send(r#"{"type":"join","room":"one","name":"c","mode":"mesh"}"#)
        .await;
    c.expect_error(ErrorCode::RoomFull).await;
    c.join("two", "c", "mesh").await;
    let mut d = WsClient::connect(&server).await;
    d.send(r#"{"type":"join","room":"three","name":"d","mode":"mesh"}"#)
        .await;
    let said = d.expect_error(ErrorCode::TooManyRooms).await;
    assert!(said.contains('2'), "{said}");
    // An existing room with space still takes people; once a room closes a
    // new one can open.
    c.send(r#"{"type":"leave"}"#).await;
    eventually(TIMEOUT, || async {
        if server.registry().running_rooms() == 1 {
            Ok(())
        } else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Err(anyhow::anyhow!("room two still open"))
        }
    })
    .await
    .unwrap();
    d.join("three", "d", "mesh").await;
    // The first room was never disturbed: a relay still goes through.
    b.send(&json!({"type":"offer","sdp":"v=0 hi","to": a_id}).to_string())
        .await;
    loop {
        if let ServerMessage::Offer { sdp, .. } = a.recv().await {
            assert_eq!(sdp, "v=0 hi");
            break;
        }
    }
    for client in [&mut a, &mut b, &mut d] {
        client.send(r#"{"type":"leave"}"#).await;
    }
    drop((a, b, c, d));
    wait_until_idle(&server, TIMEOUT).await.expect("all gone");
    server.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idle_connections_are_closed_and_foreign_origins_refused() {
    let server = start_server(ServeArgs {
        join_timeout: Duration::from_secs(1),
        allowed_origins: vec!["https://meet.example.org".to_owned()],
        ..ServeArgs::default()
    })
    .await;
    // Connected, never joined: told so, then closed.
    let mut idle = WsClient::connect(&server).await;
    idle.expect_error(ErrorCode::JoinTimeout).await;
    assert!(idle.try_recv().await.is_none(), "closed after the error");

    let with_origin = |origin: &str| {
        let mut request = server.ws_url().into_client_request().unwrap();
        request
            .headers_mut()
            .insert("origin", origin.parse().unwrap());
        request
    };
    let refused = tokio_tungstenite::connect_async(with_origin("https://evil.test")).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 403)
        }
        other => panic!("expected 403, got {other:?}"),
    }
    let (allowed, _) = tokio_tungstenite::connect_async(with_origin("https://meet.example.org"))
        .await
        .expect("an allowed origin connects");
    let own = format!("http://{}", server.local_addr());
    tokio_tungstenite::connect_async(with_origin(&own))
        .await
        .expect("the server's own pages connect");

    let http = reqwest::Client::new();
    let response = http
        .post(server.poll_url())
        .header("origin", "https://evil.test")
        .json(&json!({"type":"join","room":"o","name":"x","mode":"mesh"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["code"], "forbidden");
    drop((idle, allowed));
    wait_until_idle(&server, TIMEOUT).await.expect("all gone");
    server.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_token_command_prints_a_token_the_server_takes() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_gridmix"))
        .args([
            "token",
            "--room",
            "cli-room",
            "--identity",
            "alice",
            "--ttl",
            "1h",
        ])
        .env("GRIDMIX_AUTH_SECRET", SECRET)
        .output()
        .expect("gridmix token runs");
    assert!(output.status.success(), "{output:?}");
    let printed = String::from_utf8(output.stdout).unwrap();
    let printed = printed.trim();
    let grant = gridmix::auth::verify_token(SECRET, Some(printed), "cli-room", unix_now())
        .expect("a valid token");
    assert_eq!(grant.identity, "alice");
    assert!(grant.can_publish);

    let server = authed_server().await;
    let member = join_member_with(
        &server,
        "cli-room",
        "alice",
        Mode::Mesh,
        (0xff0000, 500.0),
        false,
        |c| c.token = Some(printed.to_owned()),
    )
    .await;
    member.bot.leave().await;
    wait_until_idle(&server, TIMEOUT).await.expect("all gone");
    server.shut_down().await;
}
