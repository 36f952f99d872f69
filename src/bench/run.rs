//! One bench run: a fresh room of one mode with N participants, settled,
//! measured for a window, torn down. Two participants are probes (they
//! encode timecodes and decode what they receive); the rest are load (they
//! send a share of one encoding and count what they receive without
//! decoding), so the load generator is not the bottleneck.

use super::results::{
    ClientFigures, JoinFigures, LatencyFigures, McuOutputFigures, RoomFigures, RunResult,
    ServerFigures, SwitchFigures,
};
use super::server::ServerUnderTest;
use super::shaped_link::ShapedLink;
use super::summary::{mean, percentiles};
use super::weak::{self, WeakParticipant};
use super::{process, process::ProcessSample};
use crate::bot::shared::SharedEncoding;
use crate::bot::timecode::{self, Region};
use crate::bot::traffic::TrafficSnapshot;
use crate::bot::{Bot, BotConfig, COMPOSITE, OnFrame};
use crate::protocol::Mode;
use crate::protocol::{Layout, LayoutKind};
use anyhow::{Context, Result, anyhow, bail};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// What is shared by every run of a bench.
pub struct BenchContext {
    pub server: ServerUnderTest,
    pub load: SharedEncoding,
    /// A moving, detailed picture instead (runs comparing weak links: the
    /// composite's rungs then need their full rates).
    pub busy_load: Option<SharedEncoding>,
    /// One shaped link per weak participant (`--weak`).
    pub weak_links: Vec<ShapedLink>,
    pub ice_addresses: Vec<String>,
    /// The MCU composite's frame rate the server aims at.
    pub canvas_fps: f64,
    /// Time zero of every timecode.
    pub origin: Instant,
}

#[derive(Debug, Clone, Copy)]
pub struct RunSpec {
    pub mode: Mode,
    /// The composite's layout, set through the layout API (MCU runs).
    pub layout: Option<LayoutKind>,
    pub participants: usize,
    pub duration: Duration,
    /// How long everyone may take to receive everyone before the run fails.
    pub settle_timeout: Duration,
    /// Measured after everyone receives everyone, before the window opens,
    /// so that encoders' rate control and jitter buffers have settled.
    pub warm_up: Duration,
    /// How many of the participants sit behind a shaped link (MCU).
    pub weak: usize,
    /// The load sends `BenchContext::busy_load`.
    pub busy: bool,
}

/// How many participants of a run are probes.
pub const PROBES: usize = 2;

/// What the probes saw while the window was open.
#[derive(Default)]
struct ProbeLog {
    measuring: AtomicBool,
    counts: Mutex<ProbeCounts>,
}

#[derive(Default)]
struct ProbeCounts {
    latencies_ms: Vec<f64>,
    rejected: usize,
    /// When the first probe decoded each composite frame (MCU).
    composite_frames: Vec<Instant>,
}

struct Participant {
    bot: Bot,
    joined_at: Instant,
    /// Probes: when the first frame was decoded.
    first_decoded: Option<Arc<OnceLock<Instant>>>,
}

impl Participant {
    /// From "join" sent to its first frame: decoded for a probe, complete
    /// (last packet received) for a load participant.
    fn join_ms(&self, traffic: &TrafficSnapshot) -> Option<f64> {
        let first = match &self.first_decoded {
            Some(decoded) => decoded.get().copied(),
            None => traffic.first_video_frame(),
        }?;
        Some(
            first
                .saturating_duration_since(self.joined_at)
                .as_secs_f64()
                * 1000.0,
        )
    }
}

pub async fn run(spec: RunSpec, context: &BenchContext, room: &str) -> RunResult {
    let mut people = Vec::new();
    let mut weak_people = Vec::new();
    let log = Arc::new(ProbeLog::default());
    let result = measure(spec, context, room, &mut people, &mut weak_people, &log).await;
    for person in people {
        person.bot.leave().await;
    }
    for person in weak_people {
        person.leave().await;
    }
    // The next run starts only once this room is gone from the server.
    let deadline = Instant::now() + Duration::from_secs(15);
    while context.server.has_room(room).await.unwrap_or(false) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    result.unwrap_or_else(|e| {
        RunResult::failed(spec.mode, spec.layout, spec.participants, format!("{e:#}"))
    })
}

async fn measure(
    spec: RunSpec,
    context: &BenchContext,
    room: &str,
    people: &mut Vec<Participant>,
    weak_people: &mut Vec<WeakParticipant>,
    log: &Arc<ProbeLog>,
) -> Result<RunResult> {
    // The weak participants join last, from their namespaces.
    let in_process = spec.participants.saturating_sub(spec.weak);
    if in_process < 2 {
        bail!("a run needs at least 2 participants besides the weak ones");
    }
    if spec.weak > context.weak_links.len() {
        bail!("{} weak participants need as many shaped links", spec.weak);
    }
    let probe_ids = Arc::new(Mutex::new(Vec::<String>::new()));
    // The composite's layout as the first probe was last told it (MCU), and
    // when it was told the dominant speaker changed.
    let layout: SharedLayout = Arc::default();
    let switches: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let talkers = Rotation::talkers(spec);
    // Join order: a probe, the load, the second probe last (its join time is
    // that of someone arriving in a full room).
    for index in 0..in_process {
        let probe = index == 0 || index == in_process - 1;
        let mut config = BotConfig::new(
            &context.server.ws_url,
            room,
            &format!("p{index}"),
            0x808080,
            440.0,
        );
        config.mode = spec.mode;
        config.ice_addresses = context.ice_addresses.clone();
        let first_decoded = probe.then(|| Arc::new(OnceLock::new()));
        if let Some(first) = &first_decoded {
            config.timecode_origin = Some(context.origin);
            config.on_frame = Some(observer(
                spec,
                index,
                context.origin,
                probe_ids.clone(),
                layout.clone(),
                log.clone(),
                first.clone(),
            ));
        } else {
            config.decode = false;
            let load = context.busy_load.as_ref().filter(|_| spec.busy);
            config.shared_encoding = Some(load.unwrap_or(&context.load).clone());
        }
        if let Some(k) = talkers.iter().position(|&t| t == index) {
            config.own_audio = true;
            config.tone_hz = TALKER_TONES[k % TALKER_TONES.len()];
            config.tone_volume = 0.0;
        }
        let joined_at = Instant::now();
        let bot = Bot::join(config)
            .await
            .with_context(|| format!("participant {index} could not join"))?;
        if probe {
            probe_ids
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(bot.id().to_owned());
        }
        if index == 0 {
            follow_room(&bot, layout.clone(), switches.clone());
        }
        people.push(Participant {
            bot,
            joined_at,
            first_decoded,
        });
    }
    if let Some(kind) = spec.layout.filter(|k| *k != LayoutKind::Grid) {
        context.server.set_layout(room, kind).await?;
    }
    let mut rotation = Rotation::new(talkers);
    rotation.step(people);
    settle(spec, people).await?;
    let port = context.server.port()?;
    for (k, link) in context.weak_links.iter().take(spec.weak).enumerate() {
        weak_people.push(WeakParticipant::join(link, port, room, &format!("weak{k}")).await?);
    }
    let deadline = Instant::now() + spec.settle_timeout;
    while !weak_people.iter().all(|w| w.receives()) {
        if Instant::now() > deadline {
            bail!(
                "a weak participant received nothing in {:?}",
                spec.settle_timeout
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(spec.warm_up).await;
    let weak_ids: Vec<String> = weak_people.iter().map(|w| w.id.clone()).collect();
    let mut rungs = RungWatch::default();

    let server_before = context.server.sample().transpose()?;
    let self_before = process::sample(None)?;
    let traffic_before: Vec<TrafficSnapshot> = people.iter().map(|p| p.bot.traffic()).collect();
    let started = Instant::now();
    log.measuring.store(true, Ordering::Relaxed);
    // Memory and threads peak somewhere in the window: look twice a second.
    let mut peak = server_before.map(|s| (s.rss_bytes, s.threads));
    let mut room_figures = RoomFigures::default();
    while started.elapsed() < spec.duration {
        rotation.step(people);
        tokio::time::sleep(
            Duration::from_millis(500).min(spec.duration.saturating_sub(started.elapsed())),
        )
        .await;
        if let Some(Ok(s)) = context.server.sample() {
            peak = peak.map(|(rss, threads)| (rss.max(s.rss_bytes), threads.max(s.threads)));
        }
        if let Ok(Some(described)) = context.server.room(room).await {
            room_figures.see(&described);
            rungs.see(&described, &weak_ids);
        }
    }
    log.measuring.store(false, Ordering::Relaxed);
    let ended = Instant::now();
    let window = started.elapsed().as_secs_f64();
    let traffic_after: Vec<TrafficSnapshot> = people.iter().map(|p| p.bot.traffic()).collect();
    let self_after = process::sample(None)?;
    let server_after = context.server.sample().transpose()?;

    let clients = client_figures(
        &traffic_before,
        &traffic_after,
        started,
        window,
        &self_before,
        &self_after,
    );
    let packets_out: u64 = traffic_before
        .iter()
        .zip(&traffic_after)
        .map(|(b, a)| a.received_packets() - b.received_packets())
        .sum();
    let server = server_figures(spec, server_before, server_after, peak, window, packets_out);
    let counts = log.counts.lock().unwrap_or_else(|e| e.into_inner());
    let joins: Vec<f64> = people
        .iter()
        .zip(&traffic_after)
        .enumerate()
        // In SFU and mesh the first participant has nobody to receive yet.
        .filter(|(i, _)| spec.mode == Mode::Mcu || *i > 0)
        .filter_map(|(_, (p, t))| p.join_ms(t))
        .collect();
    let speaker_switches = switch_figures(
        &switches.lock().unwrap_or_else(|e| e.into_inner()),
        &counts.composite_frames,
        (started, started + Duration::from_secs_f64(window)),
        context.canvas_fps,
    );
    let mcu_output = if spec.mode == Mode::Mcu {
        let fps = counts.composite_frames.len() as f64 / window;
        McuOutputFigures {
            target_fps: Some(context.canvas_fps),
            received_fps: Some(fps),
            dropped_frames: Some(((context.canvas_fps - fps) * window).max(0.0).round() as u64),
        }
    } else {
        McuOutputFigures::default()
    };
    let weak = (spec.weak > 0).then(|| {
        let seconds: Vec<_> = weak_people
            .iter()
            .map(|w| w.seconds_between(started, ended))
            .collect();
        let last = weak_ids
            .iter()
            .map(|id| rungs.last.get(id).map_or("–".into(), |(r, _)| r.clone()))
            .collect();
        weak::figures(&seconds, rungs.weak_switches, last)
    });
    Ok(RunResult {
        weak,
        normal_rung_switches: (spec.mode == Mode::Mcu).then_some(rungs.normal_switches),
        mode: spec.mode,
        layout: spec.layout,
        participants: spec.participants,
        ok: true,
        failure: None,
        measured_s: Some(window),
        server,
        clients,
        latency_ms: LatencyFigures::new(&counts.latencies_ms, counts.rejected),
        join_ms: JoinFigures::from(percentiles(&joins)),
        mcu_output,
        room: room_figures,
        speaker_switches,
    })
}

/// Receivers' rungs as the room API shows them through a window: how often
/// each changed (a move begun counts once), weak and normal apart.
#[derive(Default)]
struct RungWatch {
    /// Participant -> (rung, moving to) last seen.
    last: std::collections::HashMap<String, (String, String)>,
    weak_switches: u64,
    normal_switches: u64,
}

impl RungWatch {
    fn see(&mut self, room: &serde_json::Value, weak: &[String]) {
        let Some(receivers) = room["receivers"].as_array() else {
            return;
        };
        for r in receivers {
            let (Some(id), Some(rung)) = (r["participant"].as_str(), r["rung"].as_str()) else {
                continue;
            };
            let now = (
                rung.to_owned(),
                r["moving_to"].as_str().unwrap_or("").to_owned(),
            );
            let before = self.last.insert(id.to_owned(), now.clone());
            // A move shows as a target, then as the new rung: count the target.
            let moved = before.is_some_and(|(rung, moving)| {
                let began = (rung.as_str(), moving.as_str()) != (now.0.as_str(), now.1.as_str())
                    && !now.1.is_empty();
                let jumped = moving.is_empty() && rung != now.0;
                began || jumped
            });
            if moved {
                if weak.iter().any(|w| w == id) {
                    self.weak_switches += 1;
                } else {
                    self.normal_switches += 1;
                }
            }
        }
    }
}

type SharedLayout = Arc<Mutex<Option<Layout>>>;

/// Keeps `layout` as the bot was last told it, and notes when it was told
/// the dominant speaker changed, until the bot is gone.
fn follow_room(bot: &Bot, layout: SharedLayout, switches: Arc<Mutex<Vec<Instant>>>) {
    let mut state = bot.watch_state();
    tokio::spawn(async move {
        let mut dominant = None;
        while state.changed().await.is_ok() {
            let (latest, speaker) = {
                let state = state.borrow_and_update();
                (state.layout.clone(), state.speakers.dominant.clone())
            };
            *layout.lock().unwrap_or_else(|e| e.into_inner()) = latest;
            if speaker.is_some() && speaker != dominant {
                if dominant.is_some() {
                    switches
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(Instant::now());
                }
                dominant = speaker;
            }
        }
    });
}

/// The talkers' tones: the bench's rotating speakers.
const TALKER_TONES: [f64; 3] = [330.0, 550.0, 770.0];
/// How long each turn of the rotation lasts.
const TURN: Duration = Duration::from_secs(4);

/// In MCU runs, who speaks: three talkers (the two probes and one load
/// participant), one loud and one quieter at a time, taking turns, so the
/// dominant speaker changes every turn and the mixes are exercised.
/// Other runs have no rotation: the probes speak throughout, as before.
struct Rotation {
    talkers: Vec<usize>,
    started: Instant,
    turn: Option<u64>,
}

impl Rotation {
    fn talkers(spec: RunSpec) -> Vec<usize> {
        let last = spec.participants - 1;
        match spec.mode {
            Mode::Mcu if spec.participants > 2 => vec![0, 1, last],
            Mode::Mcu => vec![0, last],
            _ => Vec::new(),
        }
    }

    fn new(talkers: Vec<usize>) -> Rotation {
        Rotation {
            talkers,
            started: Instant::now(),
            turn: None,
        }
    }

    fn step(&mut self, people: &[Participant]) {
        let turn = (self.started.elapsed().as_millis() / TURN.as_millis()) as u64;
        if self.talkers.is_empty() || self.turn == Some(turn) {
            return;
        }
        self.turn = Some(turn);
        for (i, &talker) in self.talkers.iter().enumerate() {
            let volume = speaking_volume(i, turn, self.talkers.len());
            if let Some(person) = people.get(talker) {
                person.bot.set_tone_volume(volume);
            }
        }
    }
}

/// Talker `i` of `n` in turn `turn`: loud when it is its turn, quieter (but
/// still speaking) the turn before, silent otherwise.
fn speaking_volume(i: usize, turn: u64, n: usize) -> f64 {
    let lead = (turn % n as u64) as usize;
    if i == lead {
        0.3
    } else if n > 2 && i == (lead + 1) % n {
        0.1
    } else {
        0.0
    }
}

/// The longest gap between `frames` around each of `switches` inside
/// `window` (see `SwitchFigures`).
fn switch_figures(
    switches: &[Instant],
    frames: &[Instant],
    window: (Instant, Instant),
    fps: f64,
) -> SwitchFigures {
    let inside: Vec<Instant> = switches
        .iter()
        .copied()
        .filter(|s| *s >= window.0 && *s <= window.1)
        .collect();
    let longest = inside
        .iter()
        .filter_map(|&switch| {
            let from = switch.checked_sub(Duration::from_millis(500))?;
            let to = switch + Duration::from_millis(1500);
            let around: Vec<Instant> = frames
                .iter()
                .copied()
                .filter(|f| *f >= from && *f <= to)
                .collect();
            around
                .windows(2)
                .map(|w| w[1].duration_since(w[0]).as_secs_f64() * 1000.0)
                .reduce(f64::max)
        })
        .reduce(f64::max);
    SwitchFigures {
        switches: inside.len() as u64,
        longest_gap_ms: longest,
        frames_missed: longest.map(|gap| ((gap * fps / 1000.0).round() as u64).saturating_sub(1)),
    }
}

/// Where participant `id`'s tile is on a `width` x `height` composite.
fn tile_region(layout: &Layout, id: &str, width: u32, height: u32) -> Option<Region> {
    let tile = layout.tiles.iter().find(|t| t.participant == id)?;
    let px =
        |share: crate::protocol::Fraction, whole: u32| (share.as_f64() * f64::from(whole)) as u32;
    Some(Region {
        x: px(tile.x, width),
        y: px(tile.y, height),
        width: px(tile.width, width),
        height: px(tile.height, height),
    })
}

/// A probe's view of each decoded frame: reads the timecode of a probe (its
/// own tile of the MCU composite, where the announced layout puts it; the
/// other probe's stream in SFU and mesh).
fn observer(
    spec: RunSpec,
    index: usize,
    origin: Instant,
    probe_ids: Arc<Mutex<Vec<String>>>,
    layout: SharedLayout,
    log: Arc<ProbeLog>,
    first_decoded: Arc<OnceLock<Instant>>,
) -> OnFrame {
    OnFrame(Arc::new(move |stream, frame| {
        first_decoded.get_or_init(Instant::now);
        if !log.measuring.load(Ordering::Relaxed) {
            return;
        }
        let now_ms = origin.elapsed().as_millis() as u32;
        let region = if spec.mode == Mode::Mcu {
            if stream != COMPOSITE {
                return;
            }
            if index == 0 {
                log.counts
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .composite_frames
                    .push(Instant::now());
            }
            // The first probe joined first, the second last.
            let slot = usize::from(index != 0);
            let own = probe_ids
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(slot)
                .cloned();
            let region = own.and_then(|id| {
                let layout = layout.lock().unwrap_or_else(|e| e.into_inner());
                tile_region(layout.as_ref()?, &id, frame.width, frame.height)
            });
            match region {
                Some(region) => region,
                // Not on the composite (yet): nothing to read.
                None => return,
            }
        } else {
            if !probe_ids
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .any(|id| id == stream)
            {
                return;
            }
            Region {
                x: 0,
                y: 0,
                width: frame.width,
                height: frame.height,
            }
        };
        let read = timecode::read(region, |x, y| frame.brightness(x as i32, y as i32, 2));
        let mut counts = log.counts.lock().unwrap_or_else(|e| e.into_inner());
        match read {
            Ok(sent) => counts
                .latencies_ms
                .push(f64::from(timecode::elapsed_ms(sent, now_ms))),
            Err(_) => counts.rejected += 1,
        }
    }))
}

/// Waits until every participant receives video from everyone it should:
/// the composite in MCU, every other participant in SFU and mesh.
async fn settle(spec: RunSpec, people: &[Participant]) -> Result<()> {
    let deadline = Instant::now() + spec.settle_timeout;
    loop {
        let mut missing = None;
        for (i, person) in people.iter().enumerate() {
            let traffic = person.bot.traffic();
            let streams = traffic
                .received
                .iter()
                .filter(|((_, video), s)| *video && s.frames > 0)
                .count();
            let wanted = if spec.mode == Mode::Mcu {
                1
            } else {
                people.len() - 1
            };
            if streams < wanted {
                missing = Some(format!(
                    "participant {i} receives video from {streams} of {wanted} streams"
                ));
                break;
            }
        }
        let Some(missing) = missing else {
            return Ok(());
        };
        if Instant::now() > deadline {
            return Err(anyhow!(
                "not settled after {:?}: {missing}",
                spec.settle_timeout
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn client_figures(
    before: &[TrafficSnapshot],
    after: &[TrafficSnapshot],
    window_start: Instant,
    window: f64,
    self_before: &ProcessSample,
    self_after: &ProcessSample,
) -> ClientFigures {
    let kbps = |bytes: u64| bytes as f64 * 8.0 / window / 1000.0;
    let uplink: Vec<f64> = before
        .iter()
        .zip(after)
        .map(|(b, a)| kbps(a.sent_bytes - b.sent_bytes))
        .collect();
    let downlink: Vec<f64> = before
        .iter()
        .zip(after)
        .map(|(b, a)| kbps(a.received_bytes() - b.received_bytes()))
        .collect();
    let mut stream_fps = Vec::new();
    let mut streams_per_participant = Vec::new();
    let mut freezes = 0u64;
    for (b, a) in before.iter().zip(after) {
        let mut streams = 0;
        for (key, s) in a.received.iter().filter(|((_, video), _)| *video) {
            let frames_before = b.received.get(key).map_or(0, |s| s.frames);
            stream_fps.push((s.frames - frames_before) as f64 / window);
            freezes += s.freezes.iter().filter(|f| f.ended >= window_start).count() as u64;
            streams += 1;
        }
        streams_per_participant.push(f64::from(streams));
    }
    ClientFigures {
        uplink_kbps_per_participant: mean(&uplink),
        downlink_kbps_per_participant: mean(&downlink),
        video_streams_per_participant: mean(&streams_per_participant),
        received_fps: mean(&stream_fps),
        freezes: Some(freezes),
        load_generator_cpu_percent: Some(
            (self_after.cpu_seconds - self_before.cpu_seconds) / window * 100.0,
        ),
    }
}

fn server_figures(
    spec: RunSpec,
    before: Option<ProcessSample>,
    after: Option<ProcessSample>,
    peak: Option<(u64, u64)>,
    window: f64,
    packets_out: u64,
) -> ServerFigures {
    let (Some(before), Some(after)) = (before, after) else {
        return ServerFigures {
            packets_out: Some(packets_out),
            unavailable: Some(
                "the server is external: its process cannot be measured from here".into(),
            ),
            ..ServerFigures::default()
        };
    };
    let cpu_seconds = after.cpu_seconds - before.cpu_seconds;
    let cpu_percent = cpu_seconds / window * 100.0;
    ServerFigures {
        cpu_percent: Some(cpu_percent),
        cpu_percent_per_participant: Some(cpu_percent / spec.participants as f64),
        peak_rss_mib: peak.map(|(rss, _)| rss as f64 / (1024.0 * 1024.0)),
        peak_threads: peak.map(|(_, threads)| threads),
        threads_per_participant: peak.map(|(_, threads)| threads as f64 / spec.participants as f64),
        // Mesh media never passes through the server.
        packets_out: (spec.mode != Mode::Mesh).then_some(packets_out),
        cpu_us_per_packet_out: (spec.mode != Mode::Mesh && packets_out > 0)
            .then(|| cpu_seconds * 1e6 / packets_out as f64),
        unavailable: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_talker_leads_each_turn_with_the_next_one_quieter() {
        let turns: Vec<Vec<f64>> = (0..3)
            .map(|turn| (0..3).map(|i| speaking_volume(i, turn, 3)).collect())
            .collect();
        assert_eq!(turns, [[0.3, 0.1, 0.0], [0.0, 0.3, 0.1], [0.1, 0.0, 0.3]]);
        assert_eq!(speaking_volume(1, 0, 2), 0.0);
    }

    #[test]
    fn the_longest_gap_is_taken_around_switches_inside_the_window_only() {
        let t = Instant::now() + Duration::from_secs(10);
        let ms = |n: i64| {
            if n >= 0 {
                t + Duration::from_millis(n as u64)
            } else {
                t - Duration::from_millis((-n) as u64)
            }
        };
        // 33 ms frames, a 100 ms gap 200 ms after the switch at 0, and a
        // 500 ms gap far from it.
        let mut frames: Vec<Instant> = (-20..6).map(|i| ms(i * 33)).collect();
        frames.extend((0..30).map(|i| ms(298 + i * 33)));
        frames.extend((0..10).map(|i| ms(3000 + i * 33)));
        let figures = switch_figures(&[ms(0), ms(9000)], &frames, (ms(-1000), ms(5000)), 30.0);
        assert_eq!(figures.switches, 1);
        let gap = figures.longest_gap_ms.unwrap();
        assert!((gap - 133.0).abs() < 1.0, "{gap}");
        assert_eq!(figures.frames_missed, Some(3));
    }
}
