//! Range moves: how the ring changes when a primary joins a populated cluster or an operator
//! removes one. The ring does not flip at once: every group on the current ring streams the
//! keys the next ring gives to another group, and only when all have said so (through their
//! heartbeats) does the map switch, so no key is missed in between.

use crate::map::{MemberState, RangeMove, Role};
use crate::membership::{Action, Membership};
use crate::ring::{GroupId, Ring};
use crate::MemberId;

impl Membership {
    /// Puts the new group `g` on the ring: at once while the ring is empty, else by a move.
    pub(crate) fn add_group(&mut self, g: GroupId) -> Option<Action> {
        if self.map.ring.groups().is_empty() && self.map.moving.is_none() {
            self.map.rebuild_ring();
            return None;
        }
        let (joining, leaving) = match self.map.moving.take() {
            Some(m) => (m.joining, m.leaving),
            None => (Vec::new(), Vec::new()),
        };
        let mut joining = joining;
        joining.push(g);
        Some(self.start_move(joining, leaving))
    }

    /// (Re)starts a move with a new id towards the ring over every group but `leaving`.
    fn start_move(&mut self, joining: Vec<GroupId>, leaving: Vec<GroupId>) -> Action {
        let ids: Vec<GroupId> = self
            .map
            .groups
            .iter()
            .map(|g| g.id)
            .filter(|g| !leaving.contains(g))
            .collect();
        let id = self.next_move;
        self.next_move += 1;
        self.moved.clear();
        self.map.moving = Some(RangeMove {
            id,
            next_ring: Ring::new(&ids, self.map.ring.vnodes()),
            joining,
            leaving,
        });
        Action::MoveStarted { id }
    }

    /// After members left or died: drops joining groups that lost their primary (their ranges
    /// stay where they are) and restarts the move, whose sources may have changed.
    pub(crate) fn restart_move(&mut self) -> Option<Action> {
        let m = self.map.moving.take()?;
        let headless: Vec<GroupId> = m
            .joining
            .iter()
            .copied()
            .filter(|&g| self.map.group(g).is_none_or(|sg| sg.primary.is_none()))
            .collect();
        self.map.groups.retain(|g| !headless.contains(&g.id));
        self.retired.extend(headless.iter().copied());
        for mem in &mut self.map.members {
            if mem.group.is_some_and(|g| headless.contains(&g)) {
                mem.group = None;
                mem.state = MemberState::Waiting;
            }
        }
        let joining: Vec<GroupId> = m
            .joining
            .into_iter()
            .filter(|g| !headless.contains(g))
            .collect();
        let leaving: Vec<GroupId> = m
            .leaving
            .into_iter()
            .filter(|&g| self.map.group(g).is_some())
            .collect();
        if joining.is_empty() && leaving.is_empty() {
            return None;
        }
        Some(self.start_move(joining, leaving))
    }

    /// The primaries that stream in the current move: those of the groups on the ring.
    fn move_sources(&self) -> Vec<MemberId> {
        self.map
            .ring
            .groups()
            .iter()
            .filter_map(|&g| self.map.group(g).and_then(|sg| sg.primary))
            .collect()
    }

    /// Switches the ring once every source finished the current move.
    pub(crate) fn check_move(&mut self) -> Vec<Action> {
        let Some(m) = self.map.moving.as_ref() else {
            return Vec::new();
        };
        let id = m.id;
        let done = self
            .move_sources()
            .iter()
            .all(|s| self.moved.get(s) == Some(&id));
        if !done {
            return Vec::new();
        }
        let Some(m) = self.map.moving.take() else {
            return Vec::new();
        };
        self.map.ring = m.next_ring;
        let mut actions = vec![Action::MoveDone { id }];
        for g in m.leaving {
            let Some(sg) = self.map.group(g).cloned() else {
                continue;
            };
            self.map.groups.retain(|x| x.id != g);
            self.retired.insert(g);
            if let Some(p) = sg.primary {
                if let Some(mem) = self.map.member(p) {
                    self.removed.insert((mem.host.clone(), mem.main_port), p);
                    self.former.remove(&(mem.host.clone(), mem.main_port));
                }
                self.map.members.retain(|x| x.id != p);
                self.last_seen.remove(&p);
            }
            // The leaving group's replicas serve elsewhere.
            for r in sg.replicas {
                if let Some(mem) = self.map.members.iter_mut().find(|x| x.id == r) {
                    mem.group = None;
                    mem.role = Role::Replica;
                    mem.state = MemberState::Waiting;
                }
            }
        }
        actions.extend(self.assign_waiting());
        self.map.epoch += 1;
        actions.push(Action::PublishMap);
        actions
    }

    /// An operator removes `member`: a primary of a group on a ring of several groups hands its
    /// ranges on first; anything else leaves at once. It may not join again.
    pub(crate) fn operator_remove(&mut self, member: MemberId) -> Vec<Action> {
        let Some(mem) = self.map.member(member).cloned() else {
            return vec![Action::Reject {
                reason: format!("no member {member} in the cluster"),
            }];
        };
        let leads = mem
            .group
            .filter(|&g| self.map.group(g).and_then(|sg| sg.primary) == Some(member));
        let on_ring = leads.filter(|g| self.map.ring.groups().contains(g));
        match on_ring {
            Some(g) if self.map.ring.groups().len() > 1 => {
                let (joining, mut leaving) = match self.map.moving.take() {
                    Some(m) => (m.joining, m.leaving),
                    None => (Vec::new(), Vec::new()),
                };
                if !leaving.contains(&g) {
                    leaving.push(g);
                }
                let a = self.start_move(joining, leaving);
                self.map.epoch += 1;
                vec![a, Action::PublishMap]
            }
            Some(_) => vec![Action::Reject {
                reason: "the last shard group cannot hand its ranges to anyone".into(),
            }],
            None => {
                self.removed
                    .insert((mem.host.clone(), mem.main_port), member);
                let mut actions = self.remove(member);
                self.former.remove(&(mem.host, mem.main_port));
                actions.extend(self.restart_move());
                self.map.epoch += 1;
                actions.push(Action::PublishMap);
                actions
            }
        }
    }
}
