//! Unit tests of the replication write path: gates per ack policy, replicas leaving, timeouts,
//! demotion, backlog catch-up and full copy, range-move filtering, and a primary and a replica
//! core talking through their bytes without sockets.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use ringcache_cluster::replication::{
    decode_op, CatchUp, ReplOp, StreamHello, StreamPosition, Tag, WriteAck,
};
use ringcache_cluster::{core_for_key, encode_body, key_hash, ClusterMap};
use ringcache_engine::Shard;
use ringcache_proto::control::encode_control;
use ringcache_proto::{
    decode_frame, Command, Expiry, Header, Limits, ReplFrame, Response, SetCond, FLAG_RESPONSE,
};

use super::*;
use crate::core_state::test_support::{core, map, view};
use crate::core_state::CoreState;
use crate::execute::execute;
use crate::map_change::on_map;
use crate::replica::StreamReceiver;
use crate::view::NodeView;
use crate::write_path::replicate;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

pub(super) fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

pub(super) fn put<'a>(key: &'a [u8], value: &'a [u8], version: u64) -> ReplOp<'a> {
    ReplOp::Put {
        key,
        value,
        version,
        expires_at: None,
        tags: Vec::new(),
    }
}

/// One frame as it would travel on a link.
#[derive(Debug)]
pub(super) struct Sent {
    kind: ReplFrame,
    header: Header,
    body: Vec<u8>,
}

impl Sent {
    fn seq(&self) -> u64 {
        self.header.request_id
    }

    fn op(&self) -> ReplOp<'_> {
        assert_eq!(self.kind, ReplFrame::Op, "not an Op frame: {self:?}");
        decode_op(&self.body).expect("an Op frame carries an operation")
    }
}

/// Decodes every frame of `buf`, which must hold whole frames only.
pub(super) fn frames(buf: &[u8]) -> Vec<Sent> {
    let limits = Limits::default();
    let mut out = Vec::new();
    let mut rest = buf;
    while !rest.is_empty() {
        let f = decode_frame(rest, &limits)
            .expect("well-formed frames")
            .expect("whole frames only");
        out.push(Sent {
            kind: ReplFrame::from_u8(f.header.opcode).expect("a replication frame"),
            header: f.header,
            body: f.body(rest).to_vec(),
        });
        rest = &rest[f.len()..];
    }
    out
}

/// What the writer of link `id` does next, and the frames it was handed.
pub(super) fn take(r: &mut Replicator, id: LinkId) -> (WriteStep, Vec<Sent>) {
    let mut buf = BytesMut::new();
    let step = r.next_write(id, &mut buf);
    (step, frames(&buf))
}

/// (kind, sequence) of each frame, for compact assertions.
pub(super) fn kinds(sent: &[Sent]) -> Vec<(ReplFrame, u64)> {
    sent.iter().map(|s| (s.kind, s.seq())).collect()
}

/// A recording replicator under `policy` with two replica links (members 101 and 102).
pub(super) fn two_replicas(policy: WriteAck) -> (Replicator, LinkId, LinkId) {
    let mut r = Replicator::new(policy, 1 << 20, 1000, 7);
    r.set_recording(true);
    let ids = r.set_replicas(&[(101, addr(8111)), (102, addr(8121))]);
    assert_eq!(ids.len(), 2);
    assert_eq!(r.replica_links(), 2);
    (r, ids[0], ids[1])
}

/// The encoded size of the Op frame carrying `op`.
pub(super) fn op_frame_len(op: &ReplOp<'_>) -> usize {
    let mut out = BytesMut::new();
    encode_frame(&mut out, ReplFrame::Op, 1, Some(op), &mut Vec::new());
    out.len()
}

/// An empty shard like a core's.
pub(super) fn shard() -> Shard {
    core(0, 1, WriteAck::All).shard
}

/// Keys `key0`, `key1`, ... for which `pick` holds, `n` of them.
pub(super) fn keys_where(n: usize, mut pick: impl FnMut(&[u8]) -> bool) -> Vec<Vec<u8>> {
    let keys: Vec<Vec<u8>> = (0..100_000)
        .map(|i| format!("key{i}").into_bytes())
        .filter(|k| pick(k))
        .take(n)
        .collect();
    assert_eq!(keys.len(), n, "not enough keys found");
    keys
}

/// A map where group 1 (primary member 1 with `replicas` replicas) serves the whole ring and
/// group 2 (primary member 2) is joining it: range move 7. Every member has two cores.
pub(super) fn moving_map(replicas: u32) -> ClusterMap {
    crate::core_state::test_support::joining_map(replicas, 2)
}

/// The move filters of group 2's two cores in `v`.
pub(super) fn filters(v: &Arc<NodeView>) -> [MoveFilter; 2] {
    [0, 1].map(|core| MoveFilter {
        view: v.clone(),
        group: 2,
        core,
        cores: 2,
    })
}

mod catch_up;
mod end_to_end;
mod gates;
mod leaving;
mod moves;
mod string_ops;
mod wakes;
