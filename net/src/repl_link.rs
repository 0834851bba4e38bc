//! The tasks behind one replication link of a primary core: connect (retrying with backoff
//! while the link lives), say hello (answering the receiver's challenge for the cluster
//! secret, see `node_core::replication::handshake`), let the core queue the catch-up, then
//! write whatever the core queues while a second task reads the peer's acks from a duplicate
//! of the socket. What to send and what an ack means is the core's (`node-core`) to decide.

use std::os::fd::{AsRawFd, FromRawFd};
use std::time::Duration;

use bytes::BytesMut;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use glommio::{spawn_local, timer::sleep};
use ringcache_cluster::replication::StreamPosition;
use ringcache_node_core::replication::handshake::{stream_hello, Opening};
use ringcache_node_core::replication::WriteStep;
use ringcache_node_core::{now_ms, LinkId};
use ringcache_proto::{decode_frame, Limits, ReplFrame};
use tracing::{debug, info, warn};

use crate::core_cell::SharedCore;

/// Longest wait for a peer to connect or answer the hello.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest pause between connection attempts.
const MAX_BACKOFF: Duration = Duration::from_millis(500);

/// Starts the tasks of link `id` on this core; they end once the core closes the link.
pub(crate) fn spawn_link(core: SharedCore, id: LinkId) {
    spawn_local(run(core, id)).detach();
}

async fn run(core: SharedCore, id: LinkId) {
    // Registered before the first session, so no ring from the core is missed.
    let _doorbell = core.doorbell(id);
    let mut backoff = Duration::from_millis(20);
    // A refused opening is logged as a warning once per run of failed attempts, not at every
    // retry (a misconfigured secret would otherwise log twice a second per link).
    let mut warned = false;
    loop {
        let Some((member, addr)) = core.borrow().repl.link(id).map(|l| (l.member, l.addr)) else {
            break;
        };
        if let Err(e) = session(&core, id, &mut warned).await {
            debug!(replica = member, %addr, "replication link: {e}");
        }
        let (was_streaming, again) = core.borrow_mut().repl.session_ended(id);
        if was_streaming {
            backoff = Duration::from_millis(20);
            warned = false;
        }
        if !again {
            break;
        }
        sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    core.forget_link(id);
    debug!(link = id, "replication link closed");
}

async fn session(core: &SharedCore, id: LinkId, warned: &mut bool) -> std::io::Result<()> {
    let Some((mut opening, addr)) = ({
        let c = core.borrow();
        stream_hello(&c, id).map(|(hello, addr)| (Opening::new(&hello, c.secret.clone()), addr))
    }) else {
        return Ok(());
    };
    let mut stream = TcpStream::connect_timeout(addr, HANDSHAKE_TIMEOUT).await?;
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT));
    let mut out = BytesMut::new();
    opening.hello_frame(&mut out);
    stream.write_all(&out).await?;
    out.clear();
    let limits = Limits::default();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    // The receiver answers with its position, or first with a challenge for the cluster secret.
    let pos: StreamPosition = 'opening: loop {
        while let Some(f) = decode_frame(&buf, &limits).map_err(invalid)? {
            let step = opening.on_frame(&f.header, f.body(&buf), &mut out);
            let len = f.len();
            buf.drain(..len);
            match step {
                Ok(Some(pos)) => break 'opening pos,
                Ok(None) => {
                    stream.write_all(&out).await?;
                    out.clear();
                }
                Err(e) => {
                    if !std::mem::replace(warned, true) {
                        warn!(link = id, %addr, "replication stream not opened: {e} (retrying)");
                    }
                    return Err(invalid(e));
                }
            }
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(invalid(
                "the peer closed the connection during the hello (see its log: a wrong or \
                 missing cluster secret, or its map does not name this stream yet)",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let Some(plan) = core.borrow_mut().repl.start_stream(id, &pos) else {
        return Ok(());
    };
    info!(link = id, %addr, ?plan, "replica stream started");
    let _ = stream.set_read_timeout(None);
    // SAFETY: dup(2) of a socket we own returns a new descriptor for the same socket (or -1,
    // checked below).
    let dup = unsafe { libc::dup(stream.as_raw_fd()) };
    if dup < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `dup` is a fresh descriptor that only this stream owns and closes on drop.
    let reader = unsafe { TcpStream::from_raw_fd(dup) };
    let acks = spawn_local(read_acks(core.clone(), id, reader, buf));
    let result = write_loop(core, id, &mut stream).await;
    drop(acks);
    result
}

async fn write_loop(core: &SharedCore, id: LinkId, stream: &mut TcpStream) -> std::io::Result<()> {
    let doorbell = core.doorbell(id);
    let mut buf = BytesMut::new();
    loop {
        let step = {
            let mut c = core.borrow_mut();
            let c = &mut *c;
            c.repl.fill_copy(id, &c.shard, now_ms());
            c.repl.next_write(id, &mut buf)
        };
        match step {
            WriteStep::Write => {
                stream.write_all(&buf).await?;
                buf.clear();
            }
            WriteStep::Idle => doorbell.wait().await,
            WriteStep::Copying => futures_lite::future::yield_now().await,
            WriteStep::Closed | WriteStep::Drained => return Ok(()),
            WriteStep::Broken => return Err(invalid("the peer stopped acknowledging")),
        }
    }
}

async fn read_acks(core: SharedCore, id: LinkId, mut stream: TcpStream, mut buf: Vec<u8>) {
    let limits = Limits::default();
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        loop {
            match decode_frame(&buf, &limits) {
                Ok(Some(f)) => {
                    match ReplFrame::from_u8(f.header.opcode) {
                        Some(ReplFrame::Ack) => {
                            core.borrow_mut().repl.on_ack(id, f.header.request_id)
                        }
                        Some(ReplFrame::Synced) => {
                            core.borrow_mut().repl.on_copied(id);
                            core.publish_progress();
                        }
                        _ => {}
                    }
                    let len = f.len();
                    buf.drain(..len);
                }
                Ok(None) => break,
                Err(_) => return core.borrow_mut().repl.link_broken(id),
            }
        }
        match stream.read(&mut chunk).await {
            Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return core.borrow_mut().repl.link_broken(id),
        }
    }
}

fn invalid(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())
}
