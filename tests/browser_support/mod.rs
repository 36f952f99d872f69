//! Real headless browsers for the browser tests: Chromium, driven through
//! Debian's chromedriver (WebDriver) with fantoccini, and Firefox ESR,
//! driven through its own WebDriver BiDi (firefox.rs). Fake camera and
//! microphone, kept off the network; each page is its own browser session,
//! and the tests drive a page the same way whichever browser it is.
#![allow(dead_code)]

pub mod firefox;

use anyhow::{Context, Result, anyhow};
use fantoccini::{Client, ClientBuilder, Locator};
use firefox::FirefoxPage;
use serde_json::{Value, json};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// A chromedriver process on a free loopback port; killed on drop with
/// every Chromium it started.
pub struct Chromium {
    driver: Child,
    url: String,
}

impl Chromium {
    pub async fn start() -> Result<Chromium> {
        if !std::path::Path::new(CHROMEDRIVER).exists() {
            return Err(anyhow!(
                "{CHROMEDRIVER} is missing: `make test` installs Debian's chromium and chromium-driver"
            ));
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        // Its own process group, which the Chromiums it starts join: a test
        // that fails mid-way takes them all down on drop.
        let driver = Command::new(CHROMEDRIVER)
            .process_group(0)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting chromedriver")?;
        let chromium = Chromium {
            driver,
            url: format!("http://127.0.0.1:{port}"),
        };
        // Ready when its status endpoint answers.
        let status = format!("{}/status", chromium.url);
        super::common::eventually(Duration::from_secs(20), || async {
            reqwest::get(&status).await?;
            Ok(())
        })
        .await
        .context("chromedriver does not answer")?;
        Ok(chromium)
    }

    /// A new browser (its own session and profile) named `name` in reports,
    /// whose camera and microphone are granted.
    pub async fn page(&self, name: &str) -> Result<Page> {
        self.launch(name, "--use-fake-ui-for-media-stream").await
    }

    /// A browser whose camera films a solid `colour` (0xRRGGBB) and whose
    /// microphone hears a `tone_hz` sine: what the others see and hear of
    /// it can be checked exactly.
    pub async fn page_with_devices(&self, name: &str, colour: u32, tone_hz: f64) -> Result<Page> {
        let devices = fake_devices(colour, tone_hz)?;
        self.launch_with(name, "--use-fake-ui-for-media-stream", &devices)
            .await
    }

    /// A browser whose person refuses camera and microphone access.
    pub async fn page_denying_devices(&self, name: &str) -> Result<Page> {
        self.launch(name, "--deny-permission-prompts").await
    }

    /// A browser with its own colour and tone (see `page_with_devices`)
    /// that reaches everything, loopback included, through the HTTP proxy at
    /// `proxy` (host:port).
    pub async fn page_behind_proxy(
        &self,
        name: &str,
        proxy: &str,
        colour: u32,
        tone_hz: f64,
    ) -> Result<Page> {
        let mut args = fake_devices(colour, tone_hz)?;
        args.push(format!("--proxy-server=http://{proxy}"));
        // Chromium sends loopback directly unless told otherwise.
        args.push("--proxy-bypass-list=<-loopback>".to_owned());
        self.launch_with(name, "--use-fake-ui-for-media-stream", &args)
            .await
    }

    /// `permissions`: how the camera and microphone prompt is answered.
    async fn launch(&self, name: &str, permissions: &str) -> Result<Page> {
        self.launch_with(name, permissions, &[]).await
    }

    async fn launch_with(&self, name: &str, permissions: &str, extra: &[String]) -> Result<Page> {
        let base = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            // Camera and microphone: Chromium's synthetic ones.
            "--use-fake-device-for-media-stream",
            permissions,
            "--autoplay-policy=no-user-gesture-required",
            // The server's ICE is pinned to 127.0.0.1 in tests; Chromium gathers
            // loopback candidates only when told, and hides host addresses
            // behind mDNS names that nothing here resolves.
            "--allow-loopback-in-peer-connection",
            "--disable-features=WebRtcHideLocalIpsWithMdns",
            // Off the network: this machine reaches no Google service.
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-timer-throttling",
            "--disable-renderer-backgrounding",
            "--window-size=1280,900",
        ];
        let args: Vec<String> = base
            .iter()
            .map(|a| a.to_string())
            .chain(extra.iter().cloned())
            .collect();
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({ "binary": CHROMIUM, "args": args }),
        );
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&self.url)
            .await
            .with_context(|| format!("opening a Chromium session for {name}"))?;
        Ok(Page {
            driver: Driver::Chromium(client),
            name: name.to_owned(),
        })
    }
}

/// A Firefox page whose camera films a solid `colour` and whose microphone
/// hears a `tone_hz` sine (see `Chromium::page_with_devices`).
pub async fn firefox_page(name: &str, colour: u32, tone_hz: f64) -> Result<Page> {
    Ok(Page {
        driver: Driver::Firefox(FirefoxPage::launch(name, colour, tone_hz).await?),
        name: name.to_owned(),
    })
}

/// Which browser a test page is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Browser {
    Chromium,
    Firefox,
}

impl Drop for Chromium {
    fn drop(&mut self) {
        if let Ok(group) = i32::try_from(self.driver.id()) {
            // SAFETY: kill(2) with a negative pid signals that process group:
            // chromedriver's, which only it and its browsers are in.
            unsafe {
                libc::kill(-group, libc::SIGKILL);
            }
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

enum Driver {
    Chromium(Client),
    Firefox(FirefoxPage),
}

pub struct Page {
    driver: Driver,
    pub name: String,
}

impl Page {
    pub fn browser(&self) -> Browser {
        match self.driver {
            Driver::Chromium(_) => Browser::Chromium,
            Driver::Firefox(_) => Browser::Firefox,
        }
    }

    /// Opens the client at `base` with the join form filled by the URL (as a
    /// shared link would) and clicks "Join".
    pub async fn join(&self, base: &str, room: &str, mode: &str, viewer: bool) -> Result<()> {
        let options = if viewer { "&viewer=1" } else { "" };
        self.join_with(base, room, mode, options).await
    }

    /// As `join`, with more of the link's options (`&token=...`,
    /// `&transport=...`) after the form's fields.
    pub async fn join_with(&self, base: &str, room: &str, mode: &str, options: &str) -> Result<()> {
        let url = format!(
            "{base}/?room={room}&mode={mode}&name={}{options}",
            self.name
        );
        self.open(&url).await?;
        self.click("#join").await
    }

    /// Opens `url` as it is (no join).
    pub async fn open(&self, url: &str) -> Result<()> {
        match &self.driver {
            Driver::Chromium(client) => client.goto(url).await?,
            Driver::Firefox(page) => page.goto(url).await?,
        }
        Ok(())
    }

    /// Runs `script` (a function body that may `await`) and returns its value.
    pub async fn eval(&self, script: &str) -> Result<Value> {
        self.eval_with(script, vec![]).await
    }

    /// As `eval`, with `arguments` for the script.
    pub async fn eval_with(&self, script: &str, arguments: Vec<Value>) -> Result<Value> {
        match &self.driver {
            Driver::Chromium(client) => Ok(client.execute(script, arguments).await?),
            Driver::Firefox(page) => page.eval(script, arguments).await,
        }
    }

    /// Waits (up to 10 s) for `selector` and clicks it.
    pub async fn click(&self, selector: &str) -> Result<()> {
        match &self.driver {
            Driver::Chromium(client) => {
                client
                    .wait()
                    .at_most(Duration::from_secs(10))
                    .for_element(Locator::Css(selector))
                    .await?
                    .click()
                    .await?;
            }
            Driver::Firefox(page) => page.click(selector).await?,
        }
        Ok(())
    }

    /// The text of the first element matching `selector`.
    pub async fn text(&self, selector: &str) -> Result<String> {
        let text = self
            .eval_with(
                "return document.querySelector(arguments[0])?.textContent ?? null;",
                vec![json!(selector)],
            )
            .await?;
        text.as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("{}: no {selector} on the page", self.name))
    }

    /// `window.gridmix.state()`: status, participants, the composite or the
    /// tiles, frames decoded, messages shown.
    pub async fn state(&self) -> Result<Value> {
        self.eval("return await window.gridmix.state();").await
    }

    /// The colour around (fx, fy), fractions of the frame, of the composite
    /// ("composite") or of a participant's tile.
    pub async fn sample(&self, target: &str, fx: f64, fy: f64) -> Result<[u8; 3]> {
        let value = self
            .eval_with(
                "return window.gridmix.sampleColour(arguments[0], arguments[1], arguments[2]);",
                vec![json!(target), json!(fx), json!(fy)],
            )
            .await?;
        let rgb: Vec<u8> = serde_json::from_value(value.clone())
            .map_err(|_| anyhow!("{}: no picture to sample in {target}: {value}", self.name))?;
        rgb.try_into()
            .map_err(|_| anyhow!("{}: bad sample {value}", self.name))
    }

    /// Writes a PNG of the page to test-output/<label>-<page>.png.
    pub async fn screenshot(&self, label: &str) -> Result<PathBuf> {
        let png = match &self.driver {
            Driver::Chromium(client) => client.screenshot().await?,
            Driver::Firefox(page) => page.screenshot().await?,
        };
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("test-output");
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{label}-{}.png", self.name));
        std::fs::write(&path, png)?;
        Ok(path)
    }

    pub async fn close(self) {
        match self.driver {
            Driver::Chromium(client) => {
                let _ = client.close().await;
            }
            // Dropping it stops that Firefox.
            Driver::Firefox(page) => drop(page),
        }
    }
}

/// Unwraps a check's result; on failure, first saves a screenshot of every
/// page so a person can see what went wrong.
pub async fn or_screenshots<T>(result: Result<T>, label: &str, pages: &[&Page]) -> T {
    match result {
        Ok(v) => v,
        Err(e) => {
            let mut shots = Vec::new();
            for page in pages {
                if let Ok(path) = page.screenshot(&format!("failed-{label}")).await {
                    shots.push(path.display().to_string());
                }
                if let Ok(state) = page.state().await {
                    eprintln!("{} state: {state}", page.name);
                }
            }
            panic!("{label}: {e:#}\nscreenshots: {}", shots.join(", "));
        }
    }
}

/// An HTTP proxy on a free loopback port that forwards plain HTTP requests
/// and refuses WebSocket: CONNECT tunnels (which browsers use for WebSocket
/// through a proxy) and Upgrade requests get 403, as on corporate networks
/// that block WebSocket. Each connection carries one request.
pub struct BlockingProxy {
    pub addr: String,
    task: tokio::task::JoinHandle<()>,
    /// WebSocket attempts refused so far.
    pub refused: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Drop for BlockingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl BlockingProxy {
    pub async fn start() -> Result<BlockingProxy> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?.to_string();
        let refused = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = refused.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let counter = counter.clone();
                tokio::spawn(async move {
                    let _ = proxy_one(client, counter).await;
                });
            }
        });
        Ok(BlockingProxy {
            addr,
            task,
            refused,
        })
    }
}

async fn proxy_one(
    mut client: tokio::net::TcpStream,
    refused: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // The request head, up to the blank line.
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if client.read(&mut byte).await? == 0 || head.len() > 64 * 1024 {
            return Ok(());
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head).to_string();
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (method, target, version) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or("HTTP/1.1"),
    );
    let upgrade = text.to_ascii_lowercase().contains("\r\nupgrade:");
    if method == "CONNECT" || upgrade {
        refused.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        client
            .write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .await?;
        return Ok(());
    }
    // http://host:port/path -> host:port and /path.
    let rest = target.strip_prefix("http://").unwrap_or(target);
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let mut upstream = tokio::net::TcpStream::connect(host).await?;
    let mut forwarded = format!("{method} {path} {version}\r\n");
    for line in lines.filter(|l| !l.is_empty()) {
        let name = line
            .split(':')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        if name != "connection" && name != "proxy-connection" && name != "keep-alive" {
            forwarded.push_str(line);
            forwarded.push_str("\r\n");
        }
    }
    forwarded.push_str("Connection: close\r\n\r\n");
    upstream.write_all(forwarded.as_bytes()).await?;
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}

/// Chromium's flags for a fake camera filming `colour` and a fake
/// microphone hearing `tone_hz`, from files written for them.
fn fake_devices(colour: u32, tone_hz: f64) -> Result<Vec<String>> {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("fake-devices");
    std::fs::create_dir_all(&dir)?;
    let video = dir.join(format!("{colour:06x}.y4m"));
    std::fs::write(&video, solid_y4m(colour, 640, 360, 15))?;
    let audio = dir.join(format!("{tone_hz}.wav"));
    std::fs::write(&audio, tone_wav(tone_hz, 48_000, 2))?;
    Ok(vec![
        format!("--use-file-for-fake-video-capture={}", video.display()),
        format!("--use-file-for-fake-audio-capture={}", audio.display()),
    ])
}

/// A YUV4MPEG2 clip (Chromium's fake camera file format) of `frames` frames
/// of one colour, in BT.601 limited range as a camera would deliver it.
pub fn solid_y4m(colour: u32, width: usize, height: usize, frames: usize) -> Vec<u8> {
    let [r, g, b] =
        [(colour >> 16) & 0xff, (colour >> 8) & 0xff, colour & 0xff].map(|c| c as f64 / 255.0);
    let y = 16.0 + 65.481 * r + 128.553 * g + 24.966 * b;
    let u = 128.0 - 37.797 * r - 74.203 * g + 112.0 * b;
    let v = 128.0 + 112.0 * r - 93.786 * g - 18.214 * b;
    let [y, u, v] = [y, u, v].map(|c| c.round().clamp(0.0, 255.0) as u8);
    let mut clip = format!("YUV4MPEG2 W{width} H{height} F30:1 Ip A1:1 C420jpeg\n").into_bytes();
    let chroma = (width / 2) * (height / 2);
    for _ in 0..frames {
        clip.extend_from_slice(b"FRAME\n");
        clip.extend(std::iter::repeat_n(y, width * height));
        clip.extend(std::iter::repeat_n(u, chroma));
        clip.extend(std::iter::repeat_n(v, chroma));
    }
    clip
}

/// A mono 16-bit WAV file of a sine at `hz` (Chromium's fake microphone
/// file format), amplitude 0.3 like the bots' tones.
pub fn tone_wav(hz: f64, rate: u32, seconds: u32) -> Vec<u8> {
    let samples = rate * seconds;
    let data_len = samples * 2;
    let mut wav = Vec::with_capacity(44 + data_len as usize);
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + data_len).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes()); // PCM
    wav.extend_from_slice(&1u16.to_le_bytes()); // mono
    wav.extend_from_slice(&rate.to_le_bytes());
    wav.extend_from_slice(&(rate * 2).to_le_bytes());
    wav.extend_from_slice(&2u16.to_le_bytes());
    wav.extend_from_slice(&16u16.to_le_bytes());
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&data_len.to_le_bytes());
    for n in 0..samples {
        let t = f64::from(n) / f64::from(rate);
        let sample = (0.3 * (2.0 * std::f64::consts::PI * hz * t).sin() * 32767.0) as i16;
        wav.extend_from_slice(&sample.to_le_bytes());
    }
    wav
}
