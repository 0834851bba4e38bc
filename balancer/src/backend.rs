//! The balancer's connections to node core ports: one persistent pipelined connection per
//! node core, driven by its own task, opened lazily on first use and replaced once it breaks.

use std::cell::Cell;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::rc::Rc;

use bytes::BytesMut;
use futures_channel::{mpsc, oneshot};
use futures_lite::{AsyncReadExt, AsyncWriteExt, StreamExt};
use glommio::net::TcpStream;
use glommio::spawn_local;
use ringcache_proto::{decode_frame, Limits};
use tracing::warn;

/// Most requests a backend connection sends in one write.
const BACKEND_BATCH: usize = 256;

pub(crate) type BackendReply = Result<Vec<u8>, String>;
pub(crate) type Job = (Vec<u8>, oneshot::Sender<BackendReply>);

/// A persistent pipelined connection to one node core port, driven by its own task.
pub(crate) struct Backend {
    tx: mpsc::UnboundedSender<Job>,
    dead: Rc<Cell<bool>>,
}

impl Backend {
    /// Connects to `addr` (lazily, in its own task).
    pub(crate) fn connect(addr: SocketAddr, limits: Limits) -> Backend {
        let (tx, rx) = mpsc::unbounded();
        let dead = Rc::new(Cell::new(false));
        spawn_local(backend_task(addr, rx, dead.clone(), limits)).detach();
        Backend { tx, dead }
    }

    /// Where to queue requests, while the connection lives.
    pub(crate) fn sender(&self) -> Option<mpsc::UnboundedSender<Job>> {
        (!self.dead.get()).then(|| self.tx.clone())
    }
}

/// Talks to one node core port: takes the queued requests, writes them in one batch (request
/// ids rewritten to its own), reads the replies and hands each to its waiter.
async fn backend_task(
    addr: SocketAddr,
    mut rx: mpsc::UnboundedReceiver<Job>,
    dead: Rc<Cell<bool>>,
    limits: Limits,
) {
    let fail_all = |rx: &mut mpsc::UnboundedReceiver<Job>, msg: &str| {
        rx.close();
        while let Ok((_, w)) = rx.try_recv() {
            let _ = w.send(Err(msg.to_string()));
        }
    };
    let mut stream = match TcpStream::connect(addr).await {
        Ok(s) => s,
        Err(e) => {
            dead.set(true);
            warn!(%addr, error = %e, "cannot reach node core");
            fail_all(&mut rx, &format!("cannot reach node {addr}: {e}"));
            return;
        }
    };
    let _ = stream.set_nodelay(true);
    let mut next_id: u64 = 1;
    let mut wbuf: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut rbuf = BytesMut::with_capacity(64 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    let mut waiters: VecDeque<(u64, oneshot::Sender<BackendReply>)> = VecDeque::new();
    while let Some(first) = rx.next().await {
        let mut batch = vec![first];
        while batch.len() < BACKEND_BATCH {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                _ => break,
            }
        }
        wbuf.clear();
        for (mut frame, waiter) in batch {
            // The frame was encoded by this balancer: its header decodes.
            if let Ok(Some(f)) = decode_frame(&frame, &limits) {
                f.set_request_id(&mut frame, next_id);
            }
            wbuf.extend_from_slice(&frame);
            waiters.push_back((next_id, waiter));
            next_id += 1;
        }
        let mut broken = stream.write_all(&wbuf).await.err().map(|e| e.to_string());
        while broken.is_none() && !waiters.is_empty() {
            match decode_frame(&rbuf, &limits) {
                Ok(Some(f)) => {
                    let frame = rbuf.split_to(f.len());
                    let rid = f.header.request_id;
                    match waiters.pop_front() {
                        Some((id, w)) if id == rid => {
                            let _ = w.send(Ok(frame.to_vec()));
                        }
                        _ => broken = Some(format!("node {addr} answered out of order")),
                    }
                }
                Ok(None) => match stream.read(&mut chunk).await {
                    Ok(0) => broken = Some(format!("node {addr} closed the connection")),
                    Ok(n) => rbuf.extend_from_slice(&chunk[..n]),
                    Err(e) => broken = Some(format!("reading from node {addr}: {e}")),
                },
                Err(e) => broken = Some(format!("bad frame from node {addr}: {e}")),
            }
        }
        if let Some(msg) = broken {
            dead.set(true);
            warn!(%addr, error = %msg, "node connection lost");
            for (_, w) in waiters.drain(..) {
                let _ = w.send(Err(msg.clone()));
            }
            fail_all(&mut rx, &msg);
            return;
        }
    }
}
