//! A node's link to the balancer: joins (retrying with backoff until the balancer answers),
//! heartbeats, and hands every newer cluster map to every core as an `Arc<NodeView>` message
//! (each core keeps its own copy of the pointer; nothing is locked on the data path).
//! Runs on a plain thread with blocking sockets: it is control traffic, a few frames a second.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::BytesMut;
use futures_channel::mpsc;
use ringcache_cluster::{
    decode_body, encode_body, ClusterMap, ControlReply, GroupId, Heartbeat, JoinRequest, MemberId,
    Place, Role,
};
use ringcache_node_core::NodeView;
use ringcache_proto::control::encode_control;
use ringcache_proto::{decode_frame, ClusterOp, Limits};
use ringcache_runtime::StopFlag;
use tracing::{error, info, warn};

use crate::core_cell::CoreProgress;

/// What a node needs to take part in a cluster.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// The balancer's address (`host:port`).
    pub balancer: String,
    /// The role asked for.
    pub role: Role,
    /// The group named (replicas).
    pub group: Option<GroupId>,
    /// Time between heartbeats.
    pub heartbeat: Duration,
    /// The host other parties reach this node at.
    pub host: String,
    /// The cluster secret.
    pub secret: Option<String>,
}

/// A blocking request/reply channel to the balancer, reconnected on demand.
struct Control {
    addr: String,
    stream: Option<TcpStream>,
    next_id: u64,
}

impl Control {
    fn call(&mut self, opcode: ClusterOp, body: &[u8], epoch: u64) -> Result<ControlReply, String> {
        let res = self.try_call(opcode, body, epoch);
        if res.is_err() {
            self.stream = None;
        }
        res
    }

    fn try_call(
        &mut self,
        opcode: ClusterOp,
        body: &[u8],
        epoch: u64,
    ) -> Result<ControlReply, String> {
        if self.stream.is_none() {
            let addrs: Vec<SocketAddr> = self
                .addr
                .to_socket_addrs()
                .map_err(|e| format!("cannot resolve {}: {e}", self.addr))?
                .collect();
            let addr = addrs
                .first()
                .ok_or_else(|| format!("{} resolves to no address", self.addr))?;
            let s = TcpStream::connect_timeout(addr, Duration::from_secs(2))
                .map_err(|e| e.to_string())?;
            let _ = s.set_nodelay(true);
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = s.set_write_timeout(Some(Duration::from_secs(5)));
            self.stream = Some(s);
        }
        let Some(s) = self.stream.as_mut() else {
            return Err("not connected".into());
        };
        self.next_id += 1;
        let mut out = BytesMut::new();
        encode_control(&mut out, opcode, false, self.next_id, epoch as u32, body);
        s.write_all(&out).map_err(|e| e.to_string())?;
        let limits = Limits {
            max_frame: 64 << 20,
            ..Limits::default()
        };
        let mut buf = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            if let Some(f) = decode_frame(&buf, &limits).map_err(|e| e.to_string())? {
                return decode_body(f.body(&buf));
            }
            let n = s.read(&mut chunk).map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("the balancer closed the connection".into());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// Starts the link thread. `cores` receive every newer map.
pub(crate) fn spawn_link(
    cfg: LinkConfig,
    main_port: u16,
    core_ports: Vec<u16>,
    cores: Vec<mpsc::UnboundedSender<Arc<NodeView>>>,
    progress: Vec<Arc<CoreProgress>>,
    stop: StopFlag,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("ringcache-cluster".into())
        .spawn(move || run_link(cfg, main_port, core_ports, cores, &progress, stop))
}

/// The node's replication position (operations applied over all cores) and whether every
/// core serves reads.
fn position(progress: &[Arc<CoreProgress>]) -> (u64, bool, u64) {
    use std::sync::atomic::Ordering;
    let applied = progress
        .iter()
        .map(|p| p.applied.load(Ordering::Relaxed))
        .sum();
    let ready = progress.iter().all(|p| p.ready.load(Ordering::Relaxed));
    // A range move is done on this node once every core finished the same one.
    let moved: Vec<u64> = progress
        .iter()
        .map(|p| p.moved.load(Ordering::Relaxed))
        .collect();
    let moved = if moved.windows(2).all(|w| w[0] == w[1]) {
        moved.first().copied().unwrap_or(0)
    } else {
        0
    };
    (applied, ready, moved)
}

fn run_link(
    cfg: LinkConfig,
    main_port: u16,
    core_ports: Vec<u16>,
    cores: Vec<mpsc::UnboundedSender<Arc<NodeView>>>,
    progress: &[Arc<CoreProgress>],
    stop: StopFlag,
) {
    let mut ctl = Control {
        addr: cfg.balancer.clone(),
        stream: None,
        next_id: 0,
    };
    let known = Arc::new(Mutex::new(Known {
        member: None,
        epoch: 0,
        place: None,
    }));
    // Built at each attempt: after a first map it names this node's place in it, so a
    // restarted balancer can rebuild the groups as they were.
    let join = |place: Option<Place>| {
        encode_body(&JoinRequest {
            host: cfg.host.clone(),
            main_port,
            core_ports: core_ports.clone(),
            role: cfg.role,
            group: cfg.group,
            secret: cfg.secret.clone(),
            previous: place,
        })
    };
    let subscriber = {
        let (cfg, known, cores, stop) = (cfg.clone(), known.clone(), cores.clone(), stop.clone());
        std::thread::Builder::new()
            .name("ringcache-maps".into())
            .spawn(move || subscribe(&cfg, &known, &cores, &stop))
            .ok()
    };
    let publish = |map: ClusterMap, member: MemberId| {
        lock(&known).member = Some(member);
        offer(&known, &cores, map, true);
    };
    let mut member: Option<MemberId> = None;
    let mut epoch: u64 = 0;
    let mut backoff = Duration::from_millis(100);
    let mut failing = false;
    let pause = |d: Duration| {
        // Sleep in small steps so a stop is seen quickly.
        let step = Duration::from_millis(20);
        let mut left = d;
        while !left.is_zero() && !stop.is_stopped() {
            let s = left.min(step);
            std::thread::sleep(s);
            left -= s;
        }
    };
    while !stop.is_stopped() {
        match member {
            None => {
                // The lock must not outlive this line: `publish` below takes it again.
                let place = lock(&known).place;
                let reply = ctl.call(ClusterOp::Join, &join(place), epoch);
                match reply {
                    Ok(ControlReply::Welcome {
                        member: m,
                        group,
                        map,
                    }) => {
                        info!(
                            member = m,
                            ?group,
                            epoch = map.epoch,
                            balancer = %cfg.balancer,
                            "joined the cluster as {:?}",
                            cfg.role
                        );
                        member = Some(m);
                        epoch = map.epoch;
                        publish(map, m);
                        backoff = Duration::from_millis(100);
                        failing = false;
                    }
                    Ok(ControlReply::Reject { reason }) => {
                        error!(balancer = %cfg.balancer, "the balancer refused the join: {reason}");
                        pause(Duration::from_secs(5));
                    }
                    Ok(other) => {
                        warn!(?other, "unexpected answer to a join");
                        pause(backoff);
                    }
                    Err(e) => {
                        warn!(
                        "cannot reach the balancer at {}: {e}; retrying in {:?} (is `ringcache balancer` running there? check --balancer)",
                        cfg.balancer, backoff
                    );
                        pause(backoff);
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
            }
            Some(m) => {
                epoch = lock(&known).epoch;
                let (applied, ready, moved) = position(progress);
                let hb = encode_body(&Heartbeat {
                    member: m,
                    applied,
                    ready,
                    moved,
                    main_port,
                    epoch,
                });
                match ctl.call(ClusterOp::Heartbeat, &hb, epoch) {
                    Ok(ControlReply::Map(Some(map))) => {
                        if map.epoch > epoch {
                            info!(epoch = map.epoch, "new cluster map");
                            epoch = map.epoch;
                            publish(map, m);
                        }
                        failing = false;
                    }
                    Ok(ControlReply::Removed) => {
                        error!(
                            member = m,
                            "an operator removed this node from the cluster: stopping"
                        );
                        stop.stop();
                        member = None;
                        break;
                    }
                    Ok(ControlReply::Rejoin) => {
                        warn!(
                            member = m,
                            "the balancer no longer knows this node: joining again"
                        );
                        member = None;
                        continue;
                    }
                    Ok(_) => failing = false,
                    Err(e) => {
                        if !failing {
                            warn!(
                                "lost the balancer at {}: {e}; serving with the last map (epoch {epoch})",
                                cfg.balancer
                            );
                        }
                        failing = true;
                    }
                }
                pause(cfg.heartbeat);
            }
        }
    }
    if let Some(t) = subscriber {
        let _ = t.join();
    }
    if let Some(m) = member {
        // Best effort: a balancer that does not hear it declares the node dead instead.
        match ctl.call(ClusterOp::Leave, &encode_body(&m), epoch) {
            Ok(_) => info!(member = m, "left the cluster"),
            Err(e) => warn!(
                member = m,
                "could not tell the balancer this node leaves: {e}"
            ),
        }
    }
}

/// What the link threads share: this node's member id and the epoch the cores were given.
struct Known {
    member: Option<MemberId>,
    epoch: u64,
    /// This node's place in the last map handed to the cores.
    place: Option<Place>,
}

fn lock(k: &Mutex<Known>) -> MutexGuard<'_, Known> {
    k.lock().unwrap_or_else(|e| e.into_inner())
}

/// Hands `map` to every core when it is newer than theirs (or `always`) and the node has a
/// member id; answers whether it did.
fn offer(
    known: &Mutex<Known>,
    cores: &[mpsc::UnboundedSender<Arc<NodeView>>],
    map: ClusterMap,
    always: bool,
) -> bool {
    let mut k = lock(known);
    let Some(member) = k.member else {
        return false;
    };
    if !always && map.epoch <= k.epoch {
        return false;
    }
    k.epoch = map.epoch;
    if let Some(m) = map.member(member) {
        if let Some(g) = m.group {
            k.place = Some(Place {
                group: g,
                role: m.role,
                epoch: map.epoch,
            });
        }
    }
    let view = Arc::new(NodeView::new(map, member));
    for c in cores {
        let _ = c.unbounded_send(view.clone());
    }
    true
}

/// Keeps a subscription open at the balancer: every map change is pushed at once (heartbeat
/// answers are the fallback). Reconnects after a pause when the balancer goes away.
fn subscribe(
    cfg: &LinkConfig,
    known: &Mutex<Known>,
    cores: &[mpsc::UnboundedSender<Arc<NodeView>>],
    stop: &StopFlag,
) {
    let limits = Limits {
        max_frame: 64 << 20,
        ..Limits::default()
    };
    while !stop.is_stopped() {
        let stream = cfg
            .balancer
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .and_then(|a| TcpStream::connect_timeout(&a, Duration::from_secs(2)).ok());
        if let Some(mut s) = stream {
            let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
            let mut out = BytesMut::new();
            encode_control(&mut out, ClusterOp::Subscribe, false, 1, 0, &[]);
            if s.write_all(&out).is_ok() {
                let mut buf: Vec<u8> = Vec::new();
                let mut chunk = [0u8; 16 * 1024];
                'read: while !stop.is_stopped() {
                    loop {
                        let f = match decode_frame(&buf, &limits) {
                            Ok(Some(f)) => f,
                            Ok(None) => break,
                            Err(_) => break 'read,
                        };
                        if let Ok(ControlReply::Map(Some(map))) = decode_body(f.body(&buf)) {
                            let e = map.epoch;
                            if offer(known, cores, map, false) {
                                info!(epoch = e, "new cluster map (pushed)");
                            }
                        }
                        buf.drain(..f.len());
                    }
                    match s.read(&mut chunk) {
                        Ok(0) => break 'read,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        Err(e)
                            if matches!(
                                e.kind(),
                                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                            ) => {}
                        Err(_) => break 'read,
                    }
                }
            }
        }
        // Pause before reconnecting, in small steps so a stop is seen quickly.
        for _ in 0..25 {
            if stop.is_stopped() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
