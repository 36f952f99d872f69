//! Mesh rooms: the server relays signaling only; bots send to each other
//! peer to peer over loopback, and the server holds no media for the room.

mod common;

use common::*;
use gridmix::config::ServeArgs;
use gridmix::protocol::Mode;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(40);

/// The room as `GET /api/rooms` shows it, with whether it has a pipeline.
async fn room_has_pipeline(server: &gridmix::server::Server, room: &str) -> bool {
    let url = format!("http://{}/api/rooms", server.local_addr());
    let rooms: serde_json::Value = reqwest_json(&url).await;
    let room = rooms
        .as_array()
        .expect("a JSON array")
        .iter()
        .find(|r| r["id"] == room)
        .unwrap_or_else(|| panic!("room {room} listed in {rooms}"));
    assert_eq!(room["mode"], "mesh");
    room["pipeline"].as_bool().expect("pipeline is a bool")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mesh_peers_exchange_media_directly_and_the_server_carries_none() {
    let server = start_server(ServeArgs::default()).await;
    let room = "mesh-e2e";
    let mut members = Vec::new();
    for (i, sender) in SENDERS.iter().take(3).enumerate() {
        members.push(
            join_member(
                &server,
                room,
                &format!("bot{i}"),
                Mode::Mesh,
                *sender,
                false,
            )
            .await,
        );
    }
    members.push(join_member(&server, room, "viewer", Mode::Mesh, (0, 0.0), true).await);
    wait_for_full_exchange(&members, TIMEOUT)
        .await
        .expect("three senders and a viewer");
    assert!(
        !room_has_pipeline(&server, room).await,
        "a mesh room must hold no media pipeline"
    );

    members.push(join_member(&server, room, "bot3", Mode::Mesh, SENDERS[3], false).await);
    wait_for_full_exchange(&members, TIMEOUT)
        .await
        .expect("after a fourth sender joined");

    let leaver = members.remove(1);
    let leaver_id = leaver.id().to_owned();
    leaver.bot.leave().await;
    for m in &members {
        m.bot
            .wait_for_state(TIMEOUT, |s| s.others.iter().all(|p| p.id != leaver_id))
            .await
            .expect("told of the leave");
    }
    wait_for_full_exchange(&members, TIMEOUT)
        .await
        .expect("after bot1 left");
    assert!(!room_has_pipeline(&server, room).await);
    assert_no_errors(&members);

    for m in members {
        m.bot.leave().await;
    }
    server.shut_down().await;
}
