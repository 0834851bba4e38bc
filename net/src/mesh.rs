//! The cross-core mesh: how a core hands work to another and gets the answer back.
//!
//! Two glommio channel meshes: requests and replies. A core's request-serving tasks answer on
//! the reply mesh, whose receivers never block on a send, so two cores handing work to each
//! other cannot deadlock on full channels.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use futures_channel::oneshot;
use glommio::channels::channel_mesh::{FullMesh, Senders};
use glommio::spawn_local;

use ringcache_node_core::{now_ms, run_remote, RemoteOp, RemoteReply};

use crate::core_cell::{wait_gate, SharedCore};

/// A request travelling between cores.
#[derive(Debug)]
pub struct MeshRequest {
    from: usize,
    id: u64,
    op: RemoteOp,
}

/// A reply travelling back.
#[derive(Debug)]
pub struct MeshReply {
    id: u64,
    reply: RemoteReply,
}

/// The mesh builders every core joins (cloned into each executor).
#[derive(Clone)]
pub struct MeshBuilders {
    requests: FullMesh<MeshRequest>,
    replies: FullMesh<MeshReply>,
}

impl MeshBuilders {
    /// Meshes for `cores` peers with `depth` slots per channel.
    pub fn new(cores: usize, depth: usize) -> Self {
        MeshBuilders {
            requests: FullMesh::full(cores, depth),
            replies: FullMesh::full(cores, depth),
        }
    }
}

/// Why a handover failed.
#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    /// The core's channel is closed.
    #[error("core {0} is not reachable (shutting down?)")]
    Unreachable(usize),
}

/// Awaits `f`, polling it again every few milliseconds even when nothing woke it. Joining a
/// glommio channel mesh waits on wakeups from the other executors, and on a loaded machine one
/// of them was seen to be lost now and then, leaving a node stuck at start for good (both
/// executors parked, the join half done); polling again picks up the progress it missed.
async fn repoll<F: std::future::Future>(f: F) -> F::Output {
    let mut f = Box::pin(f);
    loop {
        let tick = async {
            glommio::timer::sleep(std::time::Duration::from_millis(5)).await;
            None
        };
        if let Some(out) = futures_lite::future::or(async { Some((&mut f).await) }, tick).await {
            return out;
        }
    }
}

/// This core's end of the mesh.
pub struct Mesh {
    me: usize,
    requests: Senders<MeshRequest>,
    replies: Senders<MeshReply>,
    pending: RefCell<HashMap<u64, oneshot::Sender<RemoteReply>>>,
    next_id: Cell<u64>,
}

impl Mesh {
    /// Joins both meshes; returns this core's id (its peer id) and the mesh handle, and starts
    /// the tasks that serve requests from other cores on `core`.
    pub async fn join(
        builders: MeshBuilders,
        core_for: impl FnOnce(usize) -> SharedCore,
    ) -> Result<(Rc<Mesh>, SharedCore), MeshError> {
        let (req_tx, mut req_rx) = repoll(builders.requests.join())
            .await
            .map_err(|_| MeshError::Unreachable(0))?;
        let (rep_tx, mut rep_rx) = repoll(builders.replies.join())
            .await
            .map_err(|_| MeshError::Unreachable(0))?;
        let me = req_tx.peer_id();
        let core = core_for(me);
        let mesh = Rc::new(Mesh {
            me,
            requests: req_tx,
            replies: rep_tx,
            pending: RefCell::new(HashMap::new()),
            next_id: Cell::new(1),
        });
        for (_, stream) in req_rx.streams() {
            let (mesh, core) = (mesh.clone(), core.clone());
            spawn_local(async move {
                while let Some(req) = stream.recv().await {
                    let (reply, gate) = run_remote(&mut core.borrow_mut(), req.op, now_ms());
                    let Some(gate) = gate.map(|id| core.gate(id)) else {
                        let msg = MeshReply { id: req.id, reply };
                        if mesh.replies.send_to(req.from, msg).await.is_err() {
                            break;
                        }
                        continue;
                    };
                    // The answer waits for replica acks: let later requests run meanwhile.
                    let mesh = mesh.clone();
                    spawn_local(async move {
                        let reply = match wait_gate(gate).await {
                            Ok(()) => reply,
                            Err(msg) => RemoteReply::Failed(msg),
                        };
                        let _ = mesh
                            .replies
                            .send_to(req.from, MeshReply { id: req.id, reply })
                            .await;
                    })
                    .detach();
                }
            })
            .detach();
        }
        for (_, stream) in rep_rx.streams() {
            let mesh = mesh.clone();
            spawn_local(async move {
                while let Some(rep) = stream.recv().await {
                    if let Some(tx) = mesh.pending.borrow_mut().remove(&rep.id) {
                        // The waiter may have gone (connection closed): nothing to do then.
                        let _ = tx.send(rep.reply);
                    }
                }
            })
            .detach();
        }
        Ok((mesh, core))
    }

    /// Hands `op` to core `to` (waiting only for room in the channel) and returns where its
    /// answer will arrive, so several handovers can be in flight at once.
    pub async fn send(
        &self,
        to: u32,
        op: RemoteOp,
    ) -> Result<oneshot::Receiver<RemoteReply>, MeshError> {
        let to = to as usize;
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let (tx, rx) = oneshot::channel();
        self.pending.borrow_mut().insert(id, tx);
        let msg = MeshRequest {
            from: self.me,
            id,
            op,
        };
        if self.requests.send_to(to, msg).await.is_err() {
            self.pending.borrow_mut().remove(&id);
            return Err(MeshError::Unreachable(to));
        }
        Ok(rx)
    }

    /// Closes this core's senders (at shutdown).
    pub fn close(&self) {
        self.requests.close();
        self.replies.close();
    }
}
