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

/// The children, killed (SIGTERM, then SIGKILL after a grace period) when dropped.
struct Children(Vec<(String, Child)>);

impl Drop for Children {
    fn drop(&mut self) {
        for (_, c) in &mut self.0 {
            // SAFETY: kill(2) on our own child's pid has no memory effects.
            unsafe {
                libc::kill(c.id() as libc::pid_t, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        for (_, c) in &mut self.0 {
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
    let cpus = ringcache_net::allowed_cpus();
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
    if ringcache_net::wait_port_free(([127, 0, 0, 1], args.port).into()).is_err() {
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
    let total = args.primaries * (1 + args.replicas);
    for i in 0..total {
        let role = if i < args.primaries {
            "primary"
        } else {
            "replica"
        };
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
        spawn(format!("{role} on port {main}"), a, &mut children)?;
    }
    // Wait until the map holds everyone.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut client = None;
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        for (name, c) in &mut children.0 {
            if let Ok(Some(status)) = c.try_wait() {
                bail!("{name} exited while starting ({status}); see its messages above");
            }
        }
        if client.is_none() {
            client = Client::connect_cluster(balancer.as_str()).ok();
        }
        if let Some(c) = client.as_mut() {
            if let Ok(map) = c.refresh_map() {
                if map.members.len() == total
                    && map.groups.len() == args.primaries
                    && map.groups.iter().all(|g| g.primary.is_some())
                    && map.moving.is_none()
                {
                    break;
                }
            }
        }
        if Instant::now() > deadline {
            bail!("the cluster did not form within 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
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
