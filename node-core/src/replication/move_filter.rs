//! Which keys a range-move link carries: those the next ring gives to the receiving group and
//! that land on the receiving core.

use std::sync::Arc;

use ringcache_cluster::{core_for_hash, key_hash, GroupId};

use crate::view::NodeView;

/// Which keys a range-move link carries: those the next ring gives to `group` and that land
/// on core `core` of its `cores`.
#[derive(Debug, Clone)]
pub struct MoveFilter {
    /// The map whose move this is.
    pub view: Arc<NodeView>,
    /// The receiving group.
    pub group: GroupId,
    /// The receiving core.
    pub core: u32,
    /// The receiving member's cores.
    pub cores: u32,
}

impl MoveFilter {
    /// Whether `key` travels on this link.
    pub fn carries(&self, key: &[u8]) -> bool {
        let Some(m) = self.view.map.moving.as_ref() else {
            return false;
        };
        let h = key_hash(key);
        m.next_ring.owner(h) == Some(self.group) && core_for_hash(h, self.cores) == self.core
    }
}
