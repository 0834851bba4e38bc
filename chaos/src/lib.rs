//! ringcache-chaos: fault injection and consistency checking for ringcache clusters. A real
//! cluster runs in the harness's own network namespace under seeded nemeses; the recorded
//! history is checked (per-key linearizability, operator counts, DIGEST) against its promise.

#![warn(missing_docs)]

pub mod anomaly;
pub mod checker;
pub mod cluster;
pub mod counter;
pub mod counts;
pub mod error;
pub mod history;
pub mod linear;
pub mod netns;
pub mod plot;
pub mod procs;
pub mod report;
pub mod run;
pub mod scenario;
pub mod schedule;
pub mod synth;
pub mod workload;

#[cfg(test)]
mod checker_tests;

pub use anomaly::{Anomaly, Kind, Promise};
pub use checker::{check, Checked};
pub use error::{ChaosError, Result};
pub use history::{Answer, Nanos, Op, OpKind, Outcome, NEVER};
