//! Work one core hands to another over the mesh, and what comes back. A whole single-key
//! request travels as its raw bytes and returns as reply bytes already encoded for the client's
//! protocol; parts of split multi-key commands and broadcasts travel as typed operations.

use bytes::BytesMut;
use ringcache_engine::{SetOptions, Stats};
use ringcache_proto::resp::RespParser;
use ringcache_proto::resp_command::parse_command;
use ringcache_proto::resp_encode::{write_response, RespVersion};
use ringcache_proto::{
    decode_frame, decode_request, encode_response, Command, ErrorKind, Response, MAGIC,
};

use crate::core_state::CoreState;
use crate::execute::execute;
use crate::replication::{replicate, Gate};

/// The protocol a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// Native binary frames.
    Native,
    /// RESP2 or RESP3.
    Resp(RespVersion),
}

impl Wire {
    /// The protocol a connection's first bytes show: native frames start with the two magic
    /// bytes, anything else is RESP (which a later HELLO may raise to RESP3). `None` until
    /// enough bytes have arrived to tell.
    pub fn detect(buf: &[u8]) -> Option<Wire> {
        match buf {
            [] => None,
            [b] if *b == MAGIC[0] => None,
            [a, b, ..] if *a == MAGIC[0] && *b == MAGIC[1] => Some(Wire::Native),
            _ => Some(Wire::Resp(RespVersion::V2)),
        }
    }
}

/// A value copied out of another core's store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedValue {
    pub value: Vec<u8>,
    pub version: u64,
    pub ttl_ms: Option<u64>,
}

/// Which count a multi-key part returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CountKind {
    Del,
    Exists,
    Touch,
}

/// Work for another core.
#[derive(Debug)]
pub enum RemoteOp {
    /// A whole request as received; answered with encoded reply bytes.
    Request { wire: Wire, raw: Vec<u8> },
    /// The MGET keys this core owns.
    Get { keys: Vec<Vec<u8>> },
    /// The DEL/EXISTS/TOUCH keys this core owns.
    Count { kind: CountKind, keys: Vec<Vec<u8>> },
    /// The MSET pairs this core owns.
    MSet { pairs: Vec<(Vec<u8>, Vec<u8>)> },
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
}

/// The answer to a [`RemoteOp`].
#[derive(Debug)]
pub enum RemoteReply {
    Encoded(Vec<u8>),
    Values(Vec<Option<OwnedValue>>),
    Count(i64),
    Done,
    Stats(Vec<(String, u64)>, Stats),
    Digest(u64, u64),
    Failed(String),
}

/// Where a reply goes: the connection's protocol and the request it answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyTo {
    /// The connection's protocol.
    pub wire: Wire,
    /// The request's command (RESP renders some replies per command, e.g. GETV).
    pub op: ringcache_proto::Opcode,
    /// The native request id echoed in the reply frame.
    pub request_id: u64,
    /// The map epoch echoed in the reply frame.
    pub epoch: ringcache_proto::Epoch,
}

impl ReplyTo {
    /// Appends `resp` to `out` as the reply to this request.
    pub fn encode(self, out: &mut BytesMut, resp: &Response<'_>) {
        encode_reply(out, self.wire, self.op, self.request_id, self.epoch, resp);
    }
}

/// Encodes `resp` as the reply to the request described, in the connection's protocol.
pub fn encode_reply(
    out: &mut BytesMut,
    wire: Wire,
    op: ringcache_proto::Opcode,
    request_id: u64,
    epoch: ringcache_proto::Epoch,
    resp: &Response<'_>,
) {
    match wire {
        Wire::Resp(v) => write_response(out, v, op, resp),
        Wire::Native => {
            if let Err(e) = encode_response(out, request_id, epoch, resp) {
                let fallback = Response::error(ErrorKind::Internal, e.to_string());
                // An error frame is small and always encodable.
                let _ = encode_response(out, request_id, epoch, &fallback);
            }
        }
    }
}

/// This core's STATS fields and raw counters.
fn core_stats(core: &CoreState) -> (Vec<(String, u64)>, Stats) {
    let s = core.shard.stats();
    let mut fields = crate::execute::stats_fields(
        core.id,
        &s,
        (
            core.open_connections,
            core.total_connections,
            core.rejected_connections,
            core.commands,
        ),
    );
    let id = core.id;
    let c = core.repl.counters;
    for (name, v) in [
        ("repl_full_copies", c.full_copies),
        ("repl_backlog_catchups", c.backlog_catchups),
        ("repl_ack_failures", c.ack_failures),
        ("repl_applied", core.streams.applied_total),
        ("repl_caught_up", u64::from(core.serves_reads())),
        ("repl_links", core.repl.streaming_links() as u64),
        ("repl_pending_acks", core.repl.pending_acks() as u64),
    ] {
        fields.push((format!("core{id}.{name}"), v));
    }
    (fields, s)
}

/// Runs `cmd` here and, when it changed data on a primary with replicas, replicates it:
/// the encoded reply and the gate it waits behind.
fn execute_replicated(
    core: &mut CoreState,
    cmd: &Command<'_>,
    now: u64,
    encode: impl FnOnce(&mut BytesMut, &Response<'_>),
    out: &mut BytesMut,
) -> Option<Gate> {
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
pub fn run_remote(core: &mut CoreState, op: RemoteOp, now: u64) -> (RemoteReply, Option<Gate>) {
    let mut gate = None;
    let reply = run_op(core, op, now, &mut gate);
    (reply, gate)
}

fn run_op(core: &mut CoreState, op: RemoteOp, now: u64, gate: &mut Option<Gate>) -> RemoteReply {
    match op {
        RemoteOp::Request { wire, raw } => {
            let mut out = BytesMut::with_capacity(64);
            let limits = core.limits;
            match wire {
                Wire::Native => match decode_frame(&raw, &limits) {
                    Ok(Some(frame)) => {
                        let h = frame.header;
                        match decode_request(&h, frame.body(&raw), &limits) {
                            Ok(cmd) => {
                                let op = cmd.opcode();
                                let (rid, epoch) = (h.request_id, h.epoch);
                                *gate = execute_replicated(
                                    core,
                                    &cmd,
                                    now,
                                    |o, r| encode_reply(o, wire, op, rid, epoch, r),
                                    &mut out,
                                );
                            }
                            Err(e) => return RemoteReply::Failed(e.to_string()),
                        }
                    }
                    _ => return RemoteReply::Failed("handed-over frame did not decode".into()),
                },
                Wire::Resp(_) => {
                    let mut parser = RespParser::new();
                    match parser.parse(&raw, &limits) {
                        Ok(Some(_)) => {
                            let args = parser.args(&raw);
                            match parse_command(&args, &limits) {
                                Ok(cmd) => {
                                    let op = cmd.opcode();
                                    *gate = execute_replicated(
                                        core,
                                        &cmd,
                                        now,
                                        |o, r| encode_reply(o, wire, op, 0, 0, r),
                                        &mut out,
                                    );
                                }
                                Err(e) => return RemoteReply::Failed(e.to_string()),
                            }
                        }
                        _ => {
                            return RemoteReply::Failed("handed-over request did not parse".into())
                        }
                    }
                }
            }
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
    }
}

/// The typed operation for this core's part of a broadcast command.
pub fn broadcast_op(cmd: &Command<'_>) -> Option<RemoteOp> {
    match cmd {
        Command::Flush => Some(RemoteOp::Flush),
        Command::InvalidatePrefix { prefix } => Some(RemoteOp::InvalidatePrefix(prefix.to_vec())),
        Command::InvalidateTag { tag } => Some(RemoteOp::InvalidateTag(tag.to_vec())),
        Command::Stats => Some(RemoteOp::Stats),
        Command::Digest => Some(RemoteOp::Digest),
        _ => None,
    }
}
