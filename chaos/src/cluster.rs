//! A real cluster for a run: one balancer and the nodes, each on its own 127.0.0.x address
//! and group id, started from the `ringcache` binary; the map, STATS and DIGEST read over the
//! network, and the settling after faults (map complete, replicas caught up, copies equal).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ringcache_client::{Client, ClientConfig};
use ringcache_cluster::{ClusterMap, Role};

use crate::error::{ChaosError, Result};
use crate::procs::{free_port, wait_until, Proc};

/// What cluster to run.
#[derive(Clone, Debug)]
pub struct Spec {
    /// Primaries (shard groups).
    pub primaries: usize,
    /// Replicas per primary.
    pub replicas: usize,
    /// `--write-ack` of the nodes: all, quorum or one.
    pub write_ack: String,
    /// Heartbeat period of nodes and balancer, ms.
    pub heartbeat_ms: u64,
    /// Heartbeats missed before the balancer declares a node dead.
    pub missed_heartbeats: u64,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            primaries: 3,
            replicas: 1,
            write_ack: "all".into(),
            heartbeat_ms: 100,
            missed_heartbeats: 10,
        }
    }
}

/// Which process a fault is aimed at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Target {
    /// The balancer.
    Balancer,
    /// Node slot `i` (in start order: primaries first).
    Node(usize),
}

/// A node's place in the map: `(member id, group, role)`.
pub type Place = (u64, Option<u32>, Role);

/// The running cluster.
pub struct Cluster {
    /// The spec it was started with.
    pub spec: Spec,
    /// The balancer.
    pub balancer: Proc,
    /// The nodes, by slot.
    pub nodes: Vec<Proc>,
    bin: PathBuf,
    dir: PathBuf,
}

/// The group id of the balancer's process; node `i` runs as `NODE_GID + i`.
pub const BALANCER_GID: u32 = 61_000;
/// The group id of node slot 0.
pub const NODE_GID: u32 = 61_001;

/// Most node slots a cluster may have.
pub const MAX_NODES: usize = 64;

/// The `(group id, address)` of the balancer and of every node slot.
pub fn identities() -> Vec<(u32, Ipv4Addr)> {
    std::iter::once((BALANCER_GID, BALANCER_IP))
        .chain((0..MAX_NODES).map(|i| (NODE_GID + i as u32, node_ip(i))))
        .collect()
}

/// The balancer's address.
pub const BALANCER_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// The address of node slot `i`.
pub fn node_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, 10 + (i % MAX_NODES) as u8)
}

fn client_cfg() -> ClientConfig {
    ClientConfig::default()
        .timeout(Duration::from_secs(1))
        .failover_timeout(Duration::ZERO)
        .retry_idempotent(false)
}

impl Cluster {
    /// Starts the balancer, the primaries, then the replicas, and waits until the map is
    /// complete and every replica is caught up. Logs go to `dir`.
    pub fn start(spec: Spec, bin: &Path, dir: &Path) -> Result<Cluster> {
        std::fs::create_dir_all(dir).map_err(|source| ChaosError::File {
            path: dir.to_path_buf(),
            source,
        })?;
        let ip = BALANCER_IP;
        let mut balancer = Proc::new("balancer", ip, BALANCER_GID, bin, Vec::new(), dir)?;
        balancer.port = free_port(ip)?;
        balancer.set_args(
            [
                "balancer",
                "--bind",
                &ip.to_string(),
                "--port",
                &balancer.port.to_string(),
                "--cores",
                "1",
                "--heartbeat-ms",
                &spec.heartbeat_ms.to_string(),
                "--missed-heartbeats",
                &spec.missed_heartbeats.to_string(),
            ]
            .map(String::from)
            .to_vec(),
        );
        balancer.start(Duration::from_secs(30))?;
        let mut c = Cluster {
            spec: spec.clone(),
            balancer,
            nodes: Vec::new(),
            bin: bin.to_path_buf(),
            dir: dir.to_path_buf(),
        };
        for _ in 0..spec.primaries {
            c.add_node(Role::Primary)?;
        }
        c.wait_map(spec.primaries, 0, Duration::from_secs(60))?;
        for _ in 0..spec.primaries * spec.replicas {
            c.add_node(Role::Replica)?;
        }
        c.wait_map(spec.primaries, spec.replicas, Duration::from_secs(60))?;
        c.wait_caught_up(Duration::from_secs(60))?;
        Ok(c)
    }

    /// The balancer's `ip:port`.
    pub fn balancer_addr(&self) -> String {
        self.balancer.addr()
    }

    /// Where logs go.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn node_args(&self, slot: usize, role: Role) -> Vec<String> {
        let n = &self.nodes[slot];
        let role = if role == Role::Primary {
            "primary"
        } else {
            "replica"
        };
        let s = |x: &str| x.to_string();
        vec![
            s("node"),
            s("--balancer"),
            self.balancer_addr(),
            s("--role"),
            s(role),
            s("--bind"),
            n.ip.to_string(),
            s("--advertise"),
            n.ip.to_string(),
            s("--port"),
            n.port.to_string(),
            s("--core-port-base"),
            n.core_base.to_string(),
            s("--cpus"),
            (slot % 2).to_string(),
            s("--memory"),
            s("64m"),
            s("--write-ack"),
            self.spec.write_ack.clone(),
            s("--heartbeat-ms"),
            self.spec.heartbeat_ms.to_string(),
        ]
    }

    /// Starts one more node (slot `nodes.len()`) joining as `role`; answers its slot.
    pub fn add_node(&mut self, role: Role) -> Result<usize> {
        let slot = self.nodes.len();
        if slot >= MAX_NODES {
            return Err(ChaosError::Cluster(format!("at most {MAX_NODES} nodes")));
        }
        let ip = node_ip(slot);
        let mut p = Proc::new(
            &format!("n{slot}"),
            ip,
            NODE_GID + slot as u32,
            &self.bin,
            Vec::new(),
            &self.dir,
        )?;
        p.port = free_port(ip)?;
        p.core_base = loop {
            let b = free_port(ip)?;
            if b != p.port {
                break b;
            }
        };
        self.nodes.push(p);
        let args = self.node_args(slot, role);
        self.nodes[slot].set_args(args);
        self.nodes[slot].start(Duration::from_secs(30))?;
        Ok(slot)
    }

    /// The process aimed at.
    pub fn proc_mut(&mut self, t: Target) -> &mut Proc {
        match t {
            Target::Balancer => &mut self.balancer,
            Target::Node(i) => &mut self.nodes[i],
        }
    }

    /// The process aimed at.
    pub fn proc(&self, t: Target) -> &Proc {
        match t {
            Target::Balancer => &self.balancer,
            Target::Node(i) => &self.nodes[i],
        }
    }

    /// Restarts a killed (or running) process: the balancer with its flags, a node as a
    /// replica (an operator restarting a crashed node; it rejoins where a replica is missing).
    pub fn restart(&mut self, t: Target) -> Result<()> {
        if let Target::Node(i) = t {
            let args = self.node_args(i, Role::Replica);
            self.nodes[i].set_args(args);
        }
        self.proc_mut(t).start(Duration::from_secs(60))
    }

    /// The balancer's current map.
    pub fn map(&self) -> Result<ClusterMap> {
        let mut c = Client::connect_cluster_with(self.balancer_addr(), client_cfg())
            .map_err(|e| ChaosError::Cluster(format!("balancer: {e}")))?;
        c.refresh_map()
            .cloned()
            .map_err(|e| ChaosError::Cluster(format!("map: {e}")))
    }

    /// Each node's place in `map`, keyed by its address (members the map names).
    pub fn places(map: &ClusterMap) -> BTreeMap<String, Place> {
        map.members
            .iter()
            .map(|m| {
                (
                    format!("{}:{}", m.host, m.main_port),
                    (m.id, m.group, m.role),
                )
            })
            .collect()
    }

    /// The slot of the node at `host:port`.
    pub fn slot_of(&self, addr: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.addr() == addr)
    }

    /// Slots of each group's members, primary first.
    pub fn groups(&self, map: &ClusterMap) -> BTreeMap<u32, Vec<usize>> {
        let mut out = BTreeMap::new();
        for g in &map.groups {
            let slots = g
                .primary
                .iter()
                .chain(&g.replicas)
                .filter_map(|id| map.member(*id))
                .filter_map(|m| self.slot_of(&format!("{}:{}", m.host, m.main_port)))
                .collect();
            out.insert(g.id, slots);
        }
        out
    }

    /// Waits until the map has `groups` groups, each with a primary and `replicas` replicas,
    /// and no range move.
    pub fn wait_map(&self, groups: usize, replicas: usize, deadline: Duration) -> Result<()> {
        let mut last = String::new();
        let ok = wait_until(deadline, || match self.map() {
            Ok(m) => {
                last = format!("{:?}", Cluster::places(&m));
                m.groups.len() == groups
                    && m.moving.is_none()
                    && m.groups
                        .iter()
                        .all(|g| g.primary.is_some() && g.replicas.len() == replicas)
            }
            Err(e) => {
                last = e.to_string();
                false
            }
        });
        if ok {
            Ok(())
        } else {
            Err(ChaosError::Timeout(format!(
                "a map of {groups} groups with {replicas} replica(s) each; last: {last}"
            )))
        }
    }

    /// Waits until every running node reports `repl_caught_up:1`.
    pub fn wait_caught_up(&self, deadline: Duration) -> Result<()> {
        let mut last = Vec::new();
        let ok = wait_until(deadline, || {
            last = self
                .nodes
                .iter()
                .map(|n| (n.name.clone(), stat(&n.addr(), "repl_caught_up")))
                .collect();
            last.iter().all(|(_, v)| *v == Some(1))
        });
        if ok {
            Ok(())
        } else {
            Err(ChaosError::Timeout(format!(
                "every node to report repl_caught_up:1; last: {last:?}"
            )))
        }
    }
}

fn redis_conn(addr: &str) -> redis::RedisResult<redis::Connection> {
    let c = redis::Client::open(format!("redis://{addr}/"))?;
    let conn = c.get_connection_with_timeout(Duration::from_secs(2))?;
    conn.set_read_timeout(Some(Duration::from_secs(2)))?;
    conn.set_write_timeout(Some(Duration::from_secs(2)))?;
    Ok(conn)
}

/// `DIGEST` of the node at `addr`: `[count0, digest0, ...]`.
pub fn digest(addr: &str) -> Result<Vec<u64>> {
    let err = |e: String| ChaosError::Cluster(format!("DIGEST of {addr}: {e}"));
    let mut conn = redis_conn(addr).map_err(|e| err(e.to_string()))?;
    let items = redis::cmd("DIGEST")
        .query::<Vec<redis::Value>>(&mut conn)
        .map_err(|e| err(e.to_string()))?;
    items
        .iter()
        .map(|v| match v {
            redis::Value::Int(i) => Ok(*i as u64),
            redis::Value::BulkString(b) => String::from_utf8_lossy(b)
                .trim_matches('"')
                .parse()
                .map_err(|e| err(format!("item {v:?}: {e}"))),
            other => Err(err(format!("item {other:?}"))),
        })
        .collect()
}

fn flatten(v: &redis::Value, out: &mut String) {
    match v {
        redis::Value::BulkString(b) => out.push_str(&String::from_utf8_lossy(b)),
        redis::Value::SimpleString(s) => out.push_str(s),
        redis::Value::VerbatimString { text, .. } => out.push_str(text),
        redis::Value::Array(items) => items.iter().for_each(|i| {
            flatten(i, out);
            out.push('\n');
        }),
        _ => {}
    }
}

/// One `STATS` counter of the node at `addr`, if it answered.
pub fn stat(addr: &str, name: &str) -> Option<u64> {
    let mut conn = redis_conn(addr).ok()?;
    let v = redis::cmd("STATS").query::<redis::Value>(&mut conn).ok()?;
    let mut text = String::new();
    flatten(&v, &mut text);
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == name).then(|| v.trim().parse().ok())?
    })
}
