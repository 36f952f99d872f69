//! Recordings of a room's composite: what they are, independent of how they
//! are made. Pure: no GStreamer, no I/O besides reading the clock.
//!
//! - `error`: why a request failed, as a stable code and an HTTP status;
//! - `format`: the formats and the HTTP request that picks one;
//! - `naming`: recording ids and file names;
//! - `lifecycle`: a recording's states and the transitions between them;
//! - `gate`: where a recording starts in the live streams it taps;
//! - `signed_url`: expiring recording URLs that carry their own permission.

pub mod error;
pub mod format;
pub mod gate;
pub mod lifecycle;
pub mod naming;
pub mod signed_url;

pub use error::{RecordingError, RecordingErrorCode};
pub use format::{Format, parse_start_request};
pub use lifecycle::{Lifecycle, Phase, RecordingInfo, StopStep};
pub use naming::RecordingId;
