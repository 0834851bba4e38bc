//! A core's state as its tasks share it (one thread, `Rc`), and the runtime's side of what
//! `node-core` queues on it: every mutable borrow ends by opening the gates whose writes got
//! their acks and ringing the doorbells of links with new bytes, so no event's output is lost.

use std::cell::{Cell, Ref, RefCell, RefMut};
use std::collections::HashMap;
use std::future::poll_fn;
use std::ops::{Deref, DerefMut};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Poll, Waker};

use futures_channel::oneshot;
use ringcache_node_core::{CoreState, GateId, GateResult, LinkId};

/// Resolves once a write has its acks (`Err` with the reason when it never will).
pub type Gate = oneshot::Receiver<GateResult>;

/// One core's replication position and readiness, for the node's heartbeat. Written by the
/// core when it changes, read by the cluster link thread a few times a second.
#[derive(Debug, Default)]
pub struct CoreProgress {
    /// Replicated operations applied.
    pub applied: AtomicU64,
    /// Whether the core serves reads (a primary, or a caught-up replica).
    pub ready: AtomicBool,
    /// The last range move this core finished streaming.
    pub moved: AtomicU64,
}

/// Wakes one waiting task; ringing before the wait is remembered (single-threaded).
#[derive(Default)]
pub struct Doorbell {
    rung: Cell<bool>,
    waker: Cell<Option<Waker>>,
}

impl Doorbell {
    /// Wakes the waiter, or lets its next wait return at once.
    pub fn ring(&self) {
        self.rung.set(true);
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    /// Waits for a ring.
    pub async fn wait(&self) {
        poll_fn(|cx| {
            if self.rung.replace(false) {
                Poll::Ready(())
            } else {
                self.waker.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
        .await
    }
}

/// A core's state and the waiters of what it decides.
pub struct CoreCell {
    state: RefCell<CoreState>,
    gates: RefCell<HashMap<GateId, oneshot::Sender<GateResult>>>,
    doorbells: RefCell<HashMap<LinkId, Rc<Doorbell>>>,
    /// What the heartbeat reports for this core.
    pub progress: Arc<CoreProgress>,
}

/// A core's state as its tasks share it.
pub type SharedCore = Rc<CoreCell>;

/// A mutable borrow of the core that, when dropped, carries out what the core queued.
pub struct CoreMut<'a> {
    state: RefMut<'a, CoreState>,
    cell: &'a CoreCell,
}

impl Deref for CoreMut<'_> {
    type Target = CoreState;
    fn deref(&self) -> &CoreState {
        &self.state
    }
}

impl DerefMut for CoreMut<'_> {
    fn deref_mut(&mut self) -> &mut CoreState {
        &mut self.state
    }
}

impl Drop for CoreMut<'_> {
    fn drop(&mut self) {
        if !self.state.repl.has_output() {
            return;
        }
        let mut gates = self.cell.gates.borrow_mut();
        self.state.repl.drain_done(|id, result| {
            // The waiter may have gone (connection closed): nothing to do then.
            if let Some(tx) = gates.remove(&id) {
                let _ = tx.send(result);
            }
        });
        let doorbells = self.cell.doorbells.borrow();
        self.state.repl.drain_wakes(|id| {
            if let Some(d) = doorbells.get(&id) {
                d.ring();
            }
        });
    }
}

impl CoreCell {
    /// A cell holding `state`, reporting its progress to `progress`.
    pub fn new(state: CoreState, progress: Arc<CoreProgress>) -> SharedCore {
        let cell = Rc::new(CoreCell {
            state: RefCell::new(state),
            gates: RefCell::default(),
            doorbells: RefCell::default(),
            progress,
        });
        cell.publish_progress();
        cell
    }

    /// Reads the core.
    pub fn borrow(&self) -> Ref<'_, CoreState> {
        self.state.borrow()
    }

    /// Changes the core; what it queued is carried out when the borrow ends.
    pub fn borrow_mut(&self) -> CoreMut<'_> {
        CoreMut {
            state: self.state.borrow_mut(),
            cell: self,
        }
    }

    /// The waiter of gate `id` (a write's reply waits on it).
    pub fn gate(&self, id: GateId) -> Gate {
        let (tx, rx) = oneshot::channel();
        self.gates.borrow_mut().insert(id, tx);
        rx
    }

    /// The doorbell link `id`'s task waits on, until [`CoreCell::forget_link`].
    pub fn doorbell(&self, id: LinkId) -> Rc<Doorbell> {
        self.doorbells.borrow_mut().entry(id).or_default().clone()
    }

    /// Link `id`'s task ended.
    pub fn forget_link(&self, id: LinkId) {
        self.doorbells.borrow_mut().remove(&id);
        self.borrow_mut().repl.link_finished(id);
    }

    /// Publishes this core's position and readiness for the heartbeat.
    pub fn publish_progress(&self) {
        let p = self.state.borrow().progress();
        self.progress.applied.store(p.applied, Ordering::Relaxed);
        self.progress.ready.store(p.ready, Ordering::Relaxed);
        self.progress.moved.store(p.moved, Ordering::Relaxed);
    }
}

/// Waits for `gate`, turning a dropped sender into an error.
pub async fn wait_gate(gate: Gate) -> GateResult {
    match gate.await {
        Ok(r) => r,
        Err(_) => Err("the write's replication was abandoned (node stopping?)".into()),
    }
}
