//! `ringcache balancer`: the control plane and the router for clients that do not know the ring.
//!
//! - Control plane: nodes send control frames (`ringcache_proto::control`): JOIN (answered with
//!   their member id and the map), HEARTBEAT (answered with the map when the node's epoch is
//!   older, so every map change reaches every member within one heartbeat interval), MAP. The
//!   decisions are the pure `Membership` state machine's; a ticker feeds it `Tick` events so
//!   members that miss heartbeats are declared dead.
//! - Router: native and RESP requests are routed by `ClusterMap::route` to the owning node's
//!   core port over persistent pipelined connections (one per node core port); multi-key
//!   requests are split per owner and merged; FLUSH and INVALIDATE go to every primary.
//!
//! Each balancer core has its own copy of the map and its own node connections, so the routing
//! path takes no lock; the membership state machine is shared by the cores behind one mutex,
//! taken only by control frames and the ticker.
//!
//! This file holds the settings and the startup of the cores; `control` (membership, map
//! pushes), `routing` (client requests to node cores), `backend` (node connections) and `serve`
//! (client connections) hold the rest.

#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod backend;
mod control;
mod routing;
mod serve;
mod state;

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_channel::mpsc;
use futures_lite::StreamExt;
use glommio::{spawn_local, timer::sleep, LocalExecutorBuilder, Placement};
use ringcache_cluster::{ClusterMap, Event, Membership, MembershipConfig};
use ringcache_proto::Limits;
use ringcache_runtime::{allowed_cpus, bind_listener, wait_port_free, StopFlag};
use tracing::{info, warn};

use control::{lock, Control, SharedControl};
use serve::serve;
use state::{Shared, State};

/// The balancer's settings (the binary builds them from its flags).
#[derive(Debug, Clone)]
pub struct BalancerConfig {
    /// Address to listen on.
    pub bind: IpAddr,
    /// Port for nodes (control frames) and clients (RESP and native).
    pub port: u16,
    /// Expected time between a node's heartbeats, in ms.
    pub heartbeat_ms: u64,
    /// Heartbeats a node may miss before it is declared dead.
    pub missed_heartbeats: u64,
    /// Secret nodes must present to join (and operators to remove one).
    pub cluster_secret: Option<String>,
    /// Virtual nodes per shard group on the ring.
    pub vnodes: u32,
    /// Cores routing requests (default: every CPU this process may run on).
    pub cores: Option<usize>,
}

/// Largest request the balancer relays.
const MAX_FRAME: usize = 8 * 1024 * 1024 + 64 * 1024 + 4096;

/// Runs the balancer until `stop`: one pinned executor per core, each accepting on --port
/// (SO_REUSEPORT) with its own node connections.
pub fn run_balancer(args: BalancerConfig, stop: StopFlag) -> anyhow::Result<()> {
    let addr = SocketAddr::new(args.bind, args.port);
    match wait_port_free(addr) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => anyhow::bail!(
            "port {} on {} is already in use: stop whatever listens there or choose another --port",
            args.port,
            args.bind
        ),
        Err(e) => anyhow::bail!("cannot listen on {addr}: {e}"),
    }
    let allowed = allowed_cpus();
    let n = args.cores.unwrap_or(allowed.len());
    if n == 0 || n > allowed.len() {
        anyhow::bail!(
            "--cores {n}: this process may run on {} CPU(s) {allowed:?}",
            allowed.len()
        );
    }
    let config = MembershipConfig {
        heartbeat_interval_ms: args.heartbeat_ms.max(1),
        missed_heartbeats: args.missed_heartbeats.max(1),
        vnodes: args.vnodes.max(1),
    };
    let membership = Membership::new(config);
    let mut receivers = Vec::with_capacity(n);
    let mut senders = Vec::with_capacity(n);
    for _ in 0..n {
        let (tx, rx) = mpsc::unbounded();
        senders.push(tx);
        receivers.push(rx);
    }
    let control: SharedControl = Arc::new(Mutex::new(Control {
        secret: args.cluster_secret.clone(),
        map: Arc::new(membership.map().clone()),
        membership,
        started: Instant::now(),
        cores: senders,
        subscribers: Vec::new(),
    }));
    info!(
        "ringcache balancer listening on {addr} (nodes, RESP and native clients), {n} core(s), heartbeat {} ms, dead after {} missed",
        config.heartbeat_interval_ms, config.missed_heartbeats
    );
    let mut handles = Vec::with_capacity(n);
    for (i, maps) in receivers.into_iter().enumerate() {
        let (args, stop, control) = (args.clone(), stop.clone(), control.clone());
        let handle = LocalExecutorBuilder::new(Placement::Fixed(allowed[i]))
            .name(&format!("ringcache-balancer{i}"))
            .spawn(move || async move { balancer_core(i, args, stop, control, maps).await })
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot start the io_uring executor: {e}. io_uring needs locked memory: raise the limit (`ulimit -l unlimited`)"
                )
            })?;
        handles.push(handle);
    }
    let mut result = Ok(());
    for h in handles {
        match h.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                stop.stop();
                result = Err(e);
            }
            Err(_) => {
                stop.stop();
                result = Err(anyhow::anyhow!("a balancer core panicked"));
            }
        }
    }
    info!("ringcache balancer stopped");
    result
}

async fn balancer_core(
    index: usize,
    args: BalancerConfig,
    stop: StopFlag,
    control: SharedControl,
    mut maps: mpsc::UnboundedReceiver<Arc<ClusterMap>>,
) -> anyhow::Result<()> {
    let addr = SocketAddr::new(args.bind, args.port);
    let listener = bind_listener(addr).with_context(|| format!("listening on {addr}"))?;
    let map = lock(&control).map.clone();
    let state: Shared = Rc::new(RefCell::new(State {
        map,
        backends: HashMap::new(),
        limits: Limits {
            max_frame: MAX_FRAME,
            ..Limits::default()
        },
        port: args.port,
        control: control.clone(),
    }));
    let accept = {
        let state = state.clone();
        spawn_local(async move {
            loop {
                match listener.accept().await {
                    Ok(s) => {
                        spawn_local(serve(s, state.clone())).detach();
                    }
                    Err(e) => {
                        warn!(error = %e, "accept failed");
                        sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        })
    };
    let updates = {
        let state = state.clone();
        spawn_local(async move {
            while let Some(map) = maps.next().await {
                let mut st = state.borrow_mut();
                if map.epoch >= st.map.epoch {
                    st.map = map;
                }
            }
        })
    };
    let tick = Duration::from_millis((args.heartbeat_ms.max(1) / 2).clamp(1, 1000));
    while !stop.is_stopped() {
        sleep(tick).await;
        if index == 0 {
            lock(&control).handle(Event::Tick);
        }
    }
    drop(accept);
    drop(updates);
    Ok(())
}
