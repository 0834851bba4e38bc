//! The node's decisions without I/O, in the style of quinn-proto and raft-rs: what a command
//! does to the core's shard, whether a request is redirected, how multi-key and node-wide
//! requests split over cores and merge back, what a write owes its replicas (acks, backlog,
//! catch-up, full copy), what a replica applies, and what a new cluster map changes.
//!
//! Events come in as method calls with the time passed in (a parsed request, a replication
//! frame, an ack, a map, a tick); what must happen outside (bytes to send on a link, gates
//! that opened, links to start) is queued on the state and taken by the runtime (`net`).
//! No sockets, no executors, no `Rc`, no wakers: every decision is unit-tested here.

#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod config;
pub mod core_state;
pub mod execute;
pub mod fan_out;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub mod glob;
pub mod key_ops;
pub mod keyspace;
pub mod map_change;
pub mod plan;
pub mod redirect;
pub mod remote;
pub mod replica;
pub mod replication;
pub mod session;
pub mod stats;
pub mod view;
pub mod write_path;

pub use config::CoreConfig;
pub use core_state::{CoreState, Progress};
pub use plan::{plan, Plan};
pub use remote::{run_remote, CountKind, OwnedValue, RemoteOp, RemoteReply};
pub use replication::{GateId, GateResult, LinkId, Replicator};
pub use view::NodeView;

/// Wall-clock milliseconds since the Unix epoch (the time domain of TTLs and versions). Only
/// the runtime reads the clock; the functions of this crate take the time as an argument.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
