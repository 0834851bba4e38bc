//! What every connection of a core shares: the core, the mesh to the other cores, the node's
//! settings, the shutdown flag, and the readiness and idle tables.

use std::cell::Cell;
use std::rc::Rc;

use crate::core_cell::SharedCore;
use crate::idle_conns::IdleConns;
use crate::lone_lookups::LoneLookups;
use crate::mesh::Mesh;
use crate::node_config::NodeConfig;
use crate::readiness::Readiness;

/// What every connection of a core shares.
pub(crate) struct ConnContext {
    /// The core's state.
    pub core: SharedCore,
    /// The other cores, when there are any.
    pub mesh: Option<Rc<Mesh>>,
    /// The node's settings.
    pub cfg: Rc<NodeConfig>,
    /// Set when the core stops: connections finish their batch and close.
    pub shutdown: Rc<Cell<bool>>,
    /// The id the next connection gets.
    pub next_client_id: Cell<u64>,
    /// Open client connections, for the idle sweep and for draining at stop.
    pub(crate) idle: Rc<IdleConns>,
    /// The core's epoll instance, which tells connections when to read.
    pub(crate) readiness: Rc<Readiness>,
    /// Lone requests' keys, looked up together across the core's connections.
    pub(crate) lone: LoneLookups,
}
