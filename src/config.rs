//! One `Config` for the server, built from flags and environment, passed down.

use crate::connections::HttpSettings;
use crate::media::certificate::DtlsCertificate;
use crate::media::ladder::Ladder;
use crate::media::mcu::{Canvas, McuSettings};
use crate::media::templates::PipelineTemplates;
use crate::media::webrtc::WebrtcSettings;
use crate::protocol::IceServer;
use crate::recording::Format;
use crate::room::{RecordingSettings, RoomSettings};
use crate::signaling::SignalingSettings;
use crate::signaling::limits::Limits;
use crate::turn::TurnSettings;
use anyhow::{Context, Result};
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to serve HTTP and WebSocket signaling on.
    #[arg(long, env = "GRIDMIX_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Folder of the browser client served at /.
    #[arg(long, env = "GRIDMIX_ASSETS")]
    pub assets: Option<PathBuf>,
    /// Folder of *.gst files overriding the built-in pipeline chains by name.
    #[arg(long, env = "GRIDMIX_PIPELINES")]
    pub pipelines: Option<PathBuf>,
    /// Composite size and rate, WIDTHxHEIGHT@FPS.
    #[arg(long, default_value = "1280x720@30", value_parser = parse_canvas)]
    pub canvas: Canvas,
    /// Jitter-buffer latency for incoming media, in ms.
    #[arg(long, default_value_t = 60)]
    pub jitter_latency_ms: u32,
    /// Most participants in one room.
    #[arg(long, default_value_t = 25)]
    pub max_participants: usize,
    /// Most participants on an MCU room's composite at once; with more, the
    /// pinned one and the most recent speakers are shown.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub max_visible: u16,
    /// Most voices mixed at once in an MCU room (the loudest; a pinned
    /// participant comes on top): everyone else hears one shared mix.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=16))]
    pub max_mixed_speakers: u16,
    /// The encodings of an MCU room's composite, best first, as
    /// WIDTHxHEIGHT@KBPS: each receiver gets one (the best its `quality`
    /// allows), and a rung nobody receives is not encoded.
    #[arg(long, default_value_t = Ladder::default())]
    pub ladder: Ladder,
    /// STUN server for the server's own ICE and for clients, host:port.
    #[arg(long, env = "GRIDMIX_STUN")]
    pub stun: Option<String>,
    /// Restrict the server's ICE candidates to these local addresses (repeatable).
    #[arg(long = "ice-address")]
    pub ice_addresses: Vec<String>,
    /// TURN server for clients and for the server's own ICE: turn:HOST:PORT
    /// (with --turn-secret: TURN REST API ephemeral credentials).
    #[arg(long, env = "GRIDMIX_TURN", requires = "turn_secret", value_parser = crate::turn::normalize_url)]
    pub turn: Option<String>,
    /// The secret shared with the TURN server (coturn's static-auth-secret).
    #[arg(long, env = "GRIDMIX_TURN_SECRET", hide_env_values = true)]
    pub turn_secret: Option<String>,
    /// How long the TURN credentials handed out stay valid; participants
    /// get fresh ones half-way through, for as long as they are in the room.
    #[arg(long, default_value = "10m", value_parser = crate::auth::parse_ttl)]
    pub turn_ttl: Duration,
    /// Require room tokens signed with this secret (JWT HS256) to join.
    /// Without it anyone can join.
    #[arg(long, env = "GRIDMIX_AUTH_SECRET", hide_env_values = true)]
    pub auth_secret: Option<String>,
    /// How long the signed recording URLs handed out with --auth-secret stay
    /// valid.
    #[arg(long, default_value = "24h", value_parser = crate::auth::parse_ttl)]
    pub recording_url_ttl: Duration,
    /// Participants one room-token identity may be at once in a room; a
    /// newer join replaces the oldest (it gets "replaced").
    #[arg(long, default_value_t = 1)]
    pub max_connections_per_identity: usize,
    /// The bearer token /api wants. Default with --auth-secret: a key
    /// derived from it (`gridmix api-secret` prints it); without either,
    /// /api is open.
    #[arg(long, env = "GRIDMIX_API_SECRET", hide_env_values = true)]
    pub api_secret: Option<String>,
    /// Browser origins allowed to use signaling, e.g. https://meet.example.org
    /// (repeatable; default: any). The server's own pages are always allowed.
    #[arg(
        long = "allowed-origin",
        env = "GRIDMIX_ALLOWED_ORIGINS",
        value_delimiter = ','
    )]
    pub allowed_origins: Vec<String>,
    /// Host names (with :port where it is not 80/443) this server is
    /// published under, e.g. meet.example.org (repeatable; default: any). A
    /// request for another Host is refused, which stops DNS rebinding.
    #[arg(
        long = "public-host",
        env = "GRIDMIX_PUBLIC_HOSTS",
        value_delimiter = ','
    )]
    pub public_hosts: Vec<String>,
    /// Reverse proxies in front of this server (repeatable): a request from
    /// one of these addresses is counted for the address its
    /// X-Forwarded-For names, and its own connections are not capped per
    /// address. Anyone else's X-Forwarded-For is ignored.
    #[arg(
        long = "trusted-proxy",
        env = "GRIDMIX_TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Most rooms open at once.
    #[arg(long, default_value_t = 100)]
    pub max_rooms: usize,
    /// Most rooms open at once that joins from one client address opened.
    #[arg(long, default_value_t = 10)]
    pub max_rooms_per_ip: usize,
    /// Most rooms joins from one client address may open in a minute.
    #[arg(long, default_value_t = 30)]
    pub room_creations_per_ip: usize,
    /// Largest client message in bytes, SDP included.
    #[arg(long, default_value_t = 64 * 1024)]
    pub max_message_bytes: usize,
    /// Sustained client messages per second per connection.
    #[arg(long, default_value_t = 50.0)]
    pub messages_per_second: f64,
    /// Messages a connection may send at once above that rate.
    #[arg(long, default_value_t = 100)]
    pub message_burst: u32,
    /// ICE candidates one session may send.
    #[arg(long, default_value_t = 200)]
    pub max_candidates: u32,
    /// Close a connection that has not joined within this time.
    #[arg(long, default_value = "10s", value_parser = crate::auth::parse_ttl)]
    pub join_timeout: Duration,
    /// How long a participant whose signaling dropped is kept for a resume.
    #[arg(long, default_value = "30s", value_parser = crate::auth::parse_ttl)]
    pub resume_grace: Duration,
    /// A long-poll session not polled for this long ends as if it had left.
    #[arg(long, default_value = "30s", value_parser = crate::auth::parse_ttl)]
    pub poll_timeout: Duration,
    /// Folder recordings are written to, and served from at /recordings/.
    #[arg(long, env = "GRIDMIX_RECORD_DIR", default_value = "recordings")]
    pub record_dir: PathBuf,
    /// Record every MCU and SFU room from its first participant to its last.
    #[arg(long)]
    pub auto_record: bool,
    /// Format of the recordings --auto-record makes: webm, mp4 or hls.
    #[arg(long, default_value = "webm", value_parser = parse_format)]
    pub auto_record_format: Format,
    /// An HTTP connection must send a request's headers within this, and is
    /// closed after this long idle between requests.
    #[arg(long, default_value = "10s", value_parser = crate::auth::parse_ttl)]
    pub header_timeout: Duration,
    /// An HTTP request's body must arrive within this.
    #[arg(long, default_value = "30s", value_parser = crate::auth::parse_ttl)]
    pub body_timeout: Duration,
    /// Most HTTP and WebSocket connections open at once from one client address.
    #[arg(long, default_value_t = 64)]
    pub max_connections_per_ip: usize,
}

fn parse_format(s: &str) -> Result<Format, String> {
    Format::parse(s)
        .ok_or_else(|| format!("\"{s}\" is not a recording format: use webm, mp4 or hls"))
}

fn parse_canvas(s: &str) -> Result<Canvas, String> {
    let bad = || format!("\"{s}\" is not WIDTHxHEIGHT@FPS, for example 1280x720@30");
    let (size, fps) = s.split_once('@').ok_or_else(bad)?;
    let (w, h) = size.split_once('x').ok_or_else(bad)?;
    let canvas = Canvas {
        width: w.parse().map_err(|_| bad())?,
        height: h.parse().map_err(|_| bad())?,
        fps: fps.parse().map_err(|_| bad())?,
    };
    let ok = (16..=3840).contains(&canvas.width)
        && (16..=2160).contains(&canvas.height)
        && (1..=60).contains(&canvas.fps);
    if !ok || canvas.width % 2 == 1 || canvas.height % 2 == 1 {
        return Err(format!(
            "{s}: width and height must be even, at most 3840x2160, and fps 1-60"
        ));
    }
    Ok(canvas)
}

impl Default for ServeArgs {
    fn default() -> Self {
        let limits = Limits::default();
        let http = HttpSettings::default();
        ServeArgs {
            listen: "127.0.0.1:8080".parse().expect("valid address"),
            assets: None,
            pipelines: None,
            canvas: Canvas::default(),
            jitter_latency_ms: 60,
            max_participants: 25,
            max_visible: 16,
            max_mixed_speakers: 3,
            ladder: Ladder::default(),
            stun: None,
            ice_addresses: Vec::new(),
            record_dir: PathBuf::from("recordings"),
            auto_record: false,
            auto_record_format: Format::Webm,
            turn: None,
            turn_secret: None,
            turn_ttl: Duration::from_secs(10 * 60),
            auth_secret: None,
            api_secret: None,
            max_connections_per_identity: 1,
            recording_url_ttl: Duration::from_secs(24 * 3600),
            allowed_origins: Vec::new(),
            public_hosts: Vec::new(),
            trusted_proxies: Vec::new(),
            max_rooms: 100,
            max_rooms_per_ip: 10,
            room_creations_per_ip: 30,
            max_message_bytes: limits.max_message_bytes,
            messages_per_second: limits.messages_per_second,
            message_burst: limits.message_burst,
            max_candidates: limits.max_candidates,
            join_timeout: limits.join_timeout,
            resume_grace: limits.resume_grace,
            poll_timeout: limits.poll_timeout,
            header_timeout: http.header_timeout,
            body_timeout: http.body_timeout,
            max_connections_per_ip: http.max_connections_per_ip,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub assets_dir: PathBuf,
    /// Served read-only at /recordings/.
    pub record_dir: PathBuf,
    pub rooms: RoomSettings,
    pub signaling: SignalingSettings,
    pub http: HttpSettings,
}

impl ServeArgs {
    pub fn into_config(self) -> Result<Config> {
        gst::init().context("initialising GStreamer")?;
        let templates = PipelineTemplates::load(self.pipelines.as_deref())?;
        templates
            .validate()
            .context("checking the pipeline templates")?;
        // Renewed every half-life, to the second.
        anyhow::ensure!(
            self.turn_ttl >= Duration::from_secs(2),
            "--turn-ttl must be at least 2s"
        );
        let turn = match (self.turn, self.turn_secret) {
            (Some(url), Some(secret)) => Some(TurnSettings {
                url,
                secret,
                ttl: self.turn_ttl,
            }),
            (None, None) => None,
            _ => anyhow::bail!("--turn and --turn-secret go together"),
        };
        let webrtc = WebrtcSettings {
            jitter_latency_ms: self.jitter_latency_ms,
            stun_server: self.stun.as_ref().map(|s| format!("stun://{s}")),
            ice_addresses: self.ice_addresses,
            turn: turn.clone(),
            turn_uris: Vec::new(),
            relay_only: false,
            certificate: Some(Arc::new(DtlsCertificate::generate()?)),
        };
        let limits = Limits {
            max_message_bytes: self.max_message_bytes.max(1024),
            messages_per_second: self.messages_per_second.max(0.1),
            message_burst: self.message_burst.max(1),
            max_candidates: self.max_candidates,
            join_timeout: self.join_timeout,
            resume_grace: self.resume_grace,
            poll_timeout: self.poll_timeout,
            ..Limits::default()
        };
        let ice_servers = self
            .stun
            .iter()
            .map(|s| IceServer {
                urls: vec![format!("stun:{s}")],
                username: None,
                credential: None,
            })
            .collect();
        let mcu = McuSettings {
            canvas: self.canvas,
            webrtc,
            templates: Arc::new(templates),
            keyframe_interval: Duration::from_millis(500),
            max_visible: usize::from(self.max_visible),
            max_mixed_speakers: usize::from(self.max_mixed_speakers),
            ladder: self.ladder.clone(),
        };
        let recording_urls = self
            .auth_secret
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(|secret| crate::signaling::RecordingUrls {
                signer: crate::recording::signed_url::UrlSigner::from_auth_secret(secret),
                ttl: self.recording_url_ttl,
            });
        Ok(Config {
            listen: self.listen,
            assets_dir: self.assets.unwrap_or_else(default_assets_dir),
            rooms: RoomSettings {
                mcu,
                max_participants: self.max_participants,
                max_rooms: self.max_rooms.max(1),
                max_rooms_per_ip: self.max_rooms_per_ip.max(1),
                room_creations_per_ip: self.room_creations_per_ip.max(1),
                ice_servers,
                recording: RecordingSettings {
                    dir: self.record_dir.clone(),
                    auto: self.auto_record.then_some(self.auto_record_format),
                },
                turn,
            },
            signaling: SignalingSettings {
                limits,
                max_connections_per_identity: self.max_connections_per_identity.max(1),
                api_secret: self.api_secret.filter(|s| !s.is_empty()).or_else(|| {
                    self.auth_secret
                        .as_deref()
                        .filter(|s| !s.is_empty())
                        .map(crate::auth::derive_api_secret)
                }),
                auth_secret: self.auth_secret.filter(|s| !s.is_empty()),
                allowed_origins: self.allowed_origins,
                public_hosts: self.public_hosts,
                trusted_proxies: self.trusted_proxies.clone(),
                recording_urls,
            },
            record_dir: self.record_dir,
            http: HttpSettings {
                header_timeout: self.header_timeout,
                body_timeout: self.body_timeout,
                max_connections_per_ip: self.max_connections_per_ip.max(1),
                trusted_proxies: self.trusted_proxies,
            },
        })
    }
}

/// ./assets when run from the checkout, else the one this binary was built from.
fn default_assets_dir() -> PathBuf {
    let local = PathBuf::from("assets");
    if local.join("index.html").exists() {
        local
    } else {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canvas_flag_parses_and_rejects_nonsense() {
        assert_eq!(
            parse_canvas("640x360@15").unwrap(),
            Canvas {
                width: 640,
                height: 360,
                fps: 15
            }
        );
        for bad in ["640x360", "x@1", "641x360@30", "640x360@0", "99999x360@30"] {
            assert!(parse_canvas(bad).is_err(), "{bad}");
        }
    }
}
