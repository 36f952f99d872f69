//! Everything GStreamer. `layout`, `sdp`, `keyframe`, `negotiation`,
//! `candidates`, `rtp`, `speakers` and `caption_spots` are pure logic.

pub mod backend;
pub mod candidates;
pub mod caption_spots;
pub mod captions;
pub mod certificate;
pub mod encode_ladder;
pub mod events;
pub mod forward;
pub mod forwarding_buffer;
pub mod keyframe;
pub mod keyframes;
pub mod ladder;
pub mod latency;
pub mod layout;
pub mod levels;
pub mod lipsync;
pub mod mcu;
pub mod members;
pub mod mixes;
pub mod mixing;
pub mod negotiation;
pub mod pads;
pub mod peer;
pub mod preflight;
pub mod program;
pub mod recorder;
pub mod rtp;
pub mod sdp;
pub mod sfu;
pub mod speakers;
pub mod subscription;
pub mod templates;
pub mod webrtc;
