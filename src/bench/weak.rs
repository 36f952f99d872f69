//! The bench's weak participants (`--weak N`): each a `gridmix bot` process
//! in a network namespace of its own behind a 300 kbit/s downlink
//! (shaped_link.rs), reporting each second what it received (`--json`).
//! What they saw in the measured window becomes `WeakFigures`; the rungs
//! the server put them on come from the room API.

use super::results::WeakFigures;
use super::shaped_link::ShapedLink;
use anyhow::{Context, Result, anyhow};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};

/// What a weak link carries to its participant.
pub const WEAK_LINK_KBPS: u32 = 300;

/// One second of what a weak participant received.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Second {
    pub fps: f64,
    pub video_kbps: f64,
    pub freezes_ms: Vec<u64>,
}

pub struct WeakParticipant {
    process: tokio::process::Child,
    pub id: String,
    seconds: Arc<Mutex<Vec<(Instant, Second)>>>,
}

impl WeakParticipant {
    /// Joins `room` from inside `link`'s namespace; `port` is the server's.
    pub async fn join(
        link: &ShapedLink,
        port: u16,
        room: &str,
        name: &str,
    ) -> Result<WeakParticipant> {
        let program = std::env::current_exe().context("finding the gridmix executable")?;
        let mut command = tokio::process::Command::from(link.command(&program));
        command
            .args(["bot", "--json", "--room", room, "--name", name])
            .args(["--color", "808080", "--server"])
            .arg(format!("ws://{}:{port}/ws", link.host_address()))
            .arg("--ice-address")
            .arg(link.guest_address().to_string())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true);
        let mut process = command.spawn().context("starting a weak participant")?;
        let mut lines = BufReader::new(process.stdout.take().context("its output")?).lines();
        let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .map_err(|_| anyhow!("weak participant {name} did not join within 20 s"))??;
        let id = first
            .as_deref()
            .and_then(|l| l.strip_prefix("joined as "))
            .ok_or_else(|| anyhow!("weak participant {name} said {first:?}"))?
            .to_owned();
        let seconds: Arc<Mutex<Vec<(Instant, Second)>>> = Arc::default();
        let kept = seconds.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(second) = serde_json::from_str::<Second>(&line) {
                    kept.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((Instant::now(), second));
                }
            }
        });
        Ok(WeakParticipant {
            process,
            id,
            seconds,
        })
    }

    /// Whether it has decoded anything yet.
    pub fn receives(&self) -> bool {
        let seconds = self.seconds.lock().unwrap_or_else(|e| e.into_inner());
        seconds.iter().any(|(_, s)| s.fps > 0.0)
    }

    /// The seconds reported between `from` and `to`.
    pub fn seconds_between(&self, from: Instant, to: Instant) -> Vec<Second> {
        let seconds = self.seconds.lock().unwrap_or_else(|e| e.into_inner());
        seconds
            .iter()
            .filter(|(at, _)| *at > from && *at <= to)
            .map(|(_, s)| s.clone())
            .collect()
    }

    /// Leaves as a person would (Ctrl-C), or is killed after 10 s.
    pub async fn leave(mut self) {
        if let Some(pid) = self.process.id() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGINT) };
        }
        if tokio::time::timeout(Duration::from_secs(10), self.process.wait())
            .await
            .is_err()
        {
            let _ = self.process.kill().await;
        }
    }
}

/// The weak participants' figures from the seconds each reported in the
/// window, the rung switches seen and the rungs they ended on.
pub fn figures(
    per_participant: &[Vec<Second>],
    rung_switches: u64,
    rungs: Vec<String>,
) -> WeakFigures {
    let seconds: Vec<&Second> = per_participant.iter().flatten().collect();
    let mean = |f: fn(&Second) -> f64| {
        (!seconds.is_empty())
            .then(|| seconds.iter().map(|s| f(s)).sum::<f64>() / seconds.len() as f64)
    };
    let gaps = || seconds.iter().flat_map(|s| s.freezes_ms.iter().copied());
    WeakFigures {
        receivers: per_participant.len(),
        link_kbps: WEAK_LINK_KBPS,
        received_kbps: mean(|s| s.video_kbps),
        received_fps: mean(|s| s.fps),
        freezes: gaps().count() as u64,
        longest_freeze_ms: gaps().max(),
        rung_switches,
        rungs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn second(fps: f64, kbps: f64, freezes: &[u64]) -> Second {
        Second {
            fps,
            video_kbps: kbps,
            freezes_ms: freezes.to_vec(),
        }
    }

    #[test]
    fn figures_are_means_over_every_second_of_every_weak_participant() {
        let a = vec![second(30.0, 150.0, &[]), second(28.0, 140.0, &[250])];
        let b = vec![second(26.0, 130.0, &[300, 210])];
        let f = figures(&[a, b], 1, vec!["320x180@150".into(); 2]);
        assert_eq!(f.receivers, 2);
        assert_eq!(f.received_fps, Some(28.0));
        assert_eq!(f.received_kbps, Some(140.0));
        assert_eq!((f.freezes, f.longest_freeze_ms), (3, Some(300)));
        assert_eq!(f.rung_switches, 1);
    }

    #[test]
    fn nothing_reported_is_no_figure_rather_than_zero() {
        let f = figures(&[Vec::new()], 0, Vec::new());
        assert_eq!(
            (f.received_fps, f.received_kbps, f.longest_freeze_ms),
            (None, None, None)
        );
    }
}
