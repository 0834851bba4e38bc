//! `ringcache balancer` flags (clap, also settable as `RINGCACHE_*` environment variables) and
//! the balancer's configuration built from them.

use std::net::{IpAddr, Ipv4Addr};

use clap::Args;
use ringcache_balancer::BalancerConfig;
use ringcache_cluster::DEFAULT_VNODES;

/// Flags of `ringcache balancer`.
#[derive(Args, Debug, Clone)]
pub struct BalancerArgs {
    /// Address to listen on.
    #[arg(long, env = "RINGCACHE_BIND", default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    pub bind: IpAddr,
    /// Port for nodes (control frames) and clients (RESP and native).
    #[arg(long, short = 'p', env = "RINGCACHE_PORT", default_value_t = 7379)]
    pub port: u16,
    /// Expected time between a node's heartbeats, in ms (nodes are told nothing: use the same
    /// value for their --heartbeat-ms).
    #[arg(long, env = "RINGCACHE_HEARTBEAT_MS", default_value_t = 100)]
    pub heartbeat_ms: u64,
    /// Heartbeats a node may miss before it is declared dead and removed from the map.
    #[arg(long, env = "RINGCACHE_MISSED_HEARTBEATS", default_value_t = 5)]
    pub missed_heartbeats: u64,
    /// Secret nodes must present to join (and operators to remove one); set the same on every
    /// node (`ringcache node --cluster-secret`). Without it any node that reaches the port joins.
    #[arg(long, env = "RINGCACHE_CLUSTER_SECRET", hide_env_values = true)]
    pub cluster_secret: Option<String>,
    /// Virtual nodes per shard group on the ring.
    #[arg(long, env = "RINGCACHE_VNODES", default_value_t = DEFAULT_VNODES)]
    pub vnodes: u32,
    /// Number of cores (executors) routing requests (default: every CPU this process may run
    /// on); each keeps its own connections to every node core.
    #[arg(long, env = "RINGCACHE_CORES")]
    pub cores: Option<usize>,
}

impl BalancerArgs {
    /// The balancer's configuration from these flags.
    pub fn config(&self) -> BalancerConfig {
        BalancerConfig {
            bind: self.bind,
            port: self.port,
            heartbeat_ms: self.heartbeat_ms,
            missed_heartbeats: self.missed_heartbeats,
            cluster_secret: self.cluster_secret.clone(),
            vnodes: self.vnodes,
            cores: self.cores,
        }
    }
}
