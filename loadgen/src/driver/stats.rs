//! What the threads measure: `ThreadStats` and `ErrorCounts`, merged over all threads at the end
//! of a run, and the `Live` counters and `Phase` each thread publishes for the progress line.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::latency::LatencyHist;

/// Errors seen, by kind.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ErrorCounts {
    /// Requests that got no reply within `--timeout` (their connection is reopened).
    pub timeouts: u64,
    /// Connections that failed: reset, closed by the server, write errors.
    pub connection_errors: u64,
    /// Connection attempts that failed (initial connects fail the run instead).
    pub connect_failures: u64,
    /// Requests in flight on connections that failed or carried garbage.
    pub lost_requests: u64,
    /// Reply streams the loadgen could not parse (the connection is reopened).
    pub protocol_errors: u64,
    /// Error replies from the server.
    pub server_errors: u64,
    /// REDIRECT replies from ringcache nodes (key not owned there, or a stale map epoch); not
    /// part of `server_errors`.
    pub redirects: u64,
    /// Error replies by kind (`ERR`, `SERVER_ERROR`, `Busy`, ...).
    pub server_error_kinds: BTreeMap<String, u64>,
    /// The first connection or protocol error's message, for diagnosis.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
}

impl ErrorCounts {
    /// Every error counted (server error replies, timeouts, failed connections and parse errors).
    pub fn total(&self) -> u64 {
        self.timeouts
            + self.connection_errors
            + self.connect_failures
            + self.protocol_errors
            + self.server_errors
            + self.redirects
    }

    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &ErrorCounts) {
        self.timeouts += other.timeouts;
        self.connection_errors += other.connection_errors;
        self.connect_failures += other.connect_failures;
        self.lost_requests += other.lost_requests;
        self.protocol_errors += other.protocol_errors;
        self.server_errors += other.server_errors;
        self.redirects += other.redirects;
        for (k, v) in &other.server_error_kinds {
            *self.server_error_kinds.entry(k.clone()).or_default() += v;
        }
        if self.first_error.is_none() {
            self.first_error.clone_from(&other.first_error);
        }
    }

    // Inlined into the reply path (`Worker::complete`), as it was when both lived in one module.
    #[inline]
    pub(super) fn server_error(&mut self, kind: &str) {
        self.server_errors += 1;
        match self.server_error_kinds.get_mut(kind) {
            Some(n) => *n += 1,
            None => {
                self.server_error_kinds.insert(kind.to_string(), 1);
            }
        }
    }
}

/// What one thread measured.
#[derive(Debug, Clone, Default)]
pub struct ThreadStats {
    /// Latencies of the measured window.
    pub hist: LatencyHist,
    /// Replies received in the measured window (errors included).
    pub ops: u64,
    /// GET replies in the window.
    pub gets: u64,
    /// GETs that found a value.
    pub hits: u64,
    /// SET replies in the window.
    pub sets: u64,
    /// Errors during warmup and measurement.
    pub errors: ErrorCounts,
    /// Length of the measured window.
    pub window_ns: u64,
    /// CPU time of the thread over the window.
    pub cpu_ns: u64,
    /// Keys written by prefill.
    pub prefill_ops: u64,
    /// Time prefill took.
    pub prefill_ns: u64,
    /// Errors during prefill.
    pub prefill_errors: ErrorCounts,
    /// Open loop: most requests that were due but not yet sent at one time.
    pub max_backlog: u64,
    /// Open loop: requests sent more than 1 ms after they were due (loadgen or server behind).
    pub late_sends: u64,
}

impl ThreadStats {
    /// Adds `other` into `self` (windows and CPU add up; callers average as needed).
    pub fn merge(&mut self, other: &ThreadStats) {
        self.hist.merge(&other.hist);
        self.ops += other.ops;
        self.gets += other.gets;
        self.hits += other.hits;
        self.sets += other.sets;
        self.errors.merge(&other.errors);
        self.window_ns = self.window_ns.max(other.window_ns);
        self.cpu_ns += other.cpu_ns;
        self.prefill_ops += other.prefill_ops;
        self.prefill_ns = self.prefill_ns.max(other.prefill_ns);
        self.prefill_errors.merge(&other.prefill_errors);
        self.max_backlog += other.max_backlog;
        self.late_sends += other.late_sends;
    }
}

/// The phase a thread is in (for the progress line).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Phase {
    /// Opening connections.
    #[default]
    Connecting,
    /// Loading the key space.
    Prefill,
    /// Running, not yet measured.
    Warmup,
    /// Measured.
    Measure,
    /// Finished.
    Done,
}

/// Counters a thread publishes every 100 ms for the progress line.
#[derive(Debug, Default)]
pub struct Live {
    /// Current phase.
    pub phase: Phase,
    /// Replies received in any phase.
    pub replies: u64,
    /// Replies in the measured window.
    pub measured: u64,
    /// GETs in the measured window.
    pub gets: u64,
    /// Hits in the measured window.
    pub hits: u64,
    /// Errors so far.
    pub errors: u64,
    /// Latencies of the measured window so far.
    pub hist: LatencyHist,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_counts_merge() {
        let mut a = ErrorCounts::default();
        a.server_error("ERR");
        a.timeouts = 2;
        let mut b = ErrorCounts::default();
        b.server_error("ERR");
        b.server_error("BUSY");
        b.first_error = Some("x".into());
        b.redirects = 4;
        a.merge(&b);
        assert_eq!(a.server_errors, 3);
        assert_eq!(a.redirects, 4);
        assert_eq!(a.server_error_kinds["ERR"], 2);
        assert_eq!(a.server_error_kinds["BUSY"], 1);
        assert_eq!(a.total(), 9);
        assert_eq!(a.first_error.as_deref(), Some("x"));
    }
}
