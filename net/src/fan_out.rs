//! Requests that span cores, carried out: `node-core` splits them (by owning core, or one part
//! per core for node-wide commands); every part is started at once, here or over the mesh,
//! and the answers, awaited together, are merged by `node-core` into one reply.

use bytes::BytesMut;
use futures_channel::oneshot;
use ringcache_node_core::fan_out::{broadcast, split_over_cores, CoreSplit};
use ringcache_node_core::{run_remote, RemoteReply};
use ringcache_proto::{Command, ErrorKind, ReplyTo, Response};

use crate::context::ConnContext;
use crate::core_cell::{wait_gate, Gate};

/// Where one part's answer comes from.
enum PartAnswer {
    /// Run on this core; it may wait for replica acks.
    Here(RemoteReply, Option<Gate>),
    /// Handed to another core.
    There(oneshot::Receiver<RemoteReply>),
    /// Could not be sent.
    Failed(String),
}

/// Starts every part of `split` (this core's at once), then awaits the answers in part order
/// and appends the merged reply.
async fn run_parts(split: CoreSplit, ctx: &ConnContext, out: &mut BytesMut, to: ReplyTo, now: u64) {
    let mut split = split;
    let me = ctx.core.borrow().id;
    let mut started = Vec::with_capacity(split.parts.len());
    for (core, op) in std::mem::take(&mut split.parts) {
        let answer = if core == me {
            let (reply, gate) = run_remote(&mut ctx.core.borrow_mut(), op, now);
            PartAnswer::Here(reply, gate.map(|id| ctx.core.gate(id)))
        } else {
            match &ctx.mesh {
                Some(mesh) => match mesh.send(core, op).await {
                    Ok(rx) => PartAnswer::There(rx),
                    Err(e) => PartAnswer::Failed(e.to_string()),
                },
                None => PartAnswer::Failed(format!("no mesh to reach core {core}")),
            }
        };
        started.push(answer);
    }
    let mut replies = Vec::with_capacity(started.len());
    for answer in started {
        replies.push(match answer {
            PartAnswer::Here(reply, None) => reply,
            PartAnswer::Here(reply, Some(g)) => match wait_gate(g).await {
                Ok(()) => reply,
                Err(msg) => RemoteReply::Failed(msg),
            },
            PartAnswer::There(rx) => rx
                .await
                .unwrap_or_else(|_| RemoteReply::Failed("another core dropped the request".into())),
            PartAnswer::Failed(msg) => RemoteReply::Failed(msg),
        });
    }
    to.encode(out, &split.merge(replies).response());
}

/// Runs a command that spans cores (a multi-key command whose keys live on several cores, or
/// a node-wide one), one part per core, and appends the merged reply.
pub(crate) async fn run_spread(
    cmd: &Command<'_>,
    ctx: &ConnContext,
    out: &mut BytesMut,
    to: ReplyTo,
    now: u64,
) {
    let cores = ctx.core.borrow().cores;
    match split_over_cores(cmd, cores).or_else(|| broadcast(cmd, cores)) {
        Some(split) => run_parts(split, ctx, out, to, now).await,
        None => to.encode(
            out,
            &Response::error(ErrorKind::Internal, "not a command that spans cores"),
        ),
    }
}
