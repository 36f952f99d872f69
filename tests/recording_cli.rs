//! Recordings survive the server process ending: SIGTERM finishes the file
//! (it has its duration and index), SIGKILL leaves a file that still plays
//! up to a few seconds before the kill.

mod common;

use common::media_file::{decode, probe};
use common::recording_api::Api;
use common::*;
use gridmix::bot::{Bot, BotConfig};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(40);
const COLOURS: [u32; 2] = [0xff0000, 0x0000ff];
const TONES: [f64; 2] = [400.0, 1100.0];

static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Kills the child if the test fails before it is stopped.
struct ServeProcess(Child);

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn record_dir(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("recordings-cli-{test}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Starts `gridmix serve` on a free loopback port, recording to `dir`.
fn spawn_serve(dir: &Path) -> (ServeProcess, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gridmix"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--ice-address",
            LOOPBACK,
        ])
        .arg("--record-dir")
        .arg(dir)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("gridmix serve starts");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    // The server's log, for a person looking into a failure.
    let log_path = dir.with_extension("log");
    std::thread::spawn(move || {
        let mut log = std::fs::File::create(log_path).ok();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(log) = log.as_mut() {
                use std::io::Write;
                let _ = writeln!(log, "{line}");
            }
            if let Some(rest) = line.split("serving on http://").nth(1) {
                let addr: String = rest
                    .chars()
                    .take_while(|c| !c.is_whitespace() && *c != '\u{1b}')
                    .collect();
                let _ = tx.send(addr);
            }
        }
    });
    let addr = rx
        .recv_timeout(TIMEOUT)
        .expect("the server logs its address");
    (ServeProcess(child), addr)
}

/// Two bots in an MCU room of the child server, the call up.
async fn call(addr: &str, room: &str) -> Vec<Bot> {
    let mut bots = Vec::new();
    for i in 0..2 {
        let mut config = BotConfig::new(
            &format!("ws://{addr}/ws"),
            room,
            &format!("bot{i}"),
            COLOURS[i],
            TONES[i],
        );
        config.ice_addresses = vec![LOOPBACK.to_owned()];
        bots.push(Bot::join(config).await.unwrap());
    }
    for bot in &bots {
        wait_for_tiles(bot, &COLOURS, TIMEOUT).await.unwrap();
    }
    bots
}

async fn wait_recorded(api: &Api, room: &str, id: &str, ms: u64) {
    eventually(TIMEOUT, || async {
        let recorded = api.show(room, id).await?["duration_ms"]
            .as_u64()
            .unwrap_or(0);
        if recorded < ms {
            // Polling interval, not a synchronisation.
            tokio::time::sleep(Duration::from_millis(50)).await;
            anyhow::bail!("{recorded} ms recorded");
        }
        Ok(())
    })
    .await
    .unwrap();
}

fn signal(child: &Child, name: &str) {
    let pid = child.id().to_string();
    let sent = Command::new("kill").args([name, &pid]).status().unwrap();
    assert!(sent.success());
}

async fn wait_exit(serve: &mut ServeProcess) -> std::process::ExitStatus {
    eventually(TIMEOUT, || {
        let exited = serve.0.try_wait();
        async move {
            match exited? {
                Some(status) => Ok(status),
                None => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    Err(anyhow::anyhow!("still running"))
                }
            }
        }
    })
    .await
    .expect("the server exits (its log is in target/tmp/recordings-cli-*.log)")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_during_a_recording_finishes_the_file() {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = record_dir("term");
    let (mut serve, addr) = spawn_serve(&dir);
    let api = Api::new(&addr);
    let bots = call(&addr, "term").await;
    let info = api.start("term", "webm").await;
    let id = info["id"].as_str().unwrap().to_owned();
    let path = PathBuf::from(info["path"].as_str().unwrap());
    wait_recorded(&api, "term", &id, 3000).await;
    let recorded = Instant::now();

    signal(&serve.0, "-TERM");
    let status = wait_exit(&mut serve).await;
    let ran_for = recorded.elapsed() + Duration::from_secs(3);
    assert!(status.success(), "exit status {status}");
    for bot in bots {
        bot.vanish().await;
    }

    // A finished Matroska file knows its duration; a cut-off one does not.
    let probed = tokio::task::spawn_blocking({
        let path = path.clone();
        move || probe(&path)
    })
    .await
    .unwrap()
    .expect("the file can be probed");
    assert_eq!((probed.video_streams, probed.audio_streams), (1, 1));
    let duration = probed
        .duration
        .expect("the file was finished: it has a duration");
    assert!(
        duration >= Duration::from_millis(2500) && duration <= ran_for + Duration::from_secs(1),
        "{duration:?} recorded, the recording ran {ran_for:?} at most"
    );
    let decoded = tokio::task::spawn_blocking(move || decode(&path, 30))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(decoded.error, None);
    let last = decoded.frames.last().expect("frames");
    check_tiles(&last.frame, (1280, 720), &COLOURS).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_during_a_recording_leaves_a_file_that_plays_nearly_to_the_kill() {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = record_dir("kill");
    let (mut serve, addr) = spawn_serve(&dir);
    let api = Api::new(&addr);
    let bots = call(&addr, "kill").await;
    let mut files = Vec::new();
    for format in ["webm", "mp4"] {
        let info = api.start("kill", format).await;
        files.push((
            info["id"].as_str().unwrap().to_owned(),
            PathBuf::from(info["path"].as_str().unwrap()),
        ));
    }
    wait_recorded(&api, "kill", &files[1].0, 6000).await;
    // What the API last said was recorded: the kill comes after it.
    let recorded = Duration::from_millis(
        api.show("kill", &files[0].0).await.unwrap()["duration_ms"]
            .as_u64()
            .unwrap(),
    );

    signal(&serve.0, "-KILL");
    wait_exit(&mut serve).await;
    for bot in bots {
        bot.vanish().await;
    }

    for (_, path) in files {
        let shown = path.display().to_string();
        let decoded = tokio::task::spawn_blocking(move || decode(&path, 30))
            .await
            .unwrap()
            .unwrap();
        let end = decoded.last_video_pts().expect("video frames");
        assert!(
            end + Duration::from_secs(3) >= recorded,
            "{shown}: plays to {end:?} of the {recorded:?} recorded before the kill ({:?})",
            decoded.error
        );
        assert!(
            decoded
                .last_audio_end
                .is_some_and(|a| a + Duration::from_secs(3) >= recorded),
            "{shown}: audio to {:?}",
            decoded.last_audio_end
        );
        assert_eq!(decoded.error, None, "{shown}: decoding to the end");
        let last = decoded.frames.last().expect("frames");
        check_tiles(&last.frame, (1280, 720), &COLOURS).unwrap();
    }
}
