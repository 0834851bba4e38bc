//! The cluster map: members, shard groups, the ring over the groups, and the epoch that rises
//! with every change. Serialisable so the balancer can push it to nodes and clients can cache it;
//! `route` turns a key into the (member, core, port) that owns it.

use serde::{Deserialize, Serialize};

use crate::placement::{core_for_hash, key_hash};
use crate::ring::{GroupId, Ring, DEFAULT_VNODES};

/// Identifies a member (a node) for the cluster's lifetime.
pub type MemberId = u64;

/// What a member does in its group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// Takes the group's writes and reads.
    Primary,
    /// Holds a copy of the group's data.
    Replica,
}

/// Where a member stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberState {
    /// A replica that arrived before any group could take it.
    Waiting,
    /// Serving its role.
    Active,
}

/// A node of the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Its id.
    pub id: MemberId,
    /// Host it listens on.
    pub host: String,
    /// Its main port.
    pub main_port: u16,
    /// Core i listens on `core_ports[i]`.
    pub core_ports: Vec<u16>,
    /// Its role.
    pub role: Role,
    /// Its group, once it has one.
    pub group: Option<GroupId>,
    /// Its state.
    pub state: MemberState,
}

/// A primary and its replicas.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardGroup {
    /// Its id (its points on the ring derive from it).
    pub id: GroupId,
    /// The member taking writes, if one is alive.
    pub primary: Option<MemberId>,
    /// The other members holding copies.
    pub replicas: Vec<MemberId>,
}

/// Where a key goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route<'a> {
    /// The owning group.
    pub group: GroupId,
    /// Its primary.
    pub member: &'a Member,
    /// The core of that member that owns the key.
    pub core: u32,
    /// That core's port.
    pub port: u16,
}

/// Why a key has no route.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// No group exists yet.
    #[error("the cluster has no shard group yet")]
    NoGroups,
    /// The owning group has no live primary.
    #[error("shard group {0} has no live primary")]
    NoPrimary(GroupId),
}

/// A change of ring in progress: every source primary streams the keys the new ring gives to
/// another group, and the balancer switches to `next_ring` once all of them have.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeMove {
    /// Identifies this move (a move that changes while running gets a new id, and the sources
    /// start over).
    pub id: u64,
    /// The ring once the move is done.
    pub next_ring: Ring,
    /// Groups that receive ranges (new primaries), not on `ring` yet.
    pub joining: Vec<GroupId>,
    /// Groups handing all their ranges on, off `next_ring`.
    pub leaving: Vec<GroupId>,
}

/// The whole map. Invariant: `ring` holds exactly the ids of `groups`, except those joining in
/// `moving`; every member named by a group is in `members` with that group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterMap {
    /// Rises with every change; requests carry it so stale senders are told.
    pub epoch: u64,
    /// The members.
    pub members: Vec<Member>,
    /// The shard groups.
    pub groups: Vec<ShardGroup>,
    /// The ring over the groups.
    pub ring: Ring,
    /// A range move in progress.
    #[serde(default)]
    pub moving: Option<RangeMove>,
}

impl Default for ClusterMap {
    fn default() -> Self {
        ClusterMap {
            epoch: 0,
            members: Vec::new(),
            groups: Vec::new(),
            ring: Ring::new(&[], DEFAULT_VNODES),
            moving: None,
        }
    }
}

impl ClusterMap {
    /// An empty map whose ring uses `vnodes` points per group.
    pub fn new(vnodes: u32) -> Self {
        ClusterMap {
            ring: Ring::new(&[], vnodes),
            ..ClusterMap::default()
        }
    }

    /// The member with this id.
    pub fn member(&self, id: MemberId) -> Option<&Member> {
        self.members.iter().find(|m| m.id == id)
    }

    /// The group with this id.
    pub fn group(&self, id: GroupId) -> Option<&ShardGroup> {
        self.groups.iter().find(|g| g.id == id)
    }

    /// The group owning `key`.
    pub fn group_for_key(&self, key: &[u8]) -> Option<GroupId> {
        self.ring.owner(key_hash(key))
    }

    /// The primary, core and port owning `key`.
    pub fn route(&self, key: &[u8]) -> Result<Route<'_>, RouteError> {
        let hash = key_hash(key);
        let group = self.ring.owner(hash).ok_or(RouteError::NoGroups)?;
        let member = self
            .group(group)
            .and_then(|g| g.primary)
            .and_then(|id| self.member(id))
            .ok_or(RouteError::NoPrimary(group))?;
        let cores = member.core_ports.len().max(1) as u32;
        let core = core_for_hash(hash, cores);
        let port = member
            .core_ports
            .get(core as usize)
            .copied()
            .unwrap_or(member.main_port);
        Ok(Route {
            group,
            member,
            core,
            port,
        })
    }

    /// Rebuilds the ring from the groups that are not joining.
    pub(crate) fn rebuild_ring(&mut self) {
        let ids: Vec<GroupId> = self
            .groups
            .iter()
            .map(|g| g.id)
            .filter(|g| !self.moving.as_ref().is_some_and(|m| m.joining.contains(g)))
            .collect();
        self.ring = Ring::new(&ids, self.ring.vnodes());
    }
}
