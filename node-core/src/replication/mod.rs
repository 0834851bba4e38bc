//! The primary side of replication on one core: each change to this core's keys is encoded
//! once, kept in the backlog and queued on every replica link; a write's reply waits behind a
//! gate until the acks its policy asks for arrive. The policy decisions (acks per mode, backlog
//! or full copy) come from `ringcache_cluster::replication`; the runtime takes what this state
//! queues: gates that opened ([`Replicator::take_done`]) and links with new bytes
//! ([`Replicator::take_wakes`]).

mod full_copy;
pub mod handshake;
mod link;
mod move_filter;

use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use ringcache_cluster::replication::{
    catch_up, encode_op_into, AckTracker, Backlog, CatchUp, ReplOp, StreamPosition, WriteAck,
};
use ringcache_cluster::MemberId;
use ringcache_proto::control::encode_control;
use ringcache_proto::ReplFrame;

pub use link::{LinkState, ReplLink, WriteStep};
pub use move_filter::MoveFilter;
pub use ringcache_cluster::replication::LinkId;

/// Names a write waiting for its replica acks; the runtime maps it to the reply's waiter.
pub type GateId = u64;

/// How a gate opened: `Ok` once the write has its acks, `Err` with the reason otherwise.
pub type GateResult = Result<(), String>;

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
    /// Replica links of the group.
    links: Vec<ReplLink>,
    /// Links of the running range move.
    moves: Vec<ReplLink>,
    /// Links closed or draining, kept until their task says it finished.
    retired: Vec<ReplLink>,
    /// The range move `moves` serve (0: none).
    move_id: u64,
    /// The last range move this core finished streaming.
    pub moved: u64,
    /// Move links the current command's changes went to (they must ack it too).
    gate_extra: Vec<LinkId>,
    acks: AckTracker<GateId>,
    next_link: LinkId,
    next_gate: GateId,
    scratch: Vec<u8>,
    /// Gates that opened since the runtime last looked.
    done: Vec<(GateId, GateResult)>,
    /// Links that got bytes or must stop since the runtime last looked.
    wake: Vec<LinkId>,
    /// Counters for STATS.
    pub counters: ReplCounters,
}

/// Appends a replication frame carrying `op` (or no body) to `out`.
fn encode_frame(
    out: &mut BytesMut,
    frame: ReplFrame,
    seq: u64,
    op: Option<&ReplOp<'_>>,
    scratch: &mut Vec<u8>,
) {
    scratch.clear();
    if let Some(op) = op {
        encode_op_into(op, scratch);
    }
    encode_control(out, frame, false, seq, 0, scratch);
}

/// Queues `frame` on `link` if it is streaming, and files it for waking.
fn queue(link: &mut ReplLink, frame: &[u8], wake: &mut Vec<LinkId>) {
    if link.state.streaming {
        link.state.out.extend_from_slice(frame);
        wake_link(link, wake);
    }
}

fn wake_link(link: &mut ReplLink, wake: &mut Vec<LinkId>) {
    if !link.woken {
        link.woken = true;
        wake.push(link.id);
    }
}

impl Replicator {
    /// A replicator with no replicas yet, for stream `stream`.
    pub fn new(policy: WriteAck, backlog_bytes: usize, timeout_ms: u64, stream: u64) -> Self {
        Replicator {
            policy,
            timeout_ms,
            stream,
            backlog: Backlog::new(backlog_bytes),
            recording: false,
            links: Vec::new(),
            moves: Vec::new(),
            retired: Vec::new(),
            move_id: 0,
            moved: 0,
            gate_extra: Vec::new(),
            acks: AckTracker::default(),
            next_link: 1,
            next_gate: 1,
            scratch: Vec::new(),
            done: Vec::new(),
            wake: Vec::new(),
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
    pub fn replica_links(&self) -> usize {
        self.links.len()
    }

    /// Links that finished their handshake.
    pub fn streaming_links(&self) -> usize {
        self.links.iter().filter(|l| l.state.streaming).count()
    }

    /// Writes waiting for acks.
    pub fn pending_acks(&self) -> usize {
        self.acks.len()
    }

    /// The sequence the next change gets.
    pub fn next_seq(&self) -> u64 {
        self.backlog.next()
    }

    /// Link `id`, wherever it stands (live, draining or closed), until its task finished.
    pub fn link(&self, id: LinkId) -> Option<&ReplLink> {
        self.links
            .iter()
            .chain(&self.moves)
            .chain(&self.retired)
            .find(|l| l.id == id)
    }

    fn link_mut(&mut self, id: LinkId) -> Option<&mut ReplLink> {
        self.links
            .iter_mut()
            .chain(self.moves.iter_mut())
            .chain(self.retired.iter_mut())
            .find(|l| l.id == id)
    }

    /// Gates that opened since the last call, with how.
    pub fn take_done(&mut self) -> Vec<(GateId, GateResult)> {
        let mut out = Vec::new();
        self.drain_done(|gate, result| out.push((gate, result)));
        out
    }

    /// Hands each gate that opened since the last call to `f`; the queue keeps its capacity,
    /// so the per-write path allocates nothing here.
    pub fn drain_done(&mut self, mut f: impl FnMut(GateId, GateResult)) {
        for (gate, result) in self.done.drain(..) {
            f(gate, result);
        }
    }

    /// Links whose task must look at them again (new bytes, closing) since the last call.
    pub fn take_wakes(&mut self) -> Vec<LinkId> {
        let mut out = Vec::new();
        self.drain_wakes(|id| out.push(id));
        out
    }

    /// Hands each link to wake since the last call to `f`; the queue keeps its capacity.
    pub fn drain_wakes(&mut self, mut f: impl FnMut(LinkId)) {
        let mut wake = std::mem::take(&mut self.wake);
        for &id in &wake {
            if let Some(l) = self.link_mut(id) {
                l.woken = false;
            }
            f(id);
        }
        wake.clear();
        self.wake = wake;
    }

    /// Whether anything waits for the runtime (gates opened, links to wake).
    pub fn has_output(&self) -> bool {
        !self.done.is_empty() || !self.wake.is_empty()
    }

    /// Sends `op` (about `key`, if it names one) to every replica and to the range-move link
    /// that carries the key, keeping it in the backlog; returns its sequence.
    pub fn push(&mut self, op: &ReplOp<'_>, key: Option<&[u8]>) -> u64 {
        let seq = self.backlog.next();
        let mut frame = BytesMut::new();
        encode_frame(&mut frame, ReplFrame::Op, seq, Some(op), &mut self.scratch);
        let frame = frame.freeze();
        for l in &mut self.links {
            queue(l, &frame, &mut self.wake);
        }
        for l in &mut self.moves {
            let carries = match (key, &l.filter) {
                (Some(k), Some(f)) => f.carries(k),
                _ => true,
            };
            if carries {
                if key.is_some() && !self.gate_extra.contains(&l.id) {
                    self.gate_extra.push(l.id);
                }
                queue(l, &frame, &mut self.wake);
            }
        }
        self.backlog.push(frame)
    }

    /// A gate for write `seq` made at `now`, or `None` when the policy needs no ack: replica
    /// acks as the policy says, plus the range-move links the write went to (its new owner
    /// must hold it before the ring flips).
    pub fn gate(&mut self, seq: u64, now: u64) -> Option<GateId> {
        let ids: Vec<LinkId> = self.links.iter().map(|l| l.id).collect();
        let need = self.policy.replica_acks(ids.len());
        let required = std::mem::take(&mut self.gate_extra);
        let gate = self.next_gate;
        self.next_gate += 1;
        match self.acks.add(seq, ids, need, required, gate, now) {
            Some(_) => None,
            None => Some(gate),
        }
    }

    /// Forgets the move links the last change went to (a change that waits on no gate).
    pub(crate) fn clear_gate_extra(&mut self) {
        self.gate_extra.clear();
    }

    /// `link` holds everything up to `seq`.
    pub fn on_ack(&mut self, link: LinkId, seq: u64) {
        for (gate, _) in self.acks.ack(link, seq) {
            self.done.push((gate, Ok(())));
        }
    }

    /// A range-move link's receiver holds the whole copy: the move may be done on this core.
    pub fn on_copied(&mut self, link: LinkId) {
        if let Some(l) = self.link_mut(link) {
            l.copied = true;
        }
        self.check_moved();
    }

    fn check_moved(&mut self) {
        if self.move_id != 0 && self.moves.iter().all(|l| l.copied) {
            self.moved = self.move_id;
        }
    }

    /// Retires `link`: its waits stop counting it, and its task is woken to close or drain.
    fn retire(&mut self, mut link: ReplLink, drain: bool) {
        if drain {
            link.state.drain = true;
        } else {
            link.state.closed = true;
        }
        wake_link(&mut link, &mut self.wake);
        for (gate, _) in self.acks.link_gone(link.id) {
            self.done.push((gate, Ok(())));
        }
        self.retired.push(link);
    }

    /// The range move `id` needs these links (receiving member, its core's address, which
    /// keys); returns the new links, whose tasks the caller starts. `id` 0 ends any move: its
    /// links send what they hold, then stop.
    pub fn set_moves(
        &mut self,
        id: u64,
        wanted: Vec<(MemberId, SocketAddr, MoveFilter)>,
    ) -> Vec<LinkId> {
        if id == self.move_id {
            return Vec::new();
        }
        for l in std::mem::take(&mut self.moves) {
            self.retire(l, true);
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
        self.moves.iter().map(|l| l.id).collect()
    }

    /// Fails the writes that waited too long for their acks at `now`.
    pub fn expire_waits(&mut self, now: u64) {
        if self.acks.is_empty() {
            return;
        }
        for gate in self.acks.timed_out(now, self.timeout_ms) {
            self.counters.ack_failures += 1;
            self.done.push((
                gate,
                Err(format!(
                    "replication timed out: a replica did not acknowledge the write within {} ms (the primary holds it)",
                    self.timeout_ms
                )),
            ));
        }
    }

    /// Makes the replica links match `wanted` (replica member and its core's address); returns
    /// the new links, whose tasks the caller starts.
    pub fn set_replicas(&mut self, wanted: &[(MemberId, SocketAddr)]) -> Vec<LinkId> {
        let (keep, gone): (Vec<ReplLink>, Vec<ReplLink>) = std::mem::take(&mut self.links)
            .into_iter()
            .partition(|l| wanted.iter().any(|&(m, a)| m == l.member && a == l.addr));
        self.links = keep;
        for l in gone {
            self.retire(l, false);
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
            added.push(link.id);
            self.links.push(link);
        }
        added
    }

    fn new_link(
        &mut self,
        member: MemberId,
        addr: SocketAddr,
        filter: Option<MoveFilter>,
    ) -> ReplLink {
        let id = self.next_link;
        self.next_link += 1;
        ReplLink {
            id,
            member,
            addr,
            state: LinkState::default(),
            filter,
            copied: false,
            woken: false,
        }
    }

    /// This core stopped being a primary: links close, waiting writes fail.
    pub fn stop_all(&mut self) {
        self.recording = false;
        // Fail the waiting writes before their links go: a link that leaves completes what it
        // owed as degraded, which a demoted primary must not answer as success.
        for gate in self.acks.drain() {
            self.counters.ack_failures += 1;
            self.done.push((
                gate,
                Err("this member is no longer the primary of its shard group: retry".into()),
            ));
        }
        self.set_replicas(&[]);
        self.set_moves(0, Vec::new());
    }

    /// A link finished its handshake: queue what the peer misses — the backlog from its
    /// position, or a reset and a full copy — and stream live operations from now on.
    /// `None` when the link is gone.
    pub fn start_stream(&mut self, id: LinkId, pos: &StreamPosition) -> Option<CatchUp> {
        let (first, next) = (self.backlog.first(), self.backlog.next());
        let upto = next - 1;
        let mut scratch = std::mem::take(&mut self.scratch);
        let mut wake = std::mem::take(&mut self.wake);
        let Some(link) = self.link_mut(id) else {
            self.scratch = scratch;
            self.wake = wake;
            return None;
        };
        let plan = match link.filter {
            // A range move always copies: the receiver holds none of these keys yet.
            Some(_) => CatchUp::FullCopy,
            None => catch_up(pos.applied, first, next),
        };
        let moving = link.filter.is_some();
        let st = &mut link.state;
        st.out.clear();
        match plan {
            CatchUp::FullCopy if moving => st.copy_from = Some(0),
            CatchUp::Backlog { .. } => {}
            CatchUp::FullCopy => {
                encode_frame(&mut st.out, ReplFrame::Reset, upto, None, &mut scratch);
                st.copy_from = Some(0);
            }
        }
        st.streaming = true;
        wake_link(link, &mut wake);
        self.wake = wake;
        if let CatchUp::Backlog { from } = plan {
            let mut out = BytesMut::new();
            for (_, frame) in self.backlog.since(from) {
                out.extend_from_slice(frame);
            }
            encode_frame(&mut out, ReplFrame::Synced, upto, None, &mut scratch);
            if let Some(l) = self.link_mut(id) {
                l.state.out = out;
            }
        }
        self.scratch = scratch;
        match plan {
            CatchUp::FullCopy if moving => self.counters.move_streams += 1,
            CatchUp::FullCopy => self.counters.full_copies += 1,
            CatchUp::Backlog { .. } => self.counters.backlog_catchups += 1,
        }
        Some(plan)
    }

    /// The writer of link `id` takes what is queued into `buf` (swapped, so neither buffer is
    /// reallocated) and learns what to do next. A running full copy is never `Idle`: a slice
    /// may carry no key (slots emptied by dropped keys), and nothing else would wake the writer
    /// to take the next one.
    pub fn next_write(&mut self, id: LinkId, buf: &mut BytesMut) -> WriteStep {
        let Some(link) = self.link_mut(id) else {
            return WriteStep::Closed;
        };
        let st = &mut link.state;
        if st.closed {
            return WriteStep::Closed;
        }
        if st.broken {
            return WriteStep::Broken;
        }
        if st.drain && st.out.is_empty() {
            // A finished range move: what it held is written; the receiver applies it.
            st.closed = true;
            return WriteStep::Drained;
        }
        std::mem::swap(buf, &mut st.out);
        match (buf.is_empty(), st.copy_from) {
            (false, _) => WriteStep::Write,
            (true, Some(_)) => WriteStep::Copying,
            (true, None) => WriteStep::Idle,
        }
    }

    /// Link `id`'s connection failed (the ack reader saw it): the writer starts over.
    pub fn link_broken(&mut self, id: LinkId) {
        let mut wake = std::mem::take(&mut self.wake);
        if let Some(l) = self.link_mut(id) {
            l.state.broken = true;
            wake_link(l, &mut wake);
        }
        self.wake = wake;
    }

    /// A session of link `id` ended: what was queued is resent by the next catch-up. Answers
    /// whether it had been streaming, and whether the link should connect again (not when it
    /// is closed, gone, or a finished range move: the ring switched and the keys' new owner
    /// serves them).
    pub fn session_ended(&mut self, id: LinkId) -> (bool, bool) {
        let Some(link) = self.link_mut(id) else {
            return (false, false);
        };
        let st = &mut link.state;
        let was_streaming = st.streaming;
        st.streaming = false;
        st.broken = false;
        st.copy_from = None;
        st.out.clear();
        (was_streaming, !(st.closed || st.drain))
    }

    /// Link `id`'s task ended: the link is forgotten.
    pub fn link_finished(&mut self, id: LinkId) {
        self.retired.retain(|l| l.id != id);
        let gone: Vec<ReplLink> = self
            .links
            .iter()
            .position(|l| l.id == id)
            .map(|i| self.links.remove(i))
            .into_iter()
            .chain(
                self.moves
                    .iter()
                    .position(|l| l.id == id)
                    .map(|i| self.moves.remove(i)),
            )
            .collect();
        for l in gone {
            for (gate, _) in self.acks.link_gone(l.id) {
                self.done.push((gate, Ok(())));
            }
        }
    }
}

#[cfg(test)]
mod tests;
