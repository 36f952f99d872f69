//! Recordings survive the server process being killed: after SIGKILL, WebM
//! and MP4 files still play up to a few seconds before the kill, and the HLS
//! playlist lists every segment written, each of which plays. (SIGTERM, which
//! finishes the files, is in serve_cli.rs.)

mod common;

use common::recording::*;
use common::recording_api::Api;
use common::serve_process::ServeProcess;
use common::*;
use gridmix::bot::{Bot, BotConfig};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(40);
const COLOURS: [u32; 2] = [0xff0000, 0x0000ff];
const TONES: [f64; 2] = [400.0, 1100.0];
/// What a kill may cost a file, from the README ("What a recording
/// survives"): WebM clusters hold at most 2 s and MP4 fragments 1 s, and the
/// one in progress is lost; the API's count runs a moment ahead of the last
/// buffer written.
const KILL_LOSS: Duration = Duration::from_secs(3);

/// Two bots in an MCU room of the child server, the call up.
async fn call(ws_url: &str, room: &str) -> Vec<Bot> {
    let mut bots = Vec::new();
    for i in 0..2 {
        let mut config = BotConfig::new(ws_url, room, &format!("bot{i}"), COLOURS[i], TONES[i]);
        config.ice_addresses = vec![LOOPBACK.to_owned()];
        bots.push(Bot::join(config).await.unwrap());
    }
    for bot in &bots {
        wait_for_tiles(bot, &COLOURS, TIMEOUT).await.unwrap();
    }
    bots
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_during_a_recording_leaves_files_that_play_nearly_to_the_kill() {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = record_dir("cli-kill");
    let record_dir = dir.display().to_string();
    let mut serve = ServeProcess::start(&["--record-dir", &record_dir], &dir.with_extension("log"));
    let api = Api::new(&serve.addr);
    let bots = call(&serve.ws_url(), "kill").await;
    let mut files = Vec::new();
    for format in ["webm", "mp4", "hls"] {
        let info = api.start("kill", format).await;
        files.push((
            format,
            info["id"].as_str().unwrap().to_owned(),
            path_of(&info),
        ));
    }
    for (_, id, _) in &files {
        wait_recorded(&api, "kill", id, 6000).await;
    }
    // What the API last said was recorded: the kill comes after it.
    let recorded = Duration::from_millis(recorded_ms(&api, "kill", &files[0].1).await);

    serve.signal("-KILL");
    serve.wait_exit().await;
    for bot in bots {
        bot.vanish().await;
    }

    for (format, _, mut path) in files {
        let shown = path.display().to_string();
        if format == "hls" {
            // Killed mid-recording: every segment written is listed, the
            // playlist has no end.
            let playlist = std::fs::read_to_string(&path).unwrap();
            let segments = check_hls_playlist(&playlist, false);
            let listed: f64 = segments.iter().map(|(_, s)| s).sum();
            assert!(
                Duration::from_secs_f64(listed) + KILL_LOSS >= recorded,
                "{shown}: {listed} s listed of the {recorded:?} recorded"
            );
            // A player given it now waits for more segments; played as the
            // finished event it is, every listed segment plays.
            let ended = path.with_file_name("as-ended.m3u8");
            std::fs::write(&ended, format!("{playlist}#EXT-X-ENDLIST\n")).unwrap();
            path = ended;
        }
        let decoded = decode_finished(path, 30).await;
        let end = decoded.last_video_pts().expect("video frames");
        assert!(
            end + KILL_LOSS >= recorded,
            "{shown}: plays to {end:?} of the {recorded:?} recorded before the kill"
        );
        assert!(
            decoded
                .last_audio_end
                .is_some_and(|a| a + KILL_LOSS >= recorded),
            "{shown}: audio to {:?}",
            decoded.last_audio_end
        );
        check_no_gap(&decoded, &shown);
        check_frames(&decoded, Duration::from_secs(1), end, &COLOURS);
        check_tones(&decoded, Duration::from_millis(500), end, &TONES);
    }
}
