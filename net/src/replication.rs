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
    /// The move ended: the writer sends what is queued, then stops.
    pub drain: bool,
}

/// Which keys a range-move link carries: those the next ring gives to `group` and that land
/// on core `core` of its `cores`.
pub struct MoveFilter {
    /// The map whose move this is.
    pub view: std::sync::Arc<crate::cluster_link::NodeView>,
    /// The receiving group.
    pub group: ringcache_cluster::GroupId,
    /// The receiving core.
    pub core: u32,
    /// The receiving member's cores.
    pub cores: u32,
}

impl MoveFilter {
    /// Whether `key` travels on this link.
    pub fn carries(&self, key: &[u8]) -> bool {
        let Some(m) = self.view.map.moving.as_ref() else {
            return false;
        };
        let h = ringcache_cluster::key_hash(key);
        m.next_ring.owner(h) == Some(self.group)
            && ringcache_cluster::core_for_hash(h, self.cores) == self.core
    }
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
    /// For a range-move link, the keys it carries (`None`: a replica link, every key).
    pub filter: Option<MoveFilter>,
    /// A range-move link's copy was received whole (the receiver answered its end marker).
    pub copied: Cell<bool>,
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
    /// Range-move streams started (this core as a source).
    pub move_streams: u64,
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
    /// Links of the running range move.
    moves: Vec<Rc<ReplLink>>,
    /// The range move those links serve (0: none).
    move_id: u64,
    /// The last range move this core finished streaming.
    pub moved: u64,
    /// Move links the current command's changes went to (they must ack it too).
    gate_extra: Vec<LinkId>,
    acks: AckTracker<oneshot::Sender<Result<(), String>>>,
    next_link: LinkId,
    scratch: Vec<u8>,
    /// Counters for STATS.
    pub counters: ReplCounters,
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
            moves: Vec::new(),
            move_id: 0,
            moved: 0,
            gate_extra: Vec::new(),
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

    /// Sends `op` (about `key`, if it names one) to every replica and to the range-move link
    /// that carries the key, keeping it in the backlog; returns its sequence.
    pub fn push(&mut self, op: &ReplOp<'_>, key: Option<&[u8]>) -> u64 {
        let seq = self.backlog.next();
        let mut frame = BytesMut::new();
        encode_frame(&mut frame, REPL_OP, seq, Some(op), &mut self.scratch);
        let frame = frame.freeze();
        for l in &self.links {
            queue(l, &frame);
        }
        for l in &self.moves {
            let carries = match (key, &l.filter) {
                (Some(k), Some(f)) => f.carries(k),
                _ => true,
            };
            if carries {
                if key.is_some() && !self.gate_extra.contains(&l.id) {
                    self.gate_extra.push(l.id);
                }
                queue(l, &frame);
            }
        }
        self.backlog.push(frame)
    }

    /// A gate for write `seq`, or `None` when the policy needs no ack: replica acks as the
    /// policy says, plus the range-move links the write went to (its new owner must hold it
    /// before the ring flips).
    pub fn gate(&mut self, seq: u64, now: u64) -> Option<Gate> {
        let mut ids: Vec<LinkId> = self.links.iter().map(|l| l.id).collect();
        let need = self.policy.replica_acks(ids.len()) + self.gate_extra.len();
        ids.append(&mut self.gate_extra);
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

    /// A range-move link's receiver holds the whole copy: the move may be done on this core.
    pub fn on_copied(&mut self, link: &ReplLink) {
        link.copied.set(true);
        self.check_moved();
    }

    fn check_moved(&mut self) {
        if self.move_id != 0 && self.moves.iter().all(|l| l.copied.get()) {
            self.moved = self.move_id;
        }
    }

    /// The range move `id` needs these links (receiving member, its core's address, which
    /// keys); returns the new links, whose tasks the caller starts. `id` 0 ends any move: its
    /// links send what they hold, then stop.
    pub fn set_moves(
        &mut self,
        id: u64,
        wanted: Vec<(MemberId, SocketAddr, MoveFilter)>,
    ) -> Vec<Rc<ReplLink>> {
        if id == self.move_id {
            return Vec::new();
        }
        for l in self.moves.drain(..) {
            l.state.borrow_mut().drain = true;
            l.doorbell.ring();
            for (tx, _) in self.acks.link_gone(l.id) {
                let _ = tx.send(Ok(()));
            }
        }
        self.move_id = id;
        if id == 0 {
            return Vec::new();
        }
        for (member, addr, filter) in wanted {
            let link = self.new_link(member, addr, Some(filter));
            self.moves.push(link);
        }
        self.check_moved();
        self.moves.clone()
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
            let link = self.new_link(member, addr, None);
            self.links.push(link.clone());
            added.push(link);
        }
        added
    }

    fn new_link(
        &mut self,
        member: MemberId,
        addr: SocketAddr,
        filter: Option<MoveFilter>,
    ) -> Rc<ReplLink> {
        let id = self.next_link;
        self.next_link += 1;
        Rc::new(ReplLink {
            id,
            member,
            addr,
            state: RefCell::new(LinkState::default()),
            doorbell: Doorbell::default(),
            filter,
            copied: Cell::new(false),
        })
    }

    /// This core stopped being a primary: links close, waiting writes fail.
    pub fn stop_all(&mut self) {
        self.recording = false;
        self.set_replicas(&[]);
        self.set_moves(0, Vec::new());
        for tx in self.acks.drain() {
            let _ = tx.send(Err(
                "this member is no longer the primary of its shard group: retry".into(),
            ));
        }
    }

    /// A link finished its handshake: queue what the replica misses — the backlog from its
    /// position, or a reset and a full copy — and stream live operations from now on.
    pub fn start_stream(&mut self, link: &ReplLink, pos: &StreamPosition) -> CatchUp {
        let plan = match link.filter {
            // A range move always copies: the receiver holds none of these keys yet.
            Some(_) => CatchUp::FullCopy,
            None => catch_up(pos.applied, self.backlog.first(), self.backlog.next()),
        };
        let upto = self.backlog.next() - 1;
        let mut st = link.state.borrow_mut();
        st.out.clear();
        match plan {
            CatchUp::FullCopy if link.filter.is_some() => {
                self.counters.move_streams += 1;
                st.copy_from = Some(0);
            }
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
        let filter = link.filter.as_ref();
        let next = shard.for_each_entry_in(from, COPY_SLOTS, |e| {
            if e.expires_at.is_some_and(|at| at <= now) {
                return;
            }
            if filter.is_some_and(|f| !f.carries(e.key)) {
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
                last = Some(core.repl.push(&ReplOp::Del { key, version }, Some(key)));
            }
        }
        Command::Flush => last = Some(core.repl.push(&ReplOp::Flush, None)),
        Command::InvalidatePrefix { prefix } => {
            let cut = core.shard.max_version();
            last = Some(
                core.repl
                    .push(&ReplOp::InvalidatePrefix { prefix, cut }, None),
            );
        }
        Command::InvalidateTag { tag } => {
            let cut = core.shard.max_version();
            last = Some(core.repl.push(&ReplOp::InvalidateTag { tag, cut }, None));
        }
        _ => {}
    }
    core.repl.gate(last?, now)
}

/// Passes on an operation this core applied from a range move (as the new owner) to its own
/// replicas.
pub fn forward_applied(core: &mut CoreState, op: &ReplOp<'_>, now: u64) {
    if !core.repl.is_active() {
        return;
    }
    match op {
        ReplOp::Put { key, .. } => {
            put_state(core, key, now);
        }
        ReplOp::Del { key, .. } => {
            core.repl.push(op, Some(key));
        }
        _ => {
            core.repl.push(op, None);
        }
    }
    core.repl.gate_extra.clear();
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
    Some(repl.push(&op, Some(key)))
}

/// Queues `frame` on `link` if it is streaming.
fn queue(link: &ReplLink, frame: &[u8]) {
    let mut st = link.state.borrow_mut();
    if st.streaming {
        st.out.extend_from_slice(frame);
        drop(st);
        link.doorbell.ring();
    }
}

/// Waits for `gate`, turning a dropped sender into an error.
pub async fn wait_gate(gate: Gate) -> Result<(), String> {
    match gate.await {
        Ok(r) => r,
        Err(_) => Err("the write's replication was abandoned (node stopping?)".into()),
    }
}
