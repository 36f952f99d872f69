//! A recording's life: recording, then stopping (EOS travelling through the
//! muxer), then stopped; or failed at any point before the end.

use crate::recording::Format;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Recording,
    /// End of stream sent; waiting for the muxer to finish the file.
    Stopping,
    /// The file is complete.
    Stopped,
    /// Writing stopped on an error; what was written before it stays.
    Failed,
}

/// What a stop request should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopStep {
    /// Send end of stream into the recording now.
    Finalize,
    /// A stop is already under way: wait for it.
    Wait,
    /// The recording already ended (stopped or failed).
    Ended,
}

#[derive(Debug, Clone)]
pub struct Lifecycle {
    phase: Phase,
    error: Option<String>,
    started: Instant,
    ended: Option<Instant>,
    /// While stopping: when to give up waiting for the muxer.
    deadline: Option<Instant>,
}

impl Lifecycle {
    pub fn new(now: Instant) -> Self {
        Lifecycle {
            phase: Phase::Recording,
            error: None,
            started: now,
            ended: None,
            deadline: None,
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// Recording or stopping: its branch is still in the pipeline.
    pub fn is_active(&self) -> bool {
        matches!(self.phase, Phase::Recording | Phase::Stopping)
    }

    /// Content time so far: from the start to now, or to the stop request.
    pub fn duration(&self, now: Instant) -> Duration {
        self.ended
            .unwrap_or(now)
            .saturating_duration_since(self.started)
    }

    pub fn request_stop(&mut self, now: Instant, timeout: Duration) -> StopStep {
        match self.phase {
            Phase::Recording => {
                self.phase = Phase::Stopping;
                self.ended = Some(now);
                self.deadline = Some(now + timeout);
                StopStep::Finalize
            }
            Phase::Stopping => StopStep::Wait,
            Phase::Stopped | Phase::Failed => StopStep::Ended,
        }
    }

    /// The muxer finished the file. Returns whether this ended the recording.
    pub fn finalized(&mut self, now: Instant) -> bool {
        if !self.is_active() {
            return false;
        }
        self.ended.get_or_insert(now);
        self.phase = Phase::Stopped;
        self.deadline = None;
        true
    }

    /// Writing failed. Returns whether this ended the recording (a late
    /// error after the end changes nothing).
    pub fn fail(&mut self, now: Instant, message: impl Into<String>) -> bool {
        if !self.is_active() {
            return false;
        }
        self.ended.get_or_insert(now);
        self.phase = Phase::Failed;
        self.error = Some(message.into());
        self.deadline = None;
        true
    }

    /// Stopping for longer than the timeout allowed.
    pub fn overdue(&self, now: Instant) -> bool {
        self.phase == Phase::Stopping && self.deadline.is_some_and(|d| now >= d)
    }
}

/// A recording as the HTTP API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordingInfo {
    pub id: String,
    pub room: String,
    pub format: Format,
    pub state: Phase,
    /// Where the file (HLS: the playlist) is on the server's disk.
    pub path: String,
    /// Where it is served, under /recordings/.
    pub url: String,
    /// UTC start, `YYYYMMDD-HHMMSS` (as in the id).
    pub started: String,
    /// Recorded so far (or in all, once ended), in milliseconds.
    pub duration_ms: u64,
    /// Bytes on disk so far (HLS: playlist and segments).
    pub size_bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(5);

    #[test]
    fn a_stop_finalizes_once_then_waits_then_reports_the_end() {
        let t0 = Instant::now();
        let mut life = Lifecycle::new(t0);
        assert!(life.is_active());
        let t1 = t0 + Duration::from_secs(5);
        assert_eq!(life.request_stop(t1, TIMEOUT), StopStep::Finalize);
        assert_eq!(life.phase(), Phase::Stopping);
        assert_eq!(life.request_stop(t1, TIMEOUT), StopStep::Wait);
        assert!(life.finalized(t1 + Duration::from_millis(300)));
        assert_eq!(life.phase(), Phase::Stopped);
        assert_eq!(life.request_stop(t1, TIMEOUT), StopStep::Ended);
        // The duration is what was recorded, not how long finalizing took.
        assert_eq!(
            life.duration(t1 + Duration::from_secs(60)),
            Duration::from_secs(5)
        );
    }

    #[test]
    fn a_failure_ends_the_recording_and_keeps_its_message() {
        let t0 = Instant::now();
        let mut life = Lifecycle::new(t0);
        assert!(life.fail(t0 + Duration::from_secs(2), "No space left on device"));
        assert_eq!(life.phase(), Phase::Failed);
        assert_eq!(life.error(), Some("No space left on device"));
        assert!(!life.is_active());
        assert!(!life.finalized(t0 + Duration::from_secs(3)));
        assert!(!life.fail(t0 + Duration::from_secs(3), "later"));
        assert_eq!(life.error(), Some("No space left on device"));
        assert_eq!(life.request_stop(t0, TIMEOUT), StopStep::Ended);
        assert_eq!(
            life.duration(t0 + Duration::from_secs(9)),
            Duration::from_secs(2)
        );
    }

    #[test]
    fn a_stop_that_never_finishes_becomes_overdue() {
        let t0 = Instant::now();
        let mut life = Lifecycle::new(t0);
        assert!(!life.overdue(t0 + Duration::from_secs(100)));
        life.request_stop(t0, TIMEOUT);
        assert!(!life.overdue(t0 + Duration::from_secs(4)));
        assert!(life.overdue(t0 + TIMEOUT));
        assert!(life.fail(t0 + TIMEOUT, "timed out"));
        assert!(!life.overdue(t0 + TIMEOUT * 2));
    }

    #[test]
    fn info_serializes_with_stable_field_names() {
        let info = RecordingInfo {
            id: "20250301-141503-9f3c".into(),
            room: "standup".into(),
            format: Format::Hls,
            state: Phase::Recording,
            path: "/rec/standup-20250301-141503-9f3c/index.m3u8".into(),
            url: "/recordings/standup-20250301-141503-9f3c/index.m3u8".into(),
            started: "20250301-141503".into(),
            duration_ms: 1500,
            size_bytes: 4096,
            error: None,
        };
        assert_eq!(
            serde_json::to_value(&info).unwrap(),
            serde_json::json!({"id":"20250301-141503-9f3c","room":"standup","format":"hls",
                "state":"recording","path":"/rec/standup-20250301-141503-9f3c/index.m3u8",
                "url":"/recordings/standup-20250301-141503-9f3c/index.m3u8",
                "started":"20250301-141503","duration_ms":1500,"size_bytes":4096})
        );
    }
}
