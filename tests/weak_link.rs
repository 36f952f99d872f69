//! An MCU receiver behind a real weak link: a network namespace whose
//! downlink is held to 300 kbit/s by a token bucket (bench/shaped_link.rs),
//! with a `gridmix bot` process inside it. The two other participants send
//! busy pictures, so the composite's top rung really needs its 1.5 Mbit/s.
//! The weak receiver must be moved to the lowest rung and decode it without
//! freezing while the others keep 720p; once the link is freed, it must
//! climb back to the top.
//!
//! Needs root (a namespace and tc). Without it the test says so and passes
//! nothing else: it checks nothing it could not check.

mod common;

use anyhow::{Result, anyhow, ensure};
use common::*;
use gridmix::bench::shaped_link::{LinkError, ShapedLink};
use gridmix::bot::{Bot, BotConfig};
use gridmix::config::ServeArgs;
use gridmix::server::Server;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;

const TIMEOUT: Duration = Duration::from_secs(20);
const TOP: &str = "1280x720@1500";
const LOWEST: &str = "320x180@150";
/// The longest gap between two frames the weak receiver may see once it
/// is on a rung its link carries, and the others at any time.
const LONGEST_GAP_MS: u64 = 500;

/// One second of what the weak bot received (its `--json` report).
#[derive(Debug, Clone, serde::Deserialize)]
struct Second {
    fps: f64,
    width: Option<u32>,
    freezes_ms: Vec<u64>,
    video_kbps: f64,
}

/// The weak participant: a `gridmix bot` in the namespace, killed on drop.
struct WeakBot {
    process: tokio::process::Child,
    id: String,
    seconds: mpsc::UnboundedReceiver<(Instant, Second)>,
}

impl WeakBot {
    async fn join(link: &ShapedLink, server: &Server, room: &str) -> Result<WeakBot> {
        let program = std::path::Path::new(env!("CARGO_BIN_EXE_gridmix"));
        let port = server.local_addr().port();
        let mut command = tokio::process::Command::from(link.command(program));
        command
            .args(["bot", "--room", room, "--name", "weak", "--color", "0000ff"])
            .args(["--json", "--server"])
            .arg(format!("ws://{}:{port}/ws", link.host_address()))
            .arg("--ice-address")
            .arg(link.guest_address().to_string())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .kill_on_drop(true);
        let mut process = command.spawn()?;
        let mut lines = BufReader::new(process.stdout.take().expect("piped")).lines();
        let first = within("the weak bot joins", TIMEOUT, lines.next_line()).await?;
        let id = first
            .as_deref()
            .and_then(|l| l.strip_prefix("joined as "))
            .ok_or_else(|| anyhow!("the weak bot said {first:?}"))?
            .to_owned();
        let (tx, seconds) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(second) = serde_json::from_str::<Second>(&line) {
                    let _ = tx.send((Instant::now(), second));
                }
            }
        });
        Ok(WeakBot {
            process,
            id,
            seconds,
        })
    }

    /// Leaves the call as a person closing it would (Ctrl-C: the bot says
    /// "leave"), so the room need not wait for a resume.
    async fn leave(mut self) {
        if let Some(pid) = self.process.id() {
            // SAFETY: kill has no memory effects; the pid is our child's.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGINT) };
        }
        within("the weak bot leaves", TIMEOUT, self.process.wait())
            .await
            .expect("the weak bot exits");
    }

    /// The reports that came since the last call.
    fn new_seconds(&mut self) -> Vec<(Instant, Second)> {
        std::iter::from_fn(|| self.seconds.try_recv().ok()).collect()
    }

    /// Waits for a second in which it decoded frames `width` wide.
    async fn wait_for_width(&mut self, width: u32, timeout: Duration) -> Result<()> {
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + timeout;
        while let Ok(Some((_, second))) =
            tokio::time::timeout_at(deadline, self.seconds.recv()).await
        {
            if second.width == Some(width) {
                return Ok(());
            }
            seen.push(second);
        }
        Err(anyhow!(
            "no {width}-wide frame within {timeout:?}: {seen:?}"
        ))
    }
}

/// (rung, moving to) of each receiver of `room`, as the room API says.
async fn rungs(
    server: &Server,
    room: &str,
) -> Result<Vec<(String, Option<String>, Option<String>)>> {
    let rooms = open_rooms(server).await?;
    let room = rooms
        .iter()
        .find(|r| r.id == room)
        .ok_or_else(|| anyhow!("no room {room}"))?;
    Ok(room
        .receivers
        .iter()
        .map(|r| (r.participant.clone(), r.rung.clone(), r.moving_to.clone()))
        .collect())
}

async fn rung_of(
    server: &Server,
    room: &str,
    who: &str,
) -> Result<(Option<String>, Option<String>)> {
    rungs(server, room)
        .await?
        .into_iter()
        .find(|(id, _, _)| id == who)
        .map(|(_, rung, moving)| (rung, moving))
        .ok_or_else(|| anyhow!("{who} receives nothing"))
}

fn busy_bot(server: &Server, room: &str, name: &str, (colour, tone): (u32, f64)) -> BotConfig {
    let url = format!("ws://127.0.0.1:{}/ws", server.local_addr().port());
    let mut config = BotConfig::new(&url, room, name, colour, tone);
    config.ice_addresses = vec![LOOPBACK.to_owned()];
    config.busy_video = true;
    config
}

/// The longest gap between frames either loopback bot saw since `from`.
fn longest_gap_ms(bots: &[&Bot], from: Instant) -> u64 {
    bots.iter()
        .flat_map(|b| b.traffic().freezes_after(from))
        .map(|f| f.gap.as_millis() as u64)
        .max()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_receiver_behind_a_300_kbit_link_gets_the_lowest_rung_and_climbs_back_when_freed() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let link = match ShapedLink::create(300) {
        Ok(link) => link,
        Err(LinkError::NotPermitted(why)) => {
            eprintln!("SKIPPED: {why}");
            return;
        }
        Err(e) => panic!("{e}"),
    };
    init_tracing();
    // Reachable from the namespace, with a candidate on the link.
    let args = ServeArgs {
        listen: "0.0.0.0:0".parse().unwrap(),
        ice_addresses: vec![LOOPBACK.to_owned(), link.host_address().to_string()],
        ..ServeArgs::default()
    };
    let server = Server::start(args.into_config().expect("config"))
        .await
        .expect("server starts");
    let room = "weak-link";

    let red = Bot::join(busy_bot(&server, room, "red", SENDERS[0]))
        .await
        .expect("red joins");
    let green = Bot::join(busy_bot(&server, room, "green", SENDERS[1]))
        .await
        .expect("green joins");
    for bot in [&red, &green] {
        eventually(TIMEOUT, || async {
            let frame = bot.latest_frame(Duration::from_secs(2)).await?;
            ensure!(
                (frame.width, frame.height) == (1280, 720),
                "{}x{}",
                frame.width,
                frame.height
            );
            Ok(())
        })
        .await
        .expect("the loopback bots get 720p");
    }

    let mut weak = WeakBot::join(&link, &server, room)
        .await
        .expect("weak joins");
    let joined = Instant::now();
    // Within 10 s of joining it is on the lowest rung.
    eventually(Duration::from_secs(10), || async {
        let (rung, moving) = rung_of(&server, room, &weak.id).await?;
        ensure!(
            rung.as_deref() == Some(LOWEST) && moving.is_none(),
            "{rung:?} -> {moving:?}"
        );
        Ok(())
    })
    .await
    .expect("the weak receiver is moved to the lowest rung");
    let down_after = joined.elapsed();
    // It decodes the lowest rung's picture.
    weak.wait_for_width(320, TIMEOUT)
        .await
        .expect("the weak receiver decodes 320x180");
    let settled = Instant::now();

    // Settled: watched until the controller next tries a better rung (or
    // 10 s). Its frames keep coming with no long gap; the others stay on
    // the top rung throughout.
    let mut watched = Vec::new();
    let window = Duration::from_secs(10);
    while settled.elapsed() < window {
        let (rung, moving) = rung_of(&server, room, &weak.id)
            .await
            .expect("weak receives");
        if rung.as_deref() != Some(LOWEST) || moving.is_some() {
            break;
        }
        for bot in [&red, &green] {
            let (rung, moving) = rung_of(&server, room, bot.id()).await.expect("receives");
            assert_eq!((rung.as_deref(), moving), (Some(TOP), None), "{}", bot.id());
        }
        watched.extend(weak.new_seconds());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let settled_for = settled.elapsed();
    assert!(
        watched.len() >= 3,
        "only {} reports in {settled_for:?} on the lowest rung: {watched:?}",
        watched.len()
    );
    for (_, second) in &watched {
        assert!(second.fps > 0.0, "a second without frames: {watched:?}");
        assert!(
            second.freezes_ms.iter().all(|&gap| gap <= LONGEST_GAP_MS),
            "the weak receiver froze on the lowest rung: {watched:?}"
        );
    }
    let others_gap = longest_gap_ms(&[&red, &green], joined);
    assert!(
        others_gap <= LONGEST_GAP_MS,
        "a loopback bot froze for {others_gap} ms while the weak one joined and settled"
    );
    let weak_kbps: f64 =
        watched.iter().map(|(_, s)| s.video_kbps).sum::<f64>() / watched.len() as f64;
    eprintln!(
        "weak receiver: on {LOWEST} {down_after:?} after joining, then {settled_for:?} watched at {weak_kbps:.0} kbit/s"
    );

    // Freed, it climbs back to the top within 30 s.
    link.lift().expect("shaping lifted");
    let freed = Instant::now();
    eventually(Duration::from_secs(30), || async {
        let (rung, moving) = rung_of(&server, room, &weak.id).await?;
        ensure!(
            rung.as_deref() == Some(TOP) && moving.is_none(),
            "{rung:?} -> {moving:?}"
        );
        Ok(())
    })
    .await
    .expect("the weak receiver climbs back to the top rung");
    eprintln!(
        "weak receiver: back on {TOP} {:?} after the link was freed",
        freed.elapsed()
    );
    weak.wait_for_width(1280, TIMEOUT)
        .await
        .expect("the freed receiver decodes 720p");

    weak.leave().await;
    red.leave().await;
    green.leave().await;
    wait_until_idle(&server, TIMEOUT).await.expect("all gone");
    server.shut_down().await;
}
