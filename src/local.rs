//! `ringcache local`: a whole cluster on 127.0.0.1 from one command: a balancer on --port and
//! the nodes (child processes of this binary) on free ports; stops them all on Ctrl-C/SIGTERM.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use ringcache_client::Client;
use ringcache_cluster::{ClusterMap, MemberState};

/// Flags of `ringcache local`.
#[derive(Args, Debug)]
pub struct LocalArgs {
    /// The balancer's port: clients (redis-cli, ringcache cli, any Redis client) connect here.
    #[arg(long, short = 'p', env = "RINGCACHE_PORT", default_value_t = 7379)]
    port: u16,
    /// Primaries (shard groups) to start.
    #[arg(long, default_value_t = 3)]
    primaries: usize,
    /// Replicas per primary.
    #[arg(long, default_value_t = 1)]
    replicas: usize,
    /// Cores of each node.
    #[arg(long, default_value_t = 1)]
    cores: usize,
    /// Memory budget of each node (k, m, g suffixes).
    #[arg(long, default_value = "256m")]
    memory: String,
    /// Milliseconds between heartbeats of the nodes.
    #[arg(long, default_value_t = 100)]
    heartbeat_ms: u64,
    /// Heartbeats a node may miss before the balancer declares it dead.
    #[arg(long, default_value_t = 5)]
    missed_heartbeats: u64,
    /// Replica acks a write waits for: all, quorum or one.
    #[arg(long, default_value = "all", value_parser = ["all", "quorum", "one"])]
    write_ack: String,
}

/// The children, the balancer first, stopped when dropped: the nodes first (SIGTERM, so each
/// tells the balancer it leaves), then the balancer; SIGKILL for any that outlives its grace.
struct Children(Vec<(String, Child)>);

impl Children {
    /// Sends SIGTERM to `children` and waits up to `grace` for them, then kills the rest.
    fn stop(children: &mut [(String, Child)], grace: Duration) {
        for (_, c) in children.iter_mut() {
            // SAFETY: kill(2) on our own child's pid has no memory effects.
            unsafe {
                libc::kill(c.id() as libc::pid_t, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + grace;
        for (_, c) in children.iter_mut() {
            while Instant::now() < deadline {
                if matches!(c.try_wait(), Ok(Some(_))) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        let grace = Duration::from_secs(3);
        if let Some((balancer, nodes)) = self.0.split_first_mut() {
            Self::stop(nodes, grace);
            Self::stop(std::slice::from_mut(balancer), grace);
        }
    }
}

/// A main port and `n` consecutive core ports, all free right now.
fn free_ports(n: usize, taken: &[u16]) -> anyhow::Result<(u16, u16)> {
    let free =
        || -> anyhow::Result<u16> { Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port()) };
    for _ in 0..200 {
        let (main, base) = (free()?, free()?);
        if usize::from(base) + n >= 65535 {
            continue;
        }
        let ok = (0..n as u16).all(|i| {
            let p = base + i;
            p != main
                && !taken.contains(&p)
                && !taken.contains(&main)
                && TcpListener::bind(("127.0.0.1", p)).is_ok()
        });
        if ok {
            return Ok((main, base));
        }
    }
    bail!("could not find {n} consecutive free ports on 127.0.0.1")
}

/// Polls the balancer's map while the cluster starts.
struct MapWatch<'a> {
    balancer: &'a str,
    client: Option<Client>,
    stop: &'a AtomicBool,
}

impl MapWatch<'_> {
    /// Waits up to 30 s until the map satisfies `ready`. `Ok(false)`: stopped by a signal
    /// meanwhile; an error when a child exits or time runs out.
    fn wait(
        &mut self,
        children: &mut Children,
        what: &str,
        ready: impl Fn(&ClusterMap) -> bool,
    ) -> anyhow::Result<bool> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return Ok(false);
            }
            for (name, c) in &mut children.0 {
                if let Ok(Some(status)) = c.try_wait() {
                    bail!("{name} exited while starting ({status}); see its messages above");
                }
            }
            if self.client.is_none() {
                self.client = Client::connect_cluster(self.balancer).ok();
            }
            if let Some(c) = self.client.as_mut() {
                if c.refresh_map().is_ok_and(&ready) {
                    return Ok(true);
                }
            }
            if Instant::now() > deadline {
                bail!("{what} did not join within 30 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Runs the local cluster until Ctrl-C or SIGTERM.
pub fn run(args: LocalArgs) -> anyhow::Result<()> {
    if args.primaries == 0 {
        bail!("--primaries must be at least 1");
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())?;
    }
    let exe = std::env::current_exe().context("cannot find the ringcache binary")?;
    let cpus = ringcache_runtime::allowed_cpus();
    let log = std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into());
    let mut children = Children(Vec::new());
    let spawn = |name: String, a: Vec<String>, children: &mut Children| -> anyhow::Result<()> {
        let child = Command::new(&exe)
            .args(&a)
            .env("RUST_LOG", &log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        children.0.push((name, child));
        Ok(())
    };
    let balancer = format!("127.0.0.1:{}", args.port);
    if ringcache_runtime::wait_port_free(([127, 0, 0, 1], args.port).into()).is_err() {
        bail!(
            "port {} is already in use: stop whatever listens there or pick another --port",
            args.port
        );
    }
    spawn(
        "balancer".into(),
        vec![
            "balancer".into(),
            "--port".into(),
            args.port.to_string(),
            "--cores".into(),
            "1".into(),
            "--heartbeat-ms".into(),
            args.heartbeat_ms.to_string(),
            "--missed-heartbeats".into(),
            args.missed_heartbeats.to_string(),
        ],
        &mut children,
    )?;
    // Nodes join at once when the balancer already listens (else they back off and retry).
    let up = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", args.port)).is_err() && Instant::now() < up {
        if let Some((_, c)) = children.0.first_mut() {
            if let Ok(Some(status)) = c.try_wait() {
                bail!("the balancer exited while starting ({status}); see its messages above");
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut taken = vec![args.port];
    let mut start_node = |role: &str, i: usize, children: &mut Children| -> anyhow::Result<()> {
        let (main, base) = free_ports(args.cores, &taken)?;
        taken.push(main);
        taken.extend((0..args.cores as u16).map(|c| base + c));
        let first_cpu = (i * args.cores) % cpus.len();
        let node_cpus: Vec<String> = (0..args.cores)
            .map(|c| cpus[(first_cpu + c) % cpus.len()].to_string())
            .collect();
        let mut a: Vec<String> = [
            "node",
            "--port",
            &main.to_string(),
            "--core-port-base",
            &base.to_string(),
            "--memory",
            &args.memory,
            "--balancer",
            &balancer,
            "--role",
            role,
            "--heartbeat-ms",
            &args.heartbeat_ms.to_string(),
            "--write-ack",
            &args.write_ack,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if args.cores <= cpus.len() {
            a.push("--cpus".into());
            a.push(node_cpus.join(","));
        } else {
            a.push("--cores".into());
            a.push(args.cores.to_string());
        }
        spawn(format!("{role} on port {main}"), a, children)
    };
    // Primaries first: a replica goes to the group with the fewest replicas when it joins, so
    // replicas that joined before the last primary would crowd the first groups until the
    // balancer moved spares over (each move a full copy).
    for i in 0..args.primaries {
        start_node("primary", i, &mut children)?;
    }
    let mut watch = MapWatch {
        balancer: &balancer,
        client: None,
        stop: &stop,
    };
    let primaries_in = |map: &ClusterMap| {
        map.groups.len() == args.primaries && map.groups.iter().all(|g| g.primary.is_some())
    };
    if !watch.wait(&mut children, "the primaries", primaries_in)? {
        return Ok(());
    }
    let total = args.primaries * (1 + args.replicas);
    for i in args.primaries..total {
        start_node("replica", i, &mut children)?;
    }
    let formed = |map: &ClusterMap| {
        primaries_in(map)
            && map.members.len() == total
            && map.members.iter().all(|m| m.state == MemberState::Active)
            && map.groups.iter().all(|g| g.replicas.len() == args.replicas)
            && map.moving.is_none()
    };
    if !watch.wait(&mut children, "the cluster", formed)? {
        return Ok(());
    }
    println!(
        "ringcache local cluster is up: balancer on {balancer}, {} primaries with {} replica(s) each ({} node(s), {} core(s) each)",
        args.primaries, args.replicas, total, args.cores
    );
    println!("  redis-cli -p {}", args.port);
    println!("  ringcache cli --port {} set greeting hello", args.port);
    println!("  ringcache cli --port {} cluster", args.port);
    println!("Ctrl-C stops the balancer and every node.");
    // A node that dies is reported and the cluster carries on (a replica takes over a dead
    // primary's keys, as in production); without the balancer there is no cluster to talk to.
    let mut gone = vec![false; children.0.len()];
    while !stop.load(Ordering::Relaxed) {
        for (i, (name, c)) in children.0.iter_mut().enumerate() {
            if gone[i] {
                continue;
            }
            if let Ok(Some(status)) = c.try_wait() {
                if i == 0 {
                    bail!("{name} exited ({status}); stopping the local cluster");
                }
                gone[i] = true;
                eprintln!(
                    "{name} exited ({status}); the cluster carries on without it (`ringcache cli --port {} cluster` shows the map)",
                    args.port
                );
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("stopping the local cluster");
    drop(children);
    Ok(())
}
