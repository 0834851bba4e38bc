//! What one core owns: its engine shard, its hybrid clock, its replication state on both sides,
//! the cluster as it last heard of it, and its counters. One thread owns it; the runtime lends
//! it to each event in turn.

use std::sync::Arc;

use ringcache_cluster::replication::StreamTable;
use ringcache_cluster::{HybridClock, Role};
use ringcache_engine::{Shard, ShardConfig};
use ringcache_proto::{Limits, Topology};

use crate::config::CoreConfig;
use crate::replication::Replicator;
use crate::view::NodeView;

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
    pub cluster: Option<Arc<NodeView>>,
    /// Primary side of replication: the backlog, the replica links and the waiting writes.
    pub repl: Replicator,
    /// Replica side: positions on the primary's streams.
    pub streams: StreamTable,
    /// The cluster secret, shown to and required of replication peers.
    pub secret: Option<String>,
    /// Reusable buffer for replies that outlive the change producing them (GETSET's old value,
    /// INCRBYFLOAT's result).
    pub scratch: Vec<u8>,
}

/// One core's replication position and readiness, as the node's heartbeat reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Progress {
    /// Replicated operations applied.
    pub applied: u64,
    /// Whether the core serves reads (a primary, or a caught-up replica).
    pub ready: bool,
    /// The last range move this core finished streaming.
    pub moved: u64,
}

impl CoreState {
    /// The state of core `id` built from `cfg` at time `now`; `stream` names this life of the
    /// core's replication stream (new at every start, so a replica never mistakes this life's
    /// sequences for an earlier one's).
    pub fn new(id: u32, cfg: &CoreConfig, now: u64, stream: u64) -> CoreState {
        let shard = Shard::new(
            ShardConfig {
                budget_bytes: cfg.budget_bytes,
                policy: cfg.policy,
                max_key_len: cfg.limits.max_key,
                max_value_len: cfg.limits.max_value,
                hash_seed: cfg.hash_seed,
                ..ShardConfig::default()
            },
            now,
        );
        let node_id = cfg.topology.node_id;
        CoreState {
            id,
            cores: cfg.cores,
            shard,
            clock: HybridClock::new(((node_id as u32) << 6) | id),
            limits: cfg.limits,
            topology: cfg.topology.clone(),
            open_connections: 0,
            total_connections: 0,
            rejected_connections: 0,
            commands: 0,
            cluster: None,
            repl: Replicator::new(
                cfg.write_ack,
                cfg.backlog_bytes,
                cfg.repl_timeout_ms,
                stream,
            ),
            streams: StreamTable::default(),
            secret: cfg.secret.clone(),
            scratch: Vec::new(),
        }
    }

    /// This node's role in the last map (`None` outside a cluster or before joining).
    pub fn role(&self) -> Option<Role> {
        self.cluster.as_deref()?.role()
    }

    /// Whether this core serves reads: always outside a cluster and on a primary; on a
    /// replica once its stream caught up.
    pub fn serves_reads(&self) -> bool {
        self.role() != Some(Role::Replica) || self.streams.caught_up()
    }

    /// This core's position and readiness for the heartbeat.
    pub fn progress(&self) -> Progress {
        Progress {
            applied: self.streams.applied_total,
            ready: self.serves_reads(),
            moved: self.repl.moved,
        }
    }

    /// The map epoch this core knows (0 outside a cluster).
    pub fn epoch(&self) -> u64 {
        self.cluster.as_ref().map_or(0, |v| v.map.epoch)
    }
}

#[cfg(any(test, feature = "fuzzing"))]
pub mod test_support {
    //! Cores and maps for the unit tests of this crate.

    use super::*;
    use ringcache_cluster::replication::WriteAck;
    use ringcache_cluster::{
        ClusterMap, Member, MemberId, MemberState, Ring, ShardGroup, DEFAULT_VNODES,
    };
    use ringcache_proto::CoreInfo;

    /// A core config for core tests.
    pub fn config(cores: u32, write_ack: WriteAck) -> CoreConfig {
        CoreConfig {
            cores,
            budget_bytes: 8 << 20,
            policy: Default::default(),
            limits: Limits::default(),
            topology: Topology {
                node_id: 1,
                main_port: 7000,
                cores: (0..cores)
                    .map(|c| CoreInfo {
                        core: c as u16,
                        port: 7001 + c as u16,
                    })
                    .collect(),
            },
            write_ack,
            backlog_bytes: 1 << 20,
            repl_timeout_ms: 1000,
            secret: None,
            password: None,
            hash_seed: ringcache_engine::DEFAULT_HASH_SEED,
        }
    }

    /// Core `id` of a node of `cores` cores.
    pub fn core(id: u32, cores: u32, write_ack: WriteAck) -> CoreState {
        CoreState::new(id, &config(cores, write_ack), 1_000, 42)
    }

    /// A member on 127.0.0.1 with `cores` core ports from `port + 1`.
    pub fn member(id: MemberId, port: u16, cores: u16, role: Role, group: u32) -> Member {
        Member {
            id,
            host: "127.0.0.1".into(),
            main_port: port,
            core_ports: (1..=cores).map(|c| port + c).collect(),
            role,
            group: Some(group),
            state: MemberState::Active,
        }
    }

    /// A map of `groups` groups (ids 1..), each a primary (member g) with `replicas` replicas
    /// (members 100*g + r), every member with `cores` cores.
    pub fn map(groups: u32, replicas: u32, cores: u16, epoch: u64) -> ClusterMap {
        let mut members = Vec::new();
        let mut gs = Vec::new();
        for g in 1..=groups {
            let p = u64::from(g);
            members.push(member(p, 8000 + 100 * g as u16, cores, Role::Primary, g));
            let reps: Vec<MemberId> = (1..=replicas).map(|r| u64::from(100 * g + r)).collect();
            for (i, &r) in reps.iter().enumerate() {
                let port = 8000 + 100 * g as u16 + 10 * (i as u16 + 1);
                members.push(member(r, port, cores, Role::Replica, g));
            }
            gs.push(ShardGroup {
                id: g,
                primary: Some(p),
                replicas: reps,
            });
        }
        let ids: Vec<u32> = (1..=groups).collect();
        ClusterMap {
            epoch,
            members,
            groups: gs,
            ring: Ring::new(&ids, DEFAULT_VNODES),
            moving: None,
        }
    }

    /// A map where group 1 (primary member 1 with `replicas` replicas) serves the whole ring
    /// and group 2 (primary member 2) is joining it: range move 7.
    pub fn joining_map(replicas: u32, cores: u16) -> ClusterMap {
        let mut m = map(2, replicas, cores, 5);
        m.ring = Ring::new(&[1], DEFAULT_VNODES);
        m.moving = Some(ringcache_cluster::RangeMove {
            id: 7,
            next_ring: Ring::new(&[1, 2], DEFAULT_VNODES),
            joining: vec![2],
            leaving: Vec::new(),
        });
        m
    }

    /// A view of `map` for `member`.
    pub fn view(map: ClusterMap, member: MemberId) -> Arc<NodeView> {
        Arc::new(NodeView::new(map, member))
    }
}
