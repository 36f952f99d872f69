//! After calls over both transports, a resumed session, bad input, abandoned
//! long-poll sessions and vanished sockets, the server holds no room, no room
//! task, no session and no long-poll session, and the process has no more
//! file descriptors open than after a first call. One test in its own
//! process, so that nothing else runs while the descriptors are counted.

mod common;

use common::*;
use gridmix::bot::{Bot, TransportKind};
use gridmix::config::ServeArgs;
use gridmix::protocol::{ErrorCode, Mode};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(30);
/// Descriptors GStreamer may keep after a first use (thread pools, the
/// system clock) beyond the warm-up's; a leak per call would exceed it.
const SLACK: usize = 6;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nothing_is_left_behind() {
    let server = start_server(ServeArgs {
        resume_grace: Duration::from_secs(1),
        poll_timeout: Duration::from_secs(1),
        ..ServeArgs::default()
    })
    .await;
    a_call(&server, "warm-up").await;
    wait_until_idle(&server, TIMEOUT)
        .await
        .expect("idle after warm-up");
    let baseline = open_fds();

    // MCU over both transports, a cut and resumed WebSocket in it.
    a_call(&server, "mcu-1").await;
    let red = Bot::join(bot_config(&server, "mcu-2", "red", 0xff0000, 500.0))
        .await
        .unwrap();
    let blue = Bot::join(bot_config(&server, "mcu-2", "blue", 0x0000ff, 900.0))
        .await
        .unwrap();
    wait_for_tiles(&blue, &[0xff0000, 0x0000ff], TIMEOUT)
        .await
        .unwrap();
    red.cut_signaling(Duration::from_millis(300));
    red.wait_for_state(TIMEOUT, |s| s.resumes == 1)
        .await
        .expect("resumed");
    // SFU and mesh, one member of each over long-poll.
    for (mode, room) in [(Mode::Sfu, "sfu"), (Mode::Mesh, "mesh")] {
        let members = vec![
            join_member(&server, room, "a", mode, (0xff0000, 500.0), false).await,
            join_member_with(&server, room, "b", mode, (0x00ff00, 700.0), false, |c| {
                c.transport = TransportKind::LongPoll
            })
            .await,
        ];
        wait_for_full_exchange(&members, TIMEOUT).await.unwrap();
        for m in members {
            m.bot.leave().await;
        }
    }
    // Bad input, a vanished socket and an abandoned long-poll session.
    let mut raw = WsClient::connect(&server).await;
    raw.join("mcu-2", "raw", "mcu").await;
    raw.send(&"x".repeat(100 * 1024)).await;
    raw.expect_error(ErrorCode::TooLarge).await;
    for _ in 0..200 {
        raw.send(r#"{"type":"dance"}"#).await;
    }
    loop {
        if let gridmix::protocol::ServerMessage::Error { code, .. } = raw.recv().await
            && code == ErrorCode::RateLimited
        {
            break;
        }
    }
    drop(raw);
    let abandoned = reqwest::Client::new()
        .post(server.poll_url())
        .json(&serde_json::json!({"type":"join","room":"mcu-2","name":"gone","mode":"mcu"}))
        .send()
        .await
        .unwrap();
    assert!(abandoned.status().is_success());
    let vanishing = Bot::join(bot_config(&server, "mcu-2", "vanishing", 0x00ff00, 1300.0))
        .await
        .unwrap();
    vanishing.vanish().await;
    // Those three are removed by the room in time; then the others leave.
    blue.wait_for_state(TIMEOUT, |s| s.others.len() == 1)
        .await
        .expect("the raw, abandoned and vanished clients are removed");
    red.leave().await;
    blue.leave().await;

    wait_until_idle(&server, TIMEOUT)
        .await
        .expect("no room, task or session left");
    let rooms = reqwest_json(&format!("http://{}/api/rooms", server.local_addr())).await;
    assert_eq!(rooms, serde_json::json!([]), "/api/rooms lists no room");
    eventually(TIMEOUT, || async {
        let now = open_fds();
        if now <= baseline + SLACK {
            eprintln!("descriptors: {baseline} after the warm-up, {now} at the end");
            Ok(())
        } else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Err(anyhow::anyhow!(
                "{now} descriptors open, {baseline} after the warm-up"
            ))
        }
    })
    .await
    .expect("no descriptor leaked");
    server.shut_down().await;
}
