//! The `gridmix serve` binary as an operator runs it: it serves /healthz,
//! and SIGTERM stops it cleanly with a call in progress (the participant's
//! socket is closed, the process exits with success).

mod common;

use common::*;
use gridmix::bot::Bot;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TIMEOUT: Duration = Duration::from_secs(30);

/// Kills the child if the test fails before it is stopped.
struct ServeProcess(Child);

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `gridmix serve` on a free loopback port and returns it with the
/// address it logged.
fn spawn_serve() -> (ServeProcess, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gridmix"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--ice-address",
            LOOPBACK,
        ])
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("gridmix serve starts");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("serving on http://").nth(1) {
                let addr: String = rest
                    .chars()
                    .take_while(|c| !c.is_whitespace() && *c != '\u{1b}')
                    .collect();
                let _ = tx.send(addr);
            }
        }
    });
    let addr = rx
        .recv_timeout(TIMEOUT)
        .expect("the server logs its address");
    (ServeProcess(child), addr)
}

async fn http_get(addr: &str, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connects");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_stops_the_server_cleanly_during_a_call() {
    let (mut serve, addr) = spawn_serve();
    let health = http_get(&addr, "/healthz").await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.ends_with("ok"), "{health}");

    let mut config =
        gridmix::bot::BotConfig::new(&format!("ws://{addr}/ws"), "term", "bot", 0x00ff00, 500.0);
    config.ice_addresses = vec![LOOPBACK.to_owned()];
    let bot = Bot::join(config).await.unwrap();
    wait_for_tiles(&bot, &[0x00ff00], TIMEOUT)
        .await
        .expect("a call in progress");

    let pid = serve.0.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let status = eventually(TIMEOUT, || {
        let exited = serve.0.try_wait();
        async move {
            match exited? {
                Some(status) => Ok(status),
                None => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    Err(anyhow::anyhow!("still running"))
                }
            }
        }
    })
    .await
    .expect("the server exits after SIGTERM");
    assert!(status.success(), "exit status {status}");
    bot.wait_for_state(TIMEOUT, |s| s.disconnected)
        .await
        .expect("the bot's signaling socket is closed by the server");
    bot.vanish().await;
}
