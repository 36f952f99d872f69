//! gridmix: a WebRTC multi-party call server (MCU, SFU, mesh) on GStreamer.
//!
//! Dependencies point one way: server -> signaling -> room -> media; `protocol`, `ids`,
//! `auth`, `turn` and `media::layout` depend on nothing of gridmix's but
//! `protocol`.

pub mod auth;
pub mod bench;
pub mod bot;
pub mod config;
pub mod connections;
pub mod ids;
pub mod live_count;
pub mod media;
pub mod memory;
pub mod protocol;
pub mod recording;
pub mod recording_files;
pub mod room;
pub mod server;
pub mod signaling;
pub mod turn;
