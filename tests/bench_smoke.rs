//! A short `gridmix bench` through the real command line: every mode with 2
//! participants for a few seconds. Checks the shape of what it writes, that
//! latency timecodes were read, and that every figure is within what a
//! working run can produce (no zero frame rates, no absurd latencies, figures
//! consistent with each other); asserts no speed.

use serde_json::Value;
use std::process::Command;

const RUN_FIELDS: &[(&str, &[&str])] = &[
    (
        "server",
        &[
            "cpu_percent",
            "cpu_percent_per_participant",
            "peak_rss_mib",
            "peak_threads",
            "threads_per_participant",
            "packets_out",
            "cpu_us_per_packet_out",
            "unavailable",
        ],
    ),
    (
        "clients",
        &[
            "uplink_kbps_per_participant",
            "downlink_kbps_per_participant",
            "video_streams_per_participant",
            "received_fps",
            "freezes",
            "load_generator_cpu_percent",
        ],
    ),
    ("latency_ms", &["p50", "p95", "max", "samples", "rejected"]),
    ("join_ms", &["p50", "p95", "samples"]),
    (
        "mcu_output",
        &["target_fps", "received_fps", "dropped_frames"],
    ),
    (
        "room",
        &[
            "audio_encoders",
            "audio_mixers",
            "videos_decoded",
            "audio_decoded",
            "mixed_speakers",
        ],
    ),
    (
        "speaker_switches",
        &["switches", "longest_gap_ms", "frames_missed"],
    ),
];

#[test]
fn a_short_bench_of_every_mode_writes_every_figure() {
    let out = std::env::temp_dir().join(format!("gridmix-bench-smoke-{}", std::process::id()));
    let status = Command::new(env!("CARGO_BIN_EXE_gridmix"))
        .args([
            "bench",
            "--modes",
            "mcu,sfu,mesh",
            "--participants",
            "2",
            "--duration",
            "3",
        ])
        .arg("--out")
        .arg(&out)
        .status()
        .expect("gridmix bench runs");
    assert!(status.success(), "gridmix bench failed: {status}");

    let results: Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("results.json")).expect("results.json"),
    )
    .expect("JSON");
    for field in [
        "cpu_model",
        "cores",
        "gstreamer",
        "gridmix_version",
        "git_commit",
        "os",
    ] {
        assert!(
            !results["machine"][field].is_null(),
            "machine.{field} missing"
        );
    }
    let machine = &results["machine"];
    assert!(
        machine["cores"].as_u64().is_some_and(|c| c >= 1),
        "{machine}"
    );
    assert!(
        machine["gstreamer"]
            .as_str()
            .is_some_and(|g| g.starts_with("GStreamer 1.")),
        "{machine}"
    );
    // One SFU size cannot split per-packet from per-participant cost.
    assert!(
        results
            .as_object()
            .is_some_and(|r| r.contains_key("sfu_cost_fit") && r["sfu_cost_fit"].is_null()),
        "sfu_cost_fit: {}",
        results["sfu_cost_fit"]
    );
    let runs = results["runs"].as_array().expect("runs");
    let modes: Vec<&str> = runs.iter().filter_map(|r| r["mode"].as_str()).collect();
    assert_eq!(modes, ["mcu", "sfu", "mesh"]);
    for run in runs {
        let mode = run["mode"].as_str().unwrap_or_default();
        assert_eq!(run["ok"], true, "{mode} run failed: {}", run["failure"]);
        assert_eq!(run["participants"], 2);
        for (group, fields) in RUN_FIELDS {
            let object = run[group]
                .as_object()
                .unwrap_or_else(|| panic!("{mode}: {group} missing"));
            for field in *fields {
                assert!(
                    object.contains_key(*field),
                    "{mode}: {group}.{field} missing"
                );
            }
        }
        check_ranges(mode, run);
    }
    for file in [
        "results.md",
        "server-cpu.svg",
        "downlink.svg",
        "latency.svg",
    ] {
        let written = std::fs::read_to_string(out.join(file)).unwrap_or_default();
        let whole = match file {
            // A section per mode, each with its one row of 2 participants.
            "results.md" => {
                ["## MCU", "## SFU", "## MESH"]
                    .iter()
                    .all(|m| written.contains(m))
                    && written.lines().filter(|l| l.starts_with("| 2 |")).count() == 3
            }
            _ => written.contains("<svg") && written.trim_end().ends_with("</svg>"),
        };
        assert!(whole, "{file} not written whole: {written:.200}");
    }
    let _ = std::fs::remove_dir_all(&out);
}

/// A number, or a panic naming the figure.
fn number(run: &Value, group: &str, field: &str) -> f64 {
    run[group][field]
        .as_f64()
        .unwrap_or_else(|| panic!("{}: {group}.{field} is {}", run["mode"], run[group][field]))
}

fn within(mode: &str, what: &str, value: f64, range: std::ops::RangeInclusive<f64>) {
    assert!(
        range.contains(&value),
        "{mode}: {what} is {value}, outside what a working run gives ({range:?})"
    );
}

/// The bounds any working 2-participant, 3-second run is in, on any machine
/// that can hold the call at all: the bots send 640x360 at 30 fps (about
/// 300 kbit/s with audio); the MCU composite is made at 30 fps.
fn check_ranges(mode: &str, run: &Value) {
    let participants = 2.0;
    let measured = run["measured_s"].as_f64().expect("measured_s");
    within(mode, "measured_s", measured, 3.0..=10.0);

    let cpu = number(run, "server", "cpu_percent");
    // A mesh server only relays signaling: under one clock tick in 3 s.
    let least = if mode == "mesh" { 0.0 } else { 0.01 };
    within(mode, "server CPU %", cpu, least..=100.0 * 64.0);
    let per = number(run, "server", "cpu_percent_per_participant");
    within(
        mode,
        "CPU % per participant x participants",
        per * participants,
        cpu * 0.99..=cpu * 1.01,
    );
    within(
        mode,
        "peak RSS MiB",
        number(run, "server", "peak_rss_mib"),
        10.0..=4096.0,
    );
    within(
        mode,
        "peak threads",
        number(run, "server", "peak_threads"),
        2.0..=10_000.0,
    );
    match mode {
        "mesh" => {
            // The server forwards nothing in a mesh room.
            assert!(run["server"]["packets_out"].is_null(), "{run}");
            assert!(run["server"]["cpu_us_per_packet_out"].is_null(), "{run}");
        }
        _ => {
            // At least the video of 3 s at 30 fps, one packet a frame or more.
            let packets = number(run, "server", "packets_out");
            within(mode, "packets out", packets, 90.0..=1e6);
            let per_packet = number(run, "server", "cpu_us_per_packet_out");
            within(mode, "CPU µs per packet", per_packet, 0.01..=1e6);
        }
    }

    let up = number(run, "clients", "uplink_kbps_per_participant");
    within(mode, "uplink kbit/s", up, 50.0..=5000.0);
    let down = number(run, "clients", "downlink_kbps_per_participant");
    within(mode, "downlink kbit/s", down, 50.0..=5000.0);
    if mode != "mcu" {
        // Forwarded untouched: each gets what the other sends.
        within(mode, "downlink / uplink", down / up, 0.8..=1.2);
    }
    // MCU: the composite; SFU and mesh: the one other participant.
    within(
        mode,
        "video streams per participant",
        number(run, "clients", "video_streams_per_participant"),
        1.0..=1.0,
    );
    within(
        mode,
        "received fps",
        number(run, "clients", "received_fps"),
        5.0..=31.0,
    );
    let freezes = number(run, "clients", "freezes");
    within(mode, "freezes", freezes, 0.0..=100.0);
    assert_eq!(freezes.fract(), 0.0, "{mode}: freezes are counted");
    within(
        mode,
        "load generator CPU %",
        number(run, "clients", "load_generator_cpu_percent"),
        0.01..=100.0 * 64.0,
    );

    let (p50, p95, max) = (
        number(run, "latency_ms", "p50"),
        number(run, "latency_ms", "p95"),
        number(run, "latency_ms", "max"),
    );
    within(mode, "latency p50", p50, 0.0..=5000.0);
    assert!(
        p50 <= p95 && p95 <= max,
        "{mode}: latency {p50} / {p95} / {max}"
    );
    // Timecodes read from 3 s of video at 30 fps: most frames.
    let samples = number(run, "latency_ms", "samples");
    within(mode, "latency samples", samples, 30.0..=1000.0);
    within(
        mode,
        "latency rejected",
        number(run, "latency_ms", "rejected"),
        0.0..=samples,
    );

    let (join50, join95) = (number(run, "join_ms", "p50"), number(run, "join_ms", "p95"));
    within(mode, "join p50", join50, 1.0..=30_000.0);
    assert!(join50 <= join95, "{mode}: join {join50} / {join95}");
    within(
        mode,
        "join samples",
        number(run, "join_ms", "samples"),
        1.0..=participants,
    );

    match mode {
        "mcu" => {
            within(
                mode,
                "target fps",
                number(run, "mcu_output", "target_fps"),
                30.0..=30.0,
            );
            within(
                mode,
                "MCU output fps",
                number(run, "mcu_output", "received_fps"),
                5.0..=31.0,
            );
            let dropped = number(run, "mcu_output", "dropped_frames");
            within(mode, "dropped frames", dropped, 0.0..=90.0);
            assert_eq!(run["layout"], "grid", "{run}");
            // Both talk, so both are mixed: a mix for each and the mix of
            // everyone (which nobody hears); both videos on the composite.
            within(
                mode,
                "Opus encoders",
                number(run, "room", "audio_encoders"),
                3.0..=3.0,
            );
            within(
                mode,
                "mixed speakers",
                number(run, "room", "mixed_speakers"),
                2.0..=2.0,
            );
            within(
                mode,
                "videos decoded",
                number(run, "room", "videos_decoded"),
                2.0..=2.0,
            );
        }
        _ => {
            for field in ["target_fps", "received_fps", "dropped_frames"] {
                assert!(run["mcu_output"][field].is_null(), "{mode}: {field} {run}");
            }
        }
    }
}

/// The churn soak runs and reports the server once each room is gone: RSS,
/// threads and descriptors per cycle, after a baseline. (What the figures
/// are is the bench's to report, not this test's to judge: on a loaded
/// machine a room's teardown can still be under way when they are read.)
#[test]
fn the_churn_soak_reports_the_server_after_every_room() {
    let out = std::env::temp_dir().join(format!("gridmix-churn-smoke-{}", std::process::id()));
    let status = Command::new(env!("CARGO_BIN_EXE_gridmix"))
        .args([
            "bench",
            "--churn",
            "3",
            "--modes",
            "mcu",
            "--participants",
            "2",
        ])
        .arg("--out")
        .arg(&out)
        .status()
        .expect("gridmix bench --churn runs");
    assert!(status.success(), "gridmix bench --churn failed: {status}");
    let churn: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("churn.json")).expect("churn.json"))
            .expect("JSON");
    let cycles = churn["cycles"].as_array().expect("cycles");
    assert_eq!(cycles.len(), 3, "{churn}");
    for (n, cycle) in cycles.iter().enumerate() {
        assert_eq!(cycle["cycle"].as_u64(), Some(n as u64 + 1), "{cycle}");
    }
    for cycle in cycles.iter().chain([&churn["baseline"]]) {
        assert!(
            cycle["rss_mib"].as_f64().is_some_and(|r| r > 1.0),
            "{cycle}"
        );
        assert!(cycle["threads"].as_u64().is_some_and(|t| t > 0), "{cycle}");
        assert!(
            cycle["descriptors"].as_u64().is_some_and(|d| d > 0),
            "{cycle}"
        );
    }
    let table = std::fs::read_to_string(out.join("churn.md")).expect("churn.md");
    assert!(
        table.contains("| cycle | RSS MiB | threads | descriptors |"),
        "{table}"
    );
    let _ = std::fs::remove_dir_all(&out);
}
