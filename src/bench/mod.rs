//! `gridmix bench`: MCU against SFU against mesh on the same load, on this
//! machine. Each mode and participant count is one run in a fresh room
//! (run.rs); the server is a child process measured from /proc
//! (server.rs, process.rs); results go to results.json, results.md and SVG
//! charts (report.rs). `--churn` runs the churn soak instead (churn.rs).

pub mod churn;
pub mod fit;
pub mod process;
pub mod report;
pub mod results;
pub mod run;
pub mod server;
pub mod shaped_link;
pub mod summary;
pub mod weak;

use crate::bot::shared::SharedEncoding;
use crate::protocol::{LayoutKind, Mode};
use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use results::{BenchResults, Machine, Settings};
use run::{BenchContext, PROBES, RunSpec};
use server::ServerUnderTest;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct BenchConfig {
    pub modes: Vec<Mode>,
    /// The MCU runs' layouts: every MCU size is run in each.
    pub layouts: Vec<LayoutKind>,
    pub participants: Vec<usize>,
    /// Length of each run's measured window.
    pub duration: Duration,
    pub out: PathBuf,
    /// ws://host:port/ws of a running server; None starts a child server.
    pub server: Option<String>,
    /// Local addresses the participants' ICE may use.
    pub ice_addresses: Vec<String>,
    /// Show a progress line (off in tests).
    pub progress: bool,
    /// MCU runs: also run each size with this many of its participants
    /// behind a 300 kbit/s shaped link, the others' load sending a busy
    /// picture in both runs (needs root; skipped with a message without).
    pub weak: usize,
}

/// Shared by every run: the server, the load's one encoding, time zero.
async fn start_context(config: &BenchConfig) -> Result<BenchContext> {
    gst::init()?;
    std::fs::create_dir_all(&config.out)
        .with_context(|| format!("creating {}", config.out.display()))?;
    let weak_links = weak_links(config)?;
    let link_addresses: Vec<String> = weak_links
        .iter()
        .map(|l| l.host_address().to_string())
        .collect();
    let server = match &config.server {
        Some(url) => ServerUnderTest::external(url).await?,
        None => {
            ServerUnderTest::start_child(&config.out.join("server.log"), &link_addresses).await?
        }
    };
    Ok(BenchContext {
        server,
        // Silent: the load listens while the probes speak, so an MCU room
        // keeps the probes on its composite (last-N) where they can be read.
        load: SharedEncoding::start(0x808080, 440.0, 0.0)?,
        busy_load: if weak_links.is_empty() {
            None
        } else {
            Some(SharedEncoding::busy(440.0, 0.0)?)
        },
        weak_links,
        ice_addresses: config.ice_addresses.clone(),
        canvas_fps: 30.0,
        origin: Instant::now(),
    })
}

/// The shaped links `--weak` asks for; none, with a message, when this
/// process may not make them.
fn weak_links(config: &BenchConfig) -> Result<Vec<shaped_link::ShapedLink>> {
    if config.weak == 0 || !config.modes.contains(&Mode::Mcu) {
        return Ok(Vec::new());
    }
    if config.server.is_some() {
        eprintln!(
            "--weak needs the bench's own server (its ICE must reach the links): the weak runs are skipped"
        );
        return Ok(Vec::new());
    }
    let mut links = Vec::new();
    for _ in 0..config.weak {
        match shaped_link::ShapedLink::create(weak::WEAK_LINK_KBPS) {
            Ok(link) => links.push(link),
            Err(shaped_link::LinkError::NotPermitted(why)) => {
                eprintln!("{why}: the weak runs are skipped");
                return Ok(Vec::new());
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(links)
}

fn unix_stamp() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The churn soak: `cycles` rooms of the first mode and participant count
/// of `config`, one after another; writes churn.json and churn.md.
pub async fn run_churn(config: BenchConfig, cycles: usize) -> Result<churn::ChurnResults> {
    let context = start_context(&config).await?;
    let spec = churn::ChurnSpec {
        cycles,
        mode: config.modes.first().copied().unwrap_or(Mode::Mcu),
        participants: config.participants.first().copied().unwrap_or(4),
        hold: Duration::from_secs(6),
    };
    let results = churn::run(spec, &context, unix_stamp()).await?;
    std::fs::write(
        config.out.join("churn.json"),
        serde_json::to_string_pretty(&results)?,
    )
    .context("writing churn.json")?;
    std::fs::write(config.out.join("churn.md"), results.markdown()).context("writing churn.md")?;
    drop(context);
    Ok(results)
}

/// Runs every mode at every participant count and writes the results.
pub async fn run(config: BenchConfig) -> Result<BenchResults> {
    let context = start_context(&config).await?;
    let mut specs = Vec::new();
    for &mode in &config.modes {
        let layouts: Vec<Option<LayoutKind>> = match mode {
            Mode::Mcu => config.layouts.iter().copied().map(Some).collect(),
            _ => vec![None],
        };
        for layout in layouts {
            for &participants in &config.participants {
                let spec = RunSpec {
                    mode,
                    layout,
                    participants,
                    duration: config.duration,
                    settle_timeout: Duration::from_secs(20)
                        + Duration::from_millis(500) * participants as u32,
                    warm_up: Duration::from_secs(2),
                    weak: 0,
                    busy: false,
                };
                let weak = context.weak_links.len();
                if mode == Mode::Mcu && weak > 0 {
                    // The same room without and with weak participants,
                    // both with a picture that needs the rungs' full rates.
                    // With them, time to be moved to the rung their links
                    // carry before the window opens.
                    specs.push(RunSpec { busy: true, ..spec });
                    specs.push(RunSpec {
                        busy: true,
                        weak,
                        warm_up: Duration::from_secs(15),
                        ..spec
                    });
                } else {
                    specs.push(spec);
                }
            }
        }
    }
    let progress = if config.progress {
        ProgressBar::new(specs.len() as u64)
    } else {
        ProgressBar::hidden()
    };
    progress.set_style(
        ProgressStyle::with_template(
            "[{elapsed_precise}] {bar:30} {pos}/{len} runs, about {eta} left: {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut runs = Vec::new();
    let stamp = unix_stamp();
    for (i, spec) in specs.iter().enumerate() {
        let what = match spec.layout {
            Some(layout) => format!("{} ({layout:?})", spec.mode),
            None => spec.mode.to_string(),
        };
        progress.set_message(format!("{what} with {} participants", spec.participants));
        let room = format!("bench-{}-{}-{stamp}-{i}", spec.mode, spec.participants);
        let result = run::run(*spec, &context, &room).await;
        if let Some(reason) = &result.failure {
            progress.println(format!(
                "{what} with {} participants failed: {reason}",
                spec.participants
            ));
        }
        runs.push(result);
        progress.inc(1);
    }
    progress.finish_with_message("done");
    let results = BenchResults {
        sfu_cost_fit: BenchResults::fit_sfu_costs(&runs),
        machine: Machine::this_one(),
        settings: Settings {
            duration_s: config.duration.as_secs_f64(),
            server: config
                .server
                .clone()
                .unwrap_or_else(|| "child process".into()),
            video: "640x360 30 fps VP8, ~600 kbit/s".into(),
            audio: "Opus 48 kHz, 20 ms frames".into(),
            probes_per_run: PROBES,
        },
        runs,
    };
    report::write_all(&results, &config.out)?;
    drop(context);
    Ok(results)
}
