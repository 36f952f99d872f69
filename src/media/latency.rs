//! Recalculating a room pipeline's latency off the room's task.
//!
//! A latency query travels from every sink up through everything upstream
//! of it, and in an MCU room everything is upstream of every sink (each
//! participant's send path reaches back through the shared encoder and the
//! compositor to every other participant), so one recalculation costs
//! O(N^2): 250-450 ms at 25 participants on two cores, measured with the
//! room task's slow-step warning. Each join posts several latency messages.
//! Done on the room's task, that blocked signalling long enough for late
//! joiners' ICE and DTLS to fail. So it runs on a thread of its own, and
//! requests that arrive while one runs are folded into one more run.

use gst::prelude::*;
use std::sync::{Arc, Mutex};

#[derive(Debug, Default)]
struct State {
    running: bool,
    again: bool,
}

#[derive(Debug, Default, Clone)]
pub struct LatencyRecalculation(Arc<Mutex<State>>);

impl LatencyRecalculation {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Has `pipeline`'s latency recalculated soon, without waiting for it.
    pub fn request(&self, pipeline: &gst::Pipeline) {
        {
            let mut state = self.state();
            if state.running {
                state.again = true;
                return;
            }
            state.running = true;
        }
        // Weak: a room that closes meanwhile is not kept alive by this.
        let pipeline = pipeline.downgrade();
        let this = self.clone();
        let spawned = std::thread::Builder::new()
            .name("latency".into())
            .spawn(move || {
                loop {
                    if let Some(pipeline) = pipeline.upgrade() {
                        let began = std::time::Instant::now();
                        let _ = pipeline.recalculate_latency();
                        tracing::debug!(pipeline = %pipeline.name(), "latency recalculated in {:?}", began.elapsed());
                    }
                    let mut state = this.state();
                    if !std::mem::take(&mut state.again) {
                        state.running = false;
                        return;
                    }
                }
            });
        if spawned.is_err() {
            self.state().running = false;
        }
    }
}
