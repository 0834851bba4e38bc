//! Starts a node: one pinned glommio executor per core, each with its shard, its own port and
//! the shared main port, the mesh between them, and an expiry ticker; stops them all cleanly on
//! SIGINT/SIGTERM.

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use glommio::net::TcpListener;
use glommio::{spawn_local, timer::sleep, LocalExecutorBuilder, Placement};
use ringcache_node_core::map_change::on_map;
use ringcache_node_core::{now_ms, CoreState, NodeView};
use ringcache_runtime::{bind_listener, raise_memlock, wait_port_free, StopFlag};
use tracing::{debug, info, warn};

use crate::connection::serve;
use crate::context::ConnContext;
use crate::core_cell::{CoreCell, CoreProgress, SharedCore};
use crate::idle_conns::{shut_down, IdleConns};
use crate::lone_lookups::LoneLookups;
use crate::mesh::{Mesh, MeshBuilders};
use crate::node_config::NodeConfig;
use crate::readiness::Readiness;
use crate::repl_link::spawn_link;

/// Work units each core's expiry ticker may spend per tick.
const TICK_BUDGET: usize = 4096;
/// How long a stopping core waits for its connections to finish their last batch.
const DRAIN: Duration = Duration::from_secs(2);
/// Slots per mesh channel.
const MESH_DEPTH: usize = 1024;

/// Fails early, with advice, when a port is taken (glommio binds with SO_REUSEPORT, which
/// would otherwise silently share the port with another process of the same user).
fn check_ports(cfg: &NodeConfig) -> anyhow::Result<()> {
    let ports = std::iter::once(cfg.port).chain(cfg.core_ports.iter().copied());
    for port in ports {
        let addr = SocketAddr::new(cfg.bind, port);
        match wait_port_free(addr) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => bail!(
                "port {port} on {} is already in use: stop whatever listens there or choose other ports with --port / --core-port-base",
                cfg.bind
            ),
            Err(e) => bail!("cannot listen on {addr}: {e}"),
        }
    }
    Ok(())
}

/// Runs a node until SIGINT/SIGTERM (or `stop`), returning once every core has stopped.
pub fn run_node(cfg: NodeConfig, stop: StopFlag) -> anyhow::Result<()> {
    raise_memlock();
    check_ports(&cfg)?;
    let n = cfg.cpus.len();
    let node_id = u64::from(cfg.port);
    let meshes = (n > 1).then(|| MeshBuilders::new(n, MESH_DEPTH));
    let (ready_tx, ready_rx) = mpsc::channel::<Result<usize, String>>();
    let mut handles = Vec::with_capacity(n);
    let mut map_senders = Vec::new();
    let progress: Vec<Arc<CoreProgress>> = (0..n).map(|_| Arc::default()).collect();
    for (i, &cpu) in cfg.cpus.iter().enumerate() {
        let (cfg, stop, meshes, ready) =
            (cfg.clone(), stop.clone(), meshes.clone(), ready_tx.clone());
        let progress = progress.clone();
        let maps = cfg.cluster.is_some().then(|| {
            let (tx, rx) = futures_channel::mpsc::unbounded();
            map_senders.push(tx);
            rx
        });
        let mut builder =
            LocalExecutorBuilder::new(Placement::Fixed(cpu)).name(&format!("ringcache-core{i}"));
        if let Some(spin) = cfg.spin {
            builder = builder.spin_before_park(spin);
        }
        let handle = builder
            .spawn(move || async move {
                let failed = ready.clone();
                let run = core_main(i, cfg, node_id, meshes, stop.clone(), ready, maps, progress);
                if let Err(e) = run.await {
                    let _ = failed.send(Err(format!("{e:#}")));
                    stop.stop();
                }
            })
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot start the io_uring executor for CPU {cpu}: {e}. io_uring needs locked memory: raise the limit (`ulimit -l unlimited`, or LimitMEMLOCK=infinity under systemd)"
                )
            })?;
        handles.push(handle);
    }
    drop(ready_tx);
    let mut ready = 0;
    while ready < n {
        match ready_rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Ok(_)) => ready += 1,
            Ok(Err(e)) => {
                stop.stop();
                for h in handles {
                    let _ = h.join();
                }
                bail!(e);
            }
            Err(_) => {
                stop.stop();
                bail!("cores did not start within 60 s (is the machine overloaded?)");
            }
        }
    }
    info!(
        "ringcache node listening on {}:{} (RESP and native), {} core(s) on CPUs {:?}, core ports {:?}, memory {} MiB ({} MiB per core), policy {:?}",
        cfg.bind,
        cfg.port,
        n,
        cfg.cpus,
        cfg.core_ports,
        cfg.memory >> 20,
        (cfg.memory / n) >> 20,
        cfg.policy
    );
    let link = match cfg.cluster.clone() {
        Some(lc) => {
            info!(balancer = %lc.balancer, role = ?lc.role, "joining the cluster");
            Some(crate::cluster_link::spawn_link(
                lc,
                cfg.port,
                cfg.core_ports.clone(),
                map_senders,
                progress,
                stop.clone(),
            )?)
        }
        None => None,
    };
    for h in handles {
        if h.join().is_err() {
            warn!("a core stopped with an error");
        }
    }
    if let Some(l) = link {
        let _ = l.join();
    }
    info!("ringcache node stopped");
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn core_main(
    index: usize,
    cfg: NodeConfig,
    node_id: u64,
    meshes: Option<MeshBuilders>,
    stop: StopFlag,
    ready: mpsc::Sender<Result<usize, String>>,
    maps: Option<futures_channel::mpsc::UnboundedReceiver<Arc<NodeView>>>,
    progress: Vec<Arc<CoreProgress>>,
) -> anyhow::Result<()> {
    let make_core = |id: usize| -> SharedCore {
        let now = now_ms();
        // New at every start, so a replica never mistakes this life's sequences for an
        // earlier one's.
        let stream = (now << 16) ^ ((id as u64) << 8) ^ node_id;
        let core = CoreState::new(id as u32, &cfg.core_config(node_id), now, stream);
        let p = progress.get(id).cloned().unwrap_or_default();
        CoreCell::new(core, p)
    };
    let (mesh, core) = match meshes {
        Some(b) => {
            let (m, c) = Mesh::join(b, make_core)
                .await
                .context("joining the core mesh")?;
            (Some(m), c)
        }
        None => (None, make_core(index)),
    };
    let id = core.borrow().id as usize;
    let main_addr = SocketAddr::new(cfg.bind, cfg.port);
    let core_addr = SocketAddr::new(cfg.bind, cfg.core_ports[id]);
    let main =
        bind_listener(main_addr).map_err(|e| anyhow::anyhow!("listening on {main_addr}: {e}"))?;
    let own =
        bind_listener(core_addr).map_err(|e| anyhow::anyhow!("listening on {core_addr}: {e}"))?;
    let cfg = Rc::new(cfg);
    let shutdown = Rc::new(Cell::new(false));
    let ctx = Rc::new(ConnContext {
        core: core.clone(),
        mesh: mesh.clone(),
        cfg: cfg.clone(),
        shutdown: shutdown.clone(),
        next_client_id: Cell::new(((id as u64) << 48) + 1),
        idle: Rc::new(IdleConns::default()),
        lone: LoneLookups::default(),
        readiness: Readiness::new().map_err(|e| anyhow::anyhow!("epoll instance: {e}"))?,
    });
    // Lives until the connections have drained (dropping it stops their wake-ups).
    let dispatcher = spawn_local(ctx.readiness.clone().dispatch());
    let map_task = maps.map(|mut rx| {
        let core = core.clone();
        spawn_local(async move {
            use futures_lite::StreamExt;
            while let Some(view) = rx.next().await {
                let added = on_map(&mut core.borrow_mut(), view);
                core.publish_progress();
                for link in added {
                    spawn_link(core.clone(), link);
                }
            }
        })
    });
    let accept_main = spawn_local(accept_loop(main, ctx.clone()));
    let accept_own = spawn_local(accept_loop(own, ctx.clone()));
    let _ = ready.send(Ok(id));
    debug!(core = id, port = cfg.core_ports[id], "core serving");
    let mut max_tick = Duration::ZERO;
    while !stop.is_stopped() {
        sleep(cfg.tick).await;
        let t = Instant::now();
        let now = now_ms();
        let mut c = core.borrow_mut();
        c.shard.advance(now, TICK_BUDGET);
        c.repl.expire_waits(now);
        drop(c);
        if let Some(timeout) = cfg.idle_timeout {
            for fd in ctx.idle.idle(t, timeout) {
                debug!(core = id, "closing an idle connection");
                shut_down(fd, libc::SHUT_RDWR);
            }
        }
        max_tick = max_tick.max(t.elapsed());
    }
    debug!(core = id, ?max_tick, "core stopping");
    shutdown.set(true);
    // Ends every pending read, so connections finish what they have and close.
    for fd in ctx.idle.all() {
        shut_down(fd, libc::SHUT_RD);
    }
    drop(accept_main);
    drop(accept_own);
    drop(map_task);
    let deadline = Instant::now() + DRAIN;
    while core.borrow().open_connections > 0 && Instant::now() < deadline {
        sleep(Duration::from_millis(10)).await;
    }
    drop(dispatcher);
    if let Some(m) = mesh {
        m.close();
    }
    Ok(())
}

async fn accept_loop(listener: TcpListener, ctx: Rc<ConnContext>) {
    loop {
        let stream = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // Out of descriptors and similar: back off instead of spinning.
                warn!(error = %e, "accept failed");
                sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        {
            let mut core = ctx.core.borrow_mut();
            if core.open_connections >= ctx.cfg.max_connections_per_core {
                core.rejected_connections += 1;
                drop(core);
                spawn_local(reject(stream)).detach();
                continue;
            }
            core.open_connections += 1;
            core.total_connections += 1;
        }
        let ctx = ctx.clone();
        spawn_local(async move {
            serve(stream, ctx.clone()).await;
            ctx.core.borrow_mut().open_connections -= 1;
        })
        .detach();
    }
}

async fn reject(mut stream: glommio::net::TcpStream) {
    use futures_lite::AsyncWriteExt;
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    let _ = stream
        .write_all(b"-ERR max number of clients reached\r\n")
        .await;
}
