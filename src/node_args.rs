//! `ringcache node` flags (clap, also settable as `RINGCACHE_*` environment variables) and their
//! validation into the node's configuration.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use clap::Args;
use ringcache_engine::EvictionPolicy;
use ringcache_net::{LinkConfig, NodeConfig};
use ringcache_proto::Limits;

/// Flags of `ringcache node`.
#[derive(Args, Debug, Clone)]
pub struct NodeArgs {
    /// Address to listen on.
    #[arg(long, env = "RINGCACHE_BIND", default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    pub bind: IpAddr,
    /// Main port, shared by every core (SO_REUSEPORT); speaks RESP and the native protocol.
    #[arg(long, short = 'p', env = "RINGCACHE_PORT", default_value_t = 7379)]
    pub port: u16,
    /// First per-core port: core i listens on base + i (0 = main port + 1).
    #[arg(long, env = "RINGCACHE_CORE_PORT_BASE", default_value_t = 0)]
    pub core_port_base: u16,
    /// Number of cores to run (default: every CPU this process may run on, so taskset and
    /// cgroup limits are respected).
    #[arg(long, env = "RINGCACHE_CORES")]
    pub cores: Option<usize>,
    /// Exact CPUs to pin cores to, e.g. `1,3` (overrides --cores).
    #[arg(long, env = "RINGCACHE_CPUS", value_delimiter = ',')]
    pub cpus: Vec<usize>,
    /// Memory budget of the node for keys, values and overhead, split evenly over cores.
    /// Accepts suffixes k, m, g (powers of 1024).
    #[arg(long, short = 'm', env = "RINGCACHE_MEMORY", default_value = "1g", value_parser = parse_size)]
    pub memory: usize,
    /// Eviction policy: lru, lfu or s3fifo.
    #[arg(long, env = "RINGCACHE_POLICY", default_value = "lru")]
    pub policy: EvictionPolicy,
    /// Largest key accepted, in bytes.
    #[arg(long, env = "RINGCACHE_MAX_KEY", default_value = "64k", value_parser = parse_size)]
    pub max_key: usize,
    /// Largest value accepted, in bytes.
    #[arg(long, env = "RINGCACHE_MAX_VALUE", default_value = "8m", value_parser = parse_size)]
    pub max_value: usize,
    /// Most client connections open at once on the node (split over cores).
    #[arg(long, env = "RINGCACHE_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,
    /// Close a connection idle for this many seconds (0 = never).
    #[arg(long, env = "RINGCACHE_IDLE_TIMEOUT", default_value_t = 300)]
    pub idle_timeout: u64,
    /// Close a connection whose client has not taken its replies for this many seconds.
    #[arg(long, env = "RINGCACHE_WRITE_TIMEOUT", default_value_t = 10)]
    pub write_timeout: u64,
    /// Require clients to AUTH with this password.
    #[arg(long, env = "RINGCACHE_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// Microseconds an idle core spins before parking (lower latency, more CPU).
    #[arg(long, env = "RINGCACHE_SPIN_US", default_value_t = 0)]
    pub spin_us: u64,
    /// Milliseconds between expiry ticks of each core.
    #[arg(long, env = "RINGCACHE_TICK_MS", default_value_t = 1)]
    pub tick_ms: u64,
    /// Join the cluster of the balancer at this address (`host:port`); without it the node
    /// runs alone.
    #[arg(long, env = "RINGCACHE_BALANCER")]
    pub balancer: Option<String>,
    /// Role in the cluster: `primary` creates a shard group, `replica` joins one (--group, or
    /// the group with the fewest replicas; it waits when there is none yet).
    #[arg(long, env = "RINGCACHE_ROLE", default_value = "primary", value_parser = parse_role)]
    pub role: ringcache_cluster::Role,
    /// The shard group a replica joins.
    #[arg(long, env = "RINGCACHE_GROUP")]
    pub group: Option<u32>,
    /// Milliseconds between heartbeats to the balancer (keep it equal to the balancer's).
    #[arg(long, env = "RINGCACHE_HEARTBEAT_MS", default_value_t = 100)]
    pub heartbeat_ms: u64,
    /// Replica acks a write waits for before the client is answered: `all` live replicas,
    /// a `quorum` of the group, or `one` (the primary alone).
    #[arg(long, env = "RINGCACHE_WRITE_ACK", default_value = "all")]
    pub write_ack: ringcache_cluster::replication::WriteAck,
    /// Bytes of recent writes a primary keeps (split over its cores) so a replica back from a
    /// short outage gets only what it missed instead of a full copy (k, m, g suffixes).
    #[arg(long, env = "RINGCACHE_REPL_BACKLOG", default_value = "64m", value_parser = parse_size)]
    pub repl_backlog: usize,
    /// Milliseconds a write waits for its replica acks before the client gets an error
    /// (a replica that stays silent longer is normally declared dead well before).
    #[arg(long, env = "RINGCACHE_REPL_TIMEOUT_MS", default_value_t = 5000)]
    pub repl_timeout_ms: u64,
    /// The cluster secret (the balancer's `--cluster-secret`): presented when joining; peers
    /// that open a replication or range-move stream to this node prove they hold it (HMAC
    /// challenge-response, the secret is not sent). With --password and no cluster secret, the
    /// node takes no stream at all.
    #[arg(long, env = "RINGCACHE_CLUSTER_SECRET", hide_env_values = true)]
    pub cluster_secret: Option<String>,
    /// Host the balancer and clients reach this node at (default: --bind).
    #[arg(long, env = "RINGCACHE_ADVERTISE")]
    pub advertise: Option<String>,
}

/// Parses `primary` or `replica`.
pub fn parse_role(s: &str) -> Result<ringcache_cluster::Role, String> {
    match s.to_ascii_lowercase().as_str() {
        "primary" => Ok(ringcache_cluster::Role::Primary),
        "replica" => Ok(ringcache_cluster::Role::Replica),
        _ => Err(format!("'{s}' is not a role: use primary or replica")),
    }
}

/// Parses `123`, `64k`, `8m`, `1g` (powers of 1024).
pub fn parse_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m: usize = match c.to_ascii_lowercase() {
                'k' => 1 << 10,
                'm' => 1 << 20,
                'g' => 1 << 30,
                't' => 1 << 40,
                'b' => 1,
                _ => return Err(format!("unknown size suffix in '{s}' (use k, m, g)")),
            };
            (&s[..i], m)
        }
        _ => (s, 1),
    };
    let n: usize = num
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a size (e.g. 512m, 2g)"))?;
    n.checked_mul(mult)
        .ok_or_else(|| format!("size '{s}' is too large"))
}

impl NodeArgs {
    /// Validates the flags against the CPUs this process may use.
    pub fn config(&self, allowed_cpus: &[usize]) -> Result<NodeConfig, String> {
        let a = self;
        let cpus: Vec<usize> = if !a.cpus.is_empty() {
            if let Some(bad) = a.cpus.iter().find(|c| !allowed_cpus.contains(c)) {
                return Err(format!(
                    "--cpus names CPU {bad}, but this process may only run on {allowed_cpus:?}"
                ));
            }
            a.cpus.clone()
        } else {
            let n = a.cores.unwrap_or(allowed_cpus.len());
            if n == 0 || n > allowed_cpus.len() {
                return Err(format!(
                    "--cores {n}: this process may run on {} CPU(s) {allowed_cpus:?}",
                    allowed_cpus.len()
                ));
            }
            allowed_cpus[..n].to_vec()
        };
        let base = if a.core_port_base == 0 {
            a.port
                .checked_add(1)
                .ok_or("--port 65535 leaves no room for core ports")?
        } else {
            a.core_port_base
        };
        let core_ports = (0..cpus.len())
            .map(|i| {
                u16::try_from(usize::from(base) + i)
                    .map_err(|_| format!("core port base {base} + {i} exceeds 65535"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if core_ports.contains(&a.port) && a.port != 0 {
            return Err(format!(
                "core ports {core_ports:?} overlap the main port {}",
                a.port
            ));
        }
        let per_core = a.memory / cpus.len();
        if per_core < 1 << 20 {
            return Err(format!(
                "--memory {} leaves under 1 MiB per core for {} cores",
                a.memory,
                cpus.len()
            ));
        }
        let limits = Limits {
            max_key: a.max_key,
            max_value: a.max_value,
            max_frame: a.max_value + a.max_key + 4096,
            ..Limits::default()
        };
        Ok(NodeConfig {
            bind: a.bind,
            port: a.port,
            core_ports,
            memory: a.memory,
            policy: a.policy,
            limits,
            max_connections_per_core: a.max_connections.div_ceil(cpus.len()).max(1),
            idle_timeout: (a.idle_timeout > 0).then(|| Duration::from_secs(a.idle_timeout)),
            write_timeout: Duration::from_secs(a.write_timeout.max(1)),
            password: a.password.clone(),
            spin: (a.spin_us > 0).then(|| Duration::from_micros(a.spin_us)),
            tick: Duration::from_millis(a.tick_ms.max(1)),
            cluster: a.balancer.clone().map(|balancer| LinkConfig {
                balancer,
                role: a.role,
                group: a.group,
                heartbeat: Duration::from_millis(a.heartbeat_ms.max(1)),
                secret: a.cluster_secret.clone(),
                host: a.advertise.clone().unwrap_or_else(|| a.bind.to_string()),
            }),
            write_ack: a.write_ack,
            repl_backlog_per_core: a.repl_backlog / cpus.len(),
            repl_timeout: Duration::from_millis(a.repl_timeout_ms.max(1)),
            cpus,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_suffixes() {
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("64k"), Ok(65536));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert!(parse_size("12q").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("99999999999999999999t").is_err());
    }
}
