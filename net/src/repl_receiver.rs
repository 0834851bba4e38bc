//! The replica side of a replication stream: a connection that opened with a stream hello is
//! served here. Operations are applied when their version is newer (so arrival order does not
//! matter), positions are kept per stream, and one cumulative ack goes back per read batch.

use std::rc::Rc;

use bytes::BytesMut;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use ringcache_cluster::replication::{decode_op, ReplOp, StreamHello, StreamPosition};
use ringcache_cluster::{decode_body, encode_body};
use ringcache_proto::control::{
    encode_control, REPL_ACK, REPL_HELLO, REPL_OP, REPL_RESET, REPL_SYNCED,
};
use ringcache_proto::{decode_frame, Limits};
use tracing::{debug, info, warn};

use crate::connection::ConnContext;
use crate::core_state::{now_ms, CoreState};
use crate::read_buf::ReadBuf;
use crate::replication::forward_applied;

/// Largest replication frame taken whatever this node's own limits (256 MiB).
const REPL_MAX_FRAME: usize = 256 << 20;

/// Serves a replication stream until the primary goes away or sends garbage.
pub async fn serve(mut stream: TcpStream, mut rbuf: ReadBuf, ctx: Rc<ConnContext>) {
    let _ = stream.set_read_timeout(None);
    // A primary configured with larger values than this node must not wedge the stream on a
    // frame this node would refuse as a client request (the write itself is then skipped by
    // the store, with a log line); the bound still keeps a bogus length from taking memory.
    let limits = Limits {
        max_frame: (ctx.cfg.limits.max_frame + 64 * 1024).max(REPL_MAX_FRAME),
        ..ctx.cfg.limits
    };
    let mut hello: Option<StreamHello> = None;
    let conn = ctx.next_client_id.get();
    ctx.next_client_id.set(conn + 1);
    let mut out = BytesMut::new();
    let (mut acked, mut last) = (0u64, 0u64);
    let mut early = false;
    loop {
        loop {
            let buf = rbuf.data();
            let f = match decode_frame(buf, &limits) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    warn!("replication stream sent a bad frame ({e}); closing it");
                    return finish(&ctx, hello.as_ref(), conn);
                }
            };
            let (h, len) = (f.header, f.len());
            let body = f.body(buf);
            let mut core = ctx.core.borrow_mut();
            let step = match (h.opcode, hello.as_ref()) {
                (REPL_HELLO, _) => match decode_body::<StreamHello>(body) {
                    Ok(hi)
                        if !ringcache_cluster::secret_matches(
                            core.cfg_secret.as_deref(),
                            hi.secret.as_deref(),
                        ) =>
                    {
                        Err("a replication stream with a wrong or missing cluster secret".into())
                    }
                    Ok(hi) if !hi.moving && !accepts_stream(&core, &hi) => {
                        let epoch = core.cluster.as_ref().map_or(0, |v| v.map.epoch);
                        // A primary with a newer map: this member's copy, naming it a replica,
                        // is on its way, and the primary retries shortly. Not worth a warning.
                        early = epoch < hi.epoch;
                        Err(format!(
                            "refusing a replication stream for shard group {} (this member is \
                             not a replica of it in its map, epoch {epoch})",
                            hi.group
                        ))
                    }
                    Ok(hi) => {
                        let pos = if hi.moving {
                            info!(stream = hi.stream, "range move stream opened");
                            StreamPosition { applied: None }
                        } else {
                            core.streams.hello(hi.stream, conn)
                        };
                        debug!(stream = hi.stream, ?pos, "replication stream hello");
                        encode_control(&mut out, REPL_HELLO, true, 0, 0, &encode_body(&pos));
                        hello = Some(hi);
                        Ok(())
                    }
                    Err(e) => Err(e),
                },
                (REPL_RESET, Some(hi)) if hi.moving => Ok(()),
                (REPL_RESET, Some(hi)) => {
                    let removed = clear_for(&mut core);
                    core.streams.reset(hi.stream);
                    info!(
                        stream = hi.stream,
                        removed, "full copy from the primary begins"
                    );
                    Ok(())
                }
                (REPL_OP, Some(hi)) => match decode_op(body) {
                    Ok(op) => {
                        let now = now_ms();
                        apply(&mut core, &op, now);
                        if hi.moving {
                            // The new owner's replicas get the moved keys too.
                            forward_applied(&mut core, &op, now);
                        } else if h.request_id > 0 {
                            core.streams.applied(hi.stream, h.request_id);
                        }
                        last = last.max(h.request_id);
                        Ok(())
                    }
                    Err(e) => Err(e),
                },
                (REPL_SYNCED, Some(hi)) if hi.moving => {
                    last = last.max(h.request_id);
                    encode_control(&mut out, REPL_ACK, true, last, 0, &[]);
                    acked = last;
                    encode_control(&mut out, REPL_SYNCED, true, h.request_id, 0, &[]);
                    info!(stream = hi.stream, "range move copy received");
                    Ok(())
                }
                (REPL_SYNCED, Some(hi)) => {
                    core.streams.synced(hi.stream, h.request_id);
                    last = last.max(h.request_id);
                    info!(
                        stream = hi.stream,
                        upto = h.request_id,
                        "caught up with the primary"
                    );
                    Ok(())
                }
                (op, _) => Err(format!(
                    "unexpected frame 0x{op:02x} on a replication stream"
                )),
            };
            drop(core);
            rbuf.consume(len);
            if let Err(e) = step {
                if early {
                    debug!(
                        "replication stream before this member's map caught up: {e}; closing it"
                    );
                } else {
                    warn!("replication stream: {e}; closing it");
                }
                return finish(&ctx, hello.as_ref(), conn);
            }
        }
        if last > acked {
            encode_control(&mut out, REPL_ACK, true, last, 0, &[]);
            acked = last;
        }
        ctx.core.borrow().publish_progress();
        if !out.is_empty() {
            if stream.write_all(&out).await.is_err() {
                return finish(&ctx, hello.as_ref(), conn);
            }
            out.clear();
        }
        if ctx.shutdown.get() {
            return finish(&ctx, hello.as_ref(), conn);
        }
        let spare = rbuf.spare(64 * 1024);
        match stream.read(spare).await {
            Ok(n) if n > 0 => rbuf.filled(n),
            _ => return finish(&ctx, hello.as_ref(), conn),
        }
    }
}

/// Whether this core takes a replication stream for `hi.group`: only as a replica of that
/// group (a primary, or a member of another group, must not let a stale primary overwrite it;
/// the primary retries once this member's map caught up).
/// Primary core i streams to replica core i only: a replica has as many cores as its primary
/// (the balancer places no other), so a full copy replaces this core's whole shard.
fn accepts_stream(core: &CoreState, hi: &StreamHello) -> bool {
    core.role() == Some(ringcache_cluster::Role::Replica)
        && core.cluster.as_ref().and_then(|v| v.group) == Some(hi.group)
        && hi.primary_cores == core.cores
        && hi.primary_core == core.id
}

fn finish(ctx: &ConnContext, hello: Option<&StreamHello>, conn: u64) {
    let mut core = ctx.core.borrow_mut();
    if let Some(hi) = hello {
        core.streams.disconnected(hi.stream, conn);
    }
    core.publish_progress();
}

/// Drops what a full copy replaces: the whole shard (see [`accepts_stream`]).
fn clear_for(core: &mut CoreState) -> usize {
    let n = core.shard.len();
    core.shard.flush();
    n
}

/// Applies one replicated operation (newer versions win; the clock learns every version so a
/// promoted replica stamps above what it holds).
pub fn apply(core: &mut CoreState, op: &ReplOp<'_>, now: u64) {
    let res = match *op {
        ReplOp::Put {
            key,
            value,
            version,
            expires_at,
            ref tags,
        } => {
            core.clock.observe(version);
            let tags: Vec<&[u8]> = tags.iter().map(|t| t.0).collect();
            core.shard
                .apply_write(key, value, version, expires_at, &tags, now)
                .map(drop)
        }
        ReplOp::Del { key, version } => {
            core.clock.observe(version);
            core.shard.apply_delete(key, version, now).map(drop)
        }
        ReplOp::InvalidatePrefix { prefix, cut } => {
            core.shard.invalidate_prefix_at(prefix, cut);
            Ok(())
        }
        ReplOp::InvalidateTag { tag, cut } => {
            core.shard.invalidate_tag_at(tag, cut);
            Ok(())
        }
        ReplOp::Flush => {
            core.shard.flush();
            Ok(())
        }
    };
    if let Err(e) = res {
        debug!("replicated write not applied here: {e}");
    }
}
