//! The receiving side of a replication stream, carried out: a connection that opened with a
//! stream hello is served here, its frames handed to `node-core`'s `StreamReceiver` one by one,
//! and what it answers (challenge, position, one cumulative ack per read batch) written back.
//! The stream authenticates before anything else (see `node_core::replica`): the nonce of its
//! challenge comes from the OS's CSPRNG, and it has `HANDSHAKE_TIMEOUT` to do so.

use std::time::Duration;

use bytes::BytesMut;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use ringcache_cluster::stream_auth::NONCE_LEN;
use ringcache_node_core::now_ms;
use ringcache_node_core::replica::StreamReceiver;
use ringcache_proto::{decode_frame, Limits};
use ringcache_runtime::ReadBuf;
use tracing::{debug, warn};

use crate::context::ConnContext;

/// Longest a stream may take to authenticate and be admitted.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest frame taken before the stream is admitted (a hello or a proof is a few dozen bytes).
const OPENING_MAX_FRAME: usize = 4096;
/// Largest replication frame taken whatever this node's own limits (256 MiB).
const REPL_MAX_FRAME: usize = 256 << 20;

/// Serves a replication stream until the primary goes away or sends garbage.
pub(crate) async fn serve(mut stream: TcpStream, mut rbuf: ReadBuf, ctx: &ConnContext) {
    // Until the stream is authenticated and admitted, a peer that stops talking is dropped.
    let _ = stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT));
    let mut nonce = [0u8; NONCE_LEN];
    if let Err(e) = getrandom::fill(&mut nonce) {
        warn!("no OS randomness for the replication stream's challenge ({e}); closing it");
        return;
    }
    // A primary configured with larger values than this node must not wedge the stream on a
    // frame this node would refuse as a client request (the write itself is then skipped by
    // the store, with a log line); the bound still keeps a bogus length from taking memory.
    let limits = Limits {
        max_frame: (ctx.cfg.limits.max_frame + 64 * 1024).max(REPL_MAX_FRAME),
        ..ctx.cfg.limits
    };
    let opening_limits = Limits {
        max_frame: OPENING_MAX_FRAME,
        ..ctx.cfg.limits
    };
    let conn = ctx.next_client_id.get();
    ctx.next_client_id.set(conn + 1);
    let mut receiver = StreamReceiver::new(conn, nonce, ctx.cfg.password.is_some());
    let peer = stream
        .peer_addr()
        .map_or_else(|_| "an unknown peer".to_string(), |a| a.to_string());
    let mut out = BytesMut::new();
    let mut open = false;
    loop {
        loop {
            let buf = rbuf.data();
            // Before the stream is admitted only small frames (hello, proof) are taken.
            let bound = if open { &limits } else { &opening_limits };
            let f = match decode_frame(buf, bound) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    warn!(%peer, "replication stream sent a bad frame ({e}); closing it");
                    return finish(ctx, &receiver);
                }
            };
            let step = receiver.on_frame(
                &mut ctx.core.borrow_mut(),
                &f.header,
                f.body(buf),
                now_ms(),
                &mut out,
            );
            rbuf.consume(f.len());
            if let Err(e) = step {
                if e.quiet {
                    debug!(
                        %peer,
                        "replication stream before this member's map caught up: {e}; closing it"
                    );
                } else {
                    warn!(%peer, "replication stream: {e}; closing it");
                }
                return finish(ctx, &receiver);
            }
            if !open && receiver.is_open() {
                open = true;
                let _ = stream.set_read_timeout(None);
            }
        }
        receiver.end_of_batch(&mut out);
        ctx.core.publish_progress();
        if !out.is_empty() {
            if stream.write_all(&out).await.is_err() {
                return finish(ctx, &receiver);
            }
            out.clear();
        }
        if ctx.shutdown.get() {
            return finish(ctx, &receiver);
        }
        let spare = rbuf.spare(64 * 1024);
        match stream.read(spare).await {
            Ok(n) if n > 0 => rbuf.filled(n),
            _ => return finish(ctx, &receiver),
        }
    }
}

fn finish(ctx: &ConnContext, receiver: &StreamReceiver) {
    receiver.finish(&mut ctx.core.borrow_mut());
    ctx.core.publish_progress();
}
