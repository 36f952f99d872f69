//! The bench's outputs: results.json (every figure), results.md (a table
//! per mode) and SVG charts (one line per mode).

use super::results::{BenchResults, RunResult};
use crate::protocol::{LayoutKind, Mode};
use anyhow::{Context, Result};
use plotters::prelude::*;
use std::fmt::Write as _;
use std::path::Path;

pub fn write_all(results: &BenchResults, dir: &Path) -> Result<()> {
    let json = serde_json::to_string_pretty(results)?;
    std::fs::write(dir.join("results.json"), json).context("writing results.json")?;
    std::fs::write(dir.join("results.md"), markdown(results)).context("writing results.md")?;
    for chart in &CHARTS {
        draw_chart(results, chart, &dir.join(chart.file))
            .with_context(|| format!("drawing {}", chart.file))?;
    }
    Ok(())
}

fn cell(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "–".to_owned(), |v| format!("{v:.decimals$}"))
}

/// The MCU table's own columns.
const MCU_HEAD: &str = " Layout | Threads per participant | Opus encoders | Audio mixers | Mixed speakers \
     | Videos decoded | Voices decoded | Speaker switches: longest gap ms (frames missed) |";

fn mcu_cells(r: &RunResult) -> String {
    let count = |v: Option<u64>| v.map_or("–".into(), |v| v.to_string());
    let switches = &r.speaker_switches;
    format!(
        " {} | {} | {} | {} | {} | {} | {} | {}: {} ({}) |",
        r.layout.map_or("–", |l| l.as_str()),
        cell(r.server.threads_per_participant, 1),
        count(r.room.audio_encoders),
        count(r.room.audio_mixers),
        count(r.room.mixed_speakers),
        count(r.room.videos_decoded),
        count(r.room.audio_decoded),
        switches.switches,
        cell(switches.longest_gap_ms, 0),
        count(switches.frames_missed),
    )
}

/// A table per mode: participants against each figure.
pub fn markdown(results: &BenchResults) -> String {
    let m = &results.machine;
    let mut out = format!(
        "# gridmix bench\n\nMachine: {} ({} cores), {}, {}, gridmix {} ({}).\n\
         Each run: {} s measured; participants send {} and {}.\n",
        m.cpu_model,
        m.cores,
        m.os,
        m.gstreamer,
        m.gridmix_version,
        m.git_commit,
        results.settings.duration_s,
        results.settings.video,
        results.settings.audio
    );
    for mode in [Mode::Mcu, Mode::Sfu, Mode::Mesh] {
        let runs: Vec<&RunResult> = results.runs.iter().filter(|r| r.mode == mode).collect();
        if runs.is_empty() {
            continue;
        }
        let mcu = mode == Mode::Mcu;
        let _ = write!(
            out,
            "\n## {}\n\n| Participants | Server CPU % of a core | per participant | Peak RSS MiB | Threads | µs CPU per packet out \
             | Uplink kbit/s | Downlink kbit/s | Received fps | Freezes | Latency p50 / p95 / max ms (samples, rejected) \
             | Join p50 / p95 ms | MCU output fps (dropped) | Load generator CPU % |{}\n\
             |---|---|---|---|---|---|---|---|---|---|---|---|---|---|{}\n",
            mode.to_string().to_uppercase(),
            if mcu { MCU_HEAD } else { "" },
            if mcu {
                "---|---|---|---|---|---|---|"
            } else {
                ""
            },
        );
        for r in runs {
            if let Some(reason) = &r.failure {
                let _ = writeln!(
                    out,
                    "| {} | failed: {} |||||||||||||",
                    r.participants,
                    reason.replace('|', "/")
                );
                continue;
            }
            let l = &r.latency_ms;
            let mcu_fps = match r.mcu_output.received_fps {
                Some(fps) => format!("{fps:.1} ({})", r.mcu_output.dropped_frames.unwrap_or(0)),
                None => "–".into(),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} / {} / {} ({}, {}) | {} / {} | {} | {} |{}",
                r.participants,
                cell(r.server.cpu_percent, 1),
                cell(r.server.cpu_percent_per_participant, 1),
                cell(r.server.peak_rss_mib, 0),
                r.server.peak_threads.map_or("–".into(), |t| t.to_string()),
                cell(r.server.cpu_us_per_packet_out, 1),
                cell(r.clients.uplink_kbps_per_participant, 0),
                cell(r.clients.downlink_kbps_per_participant, 0),
                cell(r.clients.received_fps, 1),
                r.clients.freezes.map_or("–".into(), |f| f.to_string()),
                cell(l.p50, 0),
                cell(l.p95, 0),
                cell(l.max, 0),
                l.samples,
                l.rejected,
                cell(r.join_ms.p50, 0),
                cell(r.join_ms.p95, 0),
                mcu_fps,
                cell(r.clients.load_generator_cpu_percent, 0),
                if mcu { mcu_cells(r) } else { String::new() },
            );
        }
        if mcu {
            out += &weak_table(&results.runs);
        }
        if let (Mode::Sfu, Some(fit)) = (mode, &results.sfu_cost_fit) {
            let _ = writeln!(
                out,
                "\nFitted over the {} SFU runs (CPU = a × packets forwarded + b × participants): \
                 **{:.1} µs per forwarded packet** and **{:.1} ms of CPU per second per participant** \
                 (worst run {:.1} % of a core off the fit).",
                fit.runs,
                fit.us_per_packet_out,
                fit.ms_per_second_per_participant,
                fit.worst_residual_percent
            );
        }
    }
    out
}

struct Chart {
    file: &'static str,
    title: &'static str,
    y_label: &'static str,
    value: fn(&RunResult) -> Option<f64>,
}

const CHARTS: [Chart; 3] = [
    Chart {
        file: "server-cpu.svg",
        title: "Server CPU against participants",
        y_label: "% of one core",
        value: |r| r.server.cpu_percent,
    },
    Chart {
        file: "downlink.svg",
        title: "Downlink per client against participants",
        y_label: "kbit/s",
        value: |r| r.clients.downlink_kbps_per_participant,
    },
    Chart {
        file: "latency.svg",
        title: "Glass-to-glass latency (p95) against participants",
        y_label: "ms",
        value: |r| r.latency_ms.p95,
    },
];

/// The lines of a chart: one per mode, and the MCU's speaker-layout runs
/// apart from its grid ones.
const SERIES: [(Mode, Option<LayoutKind>, &str); 4] = [
    (Mode::Mcu, None, "MCU"),
    (Mode::Mcu, Some(LayoutKind::Speaker), "MCU speaker"),
    (Mode::Sfu, None, "SFU"),
    (Mode::Mesh, None, "MESH"),
];

fn in_series(r: &RunResult, mode: Mode, layout: Option<LayoutKind>) -> bool {
    let speaker = r.layout == Some(LayoutKind::Speaker);
    r.mode == mode && speaker == (layout == Some(LayoutKind::Speaker))
}

fn draw_chart(results: &BenchResults, chart: &Chart, path: &Path) -> Result<()> {
    let series: Vec<(&str, Vec<(f64, f64)>)> = SERIES
        .into_iter()
        .map(|(mode, layout, label)| {
            let points = results
                .runs
                .iter()
                .filter(|r| r.ok && in_series(r, mode, layout))
                .filter_map(|r| Some((r.participants as f64, (chart.value)(r)?)))
                .collect();
            (label, points)
        })
        .collect();
    let all = series.iter().flat_map(|(_, p)| p.iter());
    let x_max = all.clone().map(|p| p.0).fold(2.0, f64::max);
    let y_max = all.map(|p| p.1).fold(1.0, f64::max) * 1.1;
    let root = SVGBackend::new(path, (720, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut plot = ChartBuilder::on(&root)
        .caption(chart.title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(0f64..x_max + 1.0, 0f64..y_max)?;
    plot.configure_mesh()
        .x_desc("participants")
        .y_desc(chart.y_label)
        .draw()?;
    for ((label, points), colour) in series.iter().zip([RED, MAGENTA, BLUE, GREEN]) {
        if points.is_empty() {
            continue;
        }
        plot.draw_series(LineSeries::new(
            points.iter().copied(),
            colour.stroke_width(2),
        ))?
        .label(*label)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2)));
        plot.draw_series(points.iter().map(|&p| Circle::new(p, 3, colour.filled())))?;
    }
    plot.configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()?;
    root.present()?;
    Ok(())
}

/// The MCU runs with weak participants, beside the same size without.
fn weak_table(runs: &[RunResult]) -> String {
    let with_weak: Vec<&RunResult> = runs
        .iter()
        .filter(|r| r.mode == Mode::Mcu && r.weak.is_some())
        .collect();
    if with_weak.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "\n### Weak receivers (behind a shaped link)\n\n| Participants | Weak | Link kbit/s | Weak: kbit/s | fps | Freezes (longest ms) \
         | Rung switches | Rungs at the end | Normal: kbit/s | fps | Freezes | Latency p95 ms | Rung switches | Server CPU % \
         | Same size without weak: normal kbit/s | fps | Server CPU % |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in with_weak {
        let Some(w) = &r.weak else { continue };
        let without = runs.iter().find(|o| {
            o.mode == Mode::Mcu
                && o.weak.is_none()
                && o.participants == r.participants
                && o.layout == r.layout
                && o.ok
        });
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} ({}) | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.participants,
            w.receivers,
            w.link_kbps,
            cell(w.received_kbps, 0),
            cell(w.received_fps, 1),
            w.freezes,
            w.longest_freeze_ms.map_or("–".into(), |g| g.to_string()),
            w.rung_switches,
            w.rungs.join(", "),
            cell(r.clients.downlink_kbps_per_participant, 0),
            cell(r.clients.received_fps, 1),
            r.clients.freezes.map_or("–".into(), |f| f.to_string()),
            cell(r.latency_ms.p95, 0),
            r.normal_rung_switches.map_or("–".into(), |s| s.to_string()),
            cell(r.server.cpu_percent, 1),
            cell(
                without.and_then(|o| o.clients.downlink_kbps_per_participant),
                0
            ),
            cell(without.and_then(|o| o.clients.received_fps), 1),
            cell(without.and_then(|o| o.server.cpu_percent), 1),
        );
    }
    out
}
