//! Offers built to hurt the server are refused before webrtcbin sees them:
//! two hundred unbundled m-lines (once a transport and three threads each)
//! and a viewer's m-line whose direction is written `a=sendonly:x` (once
//! answered as if the server were to receive it) get `bad-sdp`; the process
//! has no more threads or descriptors afterwards, and a normal client joins
//! at once. One test in its own process, so that nothing else runs while
//! threads and descriptors are counted.

mod common;

use common::*;
use gridmix::auth::{issue_token, unix_now};
use gridmix::bot::Bot;
use gridmix::config::ServeArgs;
use gridmix::protocol::{ErrorCode, ServerMessage};
use serde_json::json;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(30);
const SECRET: &str = "hostile sdp";
/// Threads and descriptors the process may gain meanwhile without anything
/// being built for the offers: a runtime worker or a GLib pool thread waking
/// up. The bomb would add hundreds of each.
const SLACK: usize = 4;

/// What a browser puts in every m-section but the codec lines.
fn transport_lines(mid: &str) -> String {
    format!(
        "c=IN IP4 0.0.0.0\r\na=mid:{mid}\r\na=ice-ufrag:hOsT\r\na=ice-pwd:hostilehostilehostile000\r\n\
a=fingerprint:sha-256 8B:87:09:8A:5D:C2:F3:33:EF:C5:B1:F6:84:3A:3D:D6:A3:E2:9C:17:4C:E7:46:3B:1B:CE:84:98:DD:8E:AF:7B\r\n\
a=setup:actpass\r\na=rtcp-mux\r\n"
    )
}

const HEADER: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n";

/// Two hundred audio m-lines, every one complete, none bundled.
fn sdp_bomb() -> String {
    let mut sdp = HEADER.to_owned();
    for i in 0..200 {
        sdp += &format!(
            "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n{}a=rtpmap:111 opus/48000/2\r\na=sendrecv\r\n",
            transport_lines(&i.to_string())
        );
    }
    sdp
}

/// A viewer's offer whose session says recvonly and whose m-line says
/// `a=sendonly:x`: webrtcbin reads the m-line as sendonly.
fn sneaky_viewer_offer() -> String {
    format!(
        "{HEADER}a=recvonly\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n{}a=rtpmap:96 VP8/90000\r\na=sendonly:x\r\n",
        transport_lines("0")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_offers_are_refused_before_webrtcbin_and_cost_nothing() {
    let server = start_server(ServeArgs {
        auth_secret: Some(SECRET.to_owned()),
        ..ServeArgs::default()
    })
    .await;
    let token = |identity: &str, publish: bool| {
        issue_token(
            SECRET,
            "hostile",
            identity,
            Duration::from_secs(3600),
            publish,
            unix_now(),
        )
        .unwrap()
    };
    let join = |identity: &str, publish: bool| json!({"type":"join","room":"hostile","name":identity,"mode":"mcu","token":token(identity, publish)});
    let mut bomber = WsClient::connect(&server).await;
    bomber.join_with(join("bomber", true)).await;
    let mut viewer = WsClient::connect(&server).await;
    viewer.join_with(join("viewer", false)).await;
    // Both are in the room, with what joining builds (a webrtcbin and a
    // mix each): counted once that has settled.
    let (threads_before, fds_before) = settled_counts().await;

    bomber
        .send(&json!({"type":"offer","sdp":sdp_bomb()}).to_string())
        .await;
    let said = bomber.expect_error(ErrorCode::BadSdp).await;
    assert!(
        said.contains("BUNDLE") || said.contains("m-lines"),
        "{said}"
    );
    viewer
        .send(&json!({"type":"offer","sdp":sneaky_viewer_offer()}).to_string())
        .await;
    let said = viewer.expect_error(ErrorCode::BadSdp).await;
    assert!(said.contains("sendonly"), "{said}");
    // Nothing was answered.
    for client in [&mut bomber, &mut viewer] {
        client.send(r#"{"type":"fuzz-marker"}"#).await;
        let (_, before) = client
            .recv_until("the marker's error", |m| {
                matches!(
                    m,
                    ServerMessage::Error {
                        code: ErrorCode::UnknownType,
                        ..
                    }
                )
            })
            .await;
        assert!(
            !before
                .iter()
                .any(|m| matches!(m, ServerMessage::Answer { .. })),
            "{before:?}"
        );
    }

    eventually(TIMEOUT, || async {
        let (now_threads, now_fds) = (threads(), open_fds());
        anyhow::ensure!(
            now_threads <= threads_before + SLACK && now_fds <= fds_before + SLACK,
            "{now_threads} threads and {now_fds} descriptors, {threads_before} and {fds_before} before the offers"
        );
        Ok(())
    })
    .await
    .expect("the offers built nothing");

    // A normal client joins at once and is in the composite.
    let mut config = bot_config(&server, "hostile", "normal", 0xff0000, 500.0);
    config.token = Some(token("normal", true));
    let normal = Bot::join(config).await.expect("a normal client joins");
    wait_for_tiles(&normal, &[PLACEHOLDER, PLACEHOLDER, 0xff0000], TIMEOUT)
        .await
        .expect("and is seen");
    normal.leave().await;
    bomber.leave().await;
    viewer.leave().await;
    wait_until_idle(&server, TIMEOUT).await.expect("all gone");
    server.shut_down().await;
}
