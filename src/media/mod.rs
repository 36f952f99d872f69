//! Everything GStreamer. `layout`, `sdp` and `keyframe` are pure logic.

pub mod keyframe;
pub mod layout;
pub mod mcu;
pub mod preflight;
pub mod sdp;
pub mod templates;
pub mod webrtc;
