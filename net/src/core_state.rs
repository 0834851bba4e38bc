//! What one core owns: its engine shard, its hybrid clock, and its share of the node's settings
//! and connection counters. Shared by the core's tasks through `Rc<RefCell<_>>` (one thread).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{SystemTime, UNIX_EPOCH};

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use ringcache_cluster::replication::StreamTable;
use ringcache_cluster::{HybridClock, Role};
use ringcache_engine::{Shard, ShardConfig};
use ringcache_proto::{CoreInfo, Limits, Topology};

use crate::node_config::NodeConfig;

/// One core's state.
pub struct CoreState {
    /// This core's index in `0..cores`.
    pub id: u32,
    /// Number of cores on the node.
    pub cores: u32,
    /// The store.
    pub shard: Shard,
    /// Stamps the versions of this core's writes.
    pub clock: HybridClock,
    /// Request size bounds.
    pub limits: Limits,
    /// The node's ports, for TOPOLOGY.
    pub topology: Topology,
    /// Client connections open on this core.
    pub open_connections: usize,
    /// Client connections accepted since start.
    pub total_connections: u64,
    /// Connections refused at the limit.
    pub rejected_connections: u64,
    /// Requests this core executed (local and handed over from other cores).
    pub commands: u64,
    /// The cluster as last told by the balancer (cluster mode only).
    pub cluster: Option<std::sync::Arc<crate::cluster_link::NodeView>>,
    /// Primary side of replication: the backlog and the replica links.
    pub repl: crate::replication::Replicator,
    /// Replica side: positions on the primary's streams.
    pub streams: StreamTable,
    /// What the heartbeat reports for this core (written here, read by the link thread).
    pub progress: Arc<CoreProgress>,
    /// The cluster secret, shown to and required of replication peers.
    pub cfg_secret: Option<String>,
}

/// One core's replication position and readiness, for the node's heartbeat. Written by the
/// core once per replication batch, read by the cluster link thread a few times a second.
#[derive(Debug, Default)]
pub struct CoreProgress {
    /// Replicated operations applied.
    pub applied: AtomicU64,
    /// Whether the core serves reads (a primary, or a caught-up replica).
    pub ready: AtomicBool,
    /// The last range move this core finished streaming.
    pub moved: AtomicU64,
}

/// A core's state as its tasks share it.
pub type SharedCore = Rc<RefCell<CoreState>>;

/// Wall-clock milliseconds since the Unix epoch (the time domain of TTLs and versions).
#[inline]
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl CoreState {
    /// The state of core `id` of a node built from `cfg`.
    pub fn new(id: u32, cfg: &NodeConfig, node_id: u64) -> CoreState {
        let cores = cfg.cpus.len() as u32;
        let shard = Shard::new(
            ShardConfig {
                budget_bytes: cfg.memory / cfg.cpus.len(),
                policy: cfg.policy,
                max_key_len: cfg.limits.max_key,
                max_value_len: cfg.limits.max_value,
                ..ShardConfig::default()
            },
            now_ms(),
        );
        let topology = Topology {
            node_id,
            main_port: cfg.port,
            cores: cfg
                .core_ports
                .iter()
                .enumerate()
                .map(|(i, &port)| CoreInfo {
                    core: i as u16,
                    port,
                })
                .collect(),
        };
        CoreState {
            id,
            cores,
            shard,
            clock: HybridClock::new(((node_id as u32) << 6) | id),
            limits: cfg.limits,
            topology,
            open_connections: 0,
            total_connections: 0,
            rejected_connections: 0,
            commands: 0,
            cluster: None,
            repl: crate::replication::Replicator::new(
                cfg.write_ack,
                cfg.repl_backlog_per_core,
                cfg.repl_timeout.as_millis() as u64,
                // New at every start, so a replica never mistakes this life's sequences for
                // an earlier one's.
                (now_ms() << 16) ^ (u64::from(id) << 8) ^ node_id,
            ),
            streams: StreamTable::default(),
            progress: Arc::new(CoreProgress::default()),
            cfg_secret: cfg.cluster.as_ref().and_then(|c| c.secret.clone()),
        }
    }

    /// This node's role in the last map (`None` outside a cluster or before joining).
    pub fn role(&self) -> Option<Role> {
        let v = self.cluster.as_deref()?;
        v.map.member(v.member).map(|m| m.role)
    }

    /// Whether this core serves reads: always outside a cluster and on a primary; on a
    /// replica once its stream caught up.
    pub fn serves_reads(&self) -> bool {
        self.role() != Some(Role::Replica) || self.streams.caught_up()
    }

    /// Publishes this core's position and readiness for the heartbeat.
    pub fn publish_progress(&self) {
        self.progress
            .applied
            .store(self.streams.applied_total, Ordering::Relaxed);
        self.progress
            .ready
            .store(self.serves_reads(), Ordering::Relaxed);
        self.progress
            .moved
            .store(self.repl.moved, Ordering::Relaxed);
    }
}

impl CoreState {
    /// In cluster mode, the redirect owed to a request sent with a stale map epoch (`epoch` 0
    /// means the sender does not track the map) or naming a key another group owns.
    pub fn cluster_redirect(
        &self,
        cmd: &ringcache_proto::Command<'_>,
        epoch: ringcache_proto::Epoch,
    ) -> Option<ringcache_proto::Response<'static>> {
        use ringcache_proto::{ErrorKind, Response};
        let view = self.cluster.as_deref()?;
        let current = u32::try_from(view.map.epoch).unwrap_or(u32::MAX);
        let redirect = |msg: String| Response::error(ErrorKind::Redirect { epoch: current }, msg);
        if epoch != 0 && epoch < current {
            return Some(redirect(format!(
                "request sent with cluster map epoch {epoch}; fetch the current map"
            )));
        }
        let mine = view.group?;
        if self.role() == Some(Role::Replica) {
            if cmd.is_write() {
                return Some(redirect(format!(
                    "this member is a replica of shard group {mine}: send writes to its primary"
                )));
            }
            if !self.streams.caught_up() && cmd.key().is_some() {
                return Some(redirect(format!(
                    "this replica of shard group {mine} is still catching up: read from the primary"
                )));
            }
        }
        let foreign = |k: &[u8]| view.map.group_for_key(k).filter(|&g| g != mine);
        let other = match cmd.key() {
            Some(k) => foreign(k),
            None => crate::routing::multi_keys(cmd)
                .and_then(|keys| keys.iter().find_map(|k| foreign(k))),
        };
        other.map(|g| redirect(format!("key belongs to shard group {g}, not {mine}")))
    }
}
