//! Replication decisions, without sockets: what a primary core sends (operations stamped with
//! the core's stream sequence), how a rejoining replica catches up (backlog or full copy), when
//! a write has the acks its policy asks for, and where a replica core stands on each stream.
//! The node carries these out over its peer connections.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// How many acknowledgements a write waits for before the client is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum WriteAck {
    /// Every live replica (the default: an acknowledged write survives any single failure).
    #[default]
    All,
    /// A majority of the group, the primary included.
    Quorum,
    /// The primary alone.
    One,
}

impl WriteAck {
    /// Replica acks needed in a group whose primary has `replicas` live replicas.
    pub fn replica_acks(self, replicas: usize) -> usize {
        match self {
            WriteAck::All => replicas,
            // Group of n = replicas + 1; a majority is n/2 + 1, the primary is one of them.
            WriteAck::Quorum => replicas.div_ceil(2),
            WriteAck::One => 0,
        }
    }
}

impl std::str::FromStr for WriteAck {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "all" => Ok(WriteAck::All),
            "quorum" => Ok(WriteAck::Quorum),
            "one" => Ok(WriteAck::One),
            other => Err(format!(
                "unknown write-ack policy {other:?} (all, quorum, one)"
            )),
        }
    }
}

/// One replicated change, as it travels from a primary core to a replica core.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReplOp<'a> {
    /// `key` now holds `value` at `version`, expiring at the absolute time `expires_at`.
    Put {
        /// The key.
        #[serde(borrow, with = "serde_bytes")]
        key: &'a [u8],
        /// The value.
        #[serde(borrow, with = "serde_bytes")]
        value: &'a [u8],
        /// The primary's version stamp.
        version: u64,
        /// Absolute expiry (Unix ms), so copies expire together.
        expires_at: Option<u64>,
        /// The entry's tags.
        #[serde(borrow)]
        tags: Vec<Tag<'a>>,
    },
    /// `key` was deleted at `version` (the replica keeps a tombstone).
    Del {
        /// The key.
        #[serde(borrow, with = "serde_bytes")]
        key: &'a [u8],
        /// The delete's version stamp.
        version: u64,
    },
    /// Keys starting with `prefix`, written at or before `cut`, are gone.
    InvalidatePrefix {
        /// The prefix.
        #[serde(borrow, with = "serde_bytes")]
        prefix: &'a [u8],
        /// The primary's newest version when it invalidated.
        cut: u64,
    },
    /// Keys tagged `tag`, written at or before `cut`, are gone.
    InvalidateTag {
        /// The tag.
        #[serde(borrow, with = "serde_bytes")]
        tag: &'a [u8],
        /// The primary's newest version when it invalidated.
        cut: u64,
    },
    /// Everything is gone.
    Flush,
}

/// A tag, borrowed from the buffer it was decoded from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag<'a>(#[serde(borrow, with = "serde_bytes")] pub &'a [u8]);

/// The first frame on a replication connection: who streams, from which core.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamHello {
    /// Identifies the primary core's stream (new at every start of the core).
    pub stream: u64,
    /// The primary core sending it.
    pub primary_core: u32,
    /// How many cores the primary has (a replica core with another count keeps only its keys).
    pub primary_cores: u32,
    /// The group the stream belongs to.
    pub group: u32,
    /// A range move, not replication: the receiver keeps its own data and answers no position.
    pub moving: bool,
    /// The cluster secret, when the nodes have one.
    pub secret: Option<String>,
}

/// The replica's answer to [`StreamHello`]: the last sequence it holds of that stream, if it
/// holds the stream whole (else the primary sends a full copy).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamPosition {
    /// Last sequence applied, when the stream's copy is complete.
    pub applied: Option<u64>,
}

/// How a replica that (re)connects is brought up to date.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CatchUp {
    /// Replay the backlog from this sequence on.
    Backlog {
        /// First sequence to send.
        from: u64,
    },
    /// Clear the replica's copy and stream every entry.
    FullCopy,
}

/// Chooses how to catch up a replica at `position` when the backlog holds sequences
/// `first..next` (empty when `first == next`).
pub fn catch_up(position: Option<u64>, first: u64, next: u64) -> CatchUp {
    match position {
        // Everything after `p` is still held (or nothing was written since).
        Some(p) if p < next && p + 1 >= first => CatchUp::Backlog { from: p + 1 },
        _ => CatchUp::FullCopy,
    }
}

/// A primary core's bounded record of its latest operations, each encoded once, so a replica
/// back from a short outage gets only what it missed. Invariant: sequences are consecutive,
/// `first()..next()`, and `bytes` is the sum of the held records' lengths.
#[derive(Debug, Default)]
pub struct Backlog<R> {
    records: VecDeque<(u64, R)>,
    next: u64,
    bytes: usize,
    limit: usize,
}

impl<R: AsRef<[u8]>> Backlog<R> {
    /// An empty backlog holding at most `limit` bytes, whose first sequence will be 1.
    pub fn new(limit: usize) -> Self {
        Backlog {
            records: VecDeque::new(),
            next: 1,
            bytes: 0,
            limit,
        }
    }

    /// The sequence the next record gets.
    pub fn next(&self) -> u64 {
        self.next
    }

    /// The oldest sequence held (`next()` when empty).
    pub fn first(&self) -> u64 {
        self.records.front().map_or(self.next, |(s, _)| *s)
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Takes the next sequence for `record`, dropping the oldest records over the limit.
    pub fn push(&mut self, record: R) -> u64 {
        let seq = self.next;
        self.next += 1;
        self.bytes += record.as_ref().len();
        self.records.push_back((seq, record));
        while self.bytes > self.limit {
            match self.records.pop_front() {
                Some((_, r)) => self.bytes -= r.as_ref().len(),
                None => break,
            }
        }
        seq
    }

    /// The records from sequence `from` on, oldest first.
    pub fn since(&self, from: u64) -> impl Iterator<Item = &(u64, R)> {
        let skip = from.saturating_sub(self.first()) as usize;
        self.records.iter().skip(skip)
    }
}

/// Identifies one replica link of a primary core.
pub type LinkId = u64;

/// A write waiting for its acks.
#[derive(Debug)]
struct PendingWrite<W> {
    seq: u64,
    /// Links that must still acknowledge (at most one per replica member).
    waiting: Vec<LinkId>,
    /// Acks still needed.
    need: usize,
    /// When it started waiting (ms).
    since: u64,
    waiter: W,
}

/// Counts acknowledgements per write: a write is done once `need` of the links it was sent to
/// have acknowledged its sequence (acks are cumulative: a link that acknowledges `s` holds
/// everything it was sent up to `s`), or once too few of its links remain to ever say so —
/// a link that is gone from the map stops counting ([`AckTracker::link_gone`]).
#[derive(Debug)]
pub struct AckTracker<W> {
    pending: VecDeque<PendingWrite<W>>,
}

impl<W> Default for AckTracker<W> {
    fn default() -> Self {
        AckTracker {
            pending: VecDeque::new(),
        }
    }
}

/// How a write waiting for acks ended.
#[derive(Debug, PartialEq, Eq)]
pub enum AckOutcome {
    /// It has the acks asked for.
    Acked,
    /// Its replicas left the group before acknowledging; fewer copies exist than asked for,
    /// but every live member holds it.
    Degraded,
}

impl<W> AckTracker<W> {
    /// Writes waiting.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether no write waits.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Registers write `seq`, sent to `links` at time `now`, needing `need` of them.
    /// Returns the waiter back when nothing needs waiting for.
    pub fn add(
        &mut self,
        seq: u64,
        links: Vec<LinkId>,
        need: usize,
        waiter: W,
        now: u64,
    ) -> Option<W> {
        if need == 0 || links.is_empty() {
            return Some(waiter);
        }
        self.pending.push_back(PendingWrite {
            seq,
            need: need.min(links.len()),
            waiting: links,
            since: now,
            waiter,
        });
        None
    }

    /// The writes that have waited longer than `limit` ms at `now` (oldest first).
    pub fn timed_out(&mut self, now: u64, limit: u64) -> Vec<W> {
        let mut out = Vec::new();
        while self
            .pending
            .front()
            .is_some_and(|p| now.saturating_sub(p.since) > limit)
        {
            if let Some(p) = self.pending.pop_front() {
                out.push(p.waiter);
            }
        }
        out
    }

    /// `link` holds everything up to `seq`: returns the writes now done.
    pub fn ack(&mut self, link: LinkId, seq: u64) -> Vec<(W, AckOutcome)> {
        let mut done = Vec::new();
        let mut i = 0;
        while i < self.pending.len() {
            let p = &mut self.pending[i];
            if p.seq > seq {
                break;
            }
            if let Some(pos) = p.waiting.iter().position(|&l| l == link) {
                p.waiting.swap_remove(pos);
                p.need -= 1;
            }
            if p.need == 0 {
                if let Some(p) = self.pending.remove(i) {
                    done.push((p.waiter, AckOutcome::Acked));
                }
            } else {
                i += 1;
            }
        }
        done
    }

    /// `link` will never acknowledge (its member left the map): returns the writes now done.
    pub fn link_gone(&mut self, link: LinkId) -> Vec<(W, AckOutcome)> {
        let mut done = Vec::new();
        let mut i = 0;
        while i < self.pending.len() {
            let p = &mut self.pending[i];
            if let Some(pos) = p.waiting.iter().position(|&l| l == link) {
                p.waiting.swap_remove(pos);
                p.need = p.need.min(p.waiting.len());
            }
            if p.need == 0 {
                if let Some(p) = self.pending.remove(i) {
                    done.push((p.waiter, AckOutcome::Degraded));
                }
            } else {
                i += 1;
            }
        }
        done
    }

    /// Every write still waiting (at shutdown or when the core stops being primary).
    pub fn drain(&mut self) -> impl Iterator<Item = W> + '_ {
        self.pending.drain(..).map(|p| p.waiter)
    }
}

/// Where a replica core stands on one primary stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StreamState {
    /// A full copy is under way: the position means nothing until it ends.
    Copying,
    /// Whole up to `applied`.
    Synced,
}

#[derive(Clone, Copy, Debug)]
struct Stream {
    id: u64,
    applied: u64,
    state: StreamState,
}

/// A replica core's positions on the streams it has received (the latest few), and whether the
/// current one is caught up (then the core may serve reads).
#[derive(Debug, Default)]
pub struct StreamTable {
    streams: Vec<Stream>,
    /// The stream being received and the connection it arrives on.
    current: Option<(u64, u64)>,
    /// Operations applied since start (reported as the replication position).
    pub applied_total: u64,
}

/// Streams remembered per replica core.
const STREAMS_KEPT: usize = 8;

impl StreamTable {
    /// A primary core says hello on `stream` over connection `conn`: the position to answer.
    pub fn hello(&mut self, stream: u64, conn: u64) -> StreamPosition {
        self.current = Some((stream, conn));
        let applied = self
            .streams
            .iter()
            .find(|s| s.id == stream && s.state == StreamState::Synced)
            .map(|s| s.applied);
        StreamPosition { applied }
    }

    fn entry(&mut self, stream: u64) -> &mut Stream {
        if let Some(i) = self.streams.iter().position(|s| s.id == stream) {
            return &mut self.streams[i];
        }
        if self.streams.len() >= STREAMS_KEPT {
            self.streams.remove(0);
        }
        self.streams.push(Stream {
            id: stream,
            applied: 0,
            state: StreamState::Copying,
        });
        let last = self.streams.len() - 1;
        &mut self.streams[last]
    }

    /// A full copy of `stream` begins (the caller clears the keys it covers): every other
    /// stream's data is gone with it.
    pub fn reset(&mut self, stream: u64) {
        self.streams.retain(|s| s.id == stream);
        let s = self.entry(stream);
        s.state = StreamState::Copying;
        s.applied = 0;
    }

    /// Operation `seq` of `stream` was applied.
    pub fn applied(&mut self, stream: u64, seq: u64) {
        self.applied_total += 1;
        let s = self.entry(stream);
        s.applied = s.applied.max(seq);
    }

    /// `stream` is whole up to `seq` (its backlog replay or copy ended).
    pub fn synced(&mut self, stream: u64, seq: u64) {
        let s = self.entry(stream);
        s.state = StreamState::Synced;
        s.applied = s.applied.max(seq);
    }

    /// Connection `conn` of `stream` dropped: this core is no longer caught up, unless the
    /// stream already continues on a newer connection.
    pub fn disconnected(&mut self, stream: u64, conn: u64) {
        if self.current == Some((stream, conn)) {
            self.current = None;
        }
    }

    /// Whether the stream being received is whole (the core may serve reads).
    pub fn caught_up(&self) -> bool {
        self.current.is_some_and(|(c, _)| {
            self.streams
                .iter()
                .any(|s| s.id == c && s.state == StreamState::Synced)
        })
    }
}

/// Serialises a replication body.
pub fn encode_op(op: &ReplOp<'_>) -> Vec<u8> {
    let mut v = Vec::new();
    encode_op_into(op, &mut v);
    v
}

/// Appends the serialised `op` to `out` (a reused buffer).
pub fn encode_op_into(op: &ReplOp<'_>, out: &mut Vec<u8>) {
    // Serialising plain data into a Vec cannot fail.
    let _ = bincode::serialize_into(out, op);
}

/// Decodes a replication body (bounded by the frame; never panics on bad input).
pub fn decode_op(b: &[u8]) -> Result<ReplOp<'_>, String> {
    use bincode::Options;
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .allow_trailing_bytes()
        .with_limit(b.len() as u64 + 64)
        .deserialize(b)
        .map_err(|e| format!("bad replication message: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn policies_count_replica_acks() {
        assert_eq!(WriteAck::All.replica_acks(2), 2);
        assert_eq!(WriteAck::Quorum.replica_acks(2), 1);
        assert_eq!(WriteAck::Quorum.replica_acks(1), 1);
        assert_eq!(WriteAck::Quorum.replica_acks(0), 0);
        assert_eq!(WriteAck::One.replica_acks(2), 0);
        assert_eq!("quorum".parse::<WriteAck>(), Ok(WriteAck::Quorum));
        assert!("most".parse::<WriteAck>().is_err());
    }

    #[test]
    fn catch_up_uses_the_backlog_only_when_it_holds_the_gap() {
        assert_eq!(catch_up(Some(10), 5, 20), CatchUp::Backlog { from: 11 });
        assert_eq!(catch_up(Some(4), 5, 20), CatchUp::Backlog { from: 5 });
        assert_eq!(catch_up(Some(3), 5, 20), CatchUp::FullCopy);
        assert_eq!(catch_up(Some(19), 20, 20), CatchUp::Backlog { from: 20 });
        assert_eq!(catch_up(None, 1, 20), CatchUp::FullCopy);
        // A position beyond what this stream ever issued belongs to another life of it.
        assert_eq!(catch_up(Some(40), 5, 20), CatchUp::FullCopy);
    }

    #[test]
    fn backlog_keeps_the_newest_records_within_its_limit() {
        let mut b: Backlog<Vec<u8>> = Backlog::new(10);
        for i in 0..6u8 {
            assert_eq!(b.push(vec![i; 3]), u64::from(i) + 1);
        }
        assert!(b.bytes() <= 10);
        assert_eq!(b.first(), 4);
        assert_eq!(b.next(), 7);
        let seqs: Vec<u64> = b.since(5).map(|(s, _)| *s).collect();
        assert_eq!(seqs, vec![5, 6]);
        assert_eq!(b.since(1).count(), 3);
    }

    #[test]
    fn writes_finish_on_enough_acks_or_when_their_links_go() {
        let mut t: AckTracker<&str> = AckTracker::default();
        assert_eq!(t.add(1, vec![7], 0, "one", 0), Some("one"));
        assert_eq!(t.add(1, vec![7, 8], 2, "a", 0), None);
        assert_eq!(t.add(2, vec![7, 8], 1, "b", 0), None);
        assert_eq!(t.add(3, vec![7, 8], 2, "c", 0), None);
        assert!(t.ack(7, 1).is_empty());
        assert_eq!(
            t.ack(8, 2),
            vec![("a", AckOutcome::Acked), ("b", AckOutcome::Acked)]
        );
        assert_eq!(t.link_gone(7), vec![]);
        assert_eq!(t.ack(8, 3), vec![("c", AckOutcome::Acked)]);
        assert_eq!(t.add(4, vec![7], 1, "d", 0), None);
        assert_eq!(t.link_gone(7), vec![("d", AckOutcome::Degraded)]);
        assert!(t.is_empty());
        t.add(5, vec![7], 1, "e", 100);
        t.add(6, vec![7], 1, "f", 200);
        assert!(t.timed_out(150, 100).is_empty());
        assert_eq!(t.timed_out(250, 100), vec!["e"]);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn a_stream_serves_reads_only_once_synced() {
        let mut s = StreamTable::default();
        assert_eq!(s.hello(1, 10), StreamPosition { applied: None });
        s.reset(1);
        s.applied(1, 5);
        assert!(!s.caught_up());
        s.disconnected(1, 10);
        // A copy that did not finish is no position at all.
        assert_eq!(s.hello(1, 11), StreamPosition { applied: None });
        s.reset(1);
        s.applied(1, 9);
        s.synced(1, 8);
        assert!(s.caught_up());
        // The end of an older connection seen late does not matter.
        s.disconnected(1, 10);
        assert!(s.caught_up());
        s.disconnected(1, 11);
        assert!(!s.caught_up());
        assert_eq!(s.hello(1, 12), StreamPosition { applied: Some(9) });
        assert_eq!(s.applied_total, 2);
    }

    #[test]
    fn ops_round_trip_and_garbage_is_an_error() {
        let ops = [
            ReplOp::Put {
                key: b"k",
                value: b"v",
                version: 3,
                expires_at: Some(9),
                tags: vec![Tag(b"t")],
            },
            ReplOp::Del {
                key: b"k",
                version: 4,
            },
            ReplOp::InvalidatePrefix {
                prefix: b"p",
                cut: 5,
            },
            ReplOp::InvalidateTag { tag: b"t", cut: 6 },
            ReplOp::Flush,
        ];
        for op in &ops {
            let b = encode_op(op);
            assert_eq!(&decode_op(&b).unwrap(), op);
        }
        assert!(decode_op(&[0xff; 5]).is_err());
        assert!(decode_op(&[]).is_err());
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_op(&b);
        }

        #[test]
        fn tracker_finishes_each_write_once(acks in proptest::collection::vec((0u64..3, 1u64..20), 0..60)) {
            let mut t: AckTracker<u64> = AckTracker::default();
            for seq in 1..20 {
                t.add(seq, vec![0, 1, 2], 2, seq, 0);
            }
            let mut seen = std::collections::HashSet::new();
            for (link, seq) in acks {
                for (w, _) in t.ack(link, seq) {
                    prop_assert!(seen.insert(w));
                }
            }
            for link in 0..3 {
                for (w, _) in t.link_gone(link) {
                    prop_assert!(seen.insert(w));
                }
            }
            prop_assert_eq!(seen.len(), 19);
            prop_assert!(t.is_empty());
        }
    }
}
