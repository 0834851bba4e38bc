//! What one core is built from: the part of the node's settings that its decisions depend on.

use ringcache_cluster::replication::WriteAck;
use ringcache_engine::EvictionPolicy;
use ringcache_proto::{Limits, Topology};

/// One core's settings.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// Cores on the node.
    pub cores: u32,
    /// This core's memory budget in bytes.
    pub budget_bytes: usize,
    /// Eviction policy.
    pub policy: EvictionPolicy,
    /// Request size bounds.
    pub limits: Limits,
    /// The node's id and ports, for TOPOLOGY and version stamps.
    pub topology: Topology,
    /// Replica acks a write waits for.
    pub write_ack: WriteAck,
    /// Replication backlog bytes of this core.
    pub backlog_bytes: usize,
    /// Longest wait for replica acks, in ms.
    pub repl_timeout_ms: u64,
    /// The cluster secret, shown to and required of replication peers.
    pub secret: Option<String>,
    /// The password clients must AUTH with, if any.
    pub password: Option<String>,
    /// Seeds this core's table hash: random per core and per process on a node (keys come from
    /// clients), fixed in tests. Key placement never depends on it.
    pub hash_seed: u64,
}
