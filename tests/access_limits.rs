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
    ws.leave().await;
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
    // The room-token secret is not the API's bearer: that is a key derived
    // from it, which `gridmix api-secret` prints.
    let with_token_secret = http
        .get(format!("{base}/api/rooms"))
        .bearer_auth(SECRET)
        .send()
        .await
        .unwrap();
    assert_eq!(with_token_secret.status(), 401);
    let printed = std::process::Command::new(env!("CARGO_BIN_EXE_gridmix"))
        .arg("api-secret")
        .env("GRIDMIX_AUTH_SECRET", SECRET)
        .output()
        .expect("gridmix api-secret runs");
    assert!(printed.status.success(), "{printed:?}");
    let api_secret = String::from_utf8(printed.stdout).unwrap();
    let rooms = http
        .get(format!("{base}/api/rooms"))
        .bearer_auth(api_secret.trim())
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

    // An explicit --api-secret is the only bearer; room tokens still need
    // the auth secret.
    let server = start_server(ServeArgs {
        auth_secret: Some(SECRET.to_owned()),
        api_secret: Some("api only".to_owned()),
        ..ServeArgs::default()
    })
    .await;
    let base = format!("http://{}", server.local_addr());
    for (bearer, status) in [(api_secret.trim(), 401), (SECRET, 401), ("api only", 200)] {
        let response = http
            .get(format!("{base}/api/rooms"))
            .bearer_auth(bearer)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{bearer}");
    }
    let mut ws = WsClient::connect(&server).await;
    ws.join_with(
        json!({"type":"join","room":"vip","name":"x","mode":"mesh","token":token("vip","x")}),
    )
    .await;
    ws.leave().await;
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
    // (A token is one participant: the sneaky viewer has its own.)
    let sneaky_token = issue_token(SECRET, "stage", "sneaky", HOUR, false, unix_now()).unwrap();
    let mut raw = WsClient::connect(&server).await;
    raw.send(&join_text("stage", "sneaky", "mcu", &sneaky_token))
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

    // Mesh: a viewer's offer or answer to a peer that would send media is
    // refused and not relayed; a recvonly one goes through.
    let mesh_token = |identity: &str, publish: bool| {
        issue_token(SECRET, "stage-mesh", identity, HOUR, publish, unix_now()).unwrap()
    };
    let mut peer = WsClient::connect(&server).await;
    peer.send(&join_text(
        "stage-mesh",
        "peer",
        "mesh",
        &mesh_token("peer", true),
    ))
    .await;
    let ServerMessage::Joined {
        participant: peer_id,
        ..
    } = peer.recv().await
    else {
        panic!("joined")
    };
    let mut mesh = WsClient::connect(&server).await;
    mesh.send(&join_text(
        "stage-mesh",
        "v",
        "mesh",
        &mesh_token("vic", false),
    ))
    .await;
    assert!(matches!(mesh.recv().await, ServerMessage::Joined { .. }));
    for kind in ["offer", "answer"] {
        mesh.send(&json!({"type":kind,"sdp":SENDING_OFFER,"to":peer_id}).to_string())
            .await;
        mesh.expect_error(ErrorCode::Forbidden).await;
    }
    let receiving = SENDING_OFFER.replace("a=sendrecv", "a=recvonly");
    mesh.send(&json!({"type":"offer","sdp":receiving,"to":peer_id}).to_string())
        .await;
    let (relayed, _) = peer
        .recv_until("the viewer's offer", |m| {
            matches!(m, ServerMessage::Offer { .. })
        })
        .await;
    assert!(
        matches!(&relayed, ServerMessage::Offer { sdp, .. } if *sdp == receiving),
        "only the recvonly offer reaches the peer: {relayed:?}"
    );

    for client in [raw, sfu, mesh, peer] {
        client.leave().await;
    }
    viewer.leave().await;
    speaker.leave().await;
    wait_until_idle(&server, TIMEOUT).await.expect("all gone");
    server.shut_down().await;
}

/// The flood test's rate: slow enough that the bucket barely refills while
/// the flood is sent, so what is handled is the burst, counted exactly.
const FLOOD_RATE: f64 = 1.0;
const FLOOD_BURST: u32 = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn oversized_messages_and_floods_get_their_codes_and_the_room_goes_on() {
    let server = start_server(ServeArgs {
        resume_grace: Duration::from_secs(1),
        messages_per_second: FLOOD_RATE,
        message_burst: FLOOD_BURST,
        ..ServeArgs::default()
    })
    .await;
    let blue = Bot::join(bot_config(&server, "limits", "blue", 0x0000ff, 900.0))
        .await
        .unwrap();
    let connected = std::time::Instant::now();
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
    // Three messages of the burst taken: the join, the large one, the dance.
    let left_of_burst = FLOOD_BURST as u64 - 3;

    // A flood: 400 messages at once. What is left of the burst is handled
    // (each an unknown-type error), then one rate-limited error, then the
    // rest are dropped without a word.
    for _ in 0..400 {
        raw.send(r#"{"type":"dance"}"#).await;
    }
    // Markers after the flood, one every 100 ms (the sleep below paces
    // them; it synchronises nothing) until one is answered (the
    // bucket refills at FLOOD_RATE; a marker it drops is answered by
    // nothing): once a marker's error is back, every reply to the flood is in.
    let mut unknown = 0u64;
    let mut limited = 0u64;
    let mut other = Vec::new();
    'flood: loop {
        raw.send(r#"{"type":"flood-marker"}"#).await;
        let pace = tokio::time::sleep(Duration::from_millis(100));
        tokio::pin!(pace);
        loop {
            tokio::select! {
                message = raw.try_recv() => match message {
                    Some(ServerMessage::Error { code: ErrorCode::UnknownType, message })
                        if message.contains("flood-marker") => break 'flood,
                    Some(ServerMessage::Error { code: ErrorCode::UnknownType, .. }) => unknown += 1,
                    Some(ServerMessage::Error { code: ErrorCode::RateLimited, .. }) => limited += 1,
                    // Blue's tone: the room says who speaks.
                    Some(ServerMessage::Speakers { .. }) => {}
                    Some(m) => other.push(m),
                    None => panic!("the flood closed the socket"),
                },
                _ = &mut pace => break,
            }
        }
    }
    // Tokens that came back while the flood was being sent let as many more
    // through; each can end a refused run, and the next refusal is told again.
    let refilled = (connected.elapsed().as_secs_f64() * FLOOD_RATE).ceil() as u64;
    assert!(
        (left_of_burst..=left_of_burst + refilled).contains(&unknown),
        "{unknown} handled; the burst had {left_of_burst} left, {refilled} tokens came back since"
    );
    assert!(
        (1..=1 + unknown - left_of_burst).contains(&limited),
        "rate-limited said {limited} times for {unknown} handled"
    );
    assert!(other.is_empty(), "nothing else was said: {other:?}");

    // The room kept serving blue all along; blue sees its tile and the raw
    // client's grey one.
    wait_for_tiles(&blue, &[0x0000ff, PLACEHOLDER], TIMEOUT)
        .await
        .expect("blue still served");
    assert!(blue.state().errors.is_empty());

    // A frame beyond 16 times the limit is not read at all: the socket
    // closes at its header, maybe before all of it is sent.
    raw.send_refusable(&"x".repeat(2 * 1024 * 1024)).await;
    raw.ending().await;
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
    let candidate = |n: u32| {
        json!({"type":"ice","candidate":format!("candidate:{n} 1 UDP 1 127.0.0.1 9 typ host"),"sdpMLineIndex":0,"to":b_id}).to_string()
    };
    for n in 1..=6 {
        a.send(&candidate(n)).await;
    }
    a.expect_error(ErrorCode::TooManyCandidates).await;
    // Then a relay that is not a candidate: once B has it, B has everything
    // A sent before it. Exactly the first five candidates were relayed.
    a.send(&json!({"type":"offer","sdp":"v=0 after the storm","to":b_id}).to_string())
        .await;
    let (_, before) = b
        .recv_until(
            "the offer after the storm",
            |m| matches!(m, ServerMessage::Offer { sdp, .. } if sdp == "v=0 after the storm"),
        )
        .await;
    let relayed: Vec<String> = before
        .iter()
        .filter_map(|m| match m {
            ServerMessage::Ice(ice) => Some(ice.candidate.clone()),
            _ => None,
        })
        .collect();
    let want: Vec<String> = (1..=5)
        .map(|n| format!("candidate:{n} 1 UDP 1 127.0.0.1 9 typ host"))
        .collect();
    assert_eq!(relayed, want, "the sixth candidate was dropped: {before:?}");

    let mut c = WsClient::connect(&server).await;
    c.send(r#"{"type":"join","room":"one","name":"c","mode":"mesh"}"#)
        .await;
    c.expect_error(ErrorCode::RoomFull).await;
    // Long-poll: the same refusals, as 503 with the error as the body.
    let http = reqwest::Client::new();
    let poll_join = |room: &str| json!({"type":"join","room":room,"name":"p","mode":"mesh"});
    let full = http
        .post(server.poll_url())
        .json(&poll_join("one"))
        .send()
        .await
        .unwrap();
    assert_eq!(full.status(), 503);
    let body: serde_json::Value = full.json().await.unwrap();
    assert_eq!(body["code"], "room-full", "{body}");
    c.join("two", "c", "mesh").await;
    let mut d = WsClient::connect(&server).await;
    d.send(r#"{"type":"join","room":"three","name":"d","mode":"mesh"}"#)
        .await;
    let said = d.expect_error(ErrorCode::TooManyRooms).await;
    assert!(said.contains('2'), "{said}");
    let too_many = http
        .post(server.poll_url())
        .json(&poll_join("three"))
        .send()
        .await
        .unwrap();
    assert_eq!(too_many.status(), 503);
    let body: serde_json::Value = too_many.json().await.unwrap();
    assert_eq!(body["code"], "too-many-rooms", "{body}");
    assert_eq!(
        server.signaling().polls.open(),
        0,
        "a refused join opens nothing"
    );
    // An existing room with space still takes people; once a room closes a
    // new one can open.
    c.send(r#"{"type":"leave"}"#).await;
    eventually(TIMEOUT, || async {
        if server.registry().running_rooms() == 1 {
            Ok(())
        } else {
            Err(anyhow::anyhow!("room two still open"))
        }
    })
    .await
    .unwrap();
    d.join("three", "d", "mesh").await;
    // The first room was never disturbed: a relay still goes through.
    b.send(&json!({"type":"offer","sdp":"v=0 hi","to": a_id}).to_string())
        .await;
    a.recv_until(
        "b's offer",
        |m| matches!(m, ServerMessage::Offer { sdp, .. } if sdp == "v=0 hi"),
    )
    .await;
    for client in [a, b, d] {
        client.leave().await;
    }
    drop(c);
    wait_until_idle(&server, TIMEOUT).await.expect("all gone");
    server.shut_down().await;
}

/// A TURN entry as the TURN REST API has it, checked independently:
/// username "expiry:participant id", password base64(HMAC-SHA1(secret,
/// username)), the expiry within `expiry`. Returns the expiry.
fn check_turn_entry(
    secret: &str,
    ice_servers: &[gridmix::protocol::IceServer],
    identity: &str,
    expiry: std::ops::RangeInclusive<u64>,
) -> u64 {
    use base64::Engine;
    use hmac::{Hmac, Mac};
    assert_eq!(ice_servers.len(), 2, "{ice_servers:?}");
    assert_eq!(ice_servers[0].urls, ["stun:127.0.0.1:3478"]);
    assert_eq!(ice_servers[0].username, None);
    let turn = &ice_servers[1];
    assert_eq!(turn.urls, ["turn:127.0.0.1:3479?transport=udp"]);
    let username = turn.username.clone().expect("a TURN username");
    let (expires, who) = username.split_once(':').expect("expiry:identity");
    assert_eq!(who, identity);
    let expires: u64 = expires.parse().unwrap();
    assert!(
        expiry.contains(&expires),
        "expiry {expires}, want {expiry:?}"
    );
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(username.as_bytes());
    let password = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    assert_eq!(turn.credential.as_deref(), Some(password.as_str()));
    expires
}

/// "joined" hands out the STUN server and this participant's own TURN
/// credentials, valid --turn-ttl from now; half-way through, and again and
/// again for as long as it stays, "ice-servers" brings fresh ones. A joiner
/// who is not admitted gets none.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn turn_credentials_are_each_participants_own_short_lived_and_renewed() {
    let secret = "shared with the TURN server";
    let ttl = 4;
    let server = start_server(ServeArgs {
        stun: Some("127.0.0.1:3478".to_owned()),
        turn: Some("turn:127.0.0.1:3479?transport=udp".to_owned()),
        turn_secret: Some(secret.to_owned()),
        turn_ttl: Duration::from_secs(ttl),
        max_participants: 2,
        ..ServeArgs::default()
    })
    .await;
    let mut clients = Vec::new();
    for name in ["a", "b"] {
        let mut client = WsClient::connect(&server).await;
        client
            .send(&json!({"type":"join","room":"ice","name":name,"mode":"mesh"}).to_string())
            .await;
        let before = unix_now();
        let ServerMessage::Joined {
            participant,
            ice_servers,
            ..
        } = client.recv().await
        else {
            panic!("joined")
        };
        let after = unix_now();
        let expiry = check_turn_entry(
            secret,
            &ice_servers,
            &participant,
            before + ttl..=after + ttl,
        );
        clients.push((client, participant, expiry));
    }
    assert_ne!(clients[0].1, clients[1].1, "each participant has its own");

    // Not admitted (the room is full): an error, no credentials.
    let mut third = WsClient::connect(&server).await;
    third
        .send(&json!({"type":"join","room":"ice","name":"c","mode":"mesh"}).to_string())
        .await;
    assert!(
        matches!(
            third.recv().await,
            ServerMessage::Error {
                code: ErrorCode::RoomFull,
                ..
            }
        ),
        "the third joiner is refused"
    );
    drop(third);

    // Twice renewed, each time with a later expiry, before the last ones
    // ran out.
    let (a, id, first) = &mut clients[0];
    let mut expiry = *first;
    for _ in 0..2 {
        let (renewal, _) = a
            .recv_until("ice-servers", |m| {
                matches!(m, ServerMessage::IceServers { .. })
            })
            .await;
        let now = unix_now();
        let ServerMessage::IceServers { ice_servers } = renewal else {
            unreachable!()
        };
        assert!(
            now < expiry,
            "renewed at {now}, the last ones expired at {expiry}"
        );
        expiry = check_turn_entry(secret, &ice_servers, id, expiry + 1..=now + ttl);
    }
    for (client, _, _) in clients {
        client.leave().await;
    }
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

/// One token, several connections: a newer join with the same identity
/// takes over (`--max-connections-per-identity`, 1 by default); the oldest
/// is told `replaced` and its session ends, so one token cannot fill a room.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_newer_join_with_the_same_identity_replaces_the_oldest() {
    for cap in [1, 2] {
        let server = start_server(ServeArgs {
            auth_secret: Some(SECRET.to_owned()),
            max_connections_per_identity: cap,
            ..ServeArgs::default()
        })
        .await;
        let join = json!({"type":"join","room":"ids","name":"alice","mode":"mesh","token":token("ids","alice")});
        let mut clients = Vec::new();
        for _ in 0..=cap {
            let mut client = WsClient::connect(&server).await;
            client.join_with(join.clone()).await;
            clients.push(client);
        }
        let mut oldest = clients.remove(0);
        let said = oldest.expect_error(ErrorCode::Replaced).await;
        assert!(said.contains("same identity"), "{said}");
        assert_eq!(oldest.ending().await, Ending::CloseFrame);
        eventually(TIMEOUT, || async {
            let rooms = open_rooms(&server).await?;
            let alices = rooms.iter().map(|r| r.participants.len()).sum::<usize>();
            anyhow::ensure!(alices == cap, "{alices} participants, want {cap}");
            Ok(())
        })
        .await
        .unwrap();
        // Another identity is someone else.
        let mut bob = WsClient::connect(&server).await;
        bob.join_with(json!({"type":"join","room":"ids","name":"bob","mode":"mesh","token":token("ids","bob")}))
            .await;
        bob.leave().await;
        for client in clients {
            client.leave().await;
        }
        wait_until_idle(&server, TIMEOUT).await.expect("all gone");
        server.shut_down().await;
    }
}
