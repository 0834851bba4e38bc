//! Membership: the balancer's decisions as a state machine. Fed with events (join, heartbeat,
//! tick, leave), it updates the cluster map and returns the actions to carry out; it never
//! touches a socket or a clock.

use std::collections::HashMap;

use crate::map::{ClusterMap, Member, MemberId, MemberState, Role, ShardGroup};
use crate::ring::{GroupId, DEFAULT_VNODES};

/// Failure-detection settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MembershipConfig {
    /// Expected time between a member's heartbeats, in ms.
    pub heartbeat_interval_ms: u64,
    /// Heartbeats a member may miss before it is declared dead.
    pub missed_heartbeats: u64,
    /// Virtual nodes per group on the ring.
    pub vnodes: u32,
}

impl Default for MembershipConfig {
    fn default() -> Self {
        MembershipConfig {
            heartbeat_interval_ms: 100,
            missed_heartbeats: 5,
            vnodes: DEFAULT_VNODES,
        }
    }
}

/// A node asking to join.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JoinRequest {
    /// Host it listens on.
    pub host: String,
    /// Its main port.
    pub main_port: u16,
    /// Its per-core ports.
    pub core_ports: Vec<u16>,
    /// The role it asks for.
    pub role: Role,
    /// The group it names (replicas), if any.
    pub group: Option<GroupId>,
    /// The cluster secret it was given (checked by the balancer before this reaches here).
    pub secret: Option<String>,
    /// Where it stood in the last map it had, when it had one: a restarted balancer rebuilds
    /// the groups (and so the same ring) from these.
    pub previous: Option<Place>,
}

/// A member's place in a map it was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Place {
    /// Its group.
    pub group: GroupId,
    /// Its role there.
    pub role: Role,
    /// That map's epoch.
    pub epoch: u64,
}

/// What happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A node asks to join.
    Join(JoinRequest),
    /// A member is alive; `applied` is its replication position (writes applied) and `ready`
    /// says whether it is caught up (only caught-up replicas are promoted while one exists);
    /// `moved` is the last range move it finished streaming (0: none).
    Heartbeat {
        /// The member.
        member: MemberId,
        /// Writes it applied (its replication position).
        applied: u64,
        /// Whether it is caught up.
        ready: bool,
        /// The last range move it finished streaming.
        moved: u64,
        /// The sender's main port (0: not checked): a restarted balancer reuses member ids,
        /// so a heartbeat whose id now names another node must not count for that node.
        port: u16,
    },
    /// An operator removes a member: a primary hands its ranges on first, then leaves.
    Remove {
        /// The member.
        member: MemberId,
    },
    /// Time passes; dead members are found here.
    Tick,
    /// A member leaves on purpose.
    Leave {
        /// The member.
        member: MemberId,
    },
}

/// What the caller must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Tell the joining node its id (and group, once it has one).
    Welcome {
        /// Its member id.
        member: MemberId,
        /// Its group, once it has one.
        group: Option<GroupId>,
    },
    /// Refuse a request, with the reason.
    Reject {
        /// Why.
        reason: String,
    },
    /// The map changed: push it to every member (and waiting clients).
    PublishMap,
    /// `member` was declared dead.
    Dead {
        /// The member.
        member: MemberId,
    },
    /// `member` now leads `group` (after its primary died).
    Promoted {
        /// The member.
        member: MemberId,
        /// The group it now leads.
        group: GroupId,
    },
    /// A heartbeat came from a member the map does not know (it was declared dead): it must
    /// join again.
    Rejoin {
        /// The member.
        member: MemberId,
    },
    /// A heartbeat came from a member an operator removed: it must stop.
    Removed {
        /// The member.
        member: MemberId,
    },
    /// A range move started (or restarted with a new id).
    MoveStarted {
        /// The move's id.
        id: u64,
    },
    /// A range move finished: the ring switched.
    MoveDone {
        /// The move's id.
        id: u64,
    },
    /// A replica was moved from one group to another that had none.
    ReplicaMoved {
        /// The replica.
        member: MemberId,
        /// The group it left.
        from: GroupId,
        /// The group it joined.
        to: GroupId,
    },
}

/// The membership state machine.
#[derive(Clone, Debug)]
pub struct Membership {
    pub(crate) config: MembershipConfig,
    pub(crate) map: ClusterMap,
    pub(crate) last_seen: HashMap<MemberId, u64>,
    pub(crate) applied: HashMap<MemberId, (bool, u64)>,
    /// The group each address last belonged to, so a node that comes back rejoins it.
    pub(crate) former: HashMap<(String, u16), GroupId>,
    /// Addresses an operator removed: they may not join again.
    pub(crate) removed: HashMap<(String, u16), MemberId>,
    /// Source primaries that finished the current move.
    pub(crate) moved: HashMap<MemberId, u64>,
    pub(crate) next_move: u64,
    /// Groups this balancer removed: a claim to one of them is not honoured.
    pub(crate) retired: std::collections::HashSet<GroupId>,
    /// The first time this balancer saw (for the grace period of a rebuild).
    pub(crate) born: Option<u64>,
    /// A node named its place in an earlier map: this balancer is rebuilding one.
    pub(crate) claims_seen: bool,
    /// Replicas whose operator named their group: never moved to balance replicas.
    pub(crate) pinned: std::collections::HashSet<MemberId>,
    pub(crate) next_member: MemberId,
    pub(crate) next_group: GroupId,
}

impl Membership {
    /// An empty cluster.
    pub fn new(config: MembershipConfig) -> Self {
        Membership {
            map: ClusterMap::new(config.vnodes),
            config,
            last_seen: HashMap::new(),
            applied: HashMap::new(),
            former: HashMap::new(),
            removed: HashMap::new(),
            moved: HashMap::new(),
            next_move: 1,
            retired: std::collections::HashSet::new(),
            born: None,
            claims_seen: false,
            pinned: std::collections::HashSet::new(),
            next_member: 1,
            next_group: 1,
        }
    }

    /// The current map.
    pub fn map(&self) -> &ClusterMap {
        &self.map
    }

    /// Handles `event` at time `now` (ms) and returns the actions to carry out.
    pub fn handle(&mut self, event: Event, now: u64) -> Vec<Action> {
        self.born.get_or_insert(now);
        match event {
            Event::Join(req) => self.join(req, now),
            Event::Heartbeat {
                member,
                applied,
                ready,
                moved,
                port,
            } => {
                let other = self
                    .map
                    .member(member)
                    .is_some_and(|m| port != 0 && m.main_port != port);
                if other || self.map.member(member).is_none() {
                    if self.removed.values().any(|&m| m == member) {
                        return vec![Action::Removed { member }];
                    }
                    return vec![Action::Rejoin { member }];
                }
                self.last_seen.insert(member, now);
                self.applied.insert(member, (ready, applied));
                self.moved.insert(member, moved);
                self.check_move()
            }
            Event::Remove { member } => self.operator_remove(member),
            Event::Tick => self.tick(now),
            Event::Leave { member } => {
                if self.map.member(member).is_none() {
                    return Vec::new();
                }
                let mut actions = self.remove(member);
                actions.extend(self.restart_move());
                actions.push(Action::PublishMap);
                self.map.epoch += 1;
                actions
            }
        }
    }

    fn join(&mut self, req: JoinRequest, now: u64) -> Vec<Action> {
        if req.core_ports.is_empty() {
            return vec![Action::Reject {
                reason: "a member needs at least one core port".into(),
            }];
        }
        if self
            .removed
            .contains_key(&(req.host.clone(), req.main_port))
        {
            return vec![Action::Reject {
                reason: format!(
                    "{}:{} was removed from the cluster by an operator",
                    req.host, req.main_port
                ),
            }];
        }
        let duplicate = self
            .map
            .members
            .iter()
            .any(|m| m.host == req.host && m.main_port == req.main_port);
        if duplicate {
            return vec![Action::Reject {
                reason: format!("{}:{} is already a member", req.host, req.main_port),
            }];
        }
        let id = self.next_member;
        let mut actions = Vec::new();
        if req.previous.is_some() {
            self.claims_seen = true;
        } else if req.role == Role::Primary && self.claims_seen && self.in_grace(now) {
            // A brand-new group now could take the id of a group whose nodes are still on
            // their way back.
            return vec![Action::Reject {
                reason: "the balancer is rebuilding the cluster map from returning nodes; a new primary joins after that".into(),
            }];
        }
        if let Some(p) = req.previous {
            if self.map.group(p.group).is_none() && !self.retired.contains(&p.group) {
                return self.rebuild_group(req, p, now);
            }
        }
        // A node that comes back (restarted or reconnected) rejoins its former group as a
        // replica: the group's data lives on there, not in a new group.
        let former = self
            .former
            .get(&(req.host.clone(), req.main_port))
            .copied()
            .filter(|g| self.map.group(*g).is_some());
        let mut req = req;
        let named_by_operator = req.role == Role::Replica && req.group.is_some();
        // Its old primaryship counts only where the group lacks a primary.
        let claims_primary = req.previous.is_some_and(|p| p.role == Role::Primary);
        let claimed = req
            .previous
            .map(|p| p.group)
            .filter(|g| self.map.group(*g).is_some());
        if let Some(g) = former.or(claimed) {
            req.role = Role::Replica;
            req.group = Some(g);
        }
        let (group, state) = match req.role {
            Role::Primary => {
                let g = self.next_group;
                self.next_group += 1;
                self.map.groups.push(ShardGroup {
                    id: g,
                    primary: Some(id),
                    replicas: Vec::new(),
                });
                if let Some(a) = self.add_group(g) {
                    actions.push(a);
                }
                (Some(g), MemberState::Active)
            }
            Role::Replica => match self.place_replica(req.group, req.core_ports.len()) {
                Ok(Some(g)) => (Some(g), MemberState::Active),
                Ok(None) => (None, MemberState::Waiting),
                Err(reason) => return vec![Action::Reject { reason }],
            },
        };
        self.next_member += 1;
        if let (Some(g), Role::Replica) = (group, req.role) {
            if let Some(sg) = self.map.groups.iter_mut().find(|sg| sg.id == g) {
                if sg.primary.is_none() && (sg.replicas.is_empty() || claims_primary) {
                    // A headless group: whoever comes first leads it (or its old primary).
                    sg.primary = Some(id);
                    req.role = Role::Primary;
                } else {
                    sg.replicas.push(id);
                }
            }
        }
        self.map.members.push(Member {
            id,
            host: req.host,
            main_port: req.main_port,
            core_ports: req.core_ports,
            role: req.role,
            group,
            state,
        });
        self.last_seen.insert(id, now);
        if named_by_operator {
            self.pinned.insert(id);
        }
        actions.push(Action::Welcome { member: id, group });
        // A new primary may take waiting replicas; a waiting replica may lead a headless group;
        // a new group without a replica may take a spare one.
        actions.extend(self.assign_waiting());
        actions.extend(self.balance_replicas(now));
        self.map.epoch += 1;
        actions.push(Action::PublishMap);
        actions
    }

    /// The group a joining replica with `cores` cores goes to: the one it names, else the
    /// group with the fewest replicas; `None` when there is no group yet (it waits). A replica
    /// has as many cores as its primary, so each primary core streams to one replica core.
    fn place_replica(
        &self,
        named: Option<GroupId>,
        cores: usize,
    ) -> Result<Option<GroupId>, String> {
        let primary_cores = |g: &ShardGroup| {
            g.primary
                .and_then(|p| self.map.member(p))
                .map(|m| m.core_ports.len())
        };
        if let Some(g) = named {
            return match self.map.group(g) {
                Some(sg) => match primary_cores(sg) {
                    Some(n) if n != cores => Err(format!(
                        "shard group {g}'s primary has {n} cores; a replica needs as many (it has {cores})"
                    )),
                    _ => Ok(Some(g)),
                },
                None if self.map.groups.is_empty() => Ok(None),
                None => Err(format!("shard group {g} does not exist")),
            };
        }
        Ok(self
            .map
            .groups
            .iter()
            .filter(|g| primary_cores(g) == Some(cores))
            .min_by_key(|g| (g.replicas.len(), g.id))
            .map(|g| g.id))
    }

    /// Gives waiting replicas to groups: first as primary of a group that lost its primary
    /// with nobody to promote, then as replicas of the groups with the fewest.
    pub(crate) fn assign_waiting(&mut self) -> Vec<Action> {
        let mut actions = Vec::new();
        let waiting: Vec<MemberId> = self
            .map
            .members
            .iter()
            .filter(|m| m.state == MemberState::Waiting)
            .map(|m| m.id)
            .collect();
        for id in waiting {
            let headless = self
                .map
                .groups
                .iter()
                .find(|g| g.primary.is_none() && g.replicas.is_empty())
                .map(|g| g.id);
            let cores = self.map.member(id).map_or(0, |m| m.core_ports.len());
            let target = headless.or_else(|| self.place_replica(None, cores).ok().flatten());
            let Some(g) = target else { break };
            let becomes_primary = headless.is_some();
            if let Some(sg) = self.map.groups.iter_mut().find(|sg| sg.id == g) {
                if becomes_primary {
                    sg.primary = Some(id);
                } else {
                    sg.replicas.push(id);
                }
            }
            if let Some(m) = self.map.members.iter_mut().find(|m| m.id == id) {
                m.group = Some(g);
                m.state = MemberState::Active;
                if becomes_primary {
                    m.role = Role::Primary;
                }
            }
            actions.push(if becomes_primary {
                Action::Promoted {
                    member: id,
                    group: g,
                }
            } else {
                Action::Welcome {
                    member: id,
                    group: Some(g),
                }
            });
        }
        actions
    }

    fn tick(&mut self, now: u64) -> Vec<Action> {
        let limit = self
            .config
            .heartbeat_interval_ms
            .saturating_mul(self.config.missed_heartbeats.max(1));
        let dead: Vec<MemberId> = self
            .map
            .members
            .iter()
            .filter(|m| now.saturating_sub(self.last_seen.get(&m.id).copied().unwrap_or(0)) > limit)
            .map(|m| m.id)
            .collect();
        let mut actions = self.promote_headless(now);
        if dead.is_empty() {
            actions.extend(self.balance_replicas(now));
            if !actions.is_empty() {
                self.map.epoch += 1;
                actions.push(Action::PublishMap);
            }
            return actions;
        }
        for id in dead {
            actions.push(Action::Dead { member: id });
            actions.extend(self.remove(id));
        }
        // The sources may have changed (a promoted primary holds no stream state): start over.
        actions.extend(self.restart_move());
        actions.extend(self.balance_replicas(now));
        self.map.epoch += 1;
        actions.push(Action::PublishMap);
        actions
    }

    /// Makes the best replica of `group` (which has no primary) its primary: a caught-up one
    /// first, then the one with most writes applied; ties go to the lowest id, so the choice is
    /// stable.
    pub(crate) fn promote_best(&mut self, group: GroupId) -> Option<Action> {
        let applied = &self.applied;
        let sg = self
            .map
            .groups
            .iter_mut()
            .find(|sg| sg.id == group && sg.primary.is_none())?;
        let best = sg.replicas.iter().copied().max_by_key(|r| {
            let (ready, n) = applied.get(r).copied().unwrap_or((false, 0));
            (ready, n, std::cmp::Reverse(*r))
        })?;
        sg.replicas.retain(|&x| x != best);
        sg.primary = Some(best);
        if let Some(m) = self.map.members.iter_mut().find(|m| m.id == best) {
            m.role = Role::Primary;
        }
        Some(Action::Promoted {
            member: best,
            group,
        })
    }

    /// Takes `id` out of the map, promoting the most up-to-date replica if it led a group.
    pub(crate) fn remove(&mut self, id: MemberId) -> Vec<Action> {
        let mut actions = Vec::new();
        let group = self.map.member(id).and_then(|m| m.group);
        if let (Some(m), Some(g)) = (self.map.member(id), group) {
            self.former.insert((m.host.clone(), m.main_port), g);
        }
        self.map.members.retain(|m| m.id != id);
        self.last_seen.remove(&id);
        self.pinned.remove(&id);
        if let Some(g) = group {
            let mut led = false;
            if let Some(sg) = self.map.groups.iter_mut().find(|sg| sg.id == g) {
                sg.replicas.retain(|&r| r != id);
                if sg.primary == Some(id) {
                    sg.primary = None;
                    led = true;
                }
            }
            if led {
                actions.extend(self.promote_best(g));
            }
        }
        self.applied.remove(&id);
        actions.extend(self.assign_waiting());
        actions
    }
}
