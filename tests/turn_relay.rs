//! TURN with ephemeral credentials through Debian's coturn, run here on
//! loopback with a shared secret: a bot forced to relay-only ICE gets its
//! call through the relay with the credentials gridmix generated (and the
//! server's own webrtcbins allocate with theirs); with the wrong secret the
//! relay refuses them and no media flows.

mod common;

use common::*;
use gridmix::bot::Bot;
use gridmix::config::ServeArgs;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(40);
const SECRET: &str = "shared-with-coturn";
const TURNSERVER: &str = "/usr/bin/turnserver";

/// A coturn child process on a free loopback port; killed on drop.
struct Coturn {
    child: Child,
    port: u16,
    log: Arc<Mutex<Vec<String>>>,
    _dir: TempDir,
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Coturn {
    async fn start(secret: &str) -> Coturn {
        assert!(
            std::path::Path::new(TURNSERVER).exists(),
            "{TURNSERVER} is missing: `make test` installs Debian's coturn"
        );
        // A free UDP port: bound and released (coturn binds it right after).
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir =
            std::env::temp_dir().join(format!("gridmix-coturn-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut child = Command::new(TURNSERVER)
            .args([
                "-n",
                "--listening-ip=127.0.0.1",
                &format!("--listening-port={port}"),
                "--relay-ip=127.0.0.1",
                "--use-auth-secret",
                &format!("--static-auth-secret={secret}"),
                "--realm=gridmix.test",
                "--no-tls",
                "--no-dtls",
                "--no-tcp",
                "--no-cli",
                // The test's peers are all on loopback.
                "--allow-loopback-peers",
                "--log-file=stdout",
                "--simple-log",
                "--verbose",
                &format!("--pidfile={}", dir.join("turnserver.pid").display()),
                &format!("--userdb={}", dir.join("turndb").display()),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("turnserver starts");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let coturn = Coturn {
            child,
            port,
            log,
            _dir: TempDir(dir),
        };
        coturn
            .wait_for_log(|l| l.contains("Total General servers"), "coturn ready")
            .await;
        coturn
    }

    fn url(&self) -> String {
        format!("turn:127.0.0.1:{}?transport=udp", self.port)
    }

    fn has_line(&self, want: impl Fn(&str) -> bool) -> bool {
        self.log.lock().unwrap().iter().any(|l| want(l))
    }

    async fn wait_for_log(&self, want: impl Fn(&str) -> bool, what: &str) {
        eventually(TIMEOUT, || async {
            anyhow::ensure!(self.has_line(&want), "not in coturn's log");
            Ok(())
        })
        .await
        .unwrap_or_else(|e| panic!("{what}: {e:#}:\n{}", self.log.lock().unwrap().join("\n")));
    }
}

/// A successful TURN allocation by a user whose name ends with `identity`.
fn allocated_by(identity: &str) -> impl Fn(&str) -> bool + '_ {
    move |line: &str| {
        line.contains(&format!(":{identity}>"))
            && line.contains("ALLOCATE")
            && line.contains("success")
    }
}

fn server_args(coturn: &Coturn, secret: &str) -> ServeArgs {
    ServeArgs {
        turn: Some(coturn.url()),
        turn_secret: Some(secret.to_owned()),
        ..ServeArgs::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_relay_only_bot_gets_its_call_through_coturn_with_generated_credentials() {
    let coturn = Coturn::start(SECRET).await;
    let server = start_server(server_args(&coturn, SECRET)).await;
    let green = Bot::join(bot_config(&server, "turn", "green", 0x00ff00, 700.0))
        .await
        .unwrap();
    let mut config = bot_config(&server, "turn", "relayed", 0xff0000, 400.0);
    config.relay_only = true;
    let relayed = Bot::join(config).await.expect("the relay-only bot joins");

    for bot in [&green, &relayed] {
        wait_for_tiles(bot, &[0x00ff00, 0xff0000], TIMEOUT)
            .await
            .expect("both tiles, the relayed bot's media through coturn");
    }
    wait_for_tones(&relayed, &[700.0], &[400.0], TIMEOUT)
        .await
        .expect("the relayed bot hears green");
    // Every candidate the relay-only bot offered is a relay candidate.
    let candidates: Vec<String> = relayed
        .state()
        .local_candidates
        .into_iter()
        .filter(|c| !c.is_empty())
        .collect();
    assert!(!candidates.is_empty());
    assert!(
        candidates.iter().all(|c| c.contains("typ relay")),
        "{candidates:?}"
    );
    // coturn allocated for the relayed bot, with the username gridmix made
    // for it ("expiry:participant id"), and for the server's own webrtcbins.
    coturn
        .wait_for_log(allocated_by(relayed.id()), "the bot's allocation")
        .await;
    coturn
        .wait_for_log(allocated_by("gridmix-server"), "the server's allocation")
        .await;
    assert!(
        relayed.state().errors.is_empty(),
        "{:?}",
        relayed.state().errors
    );
    green.leave().await;
    relayed.leave().await;
    wait_until_idle(&server, TIMEOUT).await.expect("all gone");
    server.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_the_wrong_secret_the_relay_refuses_and_no_media_flows() {
    let coturn = Coturn::start(SECRET).await;
    let server = start_server(server_args(&coturn, "not-the-shared-secret")).await;
    let green = Bot::join(bot_config(&server, "turn-bad", "green", 0x00ff00, 700.0))
        .await
        .unwrap();
    let mut config = bot_config(&server, "turn-bad", "relayed", 0xff0000, 400.0);
    config.relay_only = true;
    let relayed = Bot::join(config).await.expect("signaling still works");
    let id = relayed.id().to_owned();

    // coturn hears the bot's allocation with gridmix's credentials and
    // refuses it.
    coturn
        .wait_for_log(
            |l| l.contains(&format!(":{id}>")) && l.contains("error 401"),
            "a refused allocation",
        )
        .await;
    // The green bot's media reaches the room, so the room works...
    wait_for_tiles(&green, &[0x00ff00, 0x3c3c3c], TIMEOUT)
        .await
        .expect("green's own tile arrives, the relayed bot's stays grey");
    // ...but the relay-only bot has no candidate and gets no media: once it
    // has finished gathering (the path was tried to its end), it has no
    // candidate the server could reach, so no media can ever flow.
    relayed
        .wait_for_state(TIMEOUT, |s| s.local_candidates.iter().any(String::is_empty))
        .await
        .expect("the relay-only bot finishes gathering");
    assert!(
        !coturn.has_line(allocated_by(&id)),
        "no allocation succeeded"
    );
    assert!(
        relayed
            .state()
            .local_candidates
            .iter()
            .all(String::is_empty),
        "no candidate at all: {:?}",
        relayed.state().local_candidates
    );
    assert_eq!(relayed.frames_received(), 0, "no media without the relay");
    green.leave().await;
    relayed.leave().await;
    wait_until_idle(&server, TIMEOUT).await.expect("all gone");
    server.shut_down().await;
}

/// The expiry of the TURN username a bot holds now ("expiry:identity").
fn turn_expiry(bot: &Bot) -> u64 {
    bot.state()
        .ice_servers
        .iter()
        .find_map(|s| s.username.as_deref()?.split_once(':')?.0.parse().ok())
        .expect("TURN credentials")
}

/// A long call: by the time a relay-only participant opens its next peer
/// connection (to a mesh newcomer), the credentials it got in "joined" have
/// expired and coturn would refuse them; it relays with the ones the server
/// renewed meanwhile ("ice-servers").
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connections_opened_late_in_a_call_relay_with_renewed_credentials() {
    let coturn = Coturn::start(SECRET).await;
    let server = start_server(ServeArgs {
        turn_ttl: Duration::from_secs(2),
        ..server_args(&coturn, SECRET)
    })
    .await;
    let relayed_config = |name: &str, colour: u32, tone: f64| {
        let mut config = bot_config(&server, "turn-renew", name, colour, tone);
        config.mode = gridmix::protocol::Mode::Mesh;
        config.relay_only = true;
        config
    };
    let early = Bot::join(relayed_config("early", 0xff0000, 400.0))
        .await
        .unwrap();
    let joined_expiry = turn_expiry(&early);
    eventually(TIMEOUT, || async {
        let now = gridmix::auth::unix_now();
        anyhow::ensure!(
            now > joined_expiry,
            "{now}: joined's credentials still valid"
        );
        anyhow::ensure!(turn_expiry(&early) > now, "no valid renewal yet");
        Ok(())
    })
    .await
    .expect("joined's credentials expired, renewed ones held");
    let late = Bot::join(relayed_config("late", 0x0000ff, 900.0))
        .await
        .unwrap();
    wait_for_colour_from(&early, late.id(), 0x0000ff, TIMEOUT)
        .await
        .expect("early sees late, through the relay");
    wait_for_colour_from(&late, early.id(), 0xff0000, TIMEOUT)
        .await
        .expect("late sees early, through the relay");
    // early's allocation was made with a renewed username, and none with
    // the one "joined" gave it.
    let early_id = early.id().to_owned();
    let renewed = move |line: &str| {
        allocated_by(&early_id)(line)
            && line
                .split_once("user <")
                .and_then(|(_, rest)| rest.split_once(':'))
                .and_then(|(expiry, _)| expiry.parse::<u64>().ok())
                .is_some_and(|expiry| expiry > joined_expiry)
    };
    coturn
        .wait_for_log(renewed, "early's allocation with renewed credentials")
        .await;
    assert!(
        !coturn
            .has_line(|l| l.contains(&format!("<{joined_expiry}:{}>", early.id()))
                && l.contains("success")),
        "joined's credentials were never used"
    );
    for bot in [&early, &late] {
        assert!(bot.state().errors.is_empty(), "{:?}", bot.state().errors);
    }
    early.leave().await;
    late.leave().await;
    wait_until_idle(&server, TIMEOUT).await.expect("all gone");
    server.shut_down().await;
}
