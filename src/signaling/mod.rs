//! Transports only. Every transport feeds parsed client messages into the
//! same `session::run_session`, so the protocol is implemented once.

pub mod session;
pub mod ws;
