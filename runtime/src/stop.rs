//! The stop flag: set once from any thread (the signal handler, a failing core), read by every
//! core's loop and link thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Stops every core when asked, from any thread (set by the signal handler).
#[derive(Clone, Default, Debug)]
pub struct StopFlag(Arc<AtomicBool>);

impl StopFlag {
    /// Asks every core to stop.
    pub fn stop(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether a stop was asked for.
    pub fn is_stopped(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}
