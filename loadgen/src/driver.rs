//! The I/O loops: one OS thread per `--threads`, each driving its share of the connections with
//! nonblocking sockets and a level-triggered epoll loop.
//!
//! A *slot* is one logical client connection: one socket per endpoint of `RunConfig::addrs`
//! (the server for `resp` and `memcached`, each core of the node for `ringcache`, each core of
//! each primary for `ringcache --cluster`), and each request goes on the socket of its key's
//! endpoint (`RunConfig::route`, see `endpoints`). A slot keeps up to `--pipeline` requests in
//! flight.
//!
//! Closed loop: each slot is refilled to its depth as replies come back; a request's latency
//! runs from its write. Open loop (`--rate`): requests fall due on a fixed schedule and are
//! handed to slots with room; a request's latency runs from its due time, so time spent waiting
//! behind a stalled server is counted (see `latency`).
//!
//! Writes made while handling one batch of events are gathered per socket and flushed once at
//! the end of the batch, so pipelined requests go out in as few syscalls as possible.

use std::collections::{BTreeMap, VecDeque};
use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

use anyhow::{ensure, Context};

use bytes::BytesMut;
use serde::Serialize;

use crate::endpoints::KeyRoute;
use crate::latency::{LatencyHist, Schedule};
use crate::protocol::{encode_get, encode_set, parse_reply, Outcome, Reply, Target};
use crate::sys::{self, now_ns, Epoll};
use crate::workload::{value_bytes, Generator, KeySpace, OpKind, PrefillRange, WorkloadSpec};

const MS: u64 = 1_000_000;
/// Interval of timeout checks, reconnects and progress publication.
const HOUSEKEEPING_NS: u64 = 100 * MS;
/// A failed connection is retried after this long.
const RETRY_NS: u64 = 100 * MS;
/// An open-loop request sent more than this after it was due counts as sent late.
const LATE_NS: u64 = MS;
/// Initial read buffer per socket.
const RBUF: usize = 64 * 1024;
/// Requests in flight per slot during prefill (at least; `--pipeline` if larger).
const PREFILL_DEPTH: usize = 64;
/// Prefill and `--requests` runs give up after this long without any reply (at least; twice
/// `--timeout` if longer), rather than wait forever for a server that is gone.
const STALL_NS: u64 = 10_000 * MS;

/// How closed-loop connections keep their pipeline full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Refill {
    /// Send `pipeline` requests together, then wait for all their replies (as
    /// `redis-benchmark -P`): the server reads and answers whole batches.
    Batch,
    /// Keep `pipeline` requests in flight, sending a new one for each reply (as memtier):
    /// more even load, smaller batches at the server.
    Window,
}

/// Everything a run needs, fixed before the threads start.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Protocol.
    pub target: Target,
    /// Endpoint addresses: one per core (`ringcache`), per core of every primary
    /// (`ringcache --cluster`), or the single server address. Each connection opens one
    /// socket per endpoint.
    pub addrs: Vec<SocketAddr>,
    /// Which endpoint (index into `addrs`) each key goes to.
    pub route: KeyRoute,
    /// Cluster map epoch carried in native request headers (0: not in a cluster).
    pub epoch: u32,
    /// Logical connections in all.
    pub connections: usize,
    /// Requests in flight per connection.
    pub pipeline: usize,
    /// How a closed-loop connection is topped up (`Batch`: all `pipeline` requests at once
    /// after every reply of the previous batch; `Window`: as each reply arrives).
    pub refill: Refill,
    /// OS threads.
    pub threads: usize,
    /// Open-loop rate in requests per second over all threads; `None` is closed loop.
    pub rate: Option<f64>,
    /// Key names.
    pub keyspace: KeySpace,
    /// Operation mix.
    pub spec: WorkloadSpec,
    /// Base seed (thread `t` uses `seed + t`).
    pub seed: u64,
    /// Load every key before measuring.
    pub prefill: bool,
    /// Measured time; `None` when `requests` bounds the run.
    pub duration_ns: Option<u64>,
    /// Measured requests over all threads.
    pub requests: Option<u64>,
    /// Unmeasured time before the measurement.
    pub warmup_ns: u64,
    /// A request without reply for this long is a timeout (its connection is reopened).
    pub timeout_ns: u64,
    /// CPU to pin each thread to (thread `t` gets `cpus[t % len]`); empty: no pinning.
    pub cpus: Vec<usize>,
}

/// Errors seen, by kind.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ErrorCounts {
    /// Requests that got no reply within `--timeout` (their connection is reopened).
    pub timeouts: u64,
    /// Connections that failed: reset, closed by the server, write errors.
    pub connection_errors: u64,
    /// Connection attempts that failed (initial connects fail the run instead).
    pub connect_failures: u64,
    /// Requests in flight on connections that failed or carried garbage.
    pub lost_requests: u64,
    /// Reply streams the loadgen could not parse (the connection is reopened).
    pub protocol_errors: u64,
    /// Error replies from the server.
    pub server_errors: u64,
    /// REDIRECT replies from ringcache nodes (key not owned there, or a stale map epoch); not
    /// part of `server_errors`.
    pub redirects: u64,
    /// Error replies by kind (`ERR`, `SERVER_ERROR`, `Busy`, ...).
    pub server_error_kinds: BTreeMap<String, u64>,
    /// The first connection or protocol error's message, for diagnosis.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
}

impl ErrorCounts {
    /// Every error counted (server error replies, timeouts, failed connections and parse errors).
    pub fn total(&self) -> u64 {
        self.timeouts
            + self.connection_errors
            + self.connect_failures
            + self.protocol_errors
            + self.server_errors
            + self.redirects
    }

    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &ErrorCounts) {
        self.timeouts += other.timeouts;
        self.connection_errors += other.connection_errors;
        self.connect_failures += other.connect_failures;
        self.lost_requests += other.lost_requests;
        self.protocol_errors += other.protocol_errors;
        self.server_errors += other.server_errors;
        self.redirects += other.redirects;
        for (k, v) in &other.server_error_kinds {
            *self.server_error_kinds.entry(k.clone()).or_default() += v;
        }
        if self.first_error.is_none() {
            self.first_error.clone_from(&other.first_error);
        }
    }

    fn server_error(&mut self, kind: &str) {
        self.server_errors += 1;
        match self.server_error_kinds.get_mut(kind) {
            Some(n) => *n += 1,
            None => {
                self.server_error_kinds.insert(kind.to_string(), 1);
            }
        }
    }
}

/// What one thread measured.
#[derive(Debug, Clone, Default)]
pub struct ThreadStats {
    /// Latencies of the measured window.
    pub hist: LatencyHist,
    /// Replies received in the measured window (errors included).
    pub ops: u64,
    /// GET replies in the window.
    pub gets: u64,
    /// GETs that found a value.
    pub hits: u64,
    /// SET replies in the window.
    pub sets: u64,
    /// Errors during warmup and measurement.
    pub errors: ErrorCounts,
    /// Length of the measured window.
    pub window_ns: u64,
    /// CPU time of the thread over the window.
    pub cpu_ns: u64,
    /// Keys written by prefill.
    pub prefill_ops: u64,
    /// Time prefill took.
    pub prefill_ns: u64,
    /// Errors during prefill.
    pub prefill_errors: ErrorCounts,
    /// Open loop: most requests that were due but not yet sent at one time.
    pub max_backlog: u64,
    /// Open loop: requests sent more than 1 ms after they were due (loadgen or server behind).
    pub late_sends: u64,
}

impl ThreadStats {
    /// Adds `other` into `self` (windows and CPU add up; callers average as needed).
    pub fn merge(&mut self, other: &ThreadStats) {
        self.hist.merge(&other.hist);
        self.ops += other.ops;
        self.gets += other.gets;
        self.hits += other.hits;
        self.sets += other.sets;
        self.errors.merge(&other.errors);
        self.window_ns = self.window_ns.max(other.window_ns);
        self.cpu_ns += other.cpu_ns;
        self.prefill_ops += other.prefill_ops;
        self.prefill_ns = self.prefill_ns.max(other.prefill_ns);
        self.prefill_errors.merge(&other.prefill_errors);
        self.max_backlog += other.max_backlog;
        self.late_sends += other.late_sends;
    }
}

/// The phase a thread is in (for the progress line).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Phase {
    /// Opening connections.
    #[default]
    Connecting,
    /// Loading the key space.
    Prefill,
    /// Running, not yet measured.
    Warmup,
    /// Measured.
    Measure,
    /// Finished.
    Done,
}

/// Counters a thread publishes every 100 ms for the progress line.
#[derive(Debug, Default)]
pub struct Live {
    /// Current phase.
    pub phase: Phase,
    /// Replies received in any phase.
    pub replies: u64,
    /// Replies in the measured window.
    pub measured: u64,
    /// GETs in the measured window.
    pub gets: u64,
    /// Hits in the measured window.
    pub hits: u64,
    /// Errors so far.
    pub errors: u64,
    /// Latencies of the measured window so far.
    pub hist: LatencyHist,
}

/// State shared by the threads and the main thread.
pub struct Shared {
    /// One progress record per thread.
    pub live: Vec<Mutex<Live>>,
    /// Set to stop every thread early (a thread failed, or the user interrupted).
    pub abort: AtomicBool,
    /// Passed by every thread once prefill is done, so all start measuring together.
    pub barrier: Barrier,
}

impl Shared {
    /// Shared state for `threads` threads.
    pub fn new(threads: usize) -> Self {
        Shared {
            live: (0..threads).map(|_| Mutex::new(Live::default())).collect(),
            abort: AtomicBool::new(false),
            barrier: Barrier::new(threads),
        }
    }
}

/// Sets up the connections of `addrs` for the loop.
pub fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_nodelay(true)?;
    s.set_nonblocking(true)?;
    Ok(s)
}

/// Asks the node on `addr` for its cores and returns one address per core, in core order.
pub fn fetch_core_addrs(addr: SocketAddr) -> anyhow::Result<Vec<SocketAddr>> {
    let ctx = || format!("fetching TOPOLOGY from {addr} (is a ringcache node listening there?)");
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).with_context(ctx)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .with_context(ctx)?;
    let mut req = BytesMut::new();
    crate::protocol::native::encode_topology(&mut req, 1);
    s.write_all(&req).with_context(ctx)?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let topo = loop {
        if let Some((_, t)) = crate::protocol::native::parse_topology(&buf).with_context(ctx)? {
            break t;
        }
        let n = match s.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(anyhow::anyhow!("no answer to TOPOLOGY within 5 s")).with_context(ctx)
            }
            Err(e) => return Err(e).with_context(ctx),
        };
        if n == 0 {
            return Err(anyhow::anyhow!("the server closed the connection")).with_context(ctx);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let mut cores = topo.cores.clone();
    cores.sort_by_key(|c| c.core);
    ensure!(!cores.is_empty(), "{addr}: the node reports no cores");
    for (i, c) in cores.iter().enumerate() {
        ensure!(
            c.core as usize == i,
            "{addr}: core numbers are not 0..{}: {:?}",
            cores.len(),
            topo.cores
        );
    }
    Ok(cores
        .iter()
        .map(|c| SocketAddr::new(addr.ip(), c.port))
        .collect())
}

struct Flight {
    id: u64,
    intended: u64,
    sent: u64,
    get: bool,
}

struct Conn {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    slot: usize,
    rbuf: Vec<u8>,
    rstart: usize,
    rend: usize,
    wbuf: BytesMut,
    wpos: usize,
    inflight: VecDeque<Flight>,
    want_out: bool,
    dirty: bool,
    retry_at: u64,
}

struct Slot {
    conns: Vec<usize>,
    inflight: usize,
    down: usize,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Fail {
    Timeout,
    Connection,
    Protocol,
}

struct Worker<'a> {
    cfg: &'a RunConfig,
    shared: &'a Shared,
    tid: usize,
    ep: Epoll,
    conns: Vec<Conn>,
    slots: Vec<Slot>,
    gen: Generator,
    prefill: Option<PrefillRange>,
    key: Vec<u8>,
    values: Vec<u8>,
    next_id: u64,
    dirty: Vec<usize>,
    rr: usize,
    depth: usize,
    inflight: usize,
    phase: Phase,
    measure_start: u64,
    cpu_start: u64,
    share: Option<u64>,
    last_reply: u64,
    stats: ThreadStats,
    // Deltas not yet published to `shared.live`.
    pub_replies: u64,
    pub_measured: u64,
    pub_gets: u64,
    pub_hits: u64,
    pub_hist: LatencyHist,
}

/// Runs thread `tid`: connect, prefill its share, wait at the barrier, run, return its figures.
pub fn run_thread(cfg: &RunConfig, shared: &Shared, tid: usize) -> anyhow::Result<ThreadStats> {
    let setup = setup_and_prefill(cfg, shared, tid);
    if setup.is_err() {
        shared.abort.store(true, Ordering::SeqCst);
    }
    shared.barrier.wait();
    let mut w = setup?;
    if shared.abort.load(Ordering::SeqCst) {
        anyhow::bail!("stopped: another thread failed");
    }
    w.run()?;
    w.publish();
    w.set_phase(Phase::Done);
    Ok(w.stats)
}

/// The threads of a run, started by `spawn`.
pub struct Running {
    /// Progress records and the abort flag.
    pub shared: Arc<Shared>,
    /// One handle per thread.
    pub handles: Vec<std::thread::JoinHandle<anyhow::Result<ThreadStats>>>,
}

impl Running {
    /// Whether every thread has finished.
    pub fn finished(&self) -> bool {
        self.handles.iter().all(|h| h.is_finished())
    }

    /// Waits for every thread and merges their figures; the first thread error is returned.
    pub fn join(self) -> anyhow::Result<ThreadStats> {
        let mut total = ThreadStats::default();
        let mut failure = None;
        for h in self.handles {
            match h.join() {
                Ok(Ok(st)) => total.merge(&st),
                Ok(Err(e)) => {
                    failure.get_or_insert(e);
                }
                Err(_) => {
                    failure.get_or_insert(anyhow::anyhow!("a loadgen thread panicked"));
                }
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(total),
        }
    }
}

/// Starts one thread per `cfg.threads`.
pub fn spawn(cfg: Arc<RunConfig>) -> anyhow::Result<Running> {
    let shared = Arc::new(Shared::new(cfg.threads));
    let mut handles = Vec::new();
    for tid in 0..cfg.threads {
        let (cfg, sh) = (Arc::clone(&cfg), Arc::clone(&shared));
        let h = std::thread::Builder::new()
            .name(format!("loadgen-{tid}"))
            .spawn(move || run_thread(&cfg, &sh, tid));
        match h {
            Ok(h) => handles.push(h),
            Err(e) => {
                shared.abort.store(true, Ordering::SeqCst);
                return Err(e).context("spawning a loadgen thread");
            }
        }
    }
    Ok(Running { shared, handles })
}

fn setup_and_prefill<'a>(
    cfg: &'a RunConfig,
    shared: &'a Shared,
    tid: usize,
) -> anyhow::Result<Worker<'a>> {
    if !cfg.cpus.is_empty() {
        let cpu = cfg.cpus[tid % cfg.cpus.len()];
        sys::pin_to_cpu(cpu)
            .map_err(|e| anyhow::anyhow!("pinning thread {tid} to CPU {cpu}: {e}"))?;
    }
    if cfg.rate.is_some() {
        sys::tight_timer_slack();
    }
    let mut w = Worker::new(cfg, shared, tid)?;
    if cfg.prefill {
        w.set_phase(Phase::Prefill);
        let t0 = now_ns();
        w.last_reply = t0;
        w.prefill = Some(PrefillRange::new(cfg.spec.keys, tid, cfg.threads));
        w.depth = cfg.pipeline.max(PREFILL_DEPTH);
        w.run_closed(None)?;
        w.prefill = None;
        w.stats.prefill_ns = now_ns() - t0;
        w.publish();
    }
    Ok(w)
}

impl<'a> Worker<'a> {
    fn new(cfg: &'a RunConfig, shared: &'a Shared, tid: usize) -> anyhow::Result<Self> {
        let ep = Epoll::new()?;
        let mut conns = Vec::new();
        let mut slots = Vec::new();
        for s in (tid..cfg.connections).step_by(cfg.threads) {
            let mut slot = Slot {
                conns: Vec::new(),
                inflight: 0,
                down: 0,
            };
            for &addr in &cfg.addrs {
                let stream = connect(addr, Duration::from_secs(5)).map_err(|e| {
                    anyhow::anyhow!("connection {s}: cannot connect to {addr}: {e}")
                })?;
                let ci = conns.len();
                ep.add(stream.as_raw_fd(), sys::IN, ci as u64)?;
                conns.push(Conn {
                    addr,
                    stream: Some(stream),
                    slot: slots.len(),
                    rbuf: vec![0; RBUF],
                    rstart: 0,
                    rend: 0,
                    wbuf: BytesMut::with_capacity(16 * 1024),
                    wpos: 0,
                    inflight: VecDeque::with_capacity(cfg.pipeline.max(PREFILL_DEPTH)),
                    want_out: false,
                    dirty: false,
                    retry_at: 0,
                });
                slot.conns.push(ci);
            }
            slots.push(slot);
        }
        let share = cfg.requests.map(|n| {
            let t = cfg.threads as u64;
            n / t + u64::from((tid as u64) < n % t)
        });
        Ok(Worker {
            cfg,
            shared,
            tid,
            ep,
            conns,
            slots,
            gen: Generator::new(cfg.spec.clone(), cfg.seed.wrapping_add(tid as u64))?,
            prefill: None,
            key: Vec::with_capacity(cfg.keyspace.key_size()),
            values: value_bytes(cfg.spec.value_size.max),
            next_id: 1,
            dirty: Vec::new(),
            rr: 0,
            depth: cfg.pipeline,
            inflight: 0,
            phase: Phase::Connecting,
            measure_start: u64::MAX,
            cpu_start: 0,
            share,
            last_reply: now_ns(),
            stats: ThreadStats::default(),
            pub_replies: 0,
            pub_measured: 0,
            pub_gets: 0,
            pub_hits: 0,
            pub_hist: LatencyHist::new(),
        })
    }

    fn set_phase(&mut self, p: Phase) {
        self.phase = p;
        if let Ok(mut l) = self.shared.live[self.tid].lock() {
            l.phase = p;
        }
    }

    /// Hands the counters gathered since the last call to the progress line.
    fn publish(&mut self) {
        if let Ok(mut l) = self.shared.live[self.tid].lock() {
            l.replies += self.pub_replies;
            l.measured += self.pub_measured;
            l.gets += self.pub_gets;
            l.hits += self.pub_hits;
            l.errors = self.stats.errors.total() + self.stats.prefill_errors.total();
            l.hist.merge(&self.pub_hist);
        }
        self.pub_replies = 0;
        self.pub_measured = 0;
        self.pub_gets = 0;
        self.pub_hits = 0;
        self.pub_hist.reset();
    }

    fn run(&mut self) -> anyhow::Result<()> {
        self.depth = self.cfg.pipeline;
        let start = now_ns();
        self.last_reply = start;
        self.measure_start = start + self.cfg.warmup_ns;
        self.set_phase(if self.cfg.warmup_ns > 0 {
            Phase::Warmup
        } else {
            Phase::Measure
        });
        let end = self
            .cfg
            .duration_ns
            .map(|d| self.measure_start.saturating_add(d));
        match self.cfg.rate {
            None => self.run_closed(end)?,
            Some(rate) => {
                let mut sched = Schedule::new(start, rate / self.cfg.threads as f64, None);
                self.run_open(&mut sched, end)?;
            }
        }
        let now = now_ns();
        if self.phase == Phase::Measure {
            self.stats.window_ns = now.saturating_sub(self.measure_start);
            self.stats.cpu_ns = sys::thread_cpu_ns().saturating_sub(self.cpu_start);
        }
        Ok(())
    }

    /// Whether the current phase is over.
    fn finished(&self, now: u64, end: Option<u64>) -> bool {
        if self.shared.abort.load(Ordering::Relaxed) {
            return true;
        }
        if let Some(p) = &self.prefill {
            return p.remaining() == 0 && self.inflight == 0;
        }
        if end.is_some_and(|e| now >= e) {
            return true;
        }
        self.share.is_some_and(|s| self.stats.ops >= s)
    }

    fn maybe_start_measuring(&mut self, now: u64) {
        if self.prefill.is_none() && self.phase == Phase::Warmup && now >= self.measure_start {
            self.set_phase(Phase::Measure);
        }
        if self.prefill.is_none() && self.phase == Phase::Measure && self.cpu_start == 0 {
            self.cpu_start = sys::thread_cpu_ns().max(1);
        }
    }

    fn run_closed(&mut self, end: Option<u64>) -> anyhow::Result<()> {
        let now = now_ns();
        self.maybe_start_measuring(now);
        for s in 0..self.slots.len() {
            self.refill(s, now);
        }
        self.flush_dirty();
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
        let mut next_hk = now + HOUSEKEEPING_NS;
        loop {
            let now = now_ns();
            if self.finished(now, end) {
                break;
            }
            self.maybe_start_measuring(now);
            if now >= next_hk {
                self.housekeeping(now)?;
                next_hk = now + HOUSEKEEPING_NS;
                self.flush_dirty();
            }
            let deadline = end.map_or(next_hk, |e| e.min(next_hk));
            let n = self
                .ep
                .wait(&mut events, Some(deadline.saturating_sub(now)))?;
            self.handle_events(&events[..n]);
            self.flush_dirty();
        }
        Ok(())
    }

    fn run_open(&mut self, sched: &mut Schedule, end: Option<u64>) -> anyhow::Result<()> {
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
        let mut next_hk = now_ns() + HOUSEKEEPING_NS;
        loop {
            let now = now_ns();
            if self.finished(now, end) {
                break;
            }
            self.maybe_start_measuring(now);
            if now >= next_hk {
                self.housekeeping(now)?;
                next_hk = now + HOUSEKEEPING_NS;
            }
            let blocked = self.issue_open(sched, now);
            self.flush_dirty();
            let mut deadline = end.map_or(next_hk, |e| e.min(next_hk));
            if !blocked {
                if let Some(due) = sched.next_due() {
                    deadline = deadline.min(due);
                }
            }
            let n = self
                .ep
                .wait(&mut events, Some(deadline.saturating_sub(now_ns())))?;
            self.handle_events(&events[..n]);
            self.flush_dirty();
        }
        Ok(())
    }

    /// Sends every request that is due on slots with room. Returns true when requests are due
    /// but no slot has room (the loop then waits for replies rather than the timer).
    fn issue_open(&mut self, sched: &mut Schedule, now: u64) -> bool {
        let n = self.slots.len();
        loop {
            if sched.next_due().is_none_or(|t| t > now) {
                return false;
            }
            let mut found = None;
            for k in 0..n {
                let s = (self.rr + k) % n;
                let slot = &self.slots[s];
                if slot.down == 0 && slot.inflight < self.depth {
                    found = Some(s);
                    break;
                }
            }
            let Some(s) = found else {
                let backlog = sched.backlog(now);
                self.stats.max_backlog = self.stats.max_backlog.max(backlog);
                return true;
            };
            let Some(due) = sched.take_due(now) else {
                return false;
            };
            self.rr = (s + 1) % n;
            if self.phase == Phase::Measure && now - due > LATE_NS {
                self.stats.late_sends += 1;
            }
            self.issue(s, due, now);
        }
    }

    /// Tops slot `s` up to its depth (closed loop and prefill).
    fn refill(&mut self, s: usize, now: u64) {
        if self.cfg.rate.is_some() && self.prefill.is_none() {
            return;
        }
        if self.cfg.refill == Refill::Batch && self.prefill.is_none() && self.slots[s].inflight > 0
        {
            return;
        }
        while self.slots[s].down == 0 && self.slots[s].inflight < self.depth {
            if !self.issue(s, now, now) {
                break;
            }
        }
    }

    /// Encodes the next operation on slot `s`; false when there is nothing left to send.
    fn issue(&mut self, s: usize, intended: u64, now: u64) -> bool {
        let op = match &mut self.prefill {
            Some(range) => match range.next() {
                Some(k) => crate::workload::Op {
                    kind: OpKind::Set,
                    key: k,
                    value_len: self.gen.next_value_len(),
                },
                None => return false,
            },
            None => self.gen.next_op(),
        };
        self.cfg.keyspace.write_key(op.key, &mut self.key);
        let slot = &mut self.slots[s];
        let ep = self.cfg.route.endpoint(&self.key, slot.conns.len());
        let ci = slot.conns[ep.min(slot.conns.len() - 1)];
        slot.inflight += 1;
        self.inflight += 1;
        let c = &mut self.conns[ci];
        let id = self.next_id;
        self.next_id += 1;
        let get = op.kind == OpKind::Get;
        if get {
            encode_get(self.cfg.target, &mut c.wbuf, id, self.cfg.epoch, &self.key);
        } else {
            let v = &self.values[..op.value_len];
            encode_set(
                self.cfg.target,
                &mut c.wbuf,
                id,
                self.cfg.epoch,
                &self.key,
                v,
            );
        }
        c.inflight.push_back(Flight {
            id,
            intended,
            sent: now,
            get,
        });
        if !c.dirty {
            c.dirty = true;
            self.dirty.push(ci);
        }
        true
    }

    fn handle_events(&mut self, events: &[libc::epoll_event]) {
        for ev in events {
            let token = ev.u64;
            let bits = ev.events;
            let ci = token as usize;
            if ci >= self.conns.len() || self.conns[ci].stream.is_none() {
                continue;
            }
            if bits & sys::OUT != 0 {
                self.flush(ci);
            }
            if bits & !sys::OUT != 0 {
                self.on_readable(ci);
            }
        }
    }

    fn on_readable(&mut self, ci: usize) {
        loop {
            let c = &mut self.conns[ci];
            let Some(stream) = c.stream.as_mut() else {
                return;
            };
            if c.rstart == c.rend {
                c.rstart = 0;
                c.rend = 0;
            } else if c.rend == c.rbuf.len() {
                if c.rstart > 0 {
                    c.rbuf.copy_within(c.rstart..c.rend, 0);
                    c.rend -= c.rstart;
                    c.rstart = 0;
                } else {
                    let len = c.rbuf.len();
                    c.rbuf.resize(len * 2, 0);
                }
            }
            let room = c.rbuf.len() - c.rend;
            match stream.read(&mut c.rbuf[c.rend..]) {
                Ok(0) => {
                    self.fail(ci, Fail::Connection, "connection closed by the server");
                    return;
                }
                Ok(n) => {
                    c.rend += n;
                    let now = now_ns();
                    if !self.parse_replies(ci, now) {
                        return;
                    }
                    let slot = self.conns[ci].slot;
                    self.refill(slot, now);
                    if n < room {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.fail(ci, Fail::Connection, &format!("read: {e}"));
                    return;
                }
            }
        }
    }

    /// Handles every complete reply in the read buffer; false if the connection failed.
    fn parse_replies(&mut self, ci: usize, now: u64) -> bool {
        loop {
            let c = &self.conns[ci];
            let parsed = parse_reply(self.cfg.target, &c.rbuf[c.rstart..c.rend]);
            match parsed {
                Ok(Some(reply)) => {
                    self.conns[ci].rstart += reply.used;
                    if !self.complete(ci, reply, now) {
                        return false;
                    }
                }
                Ok(None) => return true,
                Err(e) => {
                    self.fail(ci, Fail::Protocol, &e.to_string());
                    return false;
                }
            }
        }
    }

    fn complete(&mut self, ci: usize, reply: Reply, now: u64) -> bool {
        let c = &mut self.conns[ci];
        let flight = match reply.id {
            None => c.inflight.pop_front(),
            Some(id) => match c.inflight.front() {
                Some(f) if f.id == id => c.inflight.pop_front(),
                _ => c
                    .inflight
                    .iter()
                    .position(|f| f.id == id)
                    .and_then(|i| c.inflight.remove(i)),
            },
        };
        let Some(f) = flight else {
            self.fail(ci, Fail::Protocol, "reply to no request in flight");
            return false;
        };
        let slot = c.slot;
        self.slots[slot].inflight -= 1;
        self.inflight -= 1;
        self.pub_replies += 1;
        self.last_reply = now;
        if self.prefill.is_some() {
            self.stats.prefill_ops += 1;
            match &reply.outcome {
                Outcome::ServerError(k) => self.stats.prefill_errors.server_error(k),
                Outcome::Redirect => self.stats.prefill_errors.redirects += 1,
                _ => {}
            }
            return true;
        }
        match &reply.outcome {
            Outcome::ServerError(k) => self.stats.errors.server_error(k),
            Outcome::Redirect => self.stats.errors.redirects += 1,
            _ => {}
        }
        if self.phase != Phase::Measure || now < self.measure_start {
            return true;
        }
        let st = &mut self.stats;
        st.ops += 1;
        st.hist.record_since(f.intended, now);
        self.pub_hist.record_since(f.intended, now);
        self.pub_measured += 1;
        if f.get {
            st.gets += 1;
            self.pub_gets += 1;
            if reply.outcome == Outcome::Hit {
                st.hits += 1;
                self.pub_hits += 1;
            }
        } else {
            st.sets += 1;
        }
        true
    }

    fn flush_dirty(&mut self) {
        while let Some(ci) = self.dirty.pop() {
            self.flush(ci);
        }
    }

    fn flush(&mut self, ci: usize) {
        let c = &mut self.conns[ci];
        c.dirty = false;
        let Some(stream) = c.stream.as_mut() else {
            return;
        };
        while c.wpos < c.wbuf.len() {
            match stream.write(&c.wbuf[c.wpos..]) {
                Ok(0) => {
                    self.fail(ci, Fail::Connection, "write returned 0");
                    return;
                }
                Ok(n) => c.wpos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !c.want_out {
                        c.want_out = true;
                        let fd = stream.as_raw_fd();
                        let _ = self.ep.modify(fd, sys::IN | sys::OUT, ci as u64);
                    }
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.fail(ci, Fail::Connection, &format!("write: {e}"));
                    return;
                }
            }
        }
        c.wbuf.clear();
        c.wpos = 0;
        if c.want_out {
            c.want_out = false;
            let fd = stream.as_raw_fd();
            let _ = self.ep.modify(fd, sys::IN, ci as u64);
        }
    }

    fn errors_mut(&mut self) -> &mut ErrorCounts {
        if self.prefill.is_some() {
            &mut self.stats.prefill_errors
        } else {
            &mut self.stats.errors
        }
    }

    /// Closes connection `ci`, forgets its requests in flight and schedules a reconnect.
    fn fail(&mut self, ci: usize, why: Fail, msg: &str) {
        let c = &mut self.conns[ci];
        let Some(stream) = c.stream.take() else {
            return;
        };
        let _ = self.ep.delete(stream.as_raw_fd());
        drop(stream);
        let lost = c.inflight.len() as u64;
        c.inflight.clear();
        c.rstart = 0;
        c.rend = 0;
        c.wbuf.clear();
        c.wpos = 0;
        c.want_out = false;
        c.retry_at = now_ns() + RETRY_NS;
        let addr = c.addr;
        let slot = &mut self.slots[c.slot];
        slot.inflight -= lost as usize;
        slot.down += 1;
        self.inflight -= lost as usize;
        let e = self.errors_mut();
        match why {
            Fail::Timeout => e.timeouts += lost,
            Fail::Connection => {
                e.connection_errors += 1;
                e.lost_requests += lost;
            }
            Fail::Protocol => {
                e.protocol_errors += 1;
                e.lost_requests += lost;
            }
        }
        if e.first_error.is_none() {
            e.first_error = Some(format!("{addr}: {msg}"));
        }
    }

    /// Timeouts, reconnects, progress publication, and giving up on a server that stopped
    /// answering when the run has no end time.
    fn housekeeping(&mut self, now: u64) -> anyhow::Result<()> {
        let bounded_by_time = self.prefill.is_none() && self.cfg.duration_ns.is_some();
        if self.inflight == 0 && self.slots.iter().all(|s| s.down == 0) {
            // Nothing is awaited (a slow open-loop rate): not a stall.
            self.last_reply = now;
        }
        let stall = STALL_NS.max(2 * self.cfg.timeout_ns);
        if !bounded_by_time && now.saturating_sub(self.last_reply) > stall {
            anyhow::bail!(
                "no reply from the server for {} s during {}; giving up (first error: {})",
                stall / 1_000_000_000,
                if self.prefill.is_some() {
                    "prefill"
                } else {
                    "the run"
                },
                self.errors_mut()
                    .first_error
                    .clone()
                    .unwrap_or_else(|| "none".into())
            );
        }
        let timeout = self.cfg.timeout_ns;
        for ci in 0..self.conns.len() {
            let c = &self.conns[ci];
            if c.stream.is_some() {
                if c.inflight.front().is_some_and(|f| now > f.sent + timeout) {
                    self.fail(ci, Fail::Timeout, "no reply within --timeout");
                }
            } else if now >= c.retry_at {
                self.reconnect(ci);
            }
        }
        self.publish();
        Ok(())
    }

    fn reconnect(&mut self, ci: usize) {
        let addr = self.conns[ci].addr;
        match connect(addr, Duration::from_millis(200)) {
            Ok(stream) => {
                if self.ep.add(stream.as_raw_fd(), sys::IN, ci as u64).is_err() {
                    self.conns[ci].retry_at = now_ns() + RETRY_NS;
                    return;
                }
                let c = &mut self.conns[ci];
                c.stream = Some(stream);
                let slot = c.slot;
                self.slots[slot].down -= 1;
                let now = now_ns();
                self.refill(slot, now);
            }
            Err(e) => {
                let err = self.errors_mut();
                err.connect_failures += 1;
                if err.first_error.is_none() {
                    err.first_error = Some(format!("{addr}: connect: {e}"));
                }
                self.conns[ci].retry_at = now_ns() + RETRY_NS;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_counts_merge() {
        let mut a = ErrorCounts::default();
        a.server_error("ERR");
        a.timeouts = 2;
        let mut b = ErrorCounts::default();
        b.server_error("ERR");
        b.server_error("BUSY");
        b.first_error = Some("x".into());
        b.redirects = 4;
        a.merge(&b);
        assert_eq!(a.server_errors, 3);
        assert_eq!(a.redirects, 4);
        assert_eq!(a.server_error_kinds["ERR"], 2);
        assert_eq!(a.server_error_kinds["BUSY"], 1);
        assert_eq!(a.total(), 9);
        assert_eq!(a.first_error.as_deref(), Some("x"));
    }
}
