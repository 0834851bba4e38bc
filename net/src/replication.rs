//! The primary side of replication on one core: each change to this core's keys is encoded
//! once, kept in the backlog and queued on every replica link; a write's reply waits (through a
//! [`Gate`]) for the acks its policy asks for. The decisions come from
//! `ringcache_cluster::replication`; `repl_link` moves the bytes.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::net::SocketAddr;
use std::rc::Rc;
use std::task::{Poll, Waker};

use bytes::{Bytes, BytesMut};
use futures_channel::oneshot;
use ringcache_cluster::replication::{
    catch_up, encode_op_into, AckTracker, Backlog, CatchUp, LinkId, ReplOp, StreamPosition, Tag,
    WriteAck,
};
use ringcache_cluster::MemberId;
use ringcache_engine::Shard;
use ringcache_proto::control::{encode_control, REPL_OP, REPL_RESET, REPL_SYNCED};
use ringcache_proto::Command;

use crate::core_state::CoreState;

/// Resolves once a write has its acks (`Err` with the reason when it never will).
pub type Gate = oneshot::Receiver<Result<(), String>>;

/// Bytes queued on a link below which a full copy adds its next slice.
const COPY_LOW_WATER: usize = 256 * 1024;
/// Slab slots a full copy walks per slice.
const COPY_SLOTS: usize = 2048;

/// Wakes one waiting task; ringing before the wait is remembered (single-threaded).
#[derive(Default)]
pub struct Doorbell {
    rung: Cell<bool>,
    waker: Cell<Option<Waker>>,
}

impl Doorbell {
    /// Wakes the waiter, or lets its next wait return at once.
    pub fn ring(&self) {
        self.rung.set(true);
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    /// Waits for a ring.
    pub async fn wait(&self) {
        poll_fn(|cx| {
            if self.rung.replace(false) {
                Poll::Ready(())
            } else {
                self.waker.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
        .await
    }
}

/// What a link holds between its tasks and the core.
#[derive(Default)]
pub struct LinkState {
    /// Frames waiting to be written.
    pub out: BytesMut,
    /// Handshake done: live operations are queued on `out`.
    pub streaming: bool,
    /// A full copy's next slab slot, while one runs.
    pub copy_from: Option<usize>,
    /// The member left the group: the link's tasks stop.
    pub closed: bool,
    /// The connection failed: the writer starts over.
    pub broken: bool,
}

/// A primary core's connection to one replica (the same core index on the replica).
pub struct ReplLink {
    /// Its id in the ack tracker.
    pub id: LinkId,
    /// The replica.
    pub member: MemberId,
    /// The replica core's port.
    pub addr: SocketAddr,
    /// Shared with the link's tasks.
    pub state: RefCell<LinkState>,
    /// Rung when `out` gains bytes or the link must stop.
    pub doorbell: Doorbell,
}

/// Replication counters of one core.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReplCounters {
    /// Replica streams started by a full copy.
    pub full_copies: u64,
    /// Replica streams started by replaying the backlog.
    pub backlog_catchups: u64,
    /// Writes that ended waiting for acks without them (timeout or demotion).
    pub ack_failures: u64,
}

/// One core's primary-side replication state.
pub struct Replicator {
    policy: WriteAck,
    timeout_ms: u64,
    /// This core's stream id (new at every start).
    pub stream: u64,
    backlog: Backlog<Bytes>,
    /// This core leads a group in a cluster: changes go to the backlog even while no replica
    /// is connected, so one that returns gets only what it missed.
    recording: bool,
    links: Vec<Rc<ReplLink>>,
    acks: AckTracker<oneshot::Sender<Result<(), String>>>,
    next_link: LinkId,
    scratch: Vec<u8>,
    /// Counters for STATS.
    pub counters: ReplCounters,
}

/// Whether `cmd` changes data (and so is replicated, and refused by replicas).
pub fn replicates(cmd: &Command<'_>) -> bool {
    matches!(
        cmd,
        Command::Set { .. }
            | Command::MSet { .. }
            | Command::IncrBy { .. }
            | Command::Del { .. }
            | Command::Expire { .. }
            | Command::Persist { .. }
            | Command::Flush
            | Command::InvalidatePrefix { .. }
            | Command::InvalidateTag { .. }
    )
}

/// Appends a replication frame carrying `op` (or no body) to `out`.
fn encode_frame(
    out: &mut BytesMut,
    opcode: u8,
    seq: u64,
    op: Option<&ReplOp<'_>>,
    scratch: &mut Vec<u8>,
) {
    scratch.clear();
    if let Some(op) = op {
        encode_op_into(op, scratch);
    }
    encode_control(out, opcode, false, seq, 0, scratch);
}

impl Replicator {
    /// A replicator with no replicas yet.
    pub fn new(policy: WriteAck, backlog_bytes: usize, timeout_ms: u64, stream: u64) -> Self {
        Replicator {
            policy,
            timeout_ms,
            stream,
            backlog: Backlog::new(backlog_bytes),
            recording: false,
            links: Vec::new(),
            acks: AckTracker::default(),
            next_link: 1,
            scratch: Vec::new(),
            counters: ReplCounters::default(),
        }
    }

    /// Whether changes are replicated (this core leads a group of a cluster).
    #[inline]
    pub fn is_active(&self) -> bool {
        self.recording
    }

    /// Starts or stops recording changes (on becoming or ceasing to be a primary).
    pub fn set_recording(&mut self, on: bool) {
        self.recording = on;
    }

    /// Replica links (connected or not).
    pub fn links(&self) -> usize {
        self.links.len()
    }

    /// Links that finished their handshake.
    pub fn streaming_links(&self) -> usize {
        self.links
            .iter()
            .filter(|l| l.state.borrow().streaming)
            .count()
    }

    /// Writes waiting for acks.
    pub fn pending_acks(&self) -> usize {
        self.acks.len()
    }

    /// Sends `op` to every replica (keeping it in the backlog); returns its sequence.
    pub fn push(&mut self, op: &ReplOp<'_>) -> u64 {
        let seq = self.backlog.next();
        let mut frame = BytesMut::new();
        encode_frame(&mut frame, REPL_OP, seq, Some(op), &mut self.scratch);
        let frame = frame.freeze();
        for l in &self.links {
            let mut st = l.state.borrow_mut();
            if st.streaming {
                st.out.extend_from_slice(&frame);
                drop(st);
                l.doorbell.ring();
            }
        }
        self.backlog.push(frame)
    }

    /// A gate for write `seq`, or `None` when the policy needs no replica ack.
    pub fn gate(&mut self, seq: u64, now: u64) -> Option<Gate> {
        let ids: Vec<LinkId> = self.links.iter().map(|l| l.id).collect();
        let need = self.policy.replica_acks(ids.len());
        let (tx, rx) = oneshot::channel();
        match self.acks.add(seq, ids, need, tx, now) {
            Some(_) => None,
            None => Some(rx),
        }
    }

    /// `link` holds everything up to `seq`.
    pub fn on_ack(&mut self, link: LinkId, seq: u64) {
        for (tx, _) in self.acks.ack(link, seq) {
            let _ = tx.send(Ok(()));
        }
    }

    /// Fails the writes that waited too long for their acks.
    pub fn expire_waits(&mut self, now: u64) {
        if self.acks.is_empty() {
            return;
        }
        for tx in self.acks.timed_out(now, self.timeout_ms) {
            self.counters.ack_failures += 1;
            let _ = tx.send(Err(format!(
                "replication timed out: a replica did not acknowledge the write within {} ms (the primary holds it)",
                self.timeout_ms
            )));
        }
    }

    /// Makes the links match `wanted` (replica member and its core's address); returns the
    /// new links, whose tasks the caller starts.
    pub fn set_replicas(&mut self, wanted: &[(MemberId, SocketAddr)]) -> Vec<Rc<ReplLink>> {
        let mut gone = Vec::new();
        self.links.retain(|l| {
            let keep = wanted.iter().any(|&(m, a)| m == l.member && a == l.addr);
            if !keep {
                gone.push(l.clone());
            }
            keep
        });
        for l in gone {
            l.state.borrow_mut().closed = true;
            l.doorbell.ring();
            for (tx, _) in self.acks.link_gone(l.id) {
                let _ = tx.send(Ok(()));
            }
        }
        let mut added = Vec::new();
        for &(member, addr) in wanted {
            if self
                .links
                .iter()
                .any(|l| l.member == member && l.addr == addr)
            {
                continue;
            }
            let link = Rc::new(ReplLink {
                id: self.next_link,
                member,
                addr,
                state: RefCell::new(LinkState::default()),
                doorbell: Doorbell::default(),
            });
            self.next_link += 1;
            self.links.push(link.clone());
            added.push(link);
        }
        added
    }

    /// This core stopped being a primary: links close, waiting writes fail.
    pub fn stop_all(&mut self) {
        self.recording = false;
        self.set_replicas(&[]);
        for tx in self.acks.drain() {
            let _ = tx.send(Err(
                "this member is no longer the primary of its shard group: retry".into(),
            ));
        }
    }

    /// A link finished its handshake: queue what the replica misses — the backlog from its
    /// position, or a reset and a full copy — and stream live operations from now on.
    pub fn start_stream(&mut self, link: &ReplLink, pos: &StreamPosition) -> CatchUp {
        let plan = catch_up(pos.applied, self.backlog.first(), self.backlog.next());
        let upto = self.backlog.next() - 1;
        let mut st = link.state.borrow_mut();
        st.out.clear();
        match plan {
            CatchUp::Backlog { from } => {
                self.counters.backlog_catchups += 1;
                for (_, frame) in self.backlog.since(from) {
                    st.out.extend_from_slice(frame);
                }
                encode_frame(&mut st.out, REPL_SYNCED, upto, None, &mut self.scratch);
            }
            CatchUp::FullCopy => {
                self.counters.full_copies += 1;
                encode_frame(&mut st.out, REPL_RESET, upto, None, &mut self.scratch);
                st.copy_from = Some(0);
            }
        }
        st.streaming = true;
        drop(st);
        link.doorbell.ring();
        plan
    }

    /// Adds the next slice of a running full copy to `link` (while little is queued); after
    /// the last one, the marker that the replica is whole up to the current sequence.
    pub fn fill_copy(&mut self, link: &ReplLink, shard: &Shard, now: u64) {
        let mut st = link.state.borrow_mut();
        let Some(from) = st.copy_from else { return };
        if st.out.len() >= COPY_LOW_WATER {
            return;
        }
        let scratch = &mut self.scratch;
        let out = &mut st.out;
        let next = shard.for_each_entry_in(from, COPY_SLOTS, |e| {
            if e.expires_at.is_some_and(|at| at <= now) {
                return;
            }
            let op = if e.tombstone {
                ReplOp::Del {
                    key: e.key,
                    version: e.version,
                }
            } else {
                ReplOp::Put {
                    key: e.key,
                    value: e.value,
                    version: e.version,
                    expires_at: e.expires_at,
                    tags: e.tags.iter().map(|t| Tag(t)).collect(),
                }
            };
            encode_frame(out, REPL_OP, 0, Some(&op), scratch);
        });
        st.copy_from = next;
        if next.is_none() {
            let upto = self.backlog.next() - 1;
            encode_frame(&mut st.out, REPL_SYNCED, upto, None, &mut self.scratch);
        }
    }
}

/// Replicates the change `cmd` just made on this core (it ran already) and returns the gate
/// its reply waits behind, if any. The state of each touched key is read back from the store,
/// so whatever the command did (NX, KEEPTTL, INCR) replicas get the result, with its version.
pub fn replicate(core: &mut CoreState, cmd: &Command<'_>, now: u64) -> Option<Gate> {
    if !core.repl.is_active() {
        return None;
    }
    let mut last = None;
    match cmd {
        Command::Set { key, .. } | Command::IncrBy { key, .. } => last = put_state(core, key, now),
        Command::Expire { key, .. } | Command::Persist { key } => {
            // The expiry changed without a new version: stamp one so replicas take it.
            let version = core.clock.stamp(now);
            if core.shard.restamp(key, version, now) {
                last = put_state(core, key, now);
            }
        }
        Command::MSet { pairs } => {
            for (k, _) in pairs {
                last = put_state(core, k, now).or(last);
            }
        }
        Command::Del { keys } => {
            for key in keys {
                let version = core.clock.stamp(now);
                last = Some(core.repl.push(&ReplOp::Del { key, version }));
            }
        }
        Command::Flush => last = Some(core.repl.push(&ReplOp::Flush)),
        Command::InvalidatePrefix { prefix } => {
            let cut = core.shard.max_version();
            last = Some(core.repl.push(&ReplOp::InvalidatePrefix { prefix, cut }));
        }
        Command::InvalidateTag { tag } => {
            let cut = core.shard.max_version();
            last = Some(core.repl.push(&ReplOp::InvalidateTag { tag, cut }));
        }
        _ => {}
    }
    core.repl.gate(last?, now)
}

/// Replicates `key`'s current entry; `None` when it holds none (nothing was stored).
fn put_state(core: &mut CoreState, key: &[u8], now: u64) -> Option<u64> {
    let CoreState { shard, repl, .. } = core;
    let e = shard.entry(key, now)?;
    let op = ReplOp::Put {
        key: e.key,
        value: e.value,
        version: e.version,
        expires_at: e.expires_at,
        tags: e.tags.iter().map(|t| Tag(t)).collect(),
    };
    Some(repl.push(&op))
}

/// Waits for `gate`, turning a dropped sender into an error.
pub async fn wait_gate(gate: Gate) -> Result<(), String> {
    match gate.await {
        Ok(r) => r,
        Err(_) => Err("the write's replication was abandoned (node stopping?)".into()),
    }
}
