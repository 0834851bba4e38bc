//! One balancer core's state: its copy of the map, its connections to the node cores, and a
//! handle on the shared control plane.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use futures_channel::mpsc;
use ringcache_cluster::ClusterMap;
use ringcache_proto::Limits;

use crate::backend::{Backend, Job};
use crate::control::SharedControl;

/// One balancer core's state: its copy of the map and its connections to the node cores.
pub(crate) struct State {
    /// The map this core routes by.
    pub(crate) map: Arc<ClusterMap>,
    /// Connections to node core ports.
    pub(crate) backends: HashMap<SocketAddr, Backend>,
    /// Bounds on relayed requests.
    pub(crate) limits: Limits,
    /// The balancer's port (TOPOLOGY).
    pub(crate) port: u16,
    /// The control plane shared by the balancer's cores.
    pub(crate) control: SharedControl,
}

/// A core's state as its tasks share it.
pub(crate) type Shared = Rc<RefCell<State>>;

impl State {
    /// The connection to `addr`, made (in its own task) when there is none alive.
    pub(crate) fn backend(&mut self, addr: SocketAddr) -> mpsc::UnboundedSender<Job> {
        if let Some(tx) = self.backends.get(&addr).and_then(Backend::sender) {
            return tx;
        }
        let b = Backend::connect(addr, self.limits);
        let tx = b.sender();
        self.backends.insert(addr, b);
        tx.unwrap_or_else(|| mpsc::unbounded().0)
    }

    /// Takes `map` when it is at least as new as this core's.
    pub(crate) fn offer_map(&mut self, map: Arc<ClusterMap>) {
        if map.epoch >= self.map.epoch {
            self.map = map;
        }
    }
}
