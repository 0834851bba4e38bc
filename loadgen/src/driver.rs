//! The I/O loops: one OS thread per `--threads`, each driving its share of the connections with
//! nonblocking sockets and a level-triggered epoll loop.
//!
//! A *slot* is one logical client connection: one socket per endpoint of `RunConfig::addrs`
//! (the server for `resp` and `memcached`, each core of the node for `ringcache`, each core of
//! each primary for `ringcache --cluster`), and each request goes on the socket of its key's
//! endpoint (`RunConfig::route`, see `endpoints`). A slot keeps up to `--pipeline` requests in
//! flight.
//!
//! Closed loop: each slot is refilled to its depth as replies come back; a request's latency
//! runs from its write. Open loop (`--rate`): requests fall due on a fixed schedule and are
//! handed to slots with room; a request's latency runs from its due time, so time spent waiting
//! behind a stalled server is counted (see `latency`).
//!
//! Writes made while handling one batch of events are gathered per socket and flushed once at
//! the end of the batch, so pipelined requests go out in as few syscalls as possible.
//!
//! Layout: `run` (threads, setup and prefill, join), `worker` (one thread's state and phases),
//! `event_loop` (the epoll loops, issuing requests), `conn_io` (socket reads and writes, reply
//! accounting), `recovery` (failures, timeouts, reconnects), `stats` (figures and progress),
//! `connect` (sockets and TOPOLOGY).

mod conn_io;
mod connect;
mod event_loop;
mod recovery;
mod run;
mod stats;
mod worker;

use std::net::SocketAddr;

use serde::Serialize;

use crate::endpoints::KeyRoute;
use crate::protocol::Target;
use crate::workload::{KeySpace, WorkloadSpec};

pub use connect::{connect, fetch_core_addrs};
pub use run::{run_thread, spawn, Running, Shared};
pub use stats::{ErrorCounts, Live, Phase, ThreadStats};

const MS: u64 = 1_000_000;
/// Interval of timeout checks, reconnects and progress publication.
const HOUSEKEEPING_NS: u64 = 100 * MS;
/// A failed connection is retried after this long.
const RETRY_NS: u64 = 100 * MS;
/// An open-loop request sent more than this after it was due counts as sent late.
const LATE_NS: u64 = MS;
/// Initial read buffer per socket.
const RBUF: usize = 64 * 1024;
/// Requests in flight per slot during prefill (at least; `--pipeline` if larger).
const PREFILL_DEPTH: usize = 64;
/// Prefill and `--requests` runs give up after this long without any reply (at least; twice
/// `--timeout` if longer), rather than wait forever for a server that is gone.
const STALL_NS: u64 = 10_000 * MS;

/// How closed-loop connections keep their pipeline full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Refill {
    /// Send `pipeline` requests together, then wait for all their replies (as
    /// `redis-benchmark -P`): the server reads and answers whole batches.
    Batch,
    /// Keep `pipeline` requests in flight, sending a new one for each reply (as memtier):
    /// more even load, smaller batches at the server.
    Window,
}

/// Everything a run needs, fixed before the threads start.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Protocol.
    pub target: Target,
    /// Endpoint addresses: one per core (`ringcache`), per core of every primary
    /// (`ringcache --cluster`), or the single server address. Each connection opens one
    /// socket per endpoint.
    pub addrs: Vec<SocketAddr>,
    /// Which endpoint (index into `addrs`) each key goes to.
    pub route: KeyRoute,
    /// Cluster map epoch carried in native request headers (0: not in a cluster).
    pub epoch: u32,
    /// Logical connections in all.
    pub connections: usize,
    /// Requests in flight per connection.
    pub pipeline: usize,
    /// How a closed-loop connection is topped up (`Batch`: all `pipeline` requests at once
    /// after every reply of the previous batch; `Window`: as each reply arrives).
    pub refill: Refill,
    /// OS threads.
    pub threads: usize,
    /// Open-loop rate in requests per second over all threads; `None` is closed loop.
    pub rate: Option<f64>,
    /// Key names.
    pub keyspace: KeySpace,
    /// Operation mix.
    pub spec: WorkloadSpec,
    /// Base seed (thread `t` uses `seed + t`).
    pub seed: u64,
    /// Load every key before measuring.
    pub prefill: bool,
    /// Measured time; `None` when `requests` bounds the run.
    pub duration_ns: Option<u64>,
    /// Measured requests over all threads.
    pub requests: Option<u64>,
    /// Unmeasured time before the measurement.
    pub warmup_ns: u64,
    /// A request without reply for this long is a timeout (its connection is reopened).
    pub timeout_ns: u64,
    /// CPU to pin each thread to (thread `t` gets `cpus[t % len]`); empty: no pinning.
    pub cpus: Vec<usize>,
}
