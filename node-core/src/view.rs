//! The cluster as one core sees it: the last map the balancer sent, and this node's place in it.

use ringcache_cluster::{ClusterMap, GroupId, MemberId, Role};

/// The cluster as one core sees it (shared by the node's cores through an `Arc`).
#[derive(Debug)]
pub struct NodeView {
    /// The last map received.
    pub map: ClusterMap,
    /// This node's member id.
    pub member: MemberId,
    /// This node's group in that map, if it has one.
    pub group: Option<GroupId>,
}

impl NodeView {
    /// A view of `map` for member `member` (its group read from the map).
    pub fn new(map: ClusterMap, member: MemberId) -> NodeView {
        let group = map.member(member).and_then(|m| m.group);
        NodeView { map, member, group }
    }

    /// This node's role in the map, if it is a member.
    pub fn role(&self) -> Option<Role> {
        self.map.member(self.member).map(|m| m.role)
    }
}
