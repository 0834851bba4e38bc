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
    /// What each core of node `node_id` starts from; every call draws a new table seed.
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
            hash_seed: table_seed(),
        }
    }
}

/// A random table seed from the OS's CSPRNG. Should the OS have no entropy to give (it cannot
/// fail on a Linux with `getrandom(2)`), the seed falls back to the address space layout and the
/// time, still unknown ahead of time to a client.
fn table_seed() -> u64 {
    getrandom::u64().unwrap_or_else(|e| {
        tracing::warn!("no OS randomness for the table seed ({e}); using a weaker one");
        let local = 0u8;
        let addr = std::ptr::addr_of!(local) as u64;
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        addr.rotate_left(32) ^ t ^ 0x9e37_79b9_7f4a_7c15
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringcache_node_core::CoreState;

    fn node_config() -> NodeConfig {
        NodeConfig {
            bind: IpAddr::from([127, 0, 0, 1]),
            port: 7000,
            core_ports: vec![7001],
            cpus: vec![0],
            memory: 8 << 20,
            policy: EvictionPolicy::default(),
            limits: Limits::default(),
            max_connections_per_core: 16,
            idle_timeout: None,
            write_timeout: Duration::from_secs(1),
            password: None,
            spin: None,
            tick: Duration::from_millis(10),
            cluster: None,
            write_ack: WriteAck::All,
            repl_backlog_per_core: 1 << 20,
            repl_timeout: Duration::from_secs(1),
        }
    }

    /// Issue 19: the in-core tables must not hash with a constant seed (keys come from clients,
    /// so a flood of colliding keys could be prepared offline), while the key's placement
    /// (`key_hash`, `core_for_key`) stays the cluster-wide function.
    #[test]
    fn every_core_hashes_its_table_with_its_own_seed_but_places_keys_alike() {
        let cfg = node_config();
        let a = CoreState::new(0, &cfg.core_config(1), 1_000, 1);
        let b = CoreState::new(0, &cfg.core_config(1), 1_000, 2);
        let keys: [&[u8]; 3] = [
            b"",
            b"user:1",
            b"a longer key than the others, past 16 bytes",
        ];
        let differ = keys
            .iter()
            .filter(|k| a.shard.key_hash(k) != b.shard.key_hash(k))
            .count();
        assert_eq!(differ, keys.len(), "two cores share a table seed");
        // Placement is untouched: the pinned hash of `cluster::placement`, and the core a key
        // lands on follows from it alone.
        assert_eq!(ringcache_cluster::key_hash(b""), 0x2d06800538d394c2);
        for k in keys {
            let h = ringcache_cluster::key_hash(k);
            assert_eq!(
                ringcache_cluster::core_for_key(k, 8),
                ringcache_cluster::core_for_hash(h, 8)
            );
        }
    }
}
