//! After calls over both transports, a resumed session, bad input, abandoned
//! long-poll sessions and vanished sockets, the server holds no room, no room
//! task, no session and no long-poll session; and after three more rounds of
//! all of it the process has no more file descriptors open than after the
//! first. One test in its own process, so that nothing else runs while the
//! descriptors are counted.

mod common;

use common::*;
use gridmix::bot::{Bot, TransportKind};
use gridmix::config::ServeArgs;
use gridmix::protocol::{ErrorCode, Mode};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(30);
/// Rounds of everything after the warm-up round.
const ROUNDS: usize = 3;
/// Descriptors the process may hold beyond what it held after the warm-up
/// round (GStreamer's thread pools can settle a little higher). Each round
/// opens four rooms and eleven sessions: a leak of one descriptor per room,
/// call or session would exceed this several times over.
const SLACK: usize = 2;

async fn a_call(server: &gridmix::server::Server, room: &str) {
    let ws = Bot::join(bot_config(server, room, "ws", 0xff0000, 500.0))
        .await
        .unwrap();
    let mut config = bot_config(server, room, "poll", 0x0000ff, 900.0);
    config.transport = TransportKind::LongPoll;
    let poll = Bot::join(config).await.unwrap();
    for bot in [&ws, &poll] {
        wait_for_tiles(bot, &[0xff0000, 0x0000ff], TIMEOUT)
            .await
            .expect("call up");
    }
    ws.leave().await;
    poll.leave().await;
}

/// One round of every kind of session the server holds, ended every way a
/// session ends.
async fn everything(server: &gridmix::server::Server, round: usize) {
    let room = |name: &str| format!("{name}-{round}");
    // MCU over both transports, a cut and resumed WebSocket in it.
    a_call(server, &room("mcu-1")).await;
    let mcu = room("mcu-2");
    let red = Bot::join(bot_config(server, &mcu, "red", 0xff0000, 500.0))
        .await
        .unwrap();
    let blue = Bot::join(bot_config(server, &mcu, "blue", 0x0000ff, 900.0))
        .await
        .unwrap();
    wait_for_tiles(&blue, &[0xff0000, 0x0000ff], TIMEOUT)
        .await
        .unwrap();
    let cut = red.cut_signaling();
    eventually(TIMEOUT, || async {
        match server.signaling().sessions.detached() {
            1 => Ok(()),
            n => Err(anyhow::anyhow!("{n} sessions detached")),
        }
    })
    .await
    .expect("the cut noticed");
    cut.release();
    red.wait_for_state(TIMEOUT, |s| s.resumes == 1)
        .await
        .expect("resumed");
    // SFU and mesh, one member of each over long-poll.
    for (mode, name) in [(Mode::Sfu, "sfu"), (Mode::Mesh, "mesh")] {
        let room = room(name);
        let members = vec![
            join_member(server, &room, "a", mode, (0xff0000, 500.0), false).await,
            join_member_with(server, &room, "b", mode, (0x00ff00, 700.0), false, |c| {
                c.transport = TransportKind::LongPoll
            })
            .await,
        ];
        wait_for_full_exchange(&members, TIMEOUT).await.unwrap();
        if mode == Mode::Sfu {
            // Each published stream came through one (checked gone below).
            let alive = gridmix::media::forwarding_buffer::ForwardingBuffer::alive();
            assert!(alive >= 4, "{alive} forwarding buffers for two publishers");
        }
        for m in members {
            m.bot.leave().await;
        }
    }
    // Bad input, a vanished socket and an abandoned long-poll session.
    let mut raw = WsClient::connect(server).await;
    raw.join(&mcu, "raw", "mcu").await;
    raw.send(&"x".repeat(100 * 1024)).await;
    raw.expect_error(ErrorCode::TooLarge).await;
    for _ in 0..200 {
        raw.send(r#"{"type":"dance"}"#).await;
    }
    raw.recv_until("rate-limited", |m| {
        matches!(
            m,
            gridmix::protocol::ServerMessage::Error {
                code: ErrorCode::RateLimited,
                ..
            }
        )
    })
    .await;
    drop(raw);
    let abandoned = reqwest::Client::new()
        .post(server.poll_url())
        .json(&serde_json::json!({"type":"join","room":mcu,"name":"gone","mode":"mcu"}))
        .send()
        .await
        .unwrap();
    assert!(abandoned.status().is_success());
    let vanishing = Bot::join(bot_config(server, &mcu, "vanishing", 0x00ff00, 1300.0))
        .await
        .unwrap();
    vanishing.vanish().await;
    // Those three are removed by the room in time; then the others leave.
    blue.wait_for_state(TIMEOUT, |s| s.others.len() == 1)
        .await
        .expect("the raw, abandoned and vanished clients are removed");
    red.leave().await;
    blue.leave().await;
    wait_until_idle(server, TIMEOUT)
        .await
        .expect("no room, task or session left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nothing_is_left_behind() {
    let server = start_server(ServeArgs {
        resume_grace: Duration::from_secs(1),
        poll_timeout: Duration::from_secs(1),
        ..ServeArgs::default()
    })
    .await;
    everything(&server, 0).await;
    let baseline = open_fds();
    for round in 1..=ROUNDS {
        everything(&server, round).await;
        eprintln!(
            "descriptors: {baseline} after the warm-up, {} after round {round}",
            open_fds()
        );
    }
    let rooms = reqwest_json(&format!("http://{}/api/rooms", server.local_addr())).await;
    assert_eq!(rooms, serde_json::json!([]), "/api/rooms lists no room");
    eventually(TIMEOUT, || async {
        let now = open_fds();
        anyhow::ensure!(
            now <= baseline + SLACK,
            "{now} descriptors open, {baseline} after the warm-up"
        );
        Ok(())
    })
    .await
    .expect("no descriptor leaked");
    // The SFU rooms' publish connections had forwarding jitter buffers.
    eventually(TIMEOUT, || async {
        let alive = gridmix::media::forwarding_buffer::ForwardingBuffer::alive();
        anyhow::ensure!(
            alive == 0,
            "{alive} forwarding buffers outlived their rooms"
        );
        Ok(())
    })
    .await
    .expect("no forwarding buffer leaked");
    server.shut_down().await;
}
