//! `gridmix serve` as an operator runs it: a child process on a free
//! loopback port, its log kept (in memory, and in a file for a person
//! looking into a failure), signals sent with kill(1).

use super::{LOOPBACK, eventually, known_upstream_message};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const START_TIMEOUT: Duration = Duration::from_secs(40);

/// A running `gridmix serve`; killed on drop if the test did not stop it.
pub struct ServeProcess {
    child: Child,
    /// host:port it serves on.
    pub addr: String,
    log: Arc<Mutex<Vec<String>>>,
    pub log_path: PathBuf,
    /// GLib warnings and criticals it printed that are not known upstream
    /// ones: the test fails on them.
    glib_messages: Arc<Mutex<Vec<String>>>,
}

/// A GLib warning, critical or error line as GLib prints it
/// ("(prog:pid): DOMAIN-LEVEL **: hh:mm:ss.mmm: message", the domain left
/// out when there is none), as (domain, message).
fn glib_message(line: &str) -> Option<(&str, &str)> {
    let (head, rest) = line.split_once(" **: ")?;
    let label = head.rsplit(' ').next()?;
    let (domain, level) = label.rsplit_once('-').unwrap_or(("", label));
    if !matches!(level, "WARNING" | "CRITICAL" | "ERROR") {
        return None;
    }
    // After the time stamp.
    let message = rest.split_once(": ").map_or(rest, |(_, m)| m);
    Some((domain, message))
}

impl ServeProcess {
    /// Starts `gridmix serve --listen 127.0.0.1:0 --ice-address 127.0.0.1`
    /// with `extra` flags; its log goes to `log_path` too.
    pub fn start(extra: &[&str], log_path: &Path) -> ServeProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_gridmix"))
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--ice-address",
                LOOPBACK,
            ])
            .args(extra)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("gridmix serve starts");
        // Its stderr is passed on as it comes, and its GLib messages kept.
        let stderr = child.stderr.take().expect("piped stderr");
        let glib_messages = Arc::new(Mutex::new(Vec::new()));
        let unknown = glib_messages.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("{line}");
                if let Some((domain, message)) = glib_message(&line)
                    && !known_upstream_message(domain, message)
                {
                    unknown.lock().unwrap().push(line);
                }
            }
        });
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        let kept = log.clone();
        let file_path = log_path.to_owned();
        std::thread::spawn(move || {
            let mut file = std::fs::File::create(file_path).ok();
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(file) = file.as_mut() {
                    use std::io::Write;
                    let _ = writeln!(file, "{line}");
                }
                if let Some(rest) = line.split("serving on http://").nth(1) {
                    let addr: String = rest
                        .chars()
                        .take_while(|c| !c.is_whitespace() && *c != '\u{1b}')
                        .collect();
                    let _ = tx.send(addr);
                }
                kept.lock().unwrap().push(line);
            }
        });
        let addr = rx
            .recv_timeout(START_TIMEOUT)
            .expect("the server logs its address");
        ServeProcess {
            child,
            addr,
            log,
            log_path: log_path.to_owned(),
            glib_messages,
        }
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// Sends `signal` ("-TERM", "-KILL") with kill(1).
    pub fn signal(&self, signal: &str) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args([signal, &pid]).status().unwrap();
        assert!(sent.success(), "kill {signal} {pid}");
    }

    /// Waits for the process to exit.
    pub async fn wait_exit(&mut self) -> ExitStatus {
        let shown = self.log_path.display().to_string();
        let child = &mut self.child;
        eventually(START_TIMEOUT, || {
            let exited = child.try_wait();
            async move { exited?.ok_or_else(|| anyhow::anyhow!("still running")) }
        })
        .await
        .unwrap_or_else(|e| panic!("the server does not exit (its log: {shown}): {e:#}"))
    }

    /// Waits until the log so far satisfies `seen` (lines arrive from the
    /// child a moment after it writes them).
    pub async fn wait_for_log(&self, seen: impl Fn(&[String]) -> bool) {
        let log = self.log.clone();
        let shown = self.log_path.display().to_string();
        eventually(START_TIMEOUT, || {
            let ok = seen(&log.lock().unwrap());
            async move {
                ok.then_some(())
                    .ok_or_else(|| anyhow::anyhow!("not in the log yet"))
            }
        })
        .await
        .unwrap_or_else(|e| panic!("{e:#}: see {shown}"));
    }

    /// The log lines so far that contain `text`.
    pub fn log_lines_with(&self, text: &str) -> Vec<String> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(text))
            .cloned()
            .collect()
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let unknown = self.glib_messages.lock().unwrap();
        if !unknown.is_empty() && !std::thread::panicking() {
            panic!(
                "gridmix serve printed GLib warnings or criticals: {:#?}",
                *unknown
            );
        }
    }
}

#[test]
fn glib_lines_are_read_with_and_without_a_domain() {
    assert_eq!(
        glib_message(
            "(gridmix:77): GStreamer-CRITICAL **: 16:40:01.123: gst_x: assertion 'y' failed"
        ),
        Some(("GStreamer", "gst_x: assertion 'y' failed"))
    );
    assert_eq!(
        glib_message(
            "** (gridmix:77): WARNING **: 16:40:01.123: (a.c:3):f: code should not be reached"
        ),
        Some(("", "(a.c:3):f: code should not be reached"))
    );
    assert_eq!(
        glib_message("2026-12-01T16:40:01Z  INFO gridmix: serving on http://x"),
        None
    );
}
