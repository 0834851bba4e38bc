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
//! One executor (single balancer core) owns all state: no locks anywhere.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::BytesMut;
use clap::Args;
use futures_channel::{mpsc, oneshot};
use futures_lite::{AsyncReadExt, AsyncWriteExt, StreamExt};
use glommio::net::TcpStream;
use glommio::{spawn_local, timer::sleep, LocalExecutorBuilder, Placement};
use ringcache_cluster::{
    decode_body, encode_body, Action, ClusterMap, ControlReply, Event, Heartbeat, JoinRequest,
    Membership, MembershipConfig, DEFAULT_VNODES,
};
use ringcache_proto::control::{self, encode_control};
use ringcache_proto::resp::RespParser;
use ringcache_proto::resp_command::parse_command;
use ringcache_proto::resp_encode::RespVersion;
use ringcache_proto::{
    decode_frame, decode_request, decode_response, encode_request, Command, ErrorKind, Limits,
    Opcode, Response, ValueRef, MAGIC,
};
use tracing::{debug, info, warn};

use crate::handover::{encode_reply, Wire};
use crate::node::StopFlag;
use crate::routing::multi_keys;

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
    /// Virtual nodes per shard group on the ring.
    #[arg(long, env = "RINGCACHE_VNODES", default_value_t = DEFAULT_VNODES)]
    pub vnodes: u32,
    /// Number of cores (executors) routing requests (default: every CPU this process may run
    /// on); each keeps its own connections to every node core.
    #[arg(long, env = "RINGCACHE_CORES")]
    pub cores: Option<usize>,
}

/// Largest request the balancer relays.
const MAX_FRAME: usize = 8 * 1024 * 1024 + 64 * 1024 + 4096;
/// Most requests a backend connection sends in one write.
const BACKEND_BATCH: usize = 256;

type BackendReply = Result<Vec<u8>, String>;
type Job = (Vec<u8>, oneshot::Sender<BackendReply>);

/// A persistent pipelined connection to one node core port, driven by its own task.
struct Backend {
    tx: mpsc::UnboundedSender<Job>,
    dead: Rc<Cell<bool>>,
}

/// The control plane, shared by the balancer's cores: the membership state machine and the
/// senders that hand every new map to each core. Only control frames and the ticker take the
/// lock; the data path reads each core's own copy of the map.
struct Control {
    membership: Membership,
    map: Arc<ClusterMap>,
    started: Instant,
    cores: Vec<mpsc::UnboundedSender<Arc<ClusterMap>>>,
    /// Connections subscribed to map changes (nodes, clients).
    subscribers: Vec<mpsc::UnboundedSender<Arc<ClusterMap>>>,
}

impl Control {
    fn handle(&mut self, event: Event) -> Vec<Action> {
        let now = self.started.elapsed().as_millis() as u64;
        let actions = self.membership.handle(event, now);
        for a in &actions {
            match a {
                Action::PublishMap => {
                    let map = Arc::new(self.membership.map().clone());
                    info!(
                        epoch = map.epoch,
                        members = map.members.len(),
                        groups = map.groups.len(),
                        "cluster map changed"
                    );
                    for c in &self.cores {
                        let _ = c.unbounded_send(map.clone());
                    }
                    self.subscribers
                        .retain(|s| s.unbounded_send(map.clone()).is_ok());
                    self.map = map;
                }
                Action::Dead { member } => warn!(member, "member missed its heartbeats: dead"),
                Action::Promoted { member, group } => info!(member, group, "member promoted"),
                Action::Welcome { member, group } => info!(member, ?group, "member joined"),
                Action::Reject { reason } => warn!(%reason, "join refused"),
                Action::Rejoin { member } => debug!(member, "unknown member told to rejoin"),
                Action::Removed { member } => info!(member, "removed member told to stop"),
                Action::MoveStarted { id } => info!(id, "range move started"),
                Action::MoveDone { id } => info!(id, "range move done: the ring switched"),
            }
        }
        actions
    }
}

type SharedControl = Arc<Mutex<Control>>;

fn lock(c: &SharedControl) -> MutexGuard<'_, Control> {
    c.lock().unwrap_or_else(|e| e.into_inner())
}

/// One balancer core's state: its copy of the map and its connections to the node cores.
struct State {
    map: Arc<ClusterMap>,
    backends: HashMap<SocketAddr, Backend>,
    limits: Limits,
    port: u16,
    control: SharedControl,
}

type Shared = Rc<RefCell<State>>;

impl State {
    /// The backend for `addr`, connecting (lazily, in its own task) when there is none alive.
    fn backend(&mut self, addr: SocketAddr) -> mpsc::UnboundedSender<Job> {
        if let Some(b) = self.backends.get(&addr) {
            if !b.dead.get() {
                return b.tx.clone();
            }
        }
        let (tx, rx) = mpsc::unbounded();
        let dead = Rc::new(Cell::new(false));
        spawn_local(backend_task(addr, rx, dead.clone(), self.limits)).detach();
        self.backends.insert(
            addr,
            Backend {
                tx: tx.clone(),
                dead,
            },
        );
        tx
    }
}

/// Runs the balancer until `stop`: one pinned executor per core, each accepting on --port
/// (SO_REUSEPORT) with its own node connections.
pub fn run_balancer(args: BalancerArgs, stop: StopFlag) -> anyhow::Result<()> {
    let addr = SocketAddr::new(args.bind, args.port);
    match std::net::TcpListener::bind(addr) {
        Ok(l) => drop(l),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => anyhow::bail!(
            "port {} on {} is already in use: stop whatever listens there or choose another --port",
            args.port,
            args.bind
        ),
        Err(e) => anyhow::bail!("cannot listen on {addr}: {e}"),
    }
    let allowed = crate::node::allowed_cpus();
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
    args: BalancerArgs,
    stop: StopFlag,
    control: SharedControl,
    mut maps: mpsc::UnboundedReceiver<Arc<ClusterMap>>,
) -> anyhow::Result<()> {
    let addr = SocketAddr::new(args.bind, args.port);
    let listener =
        crate::node::bind_listener(addr).with_context(|| format!("listening on {addr}"))?;
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

/// Talks to one node core port: takes the queued requests, writes them in one batch (request
/// ids rewritten to its own), reads the replies and hands each to its waiter.
async fn backend_task(
    addr: SocketAddr,
    mut rx: mpsc::UnboundedReceiver<Job>,
    dead: Rc<Cell<bool>>,
    limits: Limits,
) {
    let fail_all = |rx: &mut mpsc::UnboundedReceiver<Job>, msg: &str| {
        rx.close();
        while let Ok((_, w)) = rx.try_recv() {
            let _ = w.send(Err(msg.to_string()));
        }
    };
    let mut stream = match TcpStream::connect(addr).await {
        Ok(s) => s,
        Err(e) => {
            dead.set(true);
            warn!(%addr, error = %e, "cannot reach node core");
            fail_all(&mut rx, &format!("cannot reach node {addr}: {e}"));
            return;
        }
    };
    let _ = stream.set_nodelay(true);
    let mut next_id: u64 = 1;
    let mut wbuf: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut rbuf = BytesMut::with_capacity(64 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    let mut waiters: VecDeque<(u64, oneshot::Sender<BackendReply>)> = VecDeque::new();
    while let Some(first) = rx.next().await {
        let mut batch = vec![first];
        while batch.len() < BACKEND_BATCH {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                _ => break,
            }
        }
        wbuf.clear();
        for (mut frame, waiter) in batch {
            if let Some(id) = frame.get_mut(8..16) {
                id.copy_from_slice(&next_id.to_le_bytes());
            }
            wbuf.extend_from_slice(&frame);
            waiters.push_back((next_id, waiter));
            next_id += 1;
        }
        let mut broken = stream.write_all(&wbuf).await.err().map(|e| e.to_string());
        while broken.is_none() && !waiters.is_empty() {
            match decode_frame(&rbuf, &limits) {
                Ok(Some(f)) => {
                    let frame = rbuf.split_to(f.len());
                    let rid = f.header.request_id;
                    match waiters.pop_front() {
                        Some((id, w)) if id == rid => {
                            let _ = w.send(Ok(frame.to_vec()));
                        }
                        _ => broken = Some(format!("node {addr} answered out of order")),
                    }
                }
                Ok(None) => match stream.read(&mut chunk).await {
                    Ok(0) => broken = Some(format!("node {addr} closed the connection")),
                    Ok(n) => rbuf.extend_from_slice(&chunk[..n]),
                    Err(e) => broken = Some(format!("reading from node {addr}: {e}")),
                },
                Err(e) => broken = Some(format!("bad frame from node {addr}: {e}")),
            }
        }
        if let Some(msg) = broken {
            dead.set(true);
            warn!(%addr, error = %msg, "node connection lost");
            for (_, w) in waiters.drain(..) {
                let _ = w.send(Err(msg.clone()));
            }
            fail_all(&mut rx, &msg);
            return;
        }
    }
}

/// How the parts of a routed request make its reply.
enum Merge {
    /// One part, relayed.
    One,
    /// Every part must answer OK.
    AllOk,
    /// Integer answers added up.
    Sum,
    /// MGET: part i answers the keys at `positions[i]`.
    MGet {
        positions: Vec<Vec<usize>>,
        len: usize,
    },
}

/// A reply whose place is fixed but whose bytes may not be there yet.
enum Pending {
    Ready(BytesMut),
    Wait {
        parts: Vec<oneshot::Receiver<BackendReply>>,
        merge: Merge,
        wire: Wire,
        op: Opcode,
        rid: u64,
    },
}

fn wire_of(buf: &[u8]) -> Option<Wire> {
    match buf {
        [] => None,
        [b] if *b == MAGIC[0] => None,
        [a, b, ..] if *a == MAGIC[0] && *b == MAGIC[1] => Some(Wire::Native),
        _ => Some(Wire::Resp(RespVersion::V2)),
    }
}

async fn serve(mut stream: TcpStream, state: Shared) {
    let _ = stream.set_nodelay(true);
    let limits = state.borrow().limits;
    let mut wire: Option<Wire> = None;
    let mut parser = RespParser::new();
    let mut rbuf = BytesMut::with_capacity(16 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    let mut out = BytesMut::with_capacity(16 * 1024);
    loop {
        let mut pending: Vec<Pending> = Vec::new();
        let mut close = false;
        loop {
            if wire.is_none() {
                wire = wire_of(&rbuf);
            }
            let Some(w) = wire else { break };
            let step = match w {
                Wire::Native => native_step(&rbuf, &state, &limits),
                Wire::Resp(v) => resp_step(&rbuf, &mut parser, &state, &limits, v, &mut wire),
            };
            match step {
                Step::More => break,
                Step::Done(len, p) => {
                    let _ = rbuf.split_to(len);
                    pending.push(p);
                }
                Step::Close(p) => {
                    pending.push(p);
                    close = true;
                    break;
                }
                Step::Subscribe(request_id) => {
                    for p in pending {
                        finish(p, &mut out, &limits).await;
                    }
                    if stream.write_all(&out).await.is_ok() {
                        push_maps(stream, &state, request_id).await;
                    }
                    return;
                }
            }
        }
        for p in pending {
            finish(p, &mut out, &limits).await;
        }
        if !out.is_empty() {
            if stream.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
        if close || rbuf.len() > limits.max_frame + 64 * 1024 {
            return;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => rbuf.extend_from_slice(&chunk[..n]),
        }
    }
}

enum Step {
    More,
    Done(usize, Pending),
    Close(Pending),
    /// The connection subscribed to map changes (its request id).
    Subscribe(u64),
}

/// Writes the current map, then every new one, to a subscribed connection until it breaks.
async fn push_maps(mut stream: TcpStream, state: &Shared, request_id: u64) {
    let control = state.borrow().control.clone();
    let (tx, mut rx) = mpsc::unbounded();
    {
        let mut c = lock(&control);
        let _ = tx.unbounded_send(c.map.clone());
        c.subscribers.push(tx);
    }
    let mut out = BytesMut::new();
    while let Some(map) = rx.next().await {
        out.clear();
        let body = encode_body(&ControlReply::Map(Some((*map).clone())));
        encode_control(
            &mut out,
            control::CLUSTER_REPLY,
            true,
            request_id,
            map.epoch as u32,
            &body,
        );
        if stream.write_all(&out).await.is_err() {
            return;
        }
    }
}

fn ready(wire: Wire, op: Opcode, rid: u64, epoch: u32, resp: &Response<'_>) -> Pending {
    let mut b = BytesMut::new();
    encode_reply(&mut b, wire, op, rid, epoch, resp);
    Pending::Ready(b)
}

fn native_step(buf: &[u8], state: &Shared, limits: &Limits) -> Step {
    let frame = match decode_frame(buf, limits) {
        Ok(Some(f)) => f,
        Ok(None) => return Step::More,
        Err(e) => {
            return Step::Close(ready(
                Wire::Native,
                Opcode::Ping,
                0,
                0,
                &Response::error(e.kind(), e.to_string()),
            ))
        }
    };
    let h = frame.header;
    let body = frame.body(buf);
    if h.opcode == control::CLUSTER_SUBSCRIBE {
        return Step::Subscribe(h.request_id);
    }
    if control::is_control(h.opcode) {
        let reply = control_request(state, h.opcode, body);
        let epoch = state.borrow().map.epoch as u32;
        let mut b = BytesMut::new();
        encode_control(
            &mut b,
            control::CLUSTER_REPLY,
            true,
            h.request_id,
            epoch,
            &encode_body(&reply),
        );
        return Step::Done(frame.len(), Pending::Ready(b));
    }
    let cmd = match decode_request(&h, body, limits) {
        Ok(c) => c,
        Err(e) => {
            return Step::Close(ready(
                Wire::Native,
                Opcode::Ping,
                h.request_id,
                0,
                &Response::error(e.kind(), e.to_string()),
            ))
        }
    };
    Step::Done(
        frame.len(),
        route_command(state, &cmd, Wire::Native, h.request_id),
    )
}

fn resp_step(
    buf: &[u8],
    parser: &mut RespParser,
    state: &Shared,
    limits: &Limits,
    ver: RespVersion,
    wire: &mut Option<Wire>,
) -> Step {
    let w = Wire::Resp(ver);
    let len = match parser.parse(buf, limits) {
        Ok(Some(n)) => n,
        Ok(None) => return Step::More,
        Err(e) => {
            let mut b = BytesMut::new();
            ringcache_proto::resp_encode::write_error_kind(&mut b, e.kind(), &e.to_string());
            return Step::Close(Pending::Ready(b));
        }
    };
    let args = parser.args(buf);
    if args
        .get(0)
        .is_some_and(|a| a.eq_ignore_ascii_case(b"cluster"))
    {
        let sub = args.get(1).unwrap_or_default().to_ascii_lowercase();
        let mut b = BytesMut::new();
        let map = state.borrow().map.clone();
        match sub.as_slice() {
            b"map" => ringcache_proto::resp_encode::write_bulk(&mut b, &encode_body(&*map)),
            b"info" | b"nodes" => {
                ringcache_proto::resp_encode::write_bulk(&mut b, map_text(&map).as_bytes())
            }
            _ => ringcache_proto::resp_encode::write_error(
                &mut b,
                "ERR unknown CLUSTER subcommand (use CLUSTER INFO or CLUSTER MAP)",
            ),
        }
        return Step::Done(len, Pending::Ready(b));
    }
    let cmd = match parse_command(&args, limits) {
        Ok(c) => c,
        Err(e) => {
            let mut b = BytesMut::new();
            ringcache_proto::resp_encode::write_error_display(&mut b, &e);
            return Step::Done(len, Pending::Ready(b));
        }
    };
    if let Command::Hello { version, .. } = &cmd {
        let v = match version {
            None => ver,
            Some(2) => RespVersion::V2,
            Some(3) => RespVersion::V3,
            Some(_) => {
                return Step::Done(
                    len,
                    ready(
                        w,
                        Opcode::Hello,
                        0,
                        0,
                        &Response::error(ErrorKind::NoProto, "unsupported protocol version"),
                    ),
                )
            }
        };
        *wire = Some(Wire::Resp(v));
        return Step::Done(
            len,
            ready(
                Wire::Resp(v),
                Opcode::Hello,
                0,
                0,
                &Response::Hello {
                    proto: v.number(),
                    id: 0,
                },
            ),
        );
    }
    if matches!(cmd, Command::Quit) {
        return Step::Close(ready(w, Opcode::Quit, 0, 0, &Response::Ok));
    }
    Step::Done(len, route_command(state, &cmd, w, 0))
}

/// The map as text: epoch, groups with their primary and replicas and key share, members.
pub fn map_text(map: &ClusterMap) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let shares = map.ring.shares();
    let _ = writeln!(
        s,
        "epoch: {}\ngroups: {}\nmembers: {}",
        map.epoch,
        map.groups.len(),
        map.members.len()
    );
    for g in &map.groups {
        let share = shares
            .iter()
            .find(|(id, _)| *id == g.id)
            .map_or(0.0, |(_, f)| *f);
        let _ = writeln!(
            s,
            "group {}: primary {} replicas {:?} key share {:.1}%",
            g.id,
            g.primary.map_or("none".to_string(), |p| p.to_string()),
            g.replicas,
            share * 100.0
        );
    }
    if let Some(mv) = &map.moving {
        let _ = writeln!(
            s,
            "range move {} under way: joining {:?} leaving {:?}",
            mv.id, mv.joining, mv.leaving
        );
    }
    for m in &map.members {
        let _ = writeln!(
            s,
            "member {}: {}:{} cores {:?} {:?} group {} {:?}",
            m.id,
            m.host,
            m.main_port,
            m.core_ports,
            m.role,
            m.group.map_or("-".to_string(), |g| g.to_string()),
            m.state
        );
    }
    s
}

fn control_request(state: &Shared, opcode: u8, body: &[u8]) -> ControlReply {
    let control = state.borrow().control.clone();
    let mut st = lock(&control);
    let reply = control_locked(&mut st, opcode, body);
    // This core routes by the new map at once; the others get it by message.
    let map = st.map.clone();
    drop(st);
    let mut local = state.borrow_mut();
    if map.epoch >= local.map.epoch {
        local.map = map;
    }
    reply
}

fn control_locked(st: &mut Control, opcode: u8, body: &[u8]) -> ControlReply {
    match opcode {
        control::CLUSTER_JOIN => {
            let req: JoinRequest = match decode_body(body) {
                Ok(r) => r,
                Err(reason) => return ControlReply::Reject { reason },
            };
            let actions = st.handle(Event::Join(req));
            for a in actions {
                match a {
                    Action::Reject { reason } => return ControlReply::Reject { reason },
                    Action::Welcome { member, group } => {
                        return ControlReply::Welcome {
                            member,
                            group,
                            map: (*st.map).clone(),
                        }
                    }
                    _ => {}
                }
            }
            ControlReply::Reject {
                reason: "join not answered".into(),
            }
        }
        control::CLUSTER_HEARTBEAT => {
            let hb: Heartbeat = match decode_body(body) {
                Ok(h) => h,
                Err(reason) => return ControlReply::Reject { reason },
            };
            let actions = st.handle(Event::Heartbeat {
                member: hb.member,
                applied: hb.applied,
                ready: hb.ready,
                moved: hb.moved,
            });
            if actions.iter().any(|a| matches!(a, Action::Rejoin { .. })) {
                return ControlReply::Rejoin;
            }
            if actions.iter().any(|a| matches!(a, Action::Removed { .. })) {
                return ControlReply::Removed;
            }
            if hb.epoch < st.map.epoch {
                ControlReply::Map(Some((*st.map).clone()))
            } else {
                ControlReply::Map(None)
            }
        }
        control::CLUSTER_MAP => ControlReply::Map(Some((*st.map).clone())),
        control::CLUSTER_REMOVE => match decode_body::<u64>(body) {
            Ok(member) => {
                info!(member, "operator removes a member");
                let actions = st.handle(Event::Remove { member });
                match actions.into_iter().find_map(|a| match a {
                    Action::Reject { reason } => Some(reason),
                    _ => None,
                }) {
                    Some(reason) => ControlReply::Reject { reason },
                    None => ControlReply::Map(Some((*st.map).clone())),
                }
            }
            Err(reason) => ControlReply::Reject { reason },
        },
        control::CLUSTER_LEAVE => match decode_body::<u64>(body) {
            Ok(member) => {
                info!(member, "member leaves");
                st.handle(Event::Leave { member });
                ControlReply::Map(None)
            }
            Err(reason) => ControlReply::Reject { reason },
        },
        other => ControlReply::Reject {
            reason: format!("unknown control opcode {other:#x}"),
        },
    }
}

/// Where a key goes: the owning primary's core port.
fn target(map: &ClusterMap, key: &[u8]) -> Result<SocketAddr, String> {
    let r = map.route(key).map_err(|e| e.to_string())?;
    let ip: IpAddr = r
        .member
        .host
        .parse()
        .map_err(|_| format!("member {} has a bad host {}", r.member.id, r.member.host))?;
    Ok(SocketAddr::new(ip, r.port))
}

/// Sends one request to `addr`, returning the waiter of its reply.
fn send(
    st: &mut State,
    addr: SocketAddr,
    cmd: &Command<'_>,
    epoch: u32,
) -> oneshot::Receiver<BackendReply> {
    let (tx, rx) = oneshot::channel();
    let mut b = BytesMut::new();
    if let Err(e) = encode_request(&mut b, 0, epoch, cmd) {
        let _ = tx.send(Err(e.to_string()));
        return rx;
    }
    let job = (b.to_vec(), tx);
    if let Err(e) = st.backend(addr).unbounded_send(job) {
        let (_, tx) = e.into_inner();
        let _ = tx.send(Err(format!("node {addr} is unreachable")));
    }
    rx
}

/// Plans and sends a client request; local commands are answered at once.
fn route_command(state: &Shared, cmd: &Command<'_>, wire: Wire, rid: u64) -> Pending {
    let op = cmd.opcode();
    let mut st = state.borrow_mut();
    let map = st.map.clone();
    let epoch = map.epoch as u32;
    let local = |resp: &Response<'_>| ready(wire, op, rid, epoch, resp);
    let wait = |parts, merge| Pending::Wait {
        parts,
        merge,
        wire,
        op,
        rid,
    };
    if let Some(key) = cmd.key() {
        return match target(&map, key) {
            Ok(addr) => wait(vec![send(&mut st, addr, cmd, epoch)], Merge::One),
            Err(msg) => local(&Response::error(ErrorKind::Busy, msg)),
        };
    }
    if let Some(keys) = multi_keys(cmd) {
        // Group key positions by owner, in order of first appearance.
        let mut groups: Vec<(SocketAddr, Vec<usize>)> = Vec::new();
        for (i, k) in keys.iter().enumerate() {
            let addr = match target(&map, k) {
                Ok(a) => a,
                Err(msg) => return local(&Response::error(ErrorKind::Busy, msg)),
            };
            match groups.iter_mut().find(|(a, _)| *a == addr) {
                Some((_, v)) => v.push(i),
                None => groups.push((addr, vec![i])),
            }
        }
        let pick = |pos: &[usize]| -> Vec<&[u8]> { pos.iter().map(|&i| keys[i]).collect() };
        let mut parts = Vec::with_capacity(groups.len());
        for (addr, pos) in &groups {
            let part = match cmd {
                Command::MGet { .. } => Command::MGet { keys: pick(pos) },
                Command::MSet { pairs } => Command::MSet {
                    pairs: pos.iter().map(|&i| pairs[i]).collect(),
                },
                Command::Del { .. } => Command::Del { keys: pick(pos) },
                Command::Exists { .. } => Command::Exists { keys: pick(pos) },
                _ => Command::Touch { keys: pick(pos) },
            };
            parts.push(send(&mut st, *addr, &part, epoch));
        }
        let merge = match cmd {
            Command::MGet { .. } => Merge::MGet {
                positions: groups.into_iter().map(|(_, p)| p).collect(),
                len: keys.len(),
            },
            Command::MSet { .. } => Merge::AllOk,
            _ => Merge::Sum,
        };
        return wait(parts, merge);
    }
    match cmd {
        Command::Flush | Command::InvalidatePrefix { .. } | Command::InvalidateTag { .. } => {
            let addrs: Vec<SocketAddr> = map
                .groups
                .iter()
                .filter_map(|g| g.primary.and_then(|p| map.member(p)))
                .filter_map(|m| Some(SocketAddr::new(m.host.parse().ok()?, m.main_port)))
                .collect();
            let parts = addrs
                .into_iter()
                .map(|a| send(&mut st, a, cmd, epoch))
                .collect();
            wait(parts, Merge::AllOk)
        }
        Command::Ping { msg: None } => local(&Response::Pong),
        Command::Ping { msg: Some(m) } => local(&Response::Bulk(m)),
        Command::Stats => {
            let fields = vec![
                ("cluster_epoch".into(), map.epoch),
                ("cluster_members".into(), map.members.len() as u64),
                ("cluster_groups".into(), map.groups.len() as u64),
                ("backend_connections".into(), st.backends.len() as u64),
            ];
            local(&Response::Stats(fields))
        }
        Command::Topology => local(&Response::Topology(ringcache_proto::Topology {
            node_id: 0,
            main_port: st.port,
            cores: vec![ringcache_proto::CoreInfo {
                core: 0,
                port: st.port,
            }],
        })),
        Command::ConfigGet { pattern } => {
            let pairs: Vec<(&[u8], &[u8])> = match pattern.to_ascii_lowercase().as_slice() {
                b"save" => vec![(b"save", b"")],
                b"appendonly" => vec![(b"appendonly", b"no")],
                _ => Vec::new(),
            };
            local(&Response::Pairs(pairs))
        }
        Command::CommandDocs => local(&Response::Values(Vec::new())),
        Command::Select { db: 0 }
        | Command::ClientSetInfo
        | Command::ClientSetName { .. }
        | Command::Quit
        | Command::Hello { .. } => local(&Response::Ok),
        other => local(&Response::error(
            ErrorKind::Unsupported,
            format!("{:?} is not supported by the balancer", other.opcode()),
        )),
    }
}

/// Waits for a routed request's parts and appends its one reply.
async fn finish(p: Pending, out: &mut BytesMut, limits: &Limits) {
    let (parts, merge, wire, op, rid) = match p {
        Pending::Ready(b) => {
            out.extend_from_slice(&b);
            return;
        }
        Pending::Wait {
            parts,
            merge,
            wire,
            op,
            rid,
        } => (parts, merge, wire, op, rid),
    };
    let mut frames: Vec<Vec<u8>> = Vec::with_capacity(parts.len());
    for rx in parts {
        match rx.await {
            Ok(Ok(f)) => frames.push(f),
            Ok(Err(msg)) => {
                let resp = Response::error(ErrorKind::Busy, msg);
                return encode_reply(out, wire, op, rid, 0, &resp);
            }
            Err(_) => {
                let resp = Response::error(ErrorKind::Internal, "node connection dropped");
                return encode_reply(out, wire, op, rid, 0, &resp);
            }
        }
    }
    if let (Merge::One, Wire::Native, [f]) = (&merge, wire, frames.as_mut_slice()) {
        if let Some(id) = f.get_mut(8..16) {
            id.copy_from_slice(&rid.to_le_bytes());
        }
        out.extend_from_slice(f);
        return;
    }
    let mut resps = Vec::with_capacity(frames.len());
    let mut epoch = 0;
    for f in &frames {
        let decoded = decode_frame(f, limits)
            .map_err(|e| e.to_string())
            .and_then(|fr| fr.ok_or_else(|| "truncated reply".to_string()))
            .and_then(|fr| {
                epoch = fr.header.epoch;
                decode_response(&fr.header, fr.body(f), limits).map_err(|e| e.to_string())
            });
        match decoded {
            Ok(r) => resps.push(r),
            Err(msg) => {
                let resp = Response::error(ErrorKind::Internal, msg);
                return encode_reply(out, wire, op, rid, 0, &resp);
            }
        }
    }
    if let Some(err) = resps.iter().find(|r| matches!(r, Response::Error { .. })) {
        return encode_reply(out, wire, op, rid, epoch, err);
    }
    let resp = match merge {
        Merge::One => resps.pop().unwrap_or(Response::Nil),
        Merge::AllOk => Response::Ok,
        Merge::Sum => Response::Int(
            resps
                .iter()
                .map(|r| match r {
                    Response::Int(n) => *n,
                    _ => 0,
                })
                .sum(),
        ),
        Merge::MGet { positions, len } => {
            let mut values: Vec<Option<ValueRef<'_>>> = vec![None; len];
            for (r, pos) in resps.iter().zip(&positions) {
                if let Response::Values(vs) = r {
                    for (v, &i) in vs.iter().zip(pos) {
                        if let Some(slot) = values.get_mut(i) {
                            *slot = *v;
                        }
                    }
                }
            }
            Response::Values(values)
        }
    };
    encode_reply(out, wire, op, rid, epoch, &resp);
}
