//! Rebuilding the map after the balancer restarted: nodes rejoin naming the group, role and
//! epoch they had, and groups this balancer never knew are made again under their old ids, so
//! the ring (a function of the group ids) comes back as it was and no data moves.

use crate::map::{Member, MemberState, Role, ShardGroup};
use crate::membership::{Action, JoinRequest, Membership, Place};
use crate::ring::GroupId;
impl Membership {
    /// Whether `now` is within the rebuild grace period: twice the failure-detection time
    /// since this balancer started.
    pub(crate) fn in_grace(&self, now: u64) -> bool {
        let grace = self
            .config
            .heartbeat_interval_ms
            .saturating_mul(self.config.missed_heartbeats.max(1))
            .saturating_mul(2);
        now.saturating_sub(self.born.unwrap_or(now)) <= grace
    }

    /// A node names a group this balancer never knew (the balancer restarted): the group is
    /// made again under its old id, with the node in its old role, and put straight on the
    /// ring (the ring follows from the group ids, so once every group is back it is the ring
    /// the nodes had). Epochs continue above the node's.
    pub(crate) fn rebuild_group(&mut self, req: JoinRequest, p: Place, now: u64) -> Vec<Action> {
        let id = self.next_member;
        self.next_member += 1;
        let primary = p.role == Role::Primary;
        self.map.groups.push(ShardGroup {
            id: p.group,
            primary: primary.then_some(id),
            replicas: if primary { Vec::new() } else { vec![id] },
        });
        self.next_group = self.next_group.max(p.group + 1);
        self.map.members.push(Member {
            id,
            host: req.host,
            main_port: req.main_port,
            core_ports: req.core_ports,
            role: p.role,
            group: Some(p.group),
            state: MemberState::Active,
        });
        self.last_seen.insert(id, now);
        self.map.rebuild_ring();
        let mut actions = vec![Action::Welcome {
            member: id,
            group: Some(p.group),
        }];
        actions.extend(self.restart_move());
        self.map.epoch = self.map.epoch.max(p.epoch) + 1;
        actions.push(Action::PublishMap);
        actions
    }

    /// Groups rebuilt from replicas whose primary did not come back within the grace period
    /// (twice the failure-detection time since this balancer started) get their best replica
    /// promoted.
    pub(crate) fn promote_headless(&mut self, now: u64) -> Vec<Action> {
        if self.in_grace(now) {
            return Vec::new();
        }
        let headless: Vec<GroupId> = self
            .map
            .groups
            .iter()
            .filter(|sg| sg.primary.is_none() && !sg.replicas.is_empty())
            .map(|sg| sg.id)
            .collect();
        headless
            .into_iter()
            .filter_map(|g| self.promote_best(g))
            .collect()
    }
}
