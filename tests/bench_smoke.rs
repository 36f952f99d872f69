//! A short `gridmix bench` through the real command line: every mode with 2
//! participants for a few seconds. Checks the shape of what it writes and
//! that latency timecodes were read; asserts no timing.

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
        // Figures every mode measures on a child server.
        for (group, field) in [
            ("server", "cpu_percent"),
            ("server", "peak_rss_mib"),
            ("clients", "uplink_kbps_per_participant"),
            ("clients", "downlink_kbps_per_participant"),
            ("clients", "received_fps"),
            ("latency_ms", "p50"),
            ("join_ms", "p50"),
        ] {
            assert!(
                run[group][field].is_number(),
                "{mode}: {group}.{field} is {}",
                run[group][field]
            );
        }
        let samples = run["latency_ms"]["samples"].as_u64().unwrap_or(0);
        assert!(
            samples > 0,
            "{mode}: no latency sample was read ({} rejected)",
            run["latency_ms"]["rejected"]
        );
    }
    assert!(
        runs[0]["mcu_output"]["received_fps"].is_number(),
        "MCU output frame rate missing"
    );
    assert!(
        runs[1]["server"]["cpu_us_per_packet_out"].is_number(),
        "SFU CPU per packet missing"
    );
    for file in [
        "results.md",
        "server-cpu.svg",
        "downlink.svg",
        "latency.svg",
    ] {
        let written = std::fs::read_to_string(out.join(file)).unwrap_or_default();
        assert!(!written.is_empty(), "{file} not written");
    }
    let _ = std::fs::remove_dir_all(&out);
}
