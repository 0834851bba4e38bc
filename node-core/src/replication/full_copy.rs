//! A full copy on one link: the shard walked a slice at a time while little is queued, each
//! live entry (or tombstone) sent as an operation, then the marker that the peer is whole up to
//! the stream's current sequence.

use ringcache_cluster::replication::{LinkId, ReplOp, Tag};
use ringcache_engine::Shard;
use ringcache_proto::ReplFrame;

use super::{encode_frame, Replicator};

/// Bytes queued on a link below which a full copy adds its next slice.
pub const COPY_LOW_WATER: usize = 256 * 1024;
/// Slab slots a full copy walks per slice.
pub const COPY_SLOTS: usize = 2048;

impl Replicator {
    /// Adds the next slice of a running full copy to link `id` (while little is queued); after
    /// the last one, the marker that the peer is whole up to the current sequence.
    pub fn fill_copy(&mut self, id: LinkId, shard: &Shard, now: u64) {
        let upto = self.backlog.next() - 1;
        let mut scratch = std::mem::take(&mut self.scratch);
        if let Some(link) = self.link_mut(id) {
            let filter = link.filter.as_ref();
            let st = &mut link.state;
            if let Some(from) = st.copy_from {
                if st.out.len() < COPY_LOW_WATER {
                    let out = &mut st.out;
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
                        encode_frame(out, ReplFrame::Op, 0, Some(&op), &mut scratch);
                    });
                    st.copy_from = next;
                    if next.is_none() {
                        encode_frame(&mut st.out, ReplFrame::Synced, upto, None, &mut scratch);
                    }
                }
            }
        }
        self.scratch = scratch;
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use bytes::BytesMut;
    use ringcache_cluster::replication::{StreamPosition, WriteAck};
    use ringcache_engine::{SetOptions, Shard, ShardConfig};
    use ringcache_proto::{decode_frame, Limits, ReplFrame};

    use super::COPY_SLOTS;
    use crate::replication::{Replicator, WriteStep};

    /// Drives link 1's writer as the runtime does until it idles; returns the frames written.
    fn drain(r: &mut Replicator, shard: &Shard) -> Vec<u8> {
        let (mut buf, mut written) = (BytesMut::new(), Vec::new());
        for _ in 0..10_000 {
            r.fill_copy(1, shard, 10);
            match r.next_write(1, &mut buf) {
                WriteStep::Write => {
                    written.extend_from_slice(&buf);
                    buf.clear();
                }
                WriteStep::Copying => {}
                _ => break,
            }
        }
        written
    }

    #[test]
    fn a_copy_whose_first_slices_carry_nothing_still_finishes() {
        let mut shard = Shard::new(ShardConfig::default(), 0);
        let n = 3 * COPY_SLOTS;
        for i in 0..n {
            let k = format!("k{i}");
            shard
                .set(k.as_bytes(), b"v", &SetOptions::default(), 0, i as u64 + 1)
                .unwrap();
        }
        // Empty the first two slices' slots, as dropping another group's keys does.
        let early = |k: &[u8]| {
            std::str::from_utf8(&k[1..])
                .ok()
                .and_then(|i| i.parse::<usize>().ok())
                .is_some_and(|i| i < 2 * COPY_SLOTS)
        };
        assert_eq!(shard.remove_where(early), 2 * COPY_SLOTS);
        let mut r = Replicator::new(WriteAck::All, 1 << 20, 1000, 7);
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert_eq!(r.set_replicas(&[(9, addr)]), vec![1]);
        r.start_stream(1, &StreamPosition { applied: None });
        let written = drain(&mut r, &shard);
        let mut frames = Vec::new();
        let mut at = 0;
        while let Ok(Some(f)) = decode_frame(&written[at..], &Limits::default()) {
            frames.push(ReplFrame::from_u8(f.header.opcode));
            at += f.len();
        }
        assert_eq!(frames.first(), Some(&Some(ReplFrame::Reset)));
        assert_eq!(frames.last(), Some(&Some(ReplFrame::Synced)));
        let ops = frames.iter().filter(|f| **f == Some(ReplFrame::Op)).count();
        assert_eq!(ops, n - 2 * COPY_SLOTS);
    }
}
