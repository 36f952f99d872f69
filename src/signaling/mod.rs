//! Transports only. Every transport feeds parsed client messages into the
//! same `session::run_session`, so the protocol is implemented once; `api`
//! is the recording REST API, which talks to rooms the same way.

pub mod api;
pub mod session;
pub mod ws;
