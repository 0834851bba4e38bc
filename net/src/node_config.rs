//! A node's validated settings, as the binary builds them from its flags, and the part of them
//! each core starts from.

use std::net::IpAddr;
use std::time::Duration;

use ringcache_cluster::replication::WriteAck;
use ringcache_engine::EvictionPolicy;
use ringcache_node_core::CoreConfig;
use ringcache_proto::{CoreInfo, Limits, Topology};

use crate::cluster_link::LinkConfig;

/// A node's settings after validation.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Address to listen on.
    pub bind: IpAddr,
    /// Main port, shared by every core.
    pub port: u16,
    /// Core i listens on `core_ports[i]`.
    pub core_ports: Vec<u16>,
    /// CPUs the cores are pinned to, one core each.
    pub cpus: Vec<usize>,
    /// Memory budget of the node, split evenly over cores.
    pub memory: usize,
    /// Eviction policy.
    pub policy: EvictionPolicy,
    /// Request size bounds.
    pub limits: Limits,
    /// Most client connections per core.
    pub max_connections_per_core: usize,
    /// Idle connections close after this long (`None`: never).
    pub idle_timeout: Option<Duration>,
    /// A client that does not take its replies for this long is dropped.
    pub write_timeout: Duration,
    /// The password clients must AUTH with.
    pub password: Option<String>,
    /// How long an idle core spins before parking.
    pub spin: Option<Duration>,
    /// Time between expiry ticks.
    pub tick: Duration,
    /// The cluster to join, if any.
    pub cluster: Option<LinkConfig>,
    /// Replica acks per write.
    pub write_ack: WriteAck,
    /// Replication backlog bytes per core.
    pub repl_backlog_per_core: usize,
    /// Longest wait for replica acks.
    pub repl_timeout: Duration,
}

impl NodeConfig {
    /// What each core of node `node_id` starts from.
    pub fn core_config(&self, node_id: u64) -> CoreConfig {
        let cores = self.cpus.len().max(1);
        CoreConfig {
            cores: cores as u32,
            budget_bytes: self.memory / cores,
            policy: self.policy,
            limits: self.limits,
            topology: Topology {
                node_id,
                main_port: self.port,
                cores: self
                    .core_ports
                    .iter()
                    .enumerate()
                    .map(|(i, &port)| CoreInfo {
                        core: i as u16,
                        port,
                    })
                    .collect(),
            },
            write_ack: self.write_ack,
            backlog_bytes: self.repl_backlog_per_core,
            repl_timeout_ms: self.repl_timeout.as_millis() as u64,
            secret: self.cluster.as_ref().and_then(|c| c.secret.clone()),
            password: self.password.clone(),
        }
    }
}
