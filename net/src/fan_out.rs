//! Requests that span cores: multi-key commands split by owning core (MGET / MSET / DEL /
//! EXISTS / TOUCH) and node-wide ones broadcast to every core (STATS / DIGEST / FLUSH /
//! INVALIDATE), each part run here or handed over the mesh, the answers merged into one reply.

use bytes::BytesMut;
use ringcache_proto::{Command, ErrorKind, Response, ValueRef};

use crate::connection::{Conn, ConnContext};
use crate::handover::{
    broadcast_op, run_remote, CountKind, OwnedValue, RemoteOp, RemoteReply, ReplyTo,
};
use crate::ordered_replies::failed;
use crate::replication::wait_gate;
use crate::routing::{multi_keys, split_by_core};

impl Conn {
    /// Runs `op` on core `to`: directly when it is this core, else handed over the mesh.
    async fn on_core(&self, ctx: &ConnContext, to: u32, op: RemoteOp, now: u64) -> RemoteReply {
        let me = ctx.core.borrow().id;
        if to == me {
            let (reply, gate) = run_remote(&mut ctx.core.borrow_mut(), op, now);
            return match gate {
                None => reply,
                Some(g) => match wait_gate(g).await {
                    Ok(()) => reply,
                    Err(msg) => RemoteReply::Failed(msg),
                },
            };
        }
        match &ctx.mesh {
            Some(mesh) => match mesh.call(to, op).await {
                Ok(r) => r,
                Err(e) => RemoteReply::Failed(e.to_string()),
            },
            None => RemoteReply::Failed(format!("no mesh to reach core {to}")),
        }
    }

    /// Runs a multi-key command whose keys live on several cores, one part per core.
    pub(crate) async fn run_split(
        &self,
        cmd: &Command<'_>,
        ctx: &ConnContext,
        out: &mut BytesMut,
        to: ReplyTo,
        now: u64,
    ) {
        let reply = |out: &mut BytesMut, resp: &Response<'_>| to.encode(out, resp);
        let keys = multi_keys(cmd).unwrap_or_default();
        let cores = ctx.core.borrow().cores;
        let groups = split_by_core(&keys, cores);
        match cmd {
            Command::MGet { .. } => {
                let mut values: Vec<Option<OwnedValue>> = vec![None; keys.len()];
                for (core, positions) in groups {
                    let part: Vec<Vec<u8>> = positions.iter().map(|&i| keys[i].to_vec()).collect();
                    let got = self
                        .on_core(ctx, core, RemoteOp::Get { keys: part }, now)
                        .await;
                    match got {
                        RemoteReply::Values(vs) => {
                            for (i, v) in positions.into_iter().zip(vs) {
                                values[i] = v;
                            }
                        }
                        other => return reply(out, &failed(other)),
                    }
                }
                let refs = values
                    .iter()
                    .map(|v| {
                        v.as_ref().map(|v| ValueRef {
                            value: &v.value,
                            version: v.version,
                            ttl_ms: v.ttl_ms,
                        })
                    })
                    .collect();
                reply(out, &Response::Values(refs));
            }
            Command::MSet { pairs } => {
                for (core, positions) in groups {
                    let part = positions
                        .iter()
                        .map(|&i| (pairs[i].0.to_vec(), pairs[i].1.to_vec()))
                        .collect();
                    let op = RemoteOp::MSet { pairs: part };
                    let got = self.on_core(ctx, core, op, now).await;
                    if !matches!(got, RemoteReply::Done) {
                        return reply(out, &failed(got));
                    }
                }
                reply(out, &Response::Ok);
            }
            _ => {
                let kind = match cmd {
                    Command::Del { .. } => CountKind::Del,
                    Command::Exists { .. } => CountKind::Exists,
                    _ => CountKind::Touch,
                };
                let mut total = 0;
                for (core, positions) in groups {
                    let part = positions.iter().map(|&i| keys[i].to_vec()).collect();
                    let op = RemoteOp::Count { kind, keys: part };
                    let got = self.on_core(ctx, core, op, now).await;
                    match got {
                        RemoteReply::Count(n) => total += n,
                        other => return reply(out, &failed(other)),
                    }
                }
                reply(out, &Response::Int(total));
            }
        }
    }

    /// Runs a node-wide command on every core and merges the answers.
    pub(crate) async fn run_broadcast(
        &self,
        cmd: &Command<'_>,
        ctx: &ConnContext,
        out: &mut BytesMut,
        to: ReplyTo,
        now: u64,
    ) {
        let reply = |out: &mut BytesMut, resp: &Response<'_>| to.encode(out, resp);
        let cores = ctx.core.borrow().cores;
        let mut fields: Vec<(String, u64)> = Vec::new();
        let mut total = ringcache_engine::Stats::default();
        let mut digests: Vec<Vec<u8>> = Vec::new();
        for core in 0..cores {
            let Some(bop) = broadcast_op(cmd) else {
                return reply(
                    out,
                    &Response::error(ErrorKind::Internal, "not a broadcast command"),
                );
            };
            let got = self.on_core(ctx, core, bop, now).await;
            match got {
                RemoteReply::Done => {}
                RemoteReply::Stats(f, s) => {
                    total.merge(&s);
                    fields.extend(f);
                }
                RemoteReply::Digest(n, d) => {
                    digests.push(n.to_string().into_bytes());
                    digests.push(d.to_string().into_bytes());
                }
                other => return reply(out, &failed(other)),
            }
        }
        if matches!(cmd, Command::Stats) {
            let mut all: Vec<(std::borrow::Cow<'_, str>, u64)> = total
                .fields()
                .iter()
                .map(|(n, v)| (std::borrow::Cow::Borrowed(*n), *v))
                .collect();
            all.push(("cores".into(), u64::from(cores)));
            all.extend(
                repl_totals(&fields)
                    .into_iter()
                    .map(|(n, v)| (std::borrow::Cow::Borrowed(n), v)),
            );
            all.extend(
                fields
                    .into_iter()
                    .map(|(n, v)| (std::borrow::Cow::Owned(n), v)),
            );
            reply(out, &Response::Stats(all));
        } else if matches!(cmd, Command::Digest) {
            let values = digests
                .iter()
                .map(|d| {
                    Some(ValueRef {
                        value: d,
                        version: 0,
                        ttl_ms: None,
                    })
                })
                .collect();
            reply(out, &Response::Values(values));
        } else {
            reply(out, &Response::Ok);
        }
    }
}

/// Node totals of the per-core replication counters: sums, except `repl_caught_up`, which is
/// 1 only when every core serves reads.
fn repl_totals(fields: &[(String, u64)]) -> Vec<(&'static str, u64)> {
    const NAMES: [&str; 7] = [
        "repl_full_copies",
        "repl_backlog_catchups",
        "repl_ack_failures",
        "repl_applied",
        "repl_caught_up",
        "repl_links",
        "repl_pending_acks",
    ];
    NAMES
        .iter()
        .map(|&name| {
            let values = fields
                .iter()
                .filter(|(n, _)| n.split_once('.').is_some_and(|(_, rest)| rest == name))
                .map(|(_, v)| *v);
            let total = if name == "repl_caught_up" {
                values.min().unwrap_or(1)
            } else {
                values.sum()
            };
            (name, total)
        })
        .collect()
}
