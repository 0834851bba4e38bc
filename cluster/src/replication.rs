//! Replication decisions, without sockets: what a primary core sends (operations stamped with
//! the core's stream sequence), how a rejoining replica catches up (backlog or full copy), when
//! a write has the acks its policy asks for, and where a replica core stands on each stream.
//! The node carries these out over its peer connections.

use serde::{Deserialize, Serialize};

pub use crate::ack_tracker::{AckOutcome, AckTracker, LinkId};
pub use crate::backlog::Backlog;
pub use crate::stream_auth::{StreamChallenge, StreamProof};
pub use crate::stream_table::{StreamPosition, StreamTable};

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

/// The first frame on a replication connection: who streams, from which core. When the receiver
/// has a cluster secret, the sender proves it holds the same one over these bytes
/// (`stream_auth`); the secret itself is never sent.
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
    /// The epoch of the primary's map when it opened the stream: a replica whose map is older
    /// may simply not have learned of its new place yet.
    pub epoch: u64,
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

    }
}
