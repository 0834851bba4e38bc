//! Work one core hands to another over the mesh, and what comes back. A whole single-key
//! request travels as its raw bytes and returns as reply bytes already encoded for the client's
//! protocol; parts of split multi-key commands and broadcasts travel as typed operations.
//! Everything here is owned (`Send`), so the runtime can carry it between threads.

use bytes::BytesMut;
use ringcache_engine::{SetOptions, Stats};
use ringcache_proto::{Command, ReplyTo, RequestKind, RequestReader, Response, Wire};

use crate::core_state::CoreState;
use crate::execute::execute;
use crate::replication::GateId;
use crate::stats::core_stats;
use crate::write_path::replicate;

/// A value copied out of another core's store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedValue {
    /// The value's bytes.
    pub value: Vec<u8>,
    /// Its version stamp.
    pub version: u64,
    /// Milliseconds it has left, if it expires.
    pub ttl_ms: Option<u64>,
}

/// Which count a multi-key part returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CountKind {
    /// DEL: keys removed.
    Del,
    /// EXISTS: keys present.
    Exists,
    /// TOUCH: keys touched.
    Touch,
}

/// Work for another core.
#[derive(Debug)]
pub enum RemoteOp {
    /// A whole request as received; answered with encoded reply bytes.
    Request {
        /// The client connection's protocol.
        wire: Wire,
        /// The request's bytes.
        raw: Vec<u8>,
    },
    /// The MGET keys this core owns.
    Get {
        /// The keys, in the part's order.
        keys: Vec<Vec<u8>>,
    },
    /// The DEL/EXISTS/TOUCH keys this core owns.
    Count {
        /// Which count.
        kind: CountKind,
        /// The keys.
        keys: Vec<Vec<u8>>,
    },
    /// The MSET pairs this core owns.
    MSet {
        /// Key/value pairs.
        pairs: Vec<(Vec<u8>, Vec<u8>)>,
    },
    /// FLUSH this core.
    Flush,
    /// INVALIDATE PREFIX on this core.
    InvalidatePrefix(Vec<u8>),
    /// INVALIDATE TAG on this core.
    InvalidateTag(Vec<u8>),
    /// This core's counters.
    Stats,
    /// This core's entry count and digest.
    Digest,
    /// This core's keys matching a glob (KEYS).
    Keys(Vec<u8>),
}

/// The answer to a [`RemoteOp`].
#[derive(Debug)]
pub enum RemoteReply {
    /// A whole request's reply, encoded for the client's protocol.
    Encoded(Vec<u8>),
    /// MGET part: the values, in the part's key order.
    Values(Vec<Option<OwnedValue>>),
    /// DEL/EXISTS/TOUCH part: the count.
    Count(i64),
    /// MSET part or broadcast change: done.
    Done,
    /// STATS: the core's fields and raw counters.
    Stats(Vec<(String, u64)>, Stats),
    /// DIGEST: the core's live entry count and digest.
    Digest(u64, u64),
    /// KEYS: the core's matching keys.
    Keys(Vec<Vec<u8>>),
    /// The part failed, with the reason.
    Failed(String),
}

/// Runs `cmd` here and, when it changed data on a primary with replicas, replicates it:
/// the encoded reply and the gate it waits behind.
fn execute_replicated(
    core: &mut CoreState,
    cmd: &Command<'_>,
    now: u64,
    encode: impl FnOnce(&mut BytesMut, &Response<'_>),
    out: &mut BytesMut,
) -> Option<GateId> {
    let resp = execute(core, cmd, now);
    encode(out, &resp);
    drop(resp);
    if core.repl.is_active() && cmd.is_write() {
        replicate(core, cmd, now)
    } else {
        None
    }
}

/// Carries out `op` on this core; a change that replicas must acknowledge first comes with
/// the gate to wait on before answering.
pub fn run_remote(core: &mut CoreState, op: RemoteOp, now: u64) -> (RemoteReply, Option<GateId>) {
    let mut gate = None;
    let reply = run_op(core, op, now, &mut gate);
    (reply, gate)
}

fn run_op(core: &mut CoreState, op: RemoteOp, now: u64, gate: &mut Option<GateId>) -> RemoteReply {
    match op {
        RemoteOp::Request { wire, raw } => {
            let limits = core.limits;
            let req = match RequestReader::new().next(wire, &raw, &limits) {
                Ok(Some(req)) => req,
                _ => return RemoteReply::Failed("handed-over request did not parse".into()),
            };
            let cmd = match req.kind {
                RequestKind::Command(Ok(cmd)) => cmd,
                _ => return RemoteReply::Failed("handed-over request is not a command".into()),
            };
            let to = ReplyTo {
                wire,
                op: cmd.opcode(),
                request_id: req.request_id,
                epoch: req.epoch,
            };
            let mut out = BytesMut::with_capacity(64);
            *gate = execute_replicated(core, &cmd, now, |o, r| to.encode(o, r), &mut out);
            RemoteReply::Encoded(out.to_vec())
        }
        RemoteOp::Get { keys } => {
            core.commands += 1;
            RemoteReply::Values(
                keys.iter()
                    .map(|k| {
                        core.shard.get(k, now).map(|h| OwnedValue {
                            value: h.value.to_vec(),
                            version: h.version,
                            ttl_ms: h.expires_at.map(|t| t.saturating_sub(now)),
                        })
                    })
                    .collect(),
            )
        }
        RemoteOp::Count { kind, keys } => {
            core.commands += 1;
            let shard = &mut core.shard;
            let n = keys
                .iter()
                .filter(|k| match kind {
                    CountKind::Del => shard.delete(k, now),
                    CountKind::Exists => shard.exists(k, now),
                    CountKind::Touch => shard.touch(k, now),
                })
                .count();
            if kind == CountKind::Del && core.repl.is_active() {
                let keys = keys.iter().map(Vec::as_slice).collect();
                *gate = replicate(core, &Command::Del { keys }, now);
            }
            RemoteReply::Count(n as i64)
        }
        RemoteOp::MSet { pairs } => {
            core.commands += 1;
            for (k, v) in &pairs {
                let version = core.clock.stamp(now);
                if let Err(e) = core.shard.set(k, v, &SetOptions::default(), now, version) {
                    return RemoteReply::Failed(e.to_string());
                }
            }
            if core.repl.is_active() {
                let pairs = pairs
                    .iter()
                    .map(|(k, v)| (k.as_slice(), v.as_slice()))
                    .collect();
                *gate = replicate(core, &Command::MSet { pairs }, now);
            }
            RemoteReply::Done
        }
        RemoteOp::Flush => {
            core.shard.flush();
            *gate = replicate(core, &Command::Flush, now);
            RemoteReply::Done
        }
        RemoteOp::InvalidatePrefix(p) => {
            core.shard.invalidate_prefix(&p);
            *gate = replicate(core, &Command::InvalidatePrefix { prefix: &p }, now);
            RemoteReply::Done
        }
        RemoteOp::InvalidateTag(t) => {
            core.shard.invalidate_tag(&t);
            *gate = replicate(core, &Command::InvalidateTag { tag: &t }, now);
            RemoteReply::Done
        }
        RemoteOp::Digest => {
            let (n, d) = core.shard.digest(now);
            RemoteReply::Digest(n, d)
        }
        RemoteOp::Stats => {
            let (f, s) = core_stats(core);
            RemoteReply::Stats(f, s)
        }
        RemoteOp::Keys(pattern) => {
            core.commands += 1;
            RemoteReply::Keys(crate::keyspace::keys(core, &pattern, now))
        }
    }
}

/// The typed operation for this core's part of a broadcast command.
pub fn broadcast_op(cmd: &Command<'_>) -> Option<RemoteOp> {
    match cmd {
        Command::Flush => Some(RemoteOp::Flush),
        Command::InvalidatePrefix { prefix } => Some(RemoteOp::InvalidatePrefix(prefix.to_vec())),
        Command::InvalidateTag { tag } => Some(RemoteOp::InvalidateTag(tag.to_vec())),
        Command::Stats | Command::DbSize => Some(RemoteOp::Stats),
        Command::Digest => Some(RemoteOp::Digest),
        Command::Keys { pattern } => Some(RemoteOp::Keys(pattern.to_vec())),
        _ => None,
    }
}
