//! ringcache-chaos: a fault-injection harness and consistency checker for ringcache clusters.
//! It starts a real cluster from the `ringcache` binary inside its own network namespace,
//! runs a recorded workload under seeded nemeses, and checks the history (linearizability per
//! key, operator counts, DIGEST convergence) against the promise of the write-ack mode.

#![warn(missing_docs)]

pub mod anomaly;
pub mod checker;
pub mod cluster;
pub mod counter;
pub mod counts;
pub mod error;
pub mod font;
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
