//! The server the bench measures: a `gridmix serve` child process on a free
//! loopback port (so its CPU and memory are its own), or an external one.

use super::process::{self, ProcessSample};
use anyhow::{Context, Result, anyhow, bail};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct ServerUnderTest {
    child: Option<Child>,
    /// ws://host:port/ws
    pub ws_url: String,
    /// http://host:port
    pub http_base: String,
}

impl ServerUnderTest {
    /// Starts this executable's `serve` on 127.0.0.1 with ICE on loopback;
    /// its log goes to `log`. With `link_addresses` (the host's ends of
    /// shaped links) it listens on every address and has ICE candidates on
    /// those too, so participants behind the links reach it.
    pub async fn start_child(log: &Path, link_addresses: &[String]) -> Result<ServerUnderTest> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let listen = if link_addresses.is_empty() {
            format!("127.0.0.1:{port}")
        } else {
            format!("0.0.0.0:{port}")
        };
        let log_file =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let child =
            Command::new(std::env::current_exe().context("finding the gridmix executable")?)
                .args(["serve", "--listen", &listen, "--ice-address", "127.0.0.1"])
                .args(link_addresses.iter().flat_map(|a| ["--ice-address", a]))
                .args(["--max-participants", "64"])
                .env(
                    "RUST_LOG",
                    std::env::var("GRIDMIX_BENCH_SERVER_LOG").unwrap_or_else(|_| "warn".into()),
                )
                .stdin(Stdio::null())
                .stdout(log_file.try_clone()?)
                .stderr(log_file)
                .spawn()
                .context("starting gridmix serve")?;
        let mut server = ServerUnderTest {
            child: Some(child),
            ws_url: format!("ws://127.0.0.1:{port}/ws"),
            http_base: format!("http://127.0.0.1:{port}"),
        };
        server.wait_until_healthy(Duration::from_secs(20)).await?;
        Ok(server)
    }

    /// An external server at `ws_url` (ws://host:port/ws).
    pub async fn external(ws_url: &str) -> Result<ServerUnderTest> {
        let rest = ws_url
            .strip_prefix("ws://")
            .ok_or_else(|| anyhow!("--server must be ws://host:port/ws"))?;
        let host = rest.split('/').next().unwrap_or(rest);
        let mut server = ServerUnderTest {
            child: None,
            ws_url: ws_url.to_owned(),
            http_base: format!("http://{host}"),
        };
        server.wait_until_healthy(Duration::from_secs(5)).await?;
        Ok(server)
    }

    async fn wait_until_healthy(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(child) = &mut self.child
                && let Some(status) = child.try_wait()?
            {
                bail!("gridmix serve exited at start-up ({status}); see its log");
            }
            if get_text(&format!("{}/healthz", self.http_base))
                .await
                .is_ok_and(|b| b.trim() == "ok")
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "the server at {} did not answer /healthz within {timeout:?}",
                    self.http_base
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The port the server listens on.
    pub fn port(&self) -> Result<u16> {
        self.http_base
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| anyhow!("no port in {}", self.http_base))
    }

    /// The child's CPU, memory and threads now; None for an external server.
    pub fn sample(&self) -> Option<Result<ProcessSample>> {
        self.child.as_ref().map(|c| process::sample(Some(c.id())))
    }

    /// The child's open descriptors now; None for an external server.
    pub fn descriptors(&self) -> Option<u64> {
        let child = self.child.as_ref()?;
        let entries = std::fs::read_dir(format!("/proc/{}/fd", child.id())).ok()?;
        Some(entries.count() as u64)
    }

    /// Whether room `id` is still listed by the server.
    pub async fn has_room(&self, id: &str) -> Result<bool> {
        Ok(self.room(id).await?.is_some())
    }

    /// Room `id` as `/api/rooms` describes it, if it is listed.
    pub async fn room(&self, id: &str) -> Result<Option<serde_json::Value>> {
        let body = get_text(&format!("{}/api/rooms", self.http_base)).await?;
        let rooms: serde_json::Value = serde_json::from_str(&body)?;
        Ok(rooms
            .as_array()
            .and_then(|a| a.iter().find(|r| r["id"] == id).cloned()))
    }

    /// Sets room `id`'s layout through the layout API.
    pub async fn set_layout(&self, id: &str, layout: crate::protocol::LayoutKind) -> Result<()> {
        reqwest::Client::new()
            .put(format!("{}/api/rooms/{id}/layout", self.http_base))
            .json(&serde_json::json!({ "layout": layout.as_str() }))
            .timeout(Duration::from_secs(5))
            .send()
            .await?
            .error_for_status()
            .context("setting the layout")?;
        Ok(())
    }

    /// Stops the child with SIGTERM (a clean shutdown), then waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ServerUnderTest {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn get_text(url: &str) -> Result<String> {
    let response = reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(5))
        .send()
        .await?
        .error_for_status()?;
    Ok(response.text().await?)
}
