//! The receiving side of a replication stream, carried out: a connection that opened with a
//! stream hello is served here, its frames handed to `node-core`'s `StreamReceiver` one by one,
//! and what it answers (position, one cumulative ack per read batch) written back.

use bytes::BytesMut;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use ringcache_node_core::now_ms;
use ringcache_node_core::replica::StreamReceiver;
use ringcache_proto::{decode_frame, Limits};
use ringcache_runtime::ReadBuf;
use tracing::{debug, warn};

use crate::context::ConnContext;

/// Largest replication frame taken whatever this node's own limits (256 MiB).
const REPL_MAX_FRAME: usize = 256 << 20;

/// Serves a replication stream until the primary goes away or sends garbage.
pub(crate) async fn serve(mut stream: TcpStream, mut rbuf: ReadBuf, ctx: &ConnContext) {
    let _ = stream.set_read_timeout(None);
    // A primary configured with larger values than this node must not wedge the stream on a
    // frame this node would refuse as a client request (the write itself is then skipped by
    // the store, with a log line); the bound still keeps a bogus length from taking memory.
    let limits = Limits {
        max_frame: (ctx.cfg.limits.max_frame + 64 * 1024).max(REPL_MAX_FRAME),
        ..ctx.cfg.limits
    };
    let conn = ctx.next_client_id.get();
    ctx.next_client_id.set(conn + 1);
    let mut receiver = StreamReceiver::new(conn);
    let mut out = BytesMut::new();
    loop {
        loop {
            let buf = rbuf.data();
            let f = match decode_frame(buf, &limits) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    warn!("replication stream sent a bad frame ({e}); closing it");
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
                        "replication stream before this member's map caught up: {e}; closing it"
                    );
                } else {
                    warn!("replication stream: {e}; closing it");
                }
                return finish(ctx, &receiver);
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
