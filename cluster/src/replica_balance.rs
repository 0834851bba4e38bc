//! Replica balance: a group left without a replica takes one from a group that has two or
//! more, so one lost node never takes a group's only copy of its keys while spare copies sit
//! elsewhere (replicas that joined before the last primary, or a group whose replica died).

use crate::map::{MemberId, Role};
use crate::membership::{Action, Membership};
use crate::ring::GroupId;

impl Membership {
    /// Moves replicas, one per group that has none, from groups with two or more. Replicas
    /// placed by their operator (`--group`) stay where they are; nothing moves during a range
    /// move or while a restarted balancer is still rebuilding the map. The moved replica
    /// learns its new group from the map: it drops the old group's data and is copied whole by
    /// its new primary.
    pub(crate) fn balance_replicas(&mut self, now: u64) -> Vec<Action> {
        let mut actions = Vec::new();
        if self.map.moving.is_some() || (self.claims_seen && self.in_grace(now)) {
            return actions;
        }
        // Each pass moves one replica into one group without any; bounded by the group count.
        for _ in 0..self.map.groups.len() {
            let Some((member, from, to)) = self.next_replica_move() else {
                break;
            };
            for sg in self.map.groups.iter_mut() {
                if sg.id == from {
                    sg.replicas.retain(|&r| r != member);
                } else if sg.id == to {
                    sg.replicas.push(member);
                }
            }
            if let Some(m) = self.map.members.iter_mut().find(|m| m.id == member) {
                m.group = Some(to);
            }
            actions.push(Action::ReplicaMoved { member, from, to });
        }
        actions
    }

    /// The next move: the least caught-up movable replica (the newest on a tie) of the group
    /// with the most replicas (at least two) into the lowest-numbered led group with none whose
    /// primary has as many cores.
    fn next_replica_move(&self) -> Option<(MemberId, GroupId, GroupId)> {
        let cores_of = |id: MemberId| self.map.member(id).map(|m| m.core_ports.len());
        let mut empty: Vec<_> = self
            .map
            .groups
            .iter()
            .filter(|g| g.replicas.is_empty())
            .filter_map(|g| Some((g.id, cores_of(g.primary?)?)))
            .collect();
        empty.sort_unstable();
        for (to, cores) in empty {
            let donor = self
                .map
                .groups
                .iter()
                .filter(|g| g.replicas.len() >= 2 && g.primary.is_some())
                .filter_map(|g| {
                    // The least caught-up movable replica goes: the donor keeps its best copy.
                    let r = g
                        .replicas
                        .iter()
                        .copied()
                        .filter(|&r| {
                            !self.pinned.contains(&r)
                                && cores_of(r) == Some(cores)
                                && self.map.member(r).is_some_and(|m| m.role == Role::Replica)
                        })
                        .min_by_key(|r| {
                            let (ready, applied) = self.applied.get(r).copied().unwrap_or_default();
                            (ready, applied, std::cmp::Reverse(*r))
                        })?;
                    Some((g.replicas.len(), std::cmp::Reverse(g.id), r, g.id))
                })
                .max();
            if let Some((_, _, r, from)) = donor {
                return Some((r, from, to));
            }
        }
        None
    }
}
