//! One thread's state: its connections (`Conn`, one per socket) grouped into slots (`Slot`, one
//! per logical connection), the requests in flight on each, and the phases a thread goes
//! through (prefill, warmup, measurement), with publication of its progress.

use std::collections::VecDeque;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::BytesMut;

use super::connect::connect;
use super::run::Shared;
use super::stats::{Phase, ThreadStats};
use super::{RunConfig, PREFILL_DEPTH, RBUF};
use crate::latency::{LatencyHist, Schedule};
use crate::sys::{self, now_ns, Epoll};
use crate::workload::{value_bytes, Generator, PrefillRange};

pub(super) struct Flight {
    pub(super) id: u64,
    pub(super) intended: u64,
    pub(super) sent: u64,
    pub(super) get: bool,
}

pub(super) struct Conn {
    pub(super) addr: SocketAddr,
    pub(super) stream: Option<TcpStream>,
    pub(super) slot: usize,
    pub(super) rbuf: Vec<u8>,
    pub(super) rstart: usize,
    pub(super) rend: usize,
    pub(super) wbuf: BytesMut,
    pub(super) wpos: usize,
    pub(super) inflight: VecDeque<Flight>,
    pub(super) want_out: bool,
    pub(super) dirty: bool,
    pub(super) retry_at: u64,
}

pub(super) struct Slot {
    pub(super) conns: Vec<usize>,
    pub(super) inflight: usize,
    pub(super) down: usize,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Fail {
    Timeout,
    Connection,
    Protocol,
}

pub(super) struct Worker<'a> {
    pub(super) cfg: &'a RunConfig,
    pub(super) shared: &'a Shared,
    pub(super) tid: usize,
    pub(super) ep: Epoll,
    pub(super) conns: Vec<Conn>,
    pub(super) slots: Vec<Slot>,
    pub(super) gen: Generator,
    pub(super) prefill: Option<PrefillRange>,
    pub(super) key: Vec<u8>,
    pub(super) values: Vec<u8>,
    pub(super) next_id: u64,
    pub(super) dirty: Vec<usize>,
    pub(super) rr: usize,
    pub(super) depth: usize,
    pub(super) inflight: usize,
    pub(super) phase: Phase,
    pub(super) measure_start: u64,
    pub(super) cpu_start: u64,
    pub(super) share: Option<u64>,
    pub(super) last_reply: u64,
    pub(super) stats: ThreadStats,
    // Deltas not yet published to `shared.live`.
    pub(super) pub_replies: u64,
    pub(super) pub_measured: u64,
    pub(super) pub_gets: u64,
    pub(super) pub_hits: u64,
    pub(super) pub_hist: LatencyHist,
}

impl<'a> Worker<'a> {
    pub(super) fn new(cfg: &'a RunConfig, shared: &'a Shared, tid: usize) -> anyhow::Result<Self> {
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

    pub(super) fn set_phase(&mut self, p: Phase) {
        self.phase = p;
        if let Ok(mut l) = self.shared.live[self.tid].lock() {
            l.phase = p;
        }
    }

    /// Hands the counters gathered since the last call to the progress line.
    pub(super) fn publish(&mut self) {
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

    pub(super) fn run(&mut self) -> anyhow::Result<()> {
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
    pub(super) fn finished(&self, now: u64, end: Option<u64>) -> bool {
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

    pub(super) fn maybe_start_measuring(&mut self, now: u64) {
        if self.prefill.is_none() && self.phase == Phase::Warmup && now >= self.measure_start {
            self.set_phase(Phase::Measure);
        }
        if self.prefill.is_none() && self.phase == Phase::Measure && self.cpu_start == 0 {
            self.cpu_start = sys::thread_cpu_ns().max(1);
        }
    }
}
