//! The `gridmix serve` binary as an operator runs it: it serves /healthz;
//! SIGTERM in the middle of a recorded call finishes every recording's file,
//! closes every signaling socket with a close frame and stops every room's
//! pipeline before the process exits with success; a missing GStreamer
//! element stops it at start-up with a sentence naming the element.

mod common;

use common::recording::*;
use common::recording_api::Api;
use common::serve_process::ServeProcess;
use common::*;
use gridmix::bot::{Bot, BotConfig};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TIMEOUT: Duration = Duration::from_secs(40);
const COLOURS: [u32; 2] = [0xff0000, 0x0000ff];
const TONES: [f64; 2] = [400.0, 1100.0];

async fn http_get(addr: &str, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connects");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_during_a_recorded_call_finishes_the_files_closes_sockets_and_stops_rooms() {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = record_dir("cli-term");
    let record_dir = dir.display().to_string();
    let mut serve = ServeProcess::start(&["--record-dir", &record_dir], &dir.with_extension("log"));
    let health = http_get(&serve.addr, "/healthz").await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.ends_with("ok"), "{health}");

    let room = "term";
    let mut bots = Vec::new();
    for i in 0..2 {
        let mut config = BotConfig::new(
            &serve.ws_url(),
            room,
            &format!("bot{i}"),
            COLOURS[i],
            TONES[i],
        );
        config.ice_addresses = vec![LOOPBACK.to_owned()];
        // Its session must end with the server, not be resumed elsewhere.
        config.resume = false;
        bots.push(Bot::join(config).await.unwrap());
    }
    for bot in &bots {
        wait_for_tiles(bot, &COLOURS, TIMEOUT)
            .await
            .expect("a call in progress");
    }
    // And a client in a mesh room: every room stops, not only the recorded one.
    let mut raw = WsClient::connect_url(&serve.ws_url()).await;
    raw.join("term-mesh", "raw", "mesh").await;

    let api = Api::new(&serve.addr);
    let mut files = Vec::new();
    for format in ["webm", "mp4", "hls"] {
        let info = api.start(room, format).await;
        files.push((
            format,
            info["id"].as_str().unwrap().to_owned(),
            path_of(&info),
        ));
    }
    for (_, id, _) in &files {
        wait_recorded(&api, room, id, 3000).await;
    }

    serve.signal("-TERM");
    assert_eq!(
        raw.ending().await,
        Ending::CloseFrame,
        "the server closes signaling sockets with a close frame"
    );
    let status = serve.wait_exit().await;
    assert!(status.success(), "exit status {status}");
    for bot in &bots {
        bot.wait_for_state(TIMEOUT, |s| s.disconnected)
            .await
            .expect("the bots' signaling sockets are closed");
    }
    // Both rooms stopped their pipelines (logged once a room's task has set
    // its pipeline to NULL), then the server said it stopped.
    serve
        .wait_for_log(|lines| {
            let closed = |room: &str| {
                lines
                    .iter()
                    .any(|l| l.contains("room closed") && l.contains(&format!("room={room}}}")))
            };
            closed(room)
                && closed("term-mesh")
                && lines.iter().any(|l| l.contains("gridmix stopped"))
        })
        .await;
    assert!(
        serve.log_lines_with("did not stop").is_empty(),
        "{:?}",
        serve.log_lines_with("did not stop")
    );
    for bot in bots {
        bot.vanish().await;
    }

    // Every file was finished: WebM and MP4 have their duration, the HLS
    // playlist its end, and all play to the end of what was recorded.
    let at_least = Duration::from_millis(3000) - Duration::from_millis(500);
    for (format, _, path) in files {
        let codecs = codecs_of(format);
        match format {
            "hls" => {
                check_hls_playlist(&std::fs::read_to_string(&path).unwrap(), true);
            }
            _ => {
                let probed = check_codecs(&path, codecs).await;
                assert!(
                    probed.duration.is_some_and(|d| d >= at_least),
                    "{format}: the file was not finished: {probed:?}"
                );
            }
        }
        check_recording(
            &path,
            codecs,
            at_least,
            Duration::from_secs(1),
            &COLOURS,
            &TONES,
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_missing_element_stops_serve_at_start_up_with_a_sentence_naming_it() {
    let dir = record_dir("cli-missing-element");
    std::fs::write(
        dir.join("video-encode.gst"),
        "gridmixnosuchencoder target-bitrate=1000000\n",
    )
    .unwrap();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_gridmix"))
            .args(["serve", "--listen", "127.0.0.1:0", "--pipelines"])
            .arg(&dir)
            .env("NO_COLOR", "1")
            .output()
            .expect("gridmix serve runs")
    })
    .await
    .unwrap();
    assert!(!output.status.success(), "{output:?}");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        said.contains("gridmixnosuchencoder") && said.contains("video-encode.gst"),
        "the message names the element and the file: {said}"
    );
    assert!(!said.contains("panicked"), "{said}");
    assert!(!said.contains("serving on"), "{said}");
}
