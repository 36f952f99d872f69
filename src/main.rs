//! The `gridmix` command: serve | bot | bench | token.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use gridmix::bot::analysis::{rms, strongest_tone};
use gridmix::bot::{Bot, BotConfig, TransportKind};
use gridmix::config::ServeArgs;
use gridmix::media::layout::GridLayout;
use gridmix::protocol::{LayoutKind, Mode};
use gridmix::server::Server;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(
    name = "gridmix",
    version,
    about = "A WebRTC multi-party call server: MCU, SFU and mesh"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the browser client and WebSocket signaling.
    Serve(Box<ServeArgs>),
    /// Join a room as a synthetic participant sending a colour and a tone.
    Bot(BotArgs),
    /// Measure MCU against SFU against mesh on this machine.
    Bench(BenchArgs),
    /// Print a room token (JWT HS256) for a server run with --auth-secret.
    Token(TokenArgs),
    /// Print the /api bearer of a server run with --auth-secret and no --api-secret.
    ApiSecret(ApiSecretArgs),
}

#[derive(clap::Args)]
struct ApiSecretArgs {
    /// The server's --auth-secret.
    #[arg(long, env = "GRIDMIX_AUTH_SECRET", hide_env_values = true)]
    auth_secret: String,
}

#[derive(clap::Args)]
struct BenchArgs {
    /// Modes to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "mcu,sfu,mesh")]
    modes: Vec<ModeArg>,
    /// Layouts of the MCU runs, comma-separated: every MCU size is run in
    /// each (the others are not laid out).
    #[arg(long, value_delimiter = ',', default_value = "grid")]
    layouts: Vec<LayoutArg>,
    /// Participant counts to measure, comma-separated (each at least 2).
    #[arg(long, value_delimiter = ',', default_value = "2,4,8,12,16", value_parser = clap::value_parser!(u16).range(2..=64))]
    participants: Vec<u16>,
    /// Seconds measured in each run (after the room settles).
    #[arg(long, default_value_t = 20)]
    duration: u64,
    /// Folder for results.json, results.md, the charts and the server's log.
    #[arg(long, default_value = "bench-results")]
    out: std::path::PathBuf,
    /// A running server to measure (ws://host:port/ws) instead of starting one.
    #[arg(long)]
    server: Option<String>,
    /// Local addresses the participants' ICE may use (default with a child
    /// server: 127.0.0.1).
    #[arg(long = "ice-address")]
    ice_addresses: Vec<String>,
    /// Instead of the runs: open and empty this many rooms one after another
    /// (the first of --modes, the first of --participants, 6 s each) and
    /// report the server's memory once each is gone (churn.md).
    #[arg(long)]
    churn: Option<usize>,
    /// MCU runs: also run each size with this many participants behind a
    /// 300 kbit/s link in a network namespace (needs root), and beside it
    /// the same size without; the load sends a busy picture in both.
    #[arg(long, default_value_t = 0)]
    weak: usize,
}

#[derive(clap::Args)]
struct TokenArgs {
    /// The room the token admits to (only that room).
    #[arg(long, required_unless_present = "recording")]
    room: Option<String>,
    /// Who the token is for (its `sub`).
    #[arg(long, required_unless_present = "recording")]
    identity: Option<String>,
    /// Instead of a room token: a signed URL for this recording, valid for
    /// --ttl, e.g. /recordings/standup-20250301-141503-9f3c07aa12e45b60.webm
    /// (HLS: its index.m3u8; the signature covers the segments too).
    #[arg(long, conflicts_with_all = ["room", "identity", "viewer"])]
    recording: Option<String>,
    /// How long it is valid: 90s, 15m, 1h, 2d.
    #[arg(long, default_value = "1h", value_parser = gridmix::auth::parse_ttl)]
    ttl: Duration,
    /// A viewer's token: joins and receives, may not publish media.
    #[arg(long)]
    viewer: bool,
    /// The server's --auth-secret.
    #[arg(long, env = "GRIDMIX_AUTH_SECRET", hide_env_values = true)]
    auth_secret: String,
}

#[derive(clap::Args)]
struct BotArgs {
    #[arg(long, default_value = "ws://127.0.0.1:8080/ws")]
    server: String,
    #[arg(long)]
    room: String,
    #[arg(long, default_value = "bot")]
    name: String,
    #[arg(long, value_enum, default_value = "mcu")]
    mode: ModeArg,
    /// Colour of the video it sends, RRGGBB.
    #[arg(long, default_value = "ff0000", value_parser = parse_colour)]
    color: u32,
    /// Frequency of the tone it sends, Hz.
    #[arg(long, default_value_t = 440.0)]
    tone: f64,
    /// Send nothing, only watch and listen.
    #[arg(long)]
    viewer: bool,
    /// Leave after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    duration: Option<u64>,
    /// Restrict the bot's ICE candidates to these local addresses (repeatable).
    #[arg(long = "ice-address")]
    ice_addresses: Vec<String>,
    /// Signaling transport: a WebSocket (--server) or long-poll beside it.
    #[arg(long, value_enum, default_value = "ws")]
    transport: TransportArg,
    /// Room token, for a server run with --auth-secret.
    #[arg(long, env = "GRIDMIX_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Use only relayed (TURN) ICE candidates.
    #[arg(long)]
    relay_only: bool,
    /// Send black and silence, with a white flash and a beep of the tone
    /// together every second: for checking audio/video sync by eye and ear.
    #[arg(long)]
    av_pulses: bool,
    /// Payload type numbers for Opus and VP8, as another WebRTC stack
    /// might choose them: opus=96,vp8=97 (default: Chrome's, 111 and 96).
    #[arg(long, value_parser = gridmix::bot::PayloadTypes::parse)]
    payload_types: Option<gridmix::bot::PayloadTypes>,
    /// Accept only ECDSA in DTLS (as some non-browser stacks do): a server
    /// presenting an RSA certificate cannot connect.
    #[arg(long)]
    ecdsa_only: bool,
    /// MCU rooms: the best encoding of the composite to receive (low,
    /// medium or high), sent before the bot's offer.
    #[arg(long, value_parser = parse_quality)]
    quality: Option<gridmix::protocol::Quality>,
    /// Send a moving, detailed picture instead of a solid colour: one as
    /// costly to encode as a busy camera's.
    #[arg(long)]
    busy_video: bool,
    /// Report each second as one JSON object (for programs that watch the
    /// bot: the weak-link test and bench): frame rate, frame size, received
    /// video kbit/s and the freezes (gaps between frames over 200 ms) of
    /// that second, in milliseconds.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum TransportArg {
    Ws,
    Poll,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ModeArg {
    Mcu,
    Sfu,
    Mesh,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LayoutArg {
    Grid,
    Speaker,
}

impl From<LayoutArg> for LayoutKind {
    fn from(layout: LayoutArg) -> LayoutKind {
        match layout {
            LayoutArg::Grid => LayoutKind::Grid,
            LayoutArg::Speaker => LayoutKind::Speaker,
        }
    }
}

impl From<ModeArg> for Mode {
    fn from(mode: ModeArg) -> Mode {
        match mode {
            ModeArg::Mcu => Mode::Mcu,
            ModeArg::Sfu => Mode::Sfu,
            ModeArg::Mesh => Mode::Mesh,
        }
    }
}

fn parse_quality(s: &str) -> Result<gridmix::protocol::Quality, String> {
    serde_json::from_value(serde_json::Value::String(s.to_owned()))
        .map_err(|_| format!("\"{s}\" is not a quality: use low, medium or high"))
}

fn parse_colour(s: &str) -> Result<u32, String> {
    let hex = s.trim_start_matches('#');
    if hex.len() != 6 {
        return Err(format!(
            "\"{s}\" is not a colour: use six hex digits, RRGGBB"
        ));
    }
    u32::from_str_radix(hex, 16)
        .map_err(|_| format!("\"{s}\" is not a colour: use six hex digits, RRGGBB"))
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let cli = Cli::parse();
    if let Command::Serve(_) = &cli.command {
        // Before the runtime's threads and GStreamer start.
        gridmix::memory::limit_malloc_arenas();
    }
    if let Command::Bot(args) = &cli.command
        && args.ecdsa_only
    {
        // Before the runtime's threads and GStreamer start.
        gridmix::bot::dtls::accept_only_ecdsa()?;
    }
    let runtime = tokio::runtime::Runtime::new()?;
    let result = match cli.command {
        Command::Serve(args) => runtime.block_on(serve(*args)),
        Command::Bot(args) => runtime.block_on(bot(args)),
        Command::Bench(args) => runtime.block_on(bench(args)),
        Command::Token(args) => token(args),
        Command::ApiSecret(args) => {
            println!("{}", gridmix::auth::derive_api_secret(&args.auth_secret));
            Ok(())
        }
    };
    // Dropping the runtime would wait for every blocking task, including a
    // pipeline that will not stop; by now recordings are finished and
    // sockets closed, so give stragglers a few seconds, then exit.
    runtime.shutdown_timeout(Duration::from_secs(5));
    result
}

fn token(args: TokenArgs) -> Result<()> {
    let now = gridmix::auth::unix_now();
    if let Some(recording) = &args.recording {
        let url = format!(
            "/recordings/{}",
            recording
                .trim_start_matches('/')
                .trim_start_matches("recordings/")
        );
        let signer = gridmix::recording::signed_url::UrlSigner::from_auth_secret(&args.auth_secret);
        println!(
            "{}",
            signer.sign(&url, now.saturating_add(args.ttl.as_secs()))
        );
        return Ok(());
    }
    let (Some(room), Some(identity)) = (&args.room, &args.identity) else {
        anyhow::bail!("a room token needs --room and --identity");
    };
    let token = gridmix::auth::issue_token(
        &args.auth_secret,
        room,
        identity,
        args.ttl,
        !args.viewer,
        now,
    )?;
    println!("{token}");
    Ok(())
}

async fn bench(args: BenchArgs) -> Result<()> {
    let ice_addresses = if args.ice_addresses.is_empty() && args.server.is_none() {
        vec!["127.0.0.1".to_owned()]
    } else {
        args.ice_addresses
    };
    let config = gridmix::bench::BenchConfig {
        modes: args.modes.into_iter().map(Mode::from).collect(),
        layouts: args.layouts.into_iter().map(LayoutKind::from).collect(),
        participants: args.participants.into_iter().map(usize::from).collect(),
        duration: Duration::from_secs(args.duration),
        out: args.out.clone(),
        server: args.server,
        ice_addresses,
        progress: true,
        weak: args.weak,
    };
    if let Some(cycles) = args.churn {
        let results = gridmix::bench::run_churn(config, cycles).await?;
        print!("{}", results.markdown());
        println!("results in {}", args.out.join("churn.md").display());
        return Ok(());
    }
    let results = gridmix::bench::run(config).await?;
    let failed = results.runs.iter().filter(|r| !r.ok).count();
    println!(
        "{} runs ({failed} failed); results in {}",
        results.runs.len(),
        args.out.join("results.md").display()
    );
    Ok(())
}

async fn serve(args: ServeArgs) -> Result<()> {
    gst::init().context("initialising GStreamer")?;
    if let Err(missing) = gridmix::media::preflight::check_elements() {
        eprintln!("{missing}");
        std::process::exit(2);
    }
    let server = Server::start(args.into_config()?).await?;
    wait_for_signal().await;
    tracing::info!("shutting down");
    server.shut_down().await;
    Ok(())
}

async fn wait_for_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async {
            match term.as_mut() {
                Some(t) => { t.recv().await; }
                None => std::future::pending::<()>().await,
            }
        } => {}
    }
}

async fn bot(args: BotArgs) -> Result<()> {
    let mut config = BotConfig::new(&args.server, &args.room, &args.name, args.color, args.tone);
    config.mode = args.mode.into();
    config.ice_addresses = args.ice_addresses;
    config.transport = match args.transport {
        TransportArg::Ws => TransportKind::WebSocket,
        TransportArg::Poll => TransportKind::LongPoll,
    };
    config.token = args.token;
    config.relay_only = args.relay_only;
    config.quality = args.quality;
    config.av_pulses = args.av_pulses;
    config.busy_video = args.busy_video;
    if let Some(types) = args.payload_types {
        config.payload_types = types;
    }
    config.send_video = !args.viewer;
    config.send_audio = !args.viewer;
    let mode = config.mode;
    let bot = Bot::join(config).await?;
    println!("joined as {}", bot.id());
    let started = Instant::now();
    let deadline = args.duration.map(Duration::from_secs);
    let mut last = (0, Instant::now());
    let mut last_traffic = bot.traffic();
    // Listening from now on: a signal that comes while a report is being
    // made is not missed.
    let stop = wait_for_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        if args.json {
            last_traffic = report_json(&bot, &last_traffic).await;
        } else {
            report(&bot, mode, &mut last).await;
        }
        if deadline.is_some_and(|d| started.elapsed() >= d) {
            break;
        }
    }
    bot.leave().await;
    Ok(())
}

/// One line on what the bot receives: frame rate, then per stream (the MCU
/// composite, or each other participant in SFU and mesh) the frame size,
/// colours and the strongest tone it hears.
/// `last` is the frame count and time of the previous report.
async fn report(bot: &Bot, mode: Mode, last: &mut (u64, Instant)) {
    let frames = bot.frames_received();
    let fps = (frames - last.0) as f64 / last.1.elapsed().as_secs_f64().max(0.001);
    *last = (frames, Instant::now());
    let mut line = format!("video {fps:.0} fps");
    if mode == Mode::Mcu {
        line += &describe_stream(bot, None).await;
    } else {
        for stream in bot.received_streams() {
            line += &format!(
                "; from {stream}:{}",
                describe_stream(bot, Some(&stream)).await
            );
        }
    }
    println!("{line}");
}

/// One second of what the bot received, as a JSON line; returns the counts
/// the next second is measured from.
async fn report_json(
    bot: &Bot,
    before: &gridmix::bot::traffic::TrafficSnapshot,
) -> gridmix::bot::traffic::TrafficSnapshot {
    let now = bot.traffic();
    let since = before.at.unwrap_or_else(Instant::now);
    let seconds = now
        .at
        .map_or(1.0, |at| (at - since).as_secs_f64())
        .max(0.001);
    let frames: u64 = now
        .received
        .iter()
        .filter(|((_, video), _)| *video)
        .map(|(key, s)| s.frames - before.received.get(key).map_or(0, |b| b.frames))
        .sum();
    let frame = bot.latest_frame(Duration::from_millis(100)).await.ok();
    let bytes = now.received_video_bytes() - before.received_video_bytes();
    let line = serde_json::json!({
        "fps": (frames as f64 / seconds * 10.0).round() / 10.0,
        "width": frame.as_ref().map(|f| f.width),
        "height": frame.as_ref().map(|f| f.height),
        "video_kbps": (bytes as f64 * 8.0 / seconds / 1000.0).round(),
        "freezes_ms": now
            .freezes_after(since)
            .iter()
            .map(|f| f.gap.as_millis() as u64)
            .collect::<Vec<_>>(),
    });
    println!("{line}");
    now
}

/// The size and colours of a stream's latest frame (the centre of each grid
/// tile of the composite, or the centre of a participant's picture) and the
/// strongest tone in its audio.
async fn describe_stream(bot: &Bot, stream: Option<&str>) -> String {
    let mut text = String::new();
    let wait = Duration::from_millis(100);
    let frame = match stream {
        Some(stream) => bot.frame_from(stream, wait).await,
        None => bot.latest_frame(wait).await,
    };
    if let Ok(frame) = frame {
        let tiles = match stream {
            Some(_) => 1,
            None => bot.state().others.len() + 1,
        };
        let colours: Vec<String> = GridLayout::for_count(tiles, frame.width, frame.height)
            .tiles
            .iter()
            .map(|t| {
                let (x, y) = t.centre();
                let [r, g, b] = frame.mean_rgb(x, y, 4);
                format!("{r:02x}{g:02x}{b:02x}")
            })
            .collect();
        text += &format!(" {}x{} [{}]", frame.width, frame.height, colours.join(" "));
    }
    let window = Duration::from_millis(250);
    let audio = match stream {
        Some(stream) => bot.record_audio_from(stream, window).await,
        None => bot.record_audio(window).await,
    };
    if let Ok(audio) = audio {
        let (hz, amplitude) = strongest_tone(&audio, gridmix::bot::AUDIO_RATE, 100.0, 3000.0, 10.0);
        text += &format!(
            " audio rms {:.3}, strongest {hz:.0} Hz ({amplitude:.2})",
            rms(&audio)
        );
    }
    text
}
