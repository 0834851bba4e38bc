//! Cluster harness shared by the cluster and replication tests: a balancer process, clusters of
//! nodes joined to it, waits on the balancer's map, DIGEST / STATS probes, and a thin-client
//! load runner that records what was acknowledged. Every process is killed on drop.
#![allow(dead_code)]

use std::collections::HashMap;
use std::fs::File;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rand::Rng;
use ringcache_client::{Client, ClientConfig, ClientError, SetOpts};

use super::{free_port, parse_stats, wait_until, Node};

/// A running `ringcache balancer`, killed on drop.
pub struct Balancer {
    child: Child,
    pub port: u16,
    log: PathBuf,
}

impl Balancer {
    /// A balancer with lenient failure detection: a loaded CI machine must not declare nodes
    /// dead.
    pub fn start() -> Balancer {
        Balancer::start_with(&["--missed-heartbeats", "25"])
    }

    /// A balancer with these extra flags (e.g. `--heartbeat-ms 100 --missed-heartbeats 5`).
    pub fn start_with(extra: &[&str]) -> Balancer {
        Balancer::start_on(free_port(), extra)
    }

    /// Kills this balancer (SIGKILL) and starts a new one, knowing nothing, on the same port.
    pub fn restart(&mut self, extra: &[&str]) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        assert!(
            ports_free(&[self.port], Duration::from_secs(30)),
            "the killed balancer's port {} stays busy",
            self.port
        );
        *self = Balancer::start_on(self.port, extra);
    }

    /// A balancer on `port` with these extra flags.
    pub fn start_on(port: u16, extra: &[&str]) -> Balancer {
        let log = std::env::temp_dir().join(format!("ringcache-balancer-{port}.log"));
        let stderr = File::create(&log).expect("create balancer log");
        let port_s = port.to_string();
        let mut args = vec!["balancer", "--port", &port_s];
        args.extend_from_slice(extra);
        let child = Command::new(env!("CARGO_BIN_EXE_ringcache"))
            .args(&args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(stderr))
            .spawn()
            .expect("start balancer");
        let b = Balancer { child, port, log };
        assert!(
            wait_until(Duration::from_secs(60), || TcpStream::connect((
                "127.0.0.1",
                b.port
            ))
            .is_ok()),
            "balancer did not listen: {}",
            b.log_text()
        );
        b
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until the balancer's map has `groups` groups, each with a primary and (with
/// `replicas`) exactly that many replicas, and answers a cluster-mode client holding it.
pub fn wait_for_map(b: &Balancer, groups: usize, replicas: Option<usize>) -> Client {
    wait_for_map_where(b, Duration::from_secs(60), |c| {
        let map = c.cluster_map().expect("cluster mode");
        map.groups.len() == groups
            && map.moving.is_none()
            && map
                .groups
                .iter()
                .all(|g| g.primary.is_some() && replicas.is_none_or(|r| g.replicas.len() == r))
    })
}

/// Waits (up to `deadline`) until `ok` holds for a cluster client whose map was just
/// refreshed; answers that client. Panics with the balancer's log otherwise.
pub fn wait_for_map_where(
    b: &Balancer,
    deadline: Duration,
    mut ok: impl FnMut(&Client) -> bool,
) -> Client {
    let mut c = cluster_client(&b.addr());
    let done = wait_until(deadline, || c.refresh_map().is_ok() && ok(&c));
    assert!(
        done,
        "the map never got as expected; last:\n{}balancer log:\n{}",
        c.cluster_map().map(|m| m.to_string()).unwrap_or_default(),
        b.log_text()
    );
    c
}

/// A cluster-mode client (default settings), connecting with retries for up to 30 s.
pub fn cluster_client(addr: &str) -> Client {
    cluster_client_with(addr, ClientConfig::default())
}

/// [`cluster_client`] with explicit settings.
pub fn cluster_client_with(addr: &str, cfg: ClientConfig) -> Client {
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        match Client::connect_cluster_with(addr, cfg.clone()) {
            Ok(c) => return c,
            Err(e) if Instant::now() > end => panic!("cannot connect to the balancer: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Runs `op` until it succeeds, the `deadline` passes or `give_up` is set, refreshing the map
/// between attempts (the client's own failover retries are not relied upon).
pub fn retry<T>(
    c: &mut Client,
    deadline: Duration,
    give_up: &AtomicBool,
    mut op: impl FnMut(&mut Client) -> Result<T, ClientError>,
) -> Result<T, ClientError> {
    let end = Instant::now() + deadline;
    loop {
        match op(c) {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() > end || give_up.load(Ordering::Relaxed) => return Err(e),
            Err(_) => {
                std::thread::sleep(Duration::from_millis(20));
                let _ = c.refresh_map();
            }
        }
    }
}

/// `retry` for 20 s without a stop flag.
pub fn retry20<T>(
    c: &mut Client,
    op: impl FnMut(&mut Client) -> Result<T, ClientError>,
) -> Result<T, ClientError> {
    retry(c, Duration::from_secs(20), &AtomicBool::new(false), op)
}

/// Ids, main ports and groups of the map's members: `(id, main_port, group)`.
pub fn members(c: &Client) -> Vec<(u64, u16, Option<u32>)> {
    let map = c.cluster_map().expect("cluster mode");
    map.members
        .iter()
        .map(|m| (m.id, m.main_port, m.group))
        .collect()
}

/// The map member listening on `port`: `(id, group)`.
pub fn member_at(c: &Client, port: u16) -> Option<(u64, Option<u32>)> {
    members(c)
        .into_iter()
        .find(|m| m.1 == port)
        .map(|m| (m.0, m.2))
}

/// Main ports of a group's members, primary first.
pub fn group_ports(c: &Client, group: u32) -> Vec<u16> {
    let map = c.cluster_map().expect("cluster mode");
    let Some(g) = map.group(group) else {
        return Vec::new();
    };
    g.primary
        .iter()
        .chain(&g.replicas)
        .filter_map(|id| map.member(*id).map(|m| m.main_port))
        .collect()
}

/// The group owning each key, by the client's current map.
pub fn groups_of(c: &Client, keys: &[String]) -> Vec<Option<u32>> {
    let map = c.cluster_map().expect("cluster mode");
    keys.iter()
        .map(|k| map.group_for_key(k.as_bytes()))
        .collect()
}

fn redis_conn(port: u16) -> redis::RedisResult<redis::Connection> {
    let c = redis::Client::open(format!("redis://127.0.0.1:{port}/"))?;
    let conn = c.get_connection_with_timeout(Duration::from_secs(2))?;
    conn.set_read_timeout(Some(Duration::from_secs(2)))?;
    conn.set_write_timeout(Some(Duration::from_secs(2)))?;
    Ok(conn)
}

/// `DIGEST` of the node at `port`: `[count0, digest0, count1, digest1, ...]` (a digest above
/// `i64::MAX` may come as a bulk string: both forms are read as `u64`).
pub fn digest(port: u16) -> Result<Vec<u64>, String> {
    let mut conn = redis_conn(port).map_err(|e| e.to_string())?;
    let items = redis::cmd("DIGEST")
        .query::<Vec<redis::Value>>(&mut conn)
        .map_err(|e| e.to_string())?;
    items
        .iter()
        .map(|v| match v {
            redis::Value::Int(i) => Ok(*i as u64),
            redis::Value::BulkString(b) => String::from_utf8_lossy(b)
                .trim_matches('"')
                .parse()
                .map_err(|e| format!("DIGEST item {v:?}: {e}")),
            other => Err(format!("DIGEST item {other:?}")),
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

/// `STATS` of the node at `port` (empty when it does not answer).
pub fn stats_at(port: u16) -> HashMap<String, u64> {
    let Ok(mut conn) = redis_conn(port) else {
        return HashMap::new();
    };
    let Ok(v) = redis::cmd("STATS").query::<redis::Value>(&mut conn) else {
        return HashMap::new();
    };
    let mut text = String::new();
    flatten(&v, &mut text);
    parse_stats(text.as_bytes())
}

/// One STATS counter of the node at `port`, if it answered it.
pub fn stat(port: u16, name: &str) -> Option<u64> {
    stats_at(port).get(name).copied()
}

/// Waits (up to `deadline`) until every group of the map has at least `min_members` members
/// and all of them answer the same DIGEST array; `Err` describes the last state seen.
pub fn wait_digests_converge(
    c: &mut Client,
    min_members: usize,
    deadline: Duration,
) -> Result<(), String> {
    let mut last = String::new();
    let ok = wait_until(deadline, || {
        if c.refresh_map().is_err() {
            last = "no map".into();
            return false;
        }
        let groups: Vec<u32> = c
            .cluster_map()
            .unwrap()
            .groups
            .iter()
            .map(|g| g.id)
            .collect();
        last.clear();
        let mut all = true;
        for g in groups {
            let ports = group_ports(c, g);
            let digests: Vec<Result<Vec<u64>, String>> = ports.iter().map(|p| digest(*p)).collect();
            let same = digests.iter().all(|d| d.is_ok() && d == &digests[0]);
            all &= ports.len() >= min_members && same;
            last.push_str(&format!("group {g}: {ports:?} -> {digests:?}\n"));
        }
        all
    });
    if ok {
        Ok(())
    } else {
        Err(last)
    }
}

/// Serializes the clusters of one test binary: tests run in parallel threads and a handful of
/// multi-node clusters at once on a small machine would miss heartbeats.
static SERIAL: Mutex<()> = Mutex::new(());

/// A balancer with `primaries` groups of one primary and `replicas` replicas each, nodes of
/// 2 cores; every process is killed on drop (logs are printed if the test panicked).
pub struct Cluster {
    pub primaries: Vec<Node>,
    pub replicas: Vec<Node>,
    pub balancer: Balancer,
    node_args: Vec<String>,
    _serial: MutexGuard<'static, ()>,
}

/// Cores per node in these clusters.
pub const CORES: usize = 2;

impl Cluster {
    /// Starts the cluster; returns once the map is complete and every node reports
    /// `repl_caught_up:1`.
    pub fn start(
        primaries: usize,
        replicas: usize,
        balancer_args: &[&str],
        node_args: &[&str],
    ) -> Cluster {
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let balancer = Balancer::start_with(balancer_args);
        let mut c = Cluster {
            primaries: Vec::new(),
            replicas: Vec::new(),
            balancer,
            node_args: node_args.iter().map(|s| s.to_string()).collect(),
            _serial: serial,
        };
        for _ in 0..primaries {
            let n = c.start_node("primary", &[]);
            c.primaries.push(n);
        }
        wait_for_map(&c.balancer, primaries, Some(0));
        for _ in 0..primaries * replicas {
            let n = c.start_node("replica", &[]);
            c.replicas.push(n);
        }
        wait_for_map(&c.balancer, primaries, Some(replicas));
        c.wait_caught_up(&c.ports(), Duration::from_secs(60));
        c
    }

    pub fn addr(&self) -> String {
        self.balancer.addr()
    }

    /// A cluster-mode client on this cluster's balancer.
    pub fn client(&self) -> Client {
        cluster_client(&self.addr())
    }

    /// Starts one more node of this cluster (2 cores, the cluster's node flags, `extra`).
    pub fn start_node(&self, role: &str, extra: &[&str]) -> Node {
        let addr = self.addr();
        let mut args: Vec<&str> = vec!["--balancer", &addr, "--role", role];
        args.extend(self.node_args.iter().map(String::as_str));
        args.extend_from_slice(extra);
        Node::start(CORES, &args)
    }

    /// Kills `old` (if still running) and starts a replica on its ports with the cluster's
    /// node flags, as an operator restarting a crashed process would.
    pub fn restart_replica(&self, old: Node) -> Node {
        let (port, base) = (old.port, old.core_ports[0]);
        drop(old);
        let ports: Vec<u16> = std::iter::once(port)
            .chain(base..base + CORES as u16)
            .collect();
        assert!(
            ports_free(&ports, Duration::from_secs(30)),
            "the ports of the killed node stay busy"
        );
        let addr = self.addr();
        let mut args: Vec<&str> = vec!["--balancer", &addr, "--role", "replica"];
        args.extend(self.node_args.iter().map(String::as_str));
        Node::start_on(port, base, CORES, "64m", &args)
    }

    /// Waits until every node at `ports` reports `repl_caught_up:1`.
    pub fn wait_caught_up(&self, ports: &[u16], deadline: Duration) {
        let ok = wait_until(deadline, || {
            ports.iter().all(|p| stat(*p, "repl_caught_up") == Some(1))
        });
        assert!(
            ok,
            "not every node reports repl_caught_up:1: {:?}; balancer log:\n{}",
            ports
                .iter()
                .map(|p| (p, stat(*p, "repl_caught_up")))
                .collect::<Vec<_>>(),
            self.balancer.log_text()
        );
    }

    /// The main ports of every node, primaries first.
    pub fn ports(&self) -> Vec<u16> {
        self.primaries
            .iter()
            .chain(&self.replicas)
            .map(|n| n.port)
            .collect()
    }

    /// The node (primary or replica) listening on `port`.
    pub fn node(&self, port: u16) -> &Node {
        self.primaries
            .iter()
            .chain(&self.replicas)
            .find(|n| n.port == port)
            .expect("no node on that port")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let tail = |s: String| s.lines().rev().take(40).collect::<Vec<_>>().join("\n");
            eprintln!(
                "--- balancer log (last lines, newest first):\n{}",
                tail(self.balancer.log_text())
            );
            for n in self.primaries.iter().chain(&self.replicas) {
                eprintln!(
                    "--- node {} log (newest first):\n{}",
                    n.port,
                    tail(n.log_text())
                );
            }
        }
    }
}

/// Sends `sig` to the node's process.
pub fn signal(n: &Node, sig: libc::c_int) {
    // SAFETY: kill(2) on our own child's pid has no memory effects.
    unsafe {
        libc::kill(n.pid() as libc::pid_t, sig);
    }
}

/// What a key may read as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    Value(Vec<u8>),
    Absent,
}

/// For one key: the last acknowledged write and the writes attempted since (unacknowledged:
/// each may or may not have been applied).
#[derive(Clone, Debug, Default)]
pub struct KeyRecord {
    pub acked: Option<Expect>,
    pub pending: Vec<Expect>,
}

impl KeyRecord {
    /// Whether a read answering `got` is allowed: the last acknowledged write or a later
    /// attempted one (a key never acknowledged may also be absent).
    pub fn accepts(&self, got: Option<&[u8]>) -> bool {
        let got = got.map_or(Expect::Absent, |v| Expect::Value(v.to_vec()));
        *self.acked.as_ref().unwrap_or(&Expect::Absent) == got || self.pending.contains(&got)
    }
}

/// Operations of a load thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mix {
    /// Two SETs per GET.
    SetGet,
    /// SET, DEL, SET EX 3600, INCR (on separate `n…` keys), GET.
    Mixed,
}

/// What a load run saw.
#[derive(Debug, Default)]
pub struct LoadReport {
    pub keys: HashMap<String, KeyRecord>,
    pub ok: u64,
    pub failed: u64,
    /// GETs during the load that answered something older than acknowledged.
    pub stale_reads: Vec<String>,
}

#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    ok: AtomicU64,
    /// When each write was acknowledged, and its key.
    acks: Mutex<Vec<(Instant, String)>>,
}

/// Thin-client load threads on keys `k{thread}-{i}`, values `v{thread}-{seq}`.
pub struct Load {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<LoadReport>>,
}

impl Load {
    pub fn start(addr: &str, threads: usize, keys_per_thread: usize, mix: Mix) -> Load {
        let shared = Arc::new(Shared::default());
        let threads = (0..threads)
            .map(|t| {
                let (shared, addr) = (shared.clone(), addr.to_string());
                std::thread::spawn(move || load_thread(&addr, t, keys_per_thread, mix, &shared))
            })
            .collect();
        Load { shared, threads }
    }

    /// Operations acknowledged so far.
    pub fn ok(&self) -> u64 {
        self.shared.ok.load(Ordering::Relaxed)
    }

    /// Keys of writes acknowledged after `t`, with when.
    pub fn acks_since(&self, t: Instant) -> Vec<(Instant, String)> {
        let acks = self.shared.acks.lock().unwrap();
        acks.iter().filter(|(at, _)| *at > t).cloned().collect()
    }

    /// Waits until `n` more operations were acknowledged (true) or `deadline` passes.
    pub fn wait_progress(&self, n: u64, deadline: Duration) -> bool {
        let start = self.ok();
        wait_until(deadline, || self.ok() >= start + n)
    }

    /// Stops the threads and merges what they recorded.
    pub fn stop(mut self) -> LoadReport {
        self.shared.stop.store(true, Ordering::Relaxed);
        let mut out = LoadReport::default();
        for t in std::mem::take(&mut self.threads) {
            let r = t.join().expect("load thread panicked");
            out.keys.extend(r.keys);
            out.ok += r.ok;
            out.failed += r.failed;
            out.stale_reads.extend(r.stale_reads);
        }
        out
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
    }
}

fn load_thread(addr: &str, t: usize, keys: usize, mix: Mix, shared: &Shared) -> LoadReport {
    // Short timeouts: a stopped or killed node must not hold an operation for long.
    let mut c = cluster_client_with(
        addr,
        ClientConfig::default().timeout(Duration::from_secs(2)),
    );
    let mut out = LoadReport::default();
    let mut rng = rand::thread_rng();
    let op_deadline = Duration::from_secs(20);
    let mut seq = 0u64;
    while !shared.stop.load(Ordering::Relaxed) {
        seq += 1;
        let i = rng.gen_range(0..keys);
        let key = format!("k{t}-{i}");
        let value = format!("v{t}-{seq}").into_bytes();
        let kind = match mix {
            Mix::SetGet => ["set", "set", "get"][seq as usize % 3],
            Mix::Mixed => ["set", "del", "setex", "incr", "get"][seq as usize % 5],
        };
        let rec = out.keys.entry(key.clone()).or_default();
        let (result, wrote) = match kind {
            "set" | "setex" => {
                rec.pending.push(Expect::Value(value.clone()));
                let opts = SetOpts::new().ttl(Duration::from_secs(3600));
                let r = retry(&mut c, op_deadline, &shared.stop, |c| {
                    if kind == "set" {
                        c.set(&key, &value)
                    } else {
                        c.set_with(&key, &value, &opts).map(|_| ())
                    }
                });
                (r.map(|()| None), Some(Expect::Value(value)))
            }
            "del" => {
                rec.pending.push(Expect::Absent);
                let r = retry(&mut c, op_deadline, &shared.stop, |c| c.del(&[&key]));
                (r.map(|_| None), Some(Expect::Absent))
            }
            "incr" => {
                let n = format!("n{t}-{i}");
                let r = retry(&mut c, op_deadline, &shared.stop, |c| c.incr(&n));
                (r.map(|_| None), None)
            }
            _ => {
                let r = retry(&mut c, op_deadline, &shared.stop, |c| c.get(&key));
                (r.map(Some), None)
            }
        };
        match result {
            Ok(read) => {
                out.ok += 1;
                shared.ok.fetch_add(1, Ordering::Relaxed);
                if let Some(w) = wrote {
                    rec.acked = Some(w);
                    rec.pending.clear();
                    shared
                        .acks
                        .lock()
                        .unwrap()
                        .push((Instant::now(), key.clone()));
                }
                if let Some(got) = read {
                    if !rec.accepts(got.as_deref()) {
                        out.stale_reads
                            .push(format!("{key}: read {got:?}, record {rec:?}"));
                    }
                }
            }
            Err(_) => out.failed += 1,
        }
    }
    out
}

/// Reads every recorded key (retrying errors) and lists those whose value is neither the last
/// acknowledged write nor a later attempted one.
pub fn verify(c: &mut Client, keys: &HashMap<String, KeyRecord>) -> Vec<String> {
    let mut bad = Vec::new();
    for (k, rec) in keys {
        match retry20(c, |c| c.get(k)) {
            Ok(got) if rec.accepts(got.as_deref()) => {}
            Ok(got) => bad.push(format!(
                "{k}: read {:?}, acked {:?}, attempted since {:?}",
                got.map(|v| String::from_utf8_lossy(&v).into_owned()),
                rec.acked,
                rec.pending
            )),
            Err(e) => bad.push(format!("{k}: unreadable: {e}")),
        }
    }
    bad
}

/// Whether every one of `ports` can be listened on again within `deadline`: a killed process
/// keeps its listening sockets until the kernel has torn down its io_uring instances.
fn ports_free(ports: &[u16], deadline: Duration) -> bool {
    wait_until(deadline, || {
        ports
            .iter()
            .all(|&p| TcpListener::bind(("127.0.0.1", p)).is_ok())
    })
}
