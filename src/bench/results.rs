//! What a bench run measured, as written to results.json. Every field is
//! always present (null when it could not be measured), so readers and the
//! smoke test can rely on the shape.

use super::fit::{CostFit, CostSample, fit_costs};
use super::summary::Percentiles;
use crate::protocol::Mode;
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct BenchResults {
    pub machine: Machine,
    pub settings: Settings,
    pub runs: Vec<RunResult>,
    /// The SFU runs' CPU split into a cost per forwarded packet and a cost
    /// per participant (`fit.rs`); null with fewer than two SFU sizes.
    pub sfu_cost_fit: Option<CostFit>,
}

impl BenchResults {
    /// The fit of the SFU runs that measured their server.
    pub fn fit_sfu_costs(runs: &[RunResult]) -> Option<CostFit> {
        let samples: Vec<CostSample> = runs
            .iter()
            .filter(|r| r.ok && r.mode == Mode::Sfu)
            .filter_map(|r| {
                let seconds = r.measured_s?;
                Some(CostSample {
                    cores: r.server.cpu_percent? / 100.0,
                    packets_per_second: r.server.packets_out? as f64 / seconds,
                    participants: r.participants as f64,
                })
            })
            .collect();
        fit_costs(&samples)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpu_model: String,
    pub cores: usize,
    pub gstreamer: String,
    pub gridmix_version: String,
    pub git_commit: String,
    pub os: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub duration_s: f64,
    /// "child process" or the URL of an external server.
    pub server: String,
    pub video: String,
    pub audio: String,
    pub probes_per_run: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    pub mode: Mode,
    /// The composite's layout (MCU runs).
    pub layout: Option<crate::protocol::LayoutKind>,
    pub participants: usize,
    pub ok: bool,
    /// Why the run failed, when it did.
    pub failure: Option<String>,
    /// Length of the measured window, seconds.
    pub measured_s: Option<f64>,
    pub server: ServerFigures,
    pub clients: ClientFigures,
    pub latency_ms: LatencyFigures,
    pub join_ms: JoinFigures,
    pub mcu_output: McuOutputFigures,
    pub room: RoomFigures,
    pub speaker_switches: SwitchFigures,
    /// Participants behind a shaped link (`--weak`), in runs that have them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weak: Option<WeakFigures>,
    /// The loopback participants' rung switches in the window (MCU).
    pub normal_rung_switches: Option<u64>,
}

/// What the participants behind a shaped link received in the window.
/// Their latency is not measured: it is read from timecodes, which only
/// the bench's in-process probes decode.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct WeakFigures {
    pub receivers: usize,
    /// What each one's link carries to it, kbit/s.
    pub link_kbps: u32,
    /// Video kbit/s and frames per second each received, mean.
    pub received_kbps: Option<f64>,
    pub received_fps: Option<f64>,
    /// Gaps between frames over 200 ms, in all, and the longest.
    pub freezes: u64,
    pub longest_freeze_ms: Option<u64>,
    /// Moves to another rung the room API showed in the window.
    pub rung_switches: u64,
    /// The rung each was on at the end.
    pub rungs: Vec<String>,
}

/// What the room itself reported in the window (`/api/rooms`, read from
/// its pipeline), the most seen at once.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RoomFigures {
    pub audio_encoders: Option<u64>,
    pub audio_mixers: Option<u64>,
    pub videos_decoded: Option<u64>,
    pub audio_decoded: Option<u64>,
    pub mixed_speakers: Option<u64>,
}

impl RoomFigures {
    /// One reading of the room's description from `/api/rooms`.
    pub fn see(&mut self, room: &serde_json::Value) {
        let most = |kept: &mut Option<u64>, value: Option<u64>| {
            if let Some(v) = value {
                *kept = Some(kept.map_or(v, |k| k.max(v)));
            }
        };
        most(&mut self.audio_encoders, room["audio_encoders"].as_u64());
        most(&mut self.audio_mixers, room["audio_mixers"].as_u64());
        most(&mut self.videos_decoded, room["videos_decoded"].as_u64());
        most(&mut self.audio_decoded, room["audio_decoded"].as_u64());
        most(
            &mut self.mixed_speakers,
            room["mixed"].as_array().map(|a| a.len() as u64),
        );
    }
}

/// Changes of dominant speaker the first probe was told of in the window,
/// and the longest gap between composite frames it decoded around one
/// (from half a second before to a second and a half after).
#[derive(Debug, Clone, Default, Serialize)]
pub struct SwitchFigures {
    pub switches: u64,
    pub longest_gap_ms: Option<f64>,
    /// That gap in frames missed at the canvas rate (0: none).
    pub frames_missed: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ServerFigures {
    /// User + system CPU over the window, % of one core.
    pub cpu_percent: Option<f64>,
    pub cpu_percent_per_participant: Option<f64>,
    /// Peak resident memory during the window, MiB.
    pub peak_rss_mib: Option<f64>,
    pub peak_threads: Option<u64>,
    pub threads_per_participant: Option<f64>,
    /// RTP packets the participants received from the server in the window
    /// (SFU: forwarded packets; MCU: packets of the composites and mixes).
    pub packets_out: Option<u64>,
    /// Server CPU time per packet it sent, microseconds.
    pub cpu_us_per_packet_out: Option<f64>,
    /// Why the server figures are missing, when they are.
    pub unavailable: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ClientFigures {
    /// RTP payload bitrate each participant sent (all its connections), mean.
    pub uplink_kbps_per_participant: Option<f64>,
    /// RTP bitrate each participant received, mean.
    pub downlink_kbps_per_participant: Option<f64>,
    /// Video streams each participant received, mean.
    pub video_streams_per_participant: Option<f64>,
    /// Complete video frames per second per received stream, mean.
    pub received_fps: Option<f64>,
    /// Gaps of more than 200 ms between frames of a received stream, all
    /// streams together.
    pub freezes: Option<u64>,
    /// CPU of the load generator (every participant of the run), % of one core.
    pub load_generator_cpu_percent: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct LatencyFigures {
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub max: Option<f64>,
    /// Timecodes read back and counted.
    pub samples: usize,
    /// Reads rejected (unclear blocks or a wrong check).
    pub rejected: usize,
}

impl LatencyFigures {
    pub fn new(samples: &[f64], rejected: usize) -> LatencyFigures {
        let p = super::summary::percentiles(samples);
        LatencyFigures {
            p50: p.map(|p| p.p50),
            p95: p.map(|p| p.p95),
            max: p.map(|p| p.max),
            samples: samples.len(),
            rejected,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct JoinFigures {
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub samples: usize,
}

impl From<Option<Percentiles>> for JoinFigures {
    fn from(p: Option<Percentiles>) -> JoinFigures {
        JoinFigures {
            p50: p.map(|p| p.p50),
            p95: p.map(|p| p.p95),
            samples: p.map_or(0, |p| p.samples),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct McuOutputFigures {
    pub target_fps: Option<f64>,
    /// Composite frames per second a probe decoded.
    pub received_fps: Option<f64>,
    /// Frames short of the target over the window.
    pub dropped_frames: Option<u64>,
}

impl RunResult {
    pub fn failed(
        mode: Mode,
        layout: Option<crate::protocol::LayoutKind>,
        participants: usize,
        reason: String,
    ) -> RunResult {
        RunResult {
            mode,
            layout,
            participants,
            ok: false,
            failure: Some(reason),
            measured_s: None,
            server: ServerFigures::default(),
            clients: ClientFigures::default(),
            latency_ms: LatencyFigures::default(),
            join_ms: JoinFigures::default(),
            mcu_output: McuOutputFigures::default(),
            room: RoomFigures::default(),
            speaker_switches: SwitchFigures::default(),
            weak: None,
            normal_rung_switches: None,
        }
    }
}

impl Machine {
    /// This machine, read from /proc/cpuinfo, GStreamer and git.
    pub fn this_one() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name")
                    .and_then(|v| v.split_once(':'))
                    .map(|(_, v)| v.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".to_owned());
        let git_commit = std::process::Command::new("git")
            .args(["rev-parse", "--short", "HEAD"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_else(|| "unknown".to_owned());
        let os = std::fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|t| {
                t.lines().find_map(|l| {
                    l.strip_prefix("PRETTY_NAME=")
                        .map(|v| v.trim_matches('"').to_owned())
                })
            })
            .unwrap_or_else(|| std::env::consts::OS.to_owned());
        Machine {
            cpu_model,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            gstreamer: gst::version_string().to_string(),
            gridmix_version: env!("CARGO_PKG_VERSION").to_owned(),
            git_commit,
            os,
        }
    }
}
