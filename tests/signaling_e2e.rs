//! Signaling that survives real networks: calls held over HTTP long-poll
//! alone and mixed with WebSocket, lost poll responses that neither lose nor
//! double a message, and sessions resumed after a cut WebSocket while the
//! media never stops.

mod common;

use common::*;
use gridmix::bot::{Bot, TransportKind};
use gridmix::config::ServeArgs;
use gridmix::protocol::{ErrorCode, Mode, ServerMessage};
use gridmix::signaling::poll::{Opened, Polled};
use serde_json::json;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(30);

fn poll_config(
    server: &gridmix::server::Server,
    room: &str,
    name: &str,
    colour: u32,
    tone: f64,
) -> gridmix::bot::BotConfig {
    let mut config = bot_config(server, room, name, colour, tone);
    config.transport = TransportKind::LongPoll;
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn long_poll_bots_hold_an_mcu_call_and_a_websocket_bot_joins_them() {
    // A short poll timeout: the call must outlive it several times over,
    // which it does only if the bots keep polling.
    let server = start_server(ServeArgs {
        poll_timeout: Duration::from_secs(2),
        ..ServeArgs::default()
    })
    .await;
    let red = Bot::join(poll_config(&server, "lp-mcu", "red", 0xff0000, 500.0))
        .await
        .expect("red joins over long-poll");
    let blue = Bot::join(poll_config(&server, "lp-mcu", "blue", 0x0000ff, 900.0))
        .await
        .expect("blue joins over long-poll");
    for bot in [&red, &blue] {
        wait_for_tiles(bot, &[0xff0000, 0x0000ff], TIMEOUT)
            .await
            .expect("two tiles over long-poll signaling");
    }
    wait_for_tones(&red, &[900.0], &[500.0], TIMEOUT)
        .await
        .expect("red hears blue");

    // Held past the poll timeout (several 25 s-capped polls would be needed
    // in real use; here the timeout is 2 s): still in the call, media flowing.
    let frames = red.frames_received();
    eventually(TIMEOUT, || async {
        if red.frames_received() > frames + 150 {
            Ok(())
        } else {
            Err(anyhow::anyhow!(
                "{} frames since",
                red.frames_received() - frames
            ))
        }
    })
    .await
    .expect("five seconds of video, longer than the poll timeout");

    // A WebSocket bot joins the long-poll ones: one room, both transports.
    let green = Bot::join(bot_config(&server, "lp-mcu", "green", 0x00ff00, 1300.0))
        .await
        .expect("green joins over WebSocket");
    for bot in [&red, &blue, &green] {
        wait_for_tiles(bot, &[0xff0000, 0x0000ff, 0x00ff00], TIMEOUT)
            .await
            .expect("three tiles, both transports");
    }
    wait_for_tones(&green, &[500.0, 900.0], &[1300.0], TIMEOUT)
        .await
        .expect("green hears the long-poll bots");
    wait_for_tones(&blue, &[500.0, 1300.0], &[900.0], TIMEOUT)
        .await
        .expect("blue hears red and green");
    for bot in [&red, &blue, &green] {
        assert!(bot.state().errors.is_empty(), "{:?}", bot.state().errors);
    }
    red.leave().await;
    green
        .wait_for_state(TIMEOUT, |s| s.others.len() == 1)
        .await
        .expect("red's DELETE is a leave");
    blue.leave().await;
    green.leave().await;
    wait_until_idle(&server, TIMEOUT).await.expect("all gone");
    server.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sfu_room_mixing_long_poll_and_websocket_forwards_everyone() {
    let server = start_server(ServeArgs::default()).await;
    let members = vec![
        join_member_with(
            &server,
            "lp-sfu",
            "poll",
            Mode::Sfu,
            (0xff0000, 500.0),
            false,
            |c| c.transport = TransportKind::LongPoll,
        )
        .await,
        join_member(&server, "lp-sfu", "ws", Mode::Sfu, (0x0000ff, 900.0), false).await,
    ];
    wait_for_full_exchange(&members, TIMEOUT)
        .await
        .expect("both forwarded, both ways");
    assert_no_errors(&members);
    for m in members {
        m.bot.leave().await;
    }
    wait_until_idle(&server, TIMEOUT).await.expect("all gone");
    server.shut_down().await;
}

/// A raw long-poll client.
struct Poller {
    http: reqwest::Client,
    url: String,
}

impl Poller {
    async fn open(server: &gridmix::server::Server, join: serde_json::Value) -> (Poller, Opened) {
        let http = reqwest::Client::new();
        let response = http
            .post(server.poll_url())
            .json(&join)
            .send()
            .await
            .expect("POST /signal");
        assert!(response.status().is_success(), "{}", response.status());
        let opened: Opened = response.json().await.expect("opened");
        let url = format!("{}/{}", server.poll_url(), opened.session);
        (Poller { http, url }, opened)
    }

    async fn get(&self, after: u64) -> Polled {
        let response = self
            .http
            .get(&self.url)
            .query(&[("after", after)])
            .send()
            .await
            .expect("GET");
        assert!(response.status().is_success(), "{}", response.status());
        response.json().await.expect("polled")
    }

    /// Posts a message or a batch; returns how many the server accepted.
    async fn post(&self, body: serde_json::Value) -> u64 {
        let response = self.http.post(&self.url).json(&body).send().await.unwrap();
        assert!(response.status().is_success(), "{}", response.status());
        let reply: serde_json::Value = response.json().await.expect("JSON");
        reply["accepted"]
            .as_u64()
            .unwrap_or_else(|| panic!("no accepted count: {reply}"))
    }
}

/// Sends `GET /signal/{id}?after=N` on a connection of its own and drops
/// the connection without reading a byte of the answer.
async fn abandon_poll(server: &gridmix::server::Server, url: &str, after: u64) {
    use tokio::io::AsyncWriteExt;
    let path = url.trim_start_matches(&format!("http://{}", server.local_addr()));
    let mut stream = tokio::net::TcpStream::connect(server.local_addr())
        .await
        .expect("connects");
    let request = format!(
        "GET {path}?after={after} HTTP/1.1\r\nHost: {}\r\n\r\n",
        server.local_addr()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    stream.flush().await.unwrap();
    drop(stream);
}

fn seqs(polled: &Polled) -> Vec<u64> {
    polled.messages.iter().map(|n| n.seq).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_poll_response_is_answered_again_and_nothing_is_lost_or_doubled() {
    let server = start_server(ServeArgs::default()).await;
    let (a, opened) = Poller::open(
        &server,
        json!({"type":"join","room":"lp-raw","name":"a","mode":"mesh"}),
    )
    .await;
    assert_eq!(
        seqs(&Polled {
            messages: opened.messages.clone(),
            closed: false
        }),
        [1]
    );
    let ServerMessage::Joined {
        participant: a_id,
        resume_token,
        ..
    } = &opened.messages[0].message
    else {
        panic!("first message is joined: {:?}", opened.messages)
    };
    assert!(resume_token.is_some());

    // B joins: A is told (message 2).
    let (b, _) = Poller::open(
        &server,
        json!({"type":"join","room":"lp-raw","name":"b","mode":"mesh"}),
    )
    .await;
    let first = a.get(1).await;
    assert_eq!(seqs(&first), [2]);
    assert!(matches!(
        first.messages[0].message,
        ServerMessage::ParticipantJoined { .. }
    ));
    // That response was "lost": the same poll again gets the same message.
    let again = a.get(1).await;
    assert_eq!(again.messages, first.messages);

    // A poll the client abandons: its request is sent, then the
    // connection dropped before any answer (whether the server got to it
    // first or not, nothing may be lost). Then a poll whose answer is lost
    // on the way: the server answers it (B relays an offer and a candidate to
    // A meanwhile), and the client never reads it.
    abandon_poll(&server, &a.url, 2).await;
    let answered_then_lost = a.get(2);
    let relay = b.post(json!([
        {"type":"offer","sdp":"v=0 from b","to": a_id},
        {"type":"ice","candidate":"","sdpMLineIndex":0,"to": a_id}
    ]));
    let (mut lost, accepted) = tokio::join!(answered_then_lost, relay);
    assert_eq!(accepted, 2, "both messages of the batch accepted");
    if lost.messages.is_empty() && !lost.closed {
        // The abandoned poll reached the session after this one and took
        // its place (a newer poll replaces a waiting one): ask again, and
        // lose that answer instead, now that the messages are there.
        lost = a.get(2).await;
    }
    assert!(!lost.messages.is_empty(), "the poll was answered: {lost:?}");
    // Everything after 2, once each, in order, however it is asked for.
    // (A poll with nothing to answer waits for the next message.)
    let mut got = Vec::new();
    let mut after = 2;
    let deadline = std::time::Instant::now() + TIMEOUT;
    while got.len() < 2 {
        assert!(std::time::Instant::now() < deadline, "got {got:?}");
        for n in a.get(after).await.messages {
            assert_eq!(n.seq, after + 1, "in order, no gap, no repeat");
            after = n.seq;
            got.push(n.message);
        }
    }
    assert!(matches!(&got[0], ServerMessage::Offer { sdp, .. } if sdp == "v=0 from b"));
    assert!(matches!(&got[1], ServerMessage::Ice(_)));
    assert_eq!(got.len(), 2);
    let lost: Vec<ServerMessage> = lost.messages.into_iter().map(|n| n.message).collect();
    assert_eq!(
        lost[..],
        got[..lost.len()],
        "the lost answer held the same messages"
    );
    // Asking from before what was acknowledged is an error, not a repeat.
    let stale = a
        .http
        .get(&a.url)
        .query(&[("after", 1)])
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 400);
    let junk = a
        .http
        .get(&a.url)
        .query(&[("after", "soon")])
        .send()
        .await
        .unwrap();
    assert_eq!(junk.status(), 400);
    let body: serde_json::Value = junk.json().await.unwrap();
    assert_eq!(body["code"], "bad-message");

    // A batch is at most 64 messages: more is refused whole.
    let batch: Vec<serde_json::Value> = (0..65).map(|_| json!({"type":"dance"})).collect();
    let refused = a.http.post(&a.url).json(&batch).send().await.unwrap();
    assert_eq!(refused.status(), 413);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["code"], "too-large", "{body}");
    assert!(body["message"].as_str().unwrap().contains("64"), "{body}");

    // Bad input in a batch gets errors in the stream, like on a WebSocket.
    let accepted = a
        .post(json!([{"type":"dance"}, {"type":"offer","sdp":"v=0"}, "nonsense"]))
        .await;
    assert_eq!(accepted, 3);
    let mut codes = Vec::new();
    while codes.len() < 3 {
        assert!(std::time::Instant::now() < deadline, "codes {codes:?}");
        for n in a.get(after).await.messages {
            assert_eq!(n.seq, after + 1);
            after = n.seq;
            if let ServerMessage::Error { code, .. } = n.message {
                codes.push(code);
            }
        }
    }
    // The room answers the offer, the session the rest: in any order. None
    // of the refused batch of 65 was handled.
    codes.sort_by_key(|c| c.as_str());
    assert_eq!(
        codes,
        [
            ErrorCode::BadJson,
            ErrorCode::BadMessage,
            ErrorCode::UnknownType
        ]
    );

    // DELETE leaves: B hears it; the session is gone.
    let deleted = a.http.delete(&a.url).send().await.unwrap();
    assert_eq!(deleted.status(), 204);
    let mut b_after = 1;
    'told: loop {
        assert!(std::time::Instant::now() < deadline, "B not told A left");
        for n in b.get(b_after).await.messages {
            b_after = n.seq;
            if matches!(&n.message, ServerMessage::ParticipantLeft { participant } if participant == a_id)
            {
                break 'told;
            }
        }
    }
    let gone = a.http.get(&a.url).send().await.unwrap();
    assert_eq!(gone.status(), 404);
    let body: serde_json::Value = gone.json().await.unwrap();
    assert_eq!(body["code"], "unknown-session");
    let _ = b.http.delete(&b.url).send().await;
    wait_until_idle(&server, TIMEOUT).await.expect("all gone");
    server.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_long_poll_client_that_stops_polling_is_removed() {
    let server = start_server(ServeArgs {
        poll_timeout: Duration::from_secs(1),
        ..ServeArgs::default()
    })
    .await;
    let mut watcher = WsClient::connect(&server).await;
    watcher.join("lp-quiet", "watcher", "mesh").await;
    let (_quiet, opened) = Poller::open(
        &server,
        json!({"type":"join","room":"lp-quiet","name":"quiet","mode":"mesh"}),
    )
    .await;
    let ServerMessage::Joined { participant, .. } = &opened.messages[0].message else {
        panic!("joined")
    };
    // It never polls again: after the timeout it has left.
    watcher
        .recv_until("the quiet one left", |m| {
            matches!(m, ServerMessage::ParticipantLeft { participant: left } if left == participant)
        })
        .await;
    watcher.leave().await;
    wait_until_idle(&server, TIMEOUT).await.expect("all gone");
    server.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_websocket_cut_mid_call_resumes_with_the_same_id_and_media_never_stops() {
    let server = start_server(ServeArgs::default()).await;
    let red = Bot::join(bot_config(&server, "resume", "red", 0xff0000, 500.0))
        .await
        .unwrap();
    let blue = Bot::join(bot_config(&server, "resume", "blue", 0x0000ff, 900.0))
        .await
        .unwrap();
    for bot in [&red, &blue] {
        wait_for_tiles(bot, &[0xff0000, 0x0000ff], TIMEOUT)
            .await
            .expect("call up");
    }
    let red_id = red.id().to_owned();

    // Red's signaling is cut until the checks below are done. Meanwhile
    // the server notices the drop (red's session is detached, waiting for a
    // resume) but keeps red in the room, and both keep getting video with
    // red's tile in it.
    assert_eq!(server.signaling().sessions.detached(), 0);
    let cut = red.cut_signaling();
    let rooms_url = format!("http://{}/api/rooms", server.local_addr());
    eventually(TIMEOUT, || async {
        let rooms = reqwest_json(&rooms_url).await;
        let ids: Vec<String> = rooms[0]["participants"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["id"].as_str().map(str::to_owned))
            .collect();
        let detached = server.signaling().sessions.detached();
        if ids.contains(&red_id) && detached == 1 {
            Ok(())
        } else {
            Err(anyhow::anyhow!(
                "participants {ids:?}, {detached} sessions detached"
            ))
        }
    })
    .await
    .expect("red's drop noticed, red kept in the room while detached");
    let (red_frames, blue_frames) = (red.frames_received(), blue.frames_received());
    for bot in [&blue, &red] {
        wait_for_tiles(bot, &[0xff0000, 0x0000ff], TIMEOUT)
            .await
            .expect("both still see both while red's signaling is down");
    }
    assert!(
        blue.frames_received() > blue_frames,
        "blue's video kept coming"
    );
    assert!(
        red.frames_received() > red_frames,
        "red's video kept coming"
    );
    assert_eq!(red.state().resumes, 0, "still cut");
    assert!(
        blue.state().others.iter().any(|p| p.id == red_id),
        "blue was not told red left"
    );

    cut.release();
    red.wait_for_state(TIMEOUT, |s| s.resumes == 1)
        .await
        .expect("red resumes");
    assert_eq!(red.id(), red_id);
    eventually(TIMEOUT, || async {
        match server.signaling().sessions.detached() {
            0 => Ok(()),
            n => Err(anyhow::anyhow!("{n} sessions still detached")),
        }
    })
    .await
    .expect("the resumed session is attached again");
    assert!(
        blue.state().others.iter().any(|p| p.id == red_id),
        "blue never saw red leave"
    );
    // Signaling works again after the resume: a newcomer is announced to red
    // and red's tile stays.
    let green = Bot::join(bot_config(&server, "resume", "green", 0x00ff00, 1300.0))
        .await
        .unwrap();
    red.wait_for_state(TIMEOUT, |s| s.others.len() == 2)
        .await
        .expect("red hears of green");
    wait_for_tiles(&green, &[0xff0000, 0x0000ff, 0x00ff00], TIMEOUT)
        .await
        .expect("green sees all three");
    for bot in [&red, &blue, &green] {
        assert!(bot.state().errors.is_empty(), "{:?}", bot.state().errors);
    }
    for bot in [red, blue, green] {
        bot.leave().await;
    }
    wait_until_idle(&server, TIMEOUT).await.expect("all gone");
    server.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_resume_replays_exactly_the_messages_the_dropped_socket_missed() {
    let server = start_server(ServeArgs::default()).await;
    let mut a = WsClient::connect(&server).await;
    let (a_id, token) = a.join("replay", "a", "mesh").await;
    let mut b = WsClient::connect(&server).await;
    let (b_id, _) = b.join("replay", "b", "mesh").await;
    // A got message 2 (b joined), then its socket drops.
    assert!(matches!(
        a.recv().await,
        ServerMessage::ParticipantJoined { .. }
    ));
    drop(a);
    // While A is away: a third client comes and goes (messages 3 and 4),
    // then B relays two messages to A (5 and 6). B's relay to nobody comes
    // back as an error only once the room has handled the two before it.
    let mut c = WsClient::connect(&server).await;
    c.join("replay", "c", "mesh").await;
    c.send(r#"{"type":"leave"}"#).await;
    b.recv_until("c left", |m| {
        matches!(m, ServerMessage::ParticipantLeft { .. })
    })
    .await;
    b.send(&format!(
        r#"{{"type":"offer","sdp":"v=0 one","to":"{a_id}"}}"#
    ))
    .await;
    b.send(&format!(
        r#"{{"type":"answer","sdp":"v=0 two","to":"{a_id}"}}"#
    ))
    .await;
    b.send(r#"{"type":"answer","sdp":"v=0","to":"p0-nobody"}"#)
        .await;
    b.expect_error(ErrorCode::UnknownParticipant).await;

    // A resumes saying it got 1 message only (it missed "b joined" too,
    // as far as it knows).
    let mut a = WsClient::connect(&server).await;
    a.send(&format!(
        r#"{{"type":"resume","token":"{token}","received":1}}"#
    ))
    .await;
    match a.recv().await {
        ServerMessage::Resumed {
            participant,
            replayed,
        } => {
            assert_eq!(participant, a_id);
            assert_eq!(replayed, 5);
        }
        other => panic!("expected resumed, got {other:?}"),
    }
    assert!(
        matches!(a.recv().await, ServerMessage::ParticipantJoined { participant } if participant.id == b_id)
    );
    assert!(
        matches!(a.recv().await, ServerMessage::ParticipantJoined { participant } if participant.name == "c")
    );
    assert!(matches!(
        a.recv().await,
        ServerMessage::ParticipantLeft { .. }
    ));
    assert!(
        matches!(a.recv().await, ServerMessage::Offer { sdp, from, .. } if sdp == "v=0 one" && from.as_deref() == Some(b_id.as_str()))
    );
    assert!(matches!(a.recv().await, ServerMessage::Answer { sdp, .. } if sdp == "v=0 two"));
    // And it is the same participant: B's relay to A's id reaches it.
    b.send(&format!(
        r#"{{"type":"offer","sdp":"v=0 three","to":"{a_id}"}}"#
    ))
    .await;
    assert!(matches!(a.recv().await, ServerMessage::Offer { sdp, .. } if sdp == "v=0 three"));

    // The token resumes one session once; a second connection with it takes
    // the session over and the first is closed.
    let mut thief = WsClient::connect(&server).await;
    thief
        .send(&format!(r#"{{"type":"resume","token":"{token}"}}"#))
        .await;
    assert!(matches!(
        thief.recv().await,
        ServerMessage::Resumed { replayed: 0, .. }
    ));
    assert!(
        a.try_recv().await.is_none(),
        "the older connection is closed"
    );

    // Unknown tokens, and resuming while joined, are refused.
    let mut stranger = WsClient::connect(&server).await;
    stranger
        .send(r#"{"type":"resume","token":"0123456789abcdef"}"#)
        .await;
    stranger.expect_error(ErrorCode::ResumeFailed).await;
    b.send(&format!(r#"{{"type":"resume","token":"{token}"}}"#))
        .await;
    b.expect_error(ErrorCode::AlreadyJoined).await;
    // A refused resume leaves the connection usable for a join.
    stranger.join("replay", "s", "mesh").await;
    for client in [thief, b, stranger] {
        client.leave().await;
    }
    drop(c);
    wait_until_idle(&server, TIMEOUT).await.expect("all gone");
    server.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_the_grace_period_the_participant_is_gone_and_resume_fails() {
    let server = start_server(ServeArgs {
        resume_grace: Duration::from_secs(1),
        ..ServeArgs::default()
    })
    .await;
    let mut stayer = WsClient::connect(&server).await;
    stayer.join("grace", "stayer", "mesh").await;
    let mut goner = WsClient::connect(&server).await;
    let (goner_id, token) = goner.join("grace", "goner", "mesh").await;
    drop(goner);
    stayer
        .recv_until("the goner left", |m| {
            matches!(m, ServerMessage::ParticipantLeft { participant } if *participant == goner_id)
        })
        .await;
    let mut late = WsClient::connect(&server).await;
    late.send(&format!(r#"{{"type":"resume","token":"{token}"}}"#))
        .await;
    late.expect_error(ErrorCode::ResumeFailed).await;
    stayer.leave().await;
    drop(late);
    wait_until_idle(&server, TIMEOUT).await.expect("all gone");
    server.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutting_down_with_participants_waiting_for_a_resume_stops_every_room() {
    // Their peers are gone (crashed clients) while the room still holds them
    // for a resume: stopping the room must not hang on their media.
    for round in 0..4 {
        let server = start_server(ServeArgs::default()).await;
        let room = format!("shutdown-{round}");
        let a = Bot::join(bot_config(&server, &room, "a", 0xff0000, 500.0))
            .await
            .unwrap();
        let b = Bot::join(bot_config(&server, &room, "b", 0x0000ff, 900.0))
            .await
            .unwrap();
        wait_for_tiles(&a, &[0xff0000, 0x0000ff], TIMEOUT)
            .await
            .expect("call up");
        a.vanish().await;
        b.vanish().await;
        let registry = server.registry().clone();
        assert_eq!(registry.running_rooms(), 1);
        // Shutting down waits for each room to stop, and gives up on one
        // that does not (it stays counted as running).
        server.shut_down().await;
        assert_eq!(
            registry.running_rooms(),
            0,
            "round {round}: a room did not stop"
        );
    }
}

/// A client whose WebSocket dropped resumes over long-poll (a network that
/// lost WebSocket): the session, its id and the messages it missed carry
/// over to the other transport.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_session_cut_on_websocket_resumes_over_long_poll() {
    let server = start_server(ServeArgs::default()).await;
    let mut a = WsClient::connect(&server).await;
    let (a_id, token) = a.join("cross", "a", "mesh").await;
    let (mut b, b_id) = joined_client(&server, "cross", "b", "mesh").await;
    assert!(matches!(
        a.recv().await,
        ServerMessage::ParticipantJoined { .. }
    ));
    drop(a);
    b.send(&format!(
        r#"{{"type":"offer","sdp":"v=0 missed","to":"{a_id}"}}"#
    ))
    .await;
    // B's relay to nobody is answered once the room has handled the one
    // before it.
    b.send(r#"{"type":"offer","sdp":"v=0","to":"p0-nobody"}"#)
        .await;
    b.expect_error(ErrorCode::UnknownParticipant).await;

    let (poller, opened) = Poller::open(
        &server,
        json!({"type":"resume","token": token,"received": 2}),
    )
    .await;
    let messages: Vec<&ServerMessage> = opened.messages.iter().map(|n| &n.message).collect();
    assert!(
        matches!(messages[0], ServerMessage::Resumed { participant, replayed: 1 } if *participant == a_id),
        "{messages:?}"
    );
    let mut after = opened.messages.last().unwrap().seq;
    let mut replayed: Vec<ServerMessage> = opened.messages[1..]
        .iter()
        .map(|n| n.message.clone())
        .collect();
    if replayed.is_empty() {
        let polled = poller.get(after).await;
        after = polled.messages.last().map_or(after, |n| n.seq);
        replayed = polled.messages.into_iter().map(|n| n.message).collect();
    }
    assert!(
        matches!(&replayed[..], [ServerMessage::Offer { sdp, from, .. }] if sdp == "v=0 missed" && from.as_deref() == Some(b_id.as_str())),
        "{replayed:?}"
    );
    // The same participant, now on long-poll: a relay to A's id reaches it.
    b.send(&format!(
        r#"{{"type":"offer","sdp":"v=0 after","to":"{a_id}"}}"#
    ))
    .await;
    let polled = poller.get(after).await;
    assert!(
        matches!(&polled.messages[0].message, ServerMessage::Offer { sdp, .. } if sdp == "v=0 after"),
        "{polled:?}"
    );
    let deleted = poller.http.delete(&poller.url).send().await.unwrap();
    assert_eq!(deleted.status(), 204);
    b.recv_until(
        "a left",
        |m| matches!(m, ServerMessage::ParticipantLeft { participant } if *participant == a_id),
    )
    .await;
    b.leave().await;
    wait_until_idle(&server, TIMEOUT).await.expect("all gone");
    server.shut_down().await;
}

/// The last 64 messages handed to a connection are kept for a resume: a
/// `received` within them resumes, an older one gets `resume-failed` (and
/// the connection can still try again).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_resume_from_before_the_kept_messages_fails_and_one_within_them_replays_them() {
    let server = start_server(ServeArgs::default()).await;
    let mut a = WsClient::connect(&server).await;
    let (a_id, token) = a.join("kept", "a", "mesh").await;
    let (mut b, _) = joined_client(&server, "kept", "b", "mesh").await;
    // A reads everything: "joined" (1), "b joined" (2), 80 offers (3-82).
    for n in 1..=80 {
        b.send(&format!(
            r#"{{"type":"offer","sdp":"v=0 {n}","to":"{a_id}"}}"#
        ))
        .await;
    }
    a.recv_until(
        "the 80th offer",
        |m| matches!(m, ServerMessage::Offer { sdp, .. } if sdp == "v=0 80"),
    )
    .await;
    drop(a);

    // Kept: the last 64 handed over, 19-82. After 17, message 18 is owed
    // and gone.
    let mut again = WsClient::connect(&server).await;
    again
        .send(&format!(
            r#"{{"type":"resume","token":"{token}","received":17}}"#
        ))
        .await;
    let said = again.expect_error(ErrorCode::ResumeFailed).await;
    assert!(said.contains("17"), "{said}");
    again
        .send(&format!(
            r#"{{"type":"resume","token":"{token}","received":18}}"#
        ))
        .await;
    match again.recv().await {
        ServerMessage::Resumed {
            participant,
            replayed,
        } => {
            assert_eq!(participant, a_id);
            assert_eq!(replayed, 64);
        }
        other => panic!("expected resumed, got {other:?}"),
    }
    // Messages 19-82: offers 17 to 80, in order.
    for n in 17..=80 {
        match again.recv().await {
            ServerMessage::Offer { sdp, .. } => assert_eq!(sdp, format!("v=0 {n}")),
            other => panic!("expected offer {n}, got {other:?}"),
        }
    }
    again.leave().await;
    b.leave().await;
    wait_until_idle(&server, TIMEOUT).await.expect("all gone");
    server.shut_down().await;
}
