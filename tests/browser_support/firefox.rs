//! Real headless Firefox ESR (Debian's `firefox-esr`) for the browser tests.
//! Debian has no geckodriver, so each page is its own Firefox process,
//! driven through the WebDriver BiDi server built into Firefox
//! (`--remote-debugging-port`), over a WebSocket of our own.
//!
//! Firefox has no camera or microphone files like Chromium's: its fake
//! microphone (`media.navigator.streams.fake`) plays a sine at
//! `media.navigator.audio.fake_frequency`, set per profile to the page's
//! tone, and a script loaded before the page's own replaces the fake
//! camera's picture (which changes colour) with a canvas painted the page's
//! colour.

use super::super::common::eventually;
use anyhow::{Context, Result, anyhow, bail};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

pub const FIREFOX: &str = "/usr/bin/firefox-esr";

/// How long one BiDi command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// Replies still awaited, by command id.
type Waiting = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<Value>>>>>;

/// One Firefox process with one page, and the BiDi session driving it.
/// Dropping it kills the process (and its children).
pub struct FirefoxPage {
    child: Child,
    profile: PathBuf,
    commands: mpsc::UnboundedSender<Message>,
    waiting: Waiting,
    next_id: Mutex<u64>,
    context: String,
}

/// The profile preferences every test Firefox starts with.
fn preferences(tone_hz: f64) -> String {
    let prefs = [
        // Camera and microphone: Firefox's fake ones, granted without asking.
        ("media.navigator.streams.fake", "true".to_owned()),
        ("media.navigator.permission.disabled", "true".to_owned()),
        (
            "media.navigator.audio.fake_frequency",
            format!("{}", tone_hz.round() as u32),
        ),
        ("media.autoplay.default", "0".to_owned()),
        ("media.autoplay.blocking_policy", "0".to_owned()),
        // The server's ICE is pinned to 127.0.0.1 in tests: Firefox gathers
        // loopback candidates only when told, and hides host addresses
        // behind mDNS names that nothing here resolves.
        ("media.peerconnection.ice.loopback", "true".to_owned()),
        (
            "media.peerconnection.ice.obfuscate_host_addresses",
            "false".to_owned(),
        ),
        // Off the network: this machine reaches no Mozilla service.
        ("network.captive-portal-service.enabled", "false".to_owned()),
        ("network.connectivity-service.enabled", "false".to_owned()),
        ("app.update.disabledForTesting", "true".to_owned()),
        ("browser.shell.checkDefaultBrowser", "false".to_owned()),
        (
            "datareporting.policy.dataSubmissionEnabled",
            "false".to_owned(),
        ),
        (
            "toolkit.telemetry.reportingpolicy.firstRun",
            "false".to_owned(),
        ),
        (
            "services.settings.server",
            "\"http://127.0.0.1:9/\"".to_owned(),
        ),
        ("browser.safebrowsing.update.enabled", "false".to_owned()),
        ("extensions.update.enabled", "false".to_owned()),
    ];
    prefs
        .iter()
        .map(|(name, value)| format!("user_pref(\"{name}\", {value});\n"))
        .collect()
}

/// Runs before the page's scripts: the camera films a solid `colour`.
fn camera_script(colour: u32) -> String {
    format!(
        r##"() => {{
  const devices = navigator.mediaDevices;
  if (!devices) return;
  const original = devices.getUserMedia.bind(devices);
  devices.getUserMedia = async (constraints = {{}}) => {{
    const stream = constraints.audio
      ? await original({{ audio: constraints.audio, video: false }})
      : new MediaStream();
    if (constraints.video) {{
      const canvas = document.createElement("canvas");
      canvas.width = 640;
      canvas.height = 360;
      const context = canvas.getContext("2d");
      const paint = () => {{
        context.fillStyle = "#{colour:06x}";
        context.fillRect(0, 0, canvas.width, canvas.height);
      }};
      paint();
      setInterval(paint, 33);
      for (const track of canvas.captureStream(30).getVideoTracks()) stream.addTrack(track);
    }}
    return stream;
  }};
}}"##
    )
}

impl FirefoxPage {
    /// A new Firefox whose camera films `colour` and whose microphone
    /// hears `tone_hz`.
    pub async fn launch(name: &str, colour: u32, tone_hz: f64) -> Result<FirefoxPage> {
        if !std::path::Path::new(FIREFOX).exists() {
            bail!("{FIREFOX} is missing: `make test` installs Debian's firefox-esr");
        }
        let profile = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("firefox-{name}-{}", std::process::id()))
            .join(format!("{:x}", rand_suffix()));
        std::fs::create_dir_all(&profile)?;
        std::fs::write(profile.join("user.js"), preferences(tone_hz))?;
        // Its own process group: a failing test takes all of Firefox's
        // processes down on drop.
        let mut child = Command::new(FIREFOX)
            .process_group(0)
            .args(["--headless", "--no-remote", "--profile"])
            .arg(&profile)
            .args(["--remote-debugging-port", "0", "about:blank"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting firefox-esr")?;
        let stderr = child.stderr.take().ok_or_else(|| anyhow!("no stderr"))?;
        let (address_tx, address_rx) = oneshot::channel();
        // Firefox says where BiDi listens on stderr; the rest of what it
        // says there is read and dropped, so it never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut address_tx = Some(address_tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("WebDriver BiDi listening on ")
                    && let Some(tx) = address_tx.take()
                {
                    let _ = tx.send(url.trim().to_owned());
                }
            }
        });
        let url = tokio::time::timeout(Duration::from_secs(30), address_rx)
            .await
            .map_err(|_| anyhow!("{name}: Firefox did not start its BiDi server in 30 s"))?
            .map_err(|_| anyhow!("{name}: Firefox exited before starting BiDi"))?;
        let (socket, _) = tokio_tungstenite::connect_async(format!("{url}/session"))
            .await
            .with_context(|| format!("{name}: connecting to Firefox's BiDi at {url}"))?;
        let (mut sink, mut stream) = socket.split();
        let (commands, mut outgoing) = mpsc::unbounded_channel::<Message>();
        tokio::spawn(async move {
            while let Some(message) = outgoing.recv().await {
                if sink.send(message).await.is_err() {
                    break;
                }
            }
        });
        let waiting: Waiting = Arc::default();
        let replies = waiting.clone();
        tokio::spawn(async move {
            while let Some(Ok(message)) = stream.next().await {
                let Message::Text(text) = message else {
                    continue;
                };
                let Ok(reply) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                // Events have no id: nothing here waits for them.
                let Some(id) = reply["id"].as_u64() else {
                    continue;
                };
                let result = if reply["type"] == "error" {
                    Err(anyhow!("{}: {}", reply["error"], reply["message"]))
                } else {
                    Ok(reply["result"].clone())
                };
                if let Some(tx) = replies.lock().unwrap().remove(&id) {
                    let _ = tx.send(result);
                }
            }
        });
        let mut page = FirefoxPage {
            child,
            profile,
            commands,
            waiting,
            next_id: Mutex::new(0),
            context: String::new(),
        };
        page.command("session.new", json!({ "capabilities": {} }))
            .await
            .with_context(|| format!("{name}: opening a BiDi session"))?;
        let tree = page
            .command("browsingContext.getTree", json!({ "maxDepth": 0 }))
            .await?;
        page.context = tree["contexts"][0]["context"]
            .as_str()
            .ok_or_else(|| anyhow!("{name}: Firefox has no browsing context: {tree}"))?
            .to_owned();
        page.command(
            "script.addPreloadScript",
            json!({ "functionDeclaration": camera_script(colour) }),
        )
        .await?;
        Ok(page)
    }

    async fn command(&self, method: &str, params: Value) -> Result<Value> {
        let id = {
            let mut next = self.next_id.lock().unwrap();
            *next += 1;
            *next
        };
        let (tx, rx) = oneshot::channel();
        self.waiting.lock().unwrap().insert(id, tx);
        let message = json!({ "id": id, "method": method, "params": params });
        self.commands
            .send(Message::Text(message.to_string().into()))
            .map_err(|_| anyhow!("the BiDi connection is closed"))?;
        tokio::time::timeout(COMMAND_TIMEOUT, rx)
            .await
            .map_err(|_| anyhow!("{method} had no reply in {COMMAND_TIMEOUT:?}"))?
            .map_err(|_| anyhow!("the BiDi connection closed before {method} was answered"))?
            .with_context(|| method.to_owned())
    }

    pub async fn goto(&self, url: &str) -> Result<()> {
        self.command(
            "browsingContext.navigate",
            json!({ "context": self.context, "url": url, "wait": "complete" }),
        )
        .await?;
        Ok(())
    }

    /// Runs `body` (a function body that may `await` and `return`, with
    /// `arguments` as given) in the page; returns its value as JSON.
    pub async fn eval(&self, body: &str, arguments: Vec<Value>) -> Result<Value> {
        let arguments: Vec<Value> = arguments.iter().map(local_value).collect();
        let reply = self
            .command(
                "script.callFunction",
                json!({
                    "functionDeclaration": format!("async function() {{ {body} }}"),
                    "arguments": arguments,
                    "target": { "context": self.context },
                    "awaitPromise": true,
                    "resultOwnership": "none",
                }),
            )
            .await?;
        if reply["type"] == "exception" {
            bail!(
                "the page threw: {}",
                reply["exceptionDetails"]["text"].as_str().unwrap_or("?")
            );
        }
        Ok(json_of(&reply["result"]))
    }

    /// Waits until `selector` is on the page, then clicks it.
    pub async fn click(&self, selector: &str) -> Result<()> {
        eventually(Duration::from_secs(10), || async {
            let clicked = self
                .eval(
                    "const e = document.querySelector(arguments[0]); if (!e) return false; e.click(); return true;",
                    vec![json!(selector)],
                )
                .await?;
            if clicked != json!(true) {
                bail!("no {selector} on the page");
            }
            Ok(())
        })
        .await
    }

    pub async fn screenshot(&self) -> Result<Vec<u8>> {
        use base64::Engine;
        let reply = self
            .command(
                "browsingContext.captureScreenshot",
                json!({ "context": self.context }),
            )
            .await?;
        let data = reply["data"]
            .as_str()
            .ok_or_else(|| anyhow!("no screenshot data"))?;
        Ok(base64::engine::general_purpose::STANDARD.decode(data)?)
    }
}

impl Drop for FirefoxPage {
    fn drop(&mut self) {
        if let Ok(group) = i32::try_from(self.child.id()) {
            // SAFETY: kill(2) with a negative pid signals that process group:
            // this Firefox's, which only it and its child processes are in.
            unsafe {
                libc::kill(-group, libc::SIGKILL);
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// A JSON value as a BiDi local value (a function argument).
fn local_value(value: &Value) -> Value {
    match value {
        Value::Null => json!({ "type": "null" }),
        Value::Bool(b) => json!({ "type": "boolean", "value": b }),
        Value::Number(n) => json!({ "type": "number", "value": n }),
        Value::String(s) => json!({ "type": "string", "value": s }),
        Value::Array(items) => {
            json!({ "type": "array", "value": items.iter().map(local_value).collect::<Vec<_>>() })
        }
        Value::Object(map) => json!({
            "type": "object",
            "value": map.iter().map(|(k, v)| json!([k, local_value(v)])).collect::<Vec<_>>(),
        }),
    }
}

/// A BiDi remote value (a script's result) as JSON; what JSON cannot hold
/// (functions, nodes, ...) becomes null.
fn json_of(remote: &Value) -> Value {
    match remote["type"].as_str() {
        Some("string" | "boolean") => remote["value"].clone(),
        Some("number") => match &remote["value"] {
            Value::Number(n) => Value::Number(n.clone()),
            _ => Value::Null, // NaN, Infinity, -0 come as strings
        },
        Some("array") => Value::Array(
            remote["value"]
                .as_array()
                .into_iter()
                .flatten()
                .map(json_of)
                .collect(),
        ),
        Some("object") => Value::Object(
            remote["value"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|pair| Some((pair[0].as_str()?.to_owned(), json_of(&pair[1]))))
                .collect(),
        ),
        _ => Value::Null,
    }
}

/// Distinct profile folders for pages of one test process.
fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}
