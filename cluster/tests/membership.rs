//! The membership state machine driven by events, checked without sockets.

use proptest::prelude::*;
use ringcache_cluster::{
    Action, ClusterMap, Event, JoinRequest, MemberState, Membership, MembershipConfig, Role,
};

fn join(port: u16, role: Role, group: Option<u32>) -> Event {
    Event::Join(JoinRequest {
        host: "127.0.0.1".into(),
        main_port: port,
        core_ports: vec![port + 1, port + 2],
        role,
        group,
        secret: None,
        previous: None,
    })
}

fn config() -> MembershipConfig {
    MembershipConfig {
        heartbeat_interval_ms: 100,
        missed_heartbeats: 3,
        vnodes: 64,
    }
}

fn welcomed(actions: &[Action]) -> u64 {
    actions
        .iter()
        .find_map(|a| match a {
            Action::Welcome { member, .. } => Some(*member),
            _ => None,
        })
        .expect("welcomed")
}

fn check_invariants(map: &ClusterMap) {
    let joining: &[u32] = map.moving.as_ref().map_or(&[], |mv| &mv.joining);
    let mut ring_groups: Vec<u32> = map
        .groups
        .iter()
        .map(|g| g.id)
        .filter(|g| !joining.contains(g))
        .collect();
    ring_groups.sort_unstable();
    assert_eq!(
        map.ring.groups(),
        &ring_groups[..],
        "ring and groups disagree"
    );
    if let Some(mv) = &map.moving {
        let mut next: Vec<u32> = map
            .groups
            .iter()
            .map(|g| g.id)
            .filter(|g| !mv.leaving.contains(g))
            .collect();
        next.sort_unstable();
        assert_eq!(
            mv.next_ring.groups(),
            &next[..],
            "next ring and groups disagree"
        );
    }
    for g in &map.groups {
        for id in g.primary.iter().chain(g.replicas.iter()) {
            let m = map.member(*id).expect("group names a missing member");
            assert_eq!(m.group, Some(g.id));
            assert_eq!(m.state, MemberState::Active);
        }
        if let Some(p) = g.primary {
            assert!(!g.replicas.contains(&p), "primary is also a replica");
            assert_eq!(map.member(p).map(|m| m.role), Some(Role::Primary));
        }
    }
    for m in &map.members {
        let holders = map
            .groups
            .iter()
            .filter(|g| g.primary == Some(m.id) || g.replicas.contains(&m.id))
            .count();
        let expected = usize::from(m.state == MemberState::Active);
        assert_eq!(holders, expected, "member {} in {holders} groups", m.id);
    }
}

#[test]
fn primaries_create_groups_and_replicas_spread_over_them() {
    let mut m = Membership::new(config());
    for p in [1000, 2000, 3000] {
        m.handle(join(p, Role::Primary, None), 0);
    }
    for p in [1100, 2100, 3100] {
        m.handle(join(p, Role::Replica, None), 0);
    }
    // The first primary streams the ranges of the two that joined after it.
    finish_move(&mut m, 1, 0);
    let map = m.map();
    assert_eq!(map.groups.len(), 3);
    assert_eq!(map.ring.groups(), &[1, 2, 3]);
    assert!(map.groups.iter().all(|g| g.replicas.len() == 1));
    assert_eq!(map.epoch, 7);
    check_invariants(map);
    let route = map.route(b"some key").expect("route");
    assert_eq!(route.member.role, Role::Primary);
    assert!(route.member.core_ports.contains(&route.port));
}

#[test]
fn a_replica_that_arrives_first_waits_then_joins_the_first_primary() {
    let mut m = Membership::new(config());
    let a = m.handle(join(1100, Role::Replica, None), 0);
    let r = welcomed(&a);
    assert_eq!(
        m.map().member(r).map(|x| x.state),
        Some(MemberState::Waiting)
    );
    assert!(m.map().route(b"k").is_err());
    let b = m.handle(join(1000, Role::Primary, None), 0);
    assert!(b.contains(&Action::PublishMap));
    let g = m.map().member(r).and_then(|x| x.group).expect("assigned");
    assert_eq!(m.map().group(g).map(|g| g.replicas.clone()), Some(vec![r]));
    check_invariants(m.map());
}

#[test]
fn a_silent_primary_is_replaced_by_its_most_up_to_date_replica() {
    let mut m = Membership::new(config());
    let p = welcomed(&m.handle(join(1000, Role::Primary, None), 0));
    let r1 = welcomed(&m.handle(join(1100, Role::Replica, Some(1)), 0));
    let r2 = welcomed(&m.handle(join(1200, Role::Replica, Some(1)), 0));
    let epoch = m.map().epoch;
    for t in (100..=250).step_by(50) {
        m.handle(
            Event::Heartbeat {
                member: r1,
                applied: 10,
                ready: true,
                moved: 0,
                port: 0,
            },
            t,
        );
        m.handle(
            Event::Heartbeat {
                member: r2,
                applied: 12,
                ready: true,
                moved: 0,
                port: 0,
            },
            t,
        );
        assert!(m.handle(Event::Tick, t).is_empty());
    }
    let actions = m.handle(Event::Tick, 301);
    assert!(actions.contains(&Action::Dead { member: p }));
    assert!(actions.contains(&Action::Promoted {
        member: r2,
        group: 1
    }));
    assert!(actions.contains(&Action::PublishMap));
    assert!(m.map().epoch > epoch);
    assert_eq!(m.map().group(1).and_then(|g| g.primary), Some(r2));
    assert_eq!(m.map().route(b"k").map(|r| r.member.id), Ok(r2));
    check_invariants(m.map());
    // The old primary comes back talking: it must join again.
    assert_eq!(
        m.handle(
            Event::Heartbeat {
                member: p,
                applied: 0,
                ready: true,
                moved: 0,
                port: 0,
            },
            302
        ),
        vec![Action::Rejoin { member: p }]
    );
}

#[test]
fn a_group_without_members_fails_routing_clearly() {
    let mut m = Membership::new(config());
    let p = welcomed(&m.handle(join(1000, Role::Primary, None), 0));
    m.handle(Event::Leave { member: p }, 10);
    assert_eq!(
        m.map().route(b"k").map(|r| r.port),
        Err(ringcache_cluster::RouteError::NoPrimary(1))
    );
    // A replica joining now leads the headless group.
    let r = welcomed(&m.handle(join(1100, Role::Replica, None), 20));
    assert_eq!(m.map().group(1).and_then(|g| g.primary), Some(r));
    check_invariants(m.map());
}

#[test]
fn bad_joins_are_refused() {
    let mut m = Membership::new(config());
    m.handle(join(1000, Role::Primary, None), 0);
    assert!(matches!(
        m.handle(join(1000, Role::Primary, None), 0)[..],
        [Action::Reject { .. }]
    ));
    assert!(matches!(
        m.handle(join(1100, Role::Replica, Some(9)), 0)[..],
        [Action::Reject { .. }]
    ));
    let mut no_cores = join(1200, Role::Primary, None);
    if let Event::Join(j) = &mut no_cores {
        j.core_ports.clear();
    }
    assert!(matches!(m.handle(no_cores, 0)[..], [Action::Reject { .. }]));
}

#[derive(Clone, Debug)]
enum Step {
    Join(u16, bool, Option<u32>),
    Beat(u64, u64),
    Leave(u64),
    Remove(u64),
    Claim(u16, bool, u32),
    Advance(u64),
}

proptest! {
    #[test]
    fn invariants_hold_under_random_events(steps in prop::collection::vec(prop_oneof![
        (0u16..20, any::<bool>(), prop::option::of(1u32..4)).prop_map(|(p, primary, g)| Step::Join(p, primary, g)),
        (1u64..20, 0u64..100).prop_map(|(m, a)| Step::Beat(m, a)),
        (1u64..20).prop_map(Step::Leave),
        (1u64..20).prop_map(Step::Remove),
        (0u16..20, any::<bool>(), 1u32..6).prop_map(|(p, primary, g)| Step::Claim(p, primary, g)),
        (1u64..400).prop_map(Step::Advance),
    ], 1..80)) {
        let mut m = Membership::new(config());
        let mut now = 0;
        let mut epoch = 0;
        for step in steps {
            match step {
                Step::Join(p, primary, g) => {
                    let role = if primary { Role::Primary } else { Role::Replica };
                    m.handle(join(1000 + p * 10, role, g), now);
                }
                Step::Beat(id, applied) => {
                    // Half the beats report the running move as done.
                    let moved = match &m.map().moving {
                        Some(mv) if applied % 2 == 0 => mv.id,
                        _ => 0,
                    };
                    m.handle(Event::Heartbeat { member: id, applied, ready: true, moved, port: 0 }, now);
                }
                Step::Leave(id) => { m.handle(Event::Leave { member: id }, now); }
                Step::Remove(id) => { m.handle(Event::Remove { member: id }, now); }
                Step::Claim(p, primary, g) => {
                    let role = if primary { Role::Primary } else { Role::Replica };
                    m.handle(claim(1000 + p * 10, role, g, 5), now);
                }
                Step::Advance(dt) => { now += dt; m.handle(Event::Tick, now); }
            }
            prop_assert!(m.map().epoch >= epoch);
            epoch = m.map().epoch;
            check_invariants(m.map());
        }
    }
}

#[test]
fn a_returning_node_rejoins_its_former_group_as_replica() {
    let mut m = Membership::new(config());
    let p = welcomed(&m.handle(join(1000, Role::Primary, None), 0));
    let r = welcomed(&m.handle(join(1100, Role::Replica, Some(1)), 0));
    // Only the replica keeps beating: the primary dies, the replica leads.
    for t in (100..=400).step_by(50) {
        m.handle(
            Event::Heartbeat {
                member: r,
                applied: 1,
                ready: true,
                moved: 0,
                port: 0,
            },
            t,
        );
        m.handle(Event::Tick, t);
    }
    assert_eq!(m.map().group(1).and_then(|g| g.primary), Some(r));
    assert!(m.map().member(p).is_none());
    // The old primary restarts (asking to be a primary): it becomes a replica of group 1.
    let back = welcomed(&m.handle(join(1000, Role::Primary, None), 410));
    assert_eq!(m.map().groups.len(), 1);
    assert_eq!(
        m.map().group(1).map(|g| g.replicas.clone()),
        Some(vec![back])
    );
    assert_eq!(m.map().member(back).map(|x| x.role), Some(Role::Replica));
    check_invariants(m.map());
}

#[test]
fn a_caught_up_replica_is_promoted_before_a_fuller_one_still_copying() {
    let mut m = Membership::new(config());
    welcomed(&m.handle(join(1000, Role::Primary, None), 0));
    let r1 = welcomed(&m.handle(join(1100, Role::Replica, Some(1)), 0));
    let r2 = welcomed(&m.handle(join(1200, Role::Replica, Some(1)), 0));
    for t in (100..=400).step_by(50) {
        let beat = |member, applied, ready| Event::Heartbeat {
            member,
            applied,
            ready,
            moved: 0,
            port: 0,
        };
        m.handle(beat(r1, 5, true), t);
        m.handle(beat(r2, 50, false), t);
        m.handle(Event::Tick, t);
    }
    assert_eq!(m.map().group(1).and_then(|g| g.primary), Some(r1));
}

fn beat(member: u64, moved: u64) -> Event {
    Event::Heartbeat {
        member,
        applied: 0,
        ready: true,
        moved,
        port: 0,
    }
}

fn move_id(m: &Membership) -> u64 {
    m.map()
        .moving
        .as_ref()
        .map(|mv| mv.id)
        .expect("a move runs")
}

/// The running range move's source `source` reports every stream of it done at `now`.
fn finish_move(m: &mut Membership, source: u64, now: u64) -> Vec<Action> {
    let id = move_id(m);
    m.handle(beat(source, id), now)
}

#[test]
fn a_primary_joining_a_populated_ring_waits_for_its_ranges() {
    let mut m = Membership::new(config());
    let p1 = welcomed(&m.handle(join(1000, Role::Primary, None), 0));
    assert_eq!(m.map().ring.groups(), &[1]);
    let p2 = welcomed(&m.handle(join(1100, Role::Primary, None), 0));
    // Group 2 exists but owns nothing until group 1 streamed its ranges.
    assert_eq!(m.map().ring.groups(), &[1]);
    assert_eq!(m.map().groups.len(), 2);
    let id = move_id(&m);
    assert_eq!(m.map().moving.as_ref().unwrap().joining, vec![2]);
    // A third primary joins meanwhile: the move restarts with both.
    let p3 = welcomed(&m.handle(join(1200, Role::Primary, None), 0));
    let id2 = move_id(&m);
    assert!(id2 > id);
    assert!(
        m.handle(beat(p1, id), 10).is_empty(),
        "an old move id does not count"
    );
    assert!(
        m.handle(beat(p2, id2), 10).is_empty(),
        "joining groups are no sources"
    );
    let epoch = m.map().epoch;
    let actions = m.handle(beat(p1, id2), 20);
    assert!(actions.contains(&Action::MoveDone { id: id2 }));
    assert!(actions.contains(&Action::PublishMap));
    assert!(m.map().epoch > epoch);
    assert_eq!(m.map().ring.groups(), &[1, 2, 3]);
    assert!(m.map().moving.is_none());
    let _ = p3;
    check_invariants(m.map());
}

#[test]
fn an_operator_removes_a_primary_after_it_hands_its_ranges_on() {
    let mut m = Membership::new(config());
    let p1 = welcomed(&m.handle(join(1000, Role::Primary, None), 0));
    let p2 = welcomed(&m.handle(join(1100, Role::Primary, None), 0));
    finish_move(&mut m, p1, 10);
    let r2 = welcomed(&m.handle(join(1200, Role::Replica, Some(2)), 10));
    assert_eq!(m.map().ring.groups(), &[1, 2]);
    let actions = m.handle(Event::Remove { member: p2 }, 20);
    assert!(actions
        .iter()
        .any(|a| matches!(a, Action::MoveStarted { .. })));
    let id = move_id(&m);
    assert_eq!(m.map().ring.groups(), &[1, 2], "no flip before the streams");
    m.handle(beat(p1, id), 30);
    assert!(m.map().moving.is_some(), "the leaving group streams too");
    m.handle(beat(p2, id), 30);
    assert!(m.map().moving.is_none());
    assert_eq!(m.map().ring.groups(), &[1]);
    assert!(m.map().member(p2).is_none());
    // Its replica serves group 1 now; the removed node may not come back.
    assert_eq!(m.map().member(r2).and_then(|x| x.group), Some(1));
    assert_eq!(
        m.handle(beat(p2, id), 40),
        vec![Action::Removed { member: p2 }]
    );
    assert!(matches!(
        m.handle(join(1100, Role::Primary, None), 50).as_slice(),
        [Action::Reject { .. }]
    ));
    // The last group cannot leave.
    assert!(matches!(
        m.handle(Event::Remove { member: p1 }, 60).as_slice(),
        [Action::Reject { .. }]
    ));
    check_invariants(m.map());
}

fn claim(port: u16, role: Role, group: u32, epoch: u64) -> Event {
    Event::Join(JoinRequest {
        host: "127.0.0.1".into(),
        main_port: port,
        core_ports: vec![port + 1, port + 2],
        role,
        group: None,
        secret: None,
        previous: Some(ringcache_cluster::Place { group, role, epoch }),
    })
}

#[test]
fn a_restarted_balancer_rebuilds_groups_and_ring_from_what_nodes_had() {
    // The map the nodes had before the balancer restarted: groups 1 and 2, one replica each.
    let mut before = Membership::new(config());
    for (port, role, group) in [
        (1000, Role::Primary, None),
        (1100, Role::Primary, None),
        (1200, Role::Replica, Some(1)),
        (1300, Role::Replica, Some(2)),
    ] {
        before.handle(join(port, role, group), 0);
    }
    let id = move_id(&before);
    before.handle(beat(1, id), 0);
    let old = before.map().clone();
    assert_eq!(old.ring.groups(), &[1, 2]);

    // A new balancer hears from them in another order, replicas first.
    let mut m = Membership::new(config());
    m.handle(claim(1300, Role::Replica, 2, old.epoch), 0);
    m.handle(claim(1100, Role::Primary, 2, old.epoch), 0);
    m.handle(claim(1200, Role::Replica, 1, old.epoch), 0);
    m.handle(claim(1000, Role::Primary, 1, old.epoch), 0);
    let map = m.map();
    assert!(
        map.moving.is_none(),
        "no range move: the data is where it was"
    );
    assert_eq!(map.ring, old.ring, "the same ring");
    assert!(map.epoch > old.epoch, "epochs go on above the nodes'");
    for g in [1, 2] {
        let sg = map.group(g).unwrap();
        let port = |id: u64| map.member(id).unwrap().main_port;
        assert_eq!(port(sg.primary.unwrap()), 900 + 100 * g as u16);
        assert_eq!(
            sg.replicas.iter().map(|&r| port(r)).collect::<Vec<_>>(),
            vec![1100 + 100 * g as u16]
        );
    }
    check_invariants(map);
    // A brand-new primary waits out the rebuild (its group id could be one still coming
    // back), then gets a fresh group id (and a range move).
    assert!(matches!(
        m.handle(join(1400, Role::Primary, None), 10).as_slice(),
        [Action::Reject { .. }]
    ));
    let ids: Vec<u64> = m.map().members.iter().map(|x| x.id).collect();
    for t in (100..=700).step_by(100) {
        for &id in &ids {
            let port = m.map().member(id).unwrap().main_port;
            m.handle(
                Event::Heartbeat {
                    member: id,
                    applied: 0,
                    ready: true,
                    moved: 0,
                    port,
                },
                t,
            );
        }
        m.handle(Event::Tick, t);
    }
    let fresh = welcomed(&m.handle(join(1400, Role::Primary, None), 700));
    assert_eq!(m.map().member(fresh).and_then(|x| x.group), Some(3));
    assert!(m.map().moving.is_some());
    // A heartbeat whose id now names another node is told to rejoin.
    assert_eq!(
        m.handle(
            Event::Heartbeat {
                member: ids[0],
                applied: 0,
                ready: true,
                moved: 0,
                port: 4242,
            },
            710
        ),
        vec![Action::Rejoin { member: ids[0] }]
    );
}

#[test]
fn replicas_back_without_their_primary_are_promoted_after_a_grace_period() {
    let mut m = Membership::new(config());
    m.handle(Event::Tick, 0);
    let r = welcomed(&m.handle(claim(1200, Role::Replica, 1, 9), 0));
    assert_eq!(m.map().group(1).and_then(|g| g.primary), None);
    // Within the grace period (2 x 300 ms here) nothing happens; after it, the replica leads.
    for t in (50..=600).step_by(50) {
        m.handle(beat(r, 0), t);
        m.handle(Event::Tick, t);
    }
    assert_eq!(m.map().group(1).and_then(|g| g.primary), None);
    for t in (650..=700).step_by(50) {
        m.handle(beat(r, 0), t);
        m.handle(Event::Tick, t);
    }
    assert_eq!(m.map().group(1).and_then(|g| g.primary), Some(r));
    assert_eq!(m.map().member(r).map(|x| x.role), Some(Role::Primary));
    check_invariants(m.map());
}

#[test]
fn a_claim_to_a_group_this_balancer_retired_is_not_honoured() {
    let mut m = Membership::new(config());
    let p1 = welcomed(&m.handle(join(1000, Role::Primary, None), 0));
    let p2 = welcomed(&m.handle(join(1100, Role::Primary, None), 0));
    finish_move(&mut m, p1, 0);
    m.handle(Event::Remove { member: p2 }, 0);
    let id = move_id(&m);
    m.handle(beat(p1, id), 0);
    m.handle(beat(p2, id), 0);
    assert!(m.map().group(2).is_none());
    // Someone claims group 2 (it left): it joins as a new primary instead.
    let n = welcomed(&m.handle(claim(1500, Role::Primary, 2, 3), 0));
    assert_eq!(m.map().member(n).and_then(|x| x.group), Some(3));
    check_invariants(m.map());
}

fn replicas_of(m: &Membership, g: u32) -> Vec<u64> {
    m.map()
        .group(g)
        .map(|g| g.replicas.clone())
        .unwrap_or_default()
}

#[test]
fn a_spare_replica_moves_to_a_group_that_joined_without_one() {
    let mut m = Membership::new(config());
    let p1 = welcomed(&m.handle(join(1000, Role::Primary, None), 0));
    let r1 = welcomed(&m.handle(join(1100, Role::Replica, None), 0));
    let r2 = welcomed(&m.handle(join(1200, Role::Replica, None), 0));
    assert_eq!(replicas_of(&m, 1), vec![r1, r2]);
    m.handle(join(2000, Role::Primary, None), 0);
    // Nothing moves while the new group takes over its ranges.
    assert_eq!(replicas_of(&m, 2), Vec::<u64>::new());
    finish_move(&mut m, p1, 0);
    assert!(m.map().moving.is_none());
    let epoch = m.map().epoch;
    let actions = m.handle(Event::Tick, 0);
    assert!(actions.contains(&Action::ReplicaMoved {
        member: r2,
        from: 1,
        to: 2
    }));
    assert!(actions.contains(&Action::PublishMap));
    assert!(m.map().epoch > epoch);
    assert_eq!(replicas_of(&m, 1), vec![r1]);
    assert_eq!(replicas_of(&m, 2), vec![r2]);
    check_invariants(m.map());
    // Balanced: another tick changes nothing.
    assert!(m.handle(Event::Tick, 0).is_empty());
}

#[test]
fn replicas_placed_by_their_operator_are_not_moved() {
    let mut m = Membership::new(config());
    let p1 = welcomed(&m.handle(join(1000, Role::Primary, None), 0));
    let r1 = welcomed(&m.handle(join(1100, Role::Replica, Some(1)), 0));
    let r2 = welcomed(&m.handle(join(1200, Role::Replica, Some(1)), 0));
    m.handle(join(2000, Role::Primary, None), 0);
    finish_move(&mut m, p1, 0);
    m.handle(Event::Tick, 0);
    assert_eq!(replicas_of(&m, 1), vec![r1, r2]);
    assert_eq!(replicas_of(&m, 2), Vec::<u64>::new());
}

#[test]
fn a_group_whose_replica_died_takes_a_spare_one() {
    let mut m = Membership::new(config());
    let p1 = welcomed(&m.handle(join(1000, Role::Primary, None), 0));
    let p2 = welcomed(&m.handle(join(2000, Role::Primary, None), 0));
    finish_move(&mut m, p1, 0);
    let a = welcomed(&m.handle(join(1100, Role::Replica, None), 0));
    let b = welcomed(&m.handle(join(2100, Role::Replica, None), 0));
    let c = welcomed(&m.handle(join(3100, Role::Replica, None), 0));
    assert_eq!(replicas_of(&m, 1), vec![a, c]);
    assert_eq!(replicas_of(&m, 2), vec![b]);
    // `b` falls silent; the others keep beating.
    for t in (100..=500).step_by(100) {
        for member in [p1, p2, a, c] {
            m.handle(beat(member, 0), t);
        }
        m.handle(Event::Tick, t);
    }
    assert!(m.map().member(b).is_none(), "b was declared dead");
    assert_eq!(replicas_of(&m, 1), vec![a]);
    assert_eq!(replicas_of(&m, 2), vec![c]);
    check_invariants(m.map());
}

#[test]
fn the_donor_group_keeps_its_most_caught_up_replica() {
    let mut m = Membership::new(config());
    let p1 = welcomed(&m.handle(join(1000, Role::Primary, None), 0));
    let copying = welcomed(&m.handle(join(1100, Role::Replica, None), 0));
    let ready = welcomed(&m.handle(join(1200, Role::Replica, None), 0));
    m.handle(
        Event::Heartbeat {
            member: ready,
            applied: 50,
            ready: true,
            moved: 0,
            port: 0,
        },
        0,
    );
    m.handle(join(2000, Role::Primary, None), 0);
    finish_move(&mut m, p1, 0);
    m.handle(Event::Tick, 0);
    assert_eq!(replicas_of(&m, 1), vec![ready]);
    assert_eq!(replicas_of(&m, 2), vec![copying]);
    check_invariants(m.map());
}
