//! The churn soak (`gridmix bench --churn CYCLES`): a room of load
//! participants is opened, held for a while and emptied, again and again,
//! and the server's memory, threads and descriptors are read once each room
//! is gone. A server that hosts rooms all day must come back to the same
//! figures every cycle; what it keeps per room shows as a rising line.

use super::run::BenchContext;
use crate::bot::{Bot, BotConfig};
use crate::protocol::Mode;
use anyhow::{Context, Result, bail};
use serde::Serialize;
use std::fmt::Write;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub struct ChurnSpec {
    pub cycles: usize,
    pub mode: Mode,
    pub participants: usize,
    /// How long each room is held with everyone in it.
    pub hold: Duration,
}

/// The server once one cycle's room is gone.
#[derive(Debug, Clone, Serialize)]
pub struct ChurnCycle {
    pub cycle: usize,
    pub rss_mib: f64,
    pub threads: u64,
    pub descriptors: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChurnResults {
    pub mode: Mode,
    pub participants: usize,
    pub hold_s: f64,
    /// Before the first room.
    pub baseline: ChurnCycle,
    pub cycles: Vec<ChurnCycle>,
}

impl ChurnResults {
    /// RSS growth per cycle over the second half of the soak (the first
    /// rooms fill caches and pools once), MiB.
    pub fn late_growth_per_cycle(&self) -> Option<f64> {
        let half = &self.cycles[self.cycles.len() / 2..];
        let (first, last) = (half.first()?, half.last()?);
        (last.cycle > first.cycle)
            .then(|| (last.rss_mib - first.rss_mib) / (last.cycle - first.cycle) as f64)
    }

    pub fn markdown(&self) -> String {
        let mut out = format!(
            "# gridmix bench --churn\n\n{} cycles of a {} room of {} load participants held {:.0} s, \
             read once the room is gone.\n\n| cycle | RSS MiB | threads | descriptors |\n|---|---|---|---|\n",
            self.cycles.len(),
            self.mode,
            self.participants,
            self.hold_s
        );
        for c in std::iter::once(&self.baseline).chain(&self.cycles) {
            let fds = c
                .descriptors
                .map_or_else(|| "–".to_owned(), |d| d.to_string());
            let _ = writeln!(
                out,
                "| {} | {:.1} | {} | {fds} |",
                c.cycle, c.rss_mib, c.threads
            );
        }
        if let Some(growth) = self.late_growth_per_cycle() {
            let _ = writeln!(
                out,
                "\nRSS growth over the second half: {growth:+.1} MiB per cycle."
            );
        }
        out
    }
}

pub async fn run(spec: ChurnSpec, context: &BenchContext, stamp: u64) -> Result<ChurnResults> {
    if context.server.sample().is_none() {
        bail!("the churn soak reads the server's memory: run it with a child server (no --server)");
    }
    let baseline = read(context, 0)?;
    let mut cycles = Vec::new();
    for cycle in 1..=spec.cycles {
        let room = format!("churn-{stamp}-{cycle}");
        let mut bots = Vec::new();
        for index in 0..spec.participants {
            let mut config = BotConfig::new(
                &context.server.ws_url,
                &room,
                &format!("c{index}"),
                0x808080,
                440.0,
            );
            config.mode = spec.mode;
            config.ice_addresses = context.ice_addresses.clone();
            config.decode = false;
            config.shared_encoding = Some(context.load.clone());
            bots.push(
                Bot::join(config).await.with_context(|| {
                    format!("cycle {cycle}: participant {index} could not join")
                })?,
            );
        }
        // The soak holds the room for its length of time; nothing waits on it.
        tokio::time::sleep(spec.hold).await;
        for bot in bots {
            bot.leave().await;
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while context.server.has_room(&room).await? {
            if Instant::now() > deadline {
                bail!("cycle {cycle}: room {room} was still open 20 s after everyone left");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let figures = settled(context, cycle).await?;
        tracing::info!(
            "churn cycle {cycle}: {:.1} MiB, {} threads",
            figures.rss_mib,
            figures.threads
        );
        cycles.push(figures);
    }
    Ok(ChurnResults {
        mode: spec.mode,
        participants: spec.participants,
        hold_s: spec.hold.as_secs_f64(),
        baseline,
        cycles,
    })
}

/// The server's figures once its threads and descriptors hold still for a
/// second: a room's pipeline is still being taken down for a while after
/// the room is no longer listed (longer on a loaded machine, where a
/// quarter of a second without change was seen mid-teardown).
async fn settled(context: &BenchContext, cycle: usize) -> Result<ChurnCycle> {
    const STILL_READS: usize = 4;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = read(context, cycle)?;
    let mut still = 0;
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = read(context, cycle)?;
        if now.threads == last.threads && now.descriptors == last.descriptors {
            still += 1;
        } else {
            still = 0;
        }
        if still >= STILL_READS || Instant::now() > deadline {
            return Ok(now);
        }
        last = now;
    }
}

fn read(context: &BenchContext, cycle: usize) -> Result<ChurnCycle> {
    let sample = context
        .server
        .sample()
        .context("no child server to read")??;
    Ok(ChurnCycle {
        cycle,
        rss_mib: sample.rss_bytes as f64 / (1024.0 * 1024.0),
        threads: sample.threads,
        descriptors: context.server.descriptors(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cycle(cycle: usize, rss_mib: f64) -> ChurnCycle {
        ChurnCycle {
            cycle,
            rss_mib,
            threads: 10,
            descriptors: Some(20),
        }
    }

    #[test]
    fn growth_is_read_over_the_second_half() {
        let results = ChurnResults {
            mode: Mode::Mcu,
            participants: 4,
            hold_s: 6.0,
            baseline: cycle(0, 50.0),
            // Warm-up growth first, then 2 MiB a cycle.
            cycles: vec![
                cycle(1, 90.0),
                cycle(2, 100.0),
                cycle(3, 102.0),
                cycle(4, 104.0),
            ],
        };
        assert_eq!(results.late_growth_per_cycle(), Some(2.0));
        let table = results.markdown();
        assert!(table.contains("| 0 | 50.0 | 10 | 20 |"), "{table}");
        assert!(table.contains("+2.0 MiB per cycle"), "{table}");
        let one = ChurnResults {
            cycles: vec![cycle(1, 90.0)],
            ..results
        };
        assert_eq!(one.late_growth_per_cycle(), None);
    }
}
