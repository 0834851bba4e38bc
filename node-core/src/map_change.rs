//! What a new cluster map changes on one core: a node moved to another group forgets the old
//! group's data; after the ring changed, a member drops the keys its group no longer owns; a
//! primary keeps links to its group's live replicas (the same core index on each) and, during a
//! range move, to the receiving cores; any other role closes them all.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use ringcache_cluster::{key_hash, GroupId, MemberId, MemberState, Role};
use tracing::info;

use crate::core_state::CoreState;
use crate::replication::{LinkId, MoveFilter};
use crate::view::NodeView;

/// Takes `view` as this core's map (the previous one is replaced); returns the new links whose
/// tasks the runtime starts.
pub fn on_map(core: &mut CoreState, view: Arc<NodeView>) -> Vec<LinkId> {
    let previous = core.cluster.replace(view.clone());
    let previous_group = previous.as_ref().and_then(|p| p.group);
    if previous_group.is_some() && view.group.is_some() && previous_group != view.group {
        info!(
            from = ?previous_group,
            to = ?view.group,
            "moved to another shard group: dropping the old group's data"
        );
        core.shard.flush();
    } else if let (Some(p), Some(g)) = (previous.as_ref(), view.group) {
        if p.map.ring != view.map.ring && !view.map.ring.groups().is_empty() {
            let ring = &view.map.ring;
            let n = core
                .shard
                .remove_where(|k| ring.owner(key_hash(k)) != Some(g));
            if n > 0 {
                info!(
                    dropped = n,
                    "the ring changed: dropped keys other groups own now"
                );
            }
        }
    }
    let is_primary = view.role() == Some(Role::Primary);
    let wanted = if is_primary {
        replica_targets(&view, core.id)
    } else {
        Vec::new()
    };
    if !is_primary && core.repl.is_active() {
        core.repl.stop_all();
    }
    core.repl.set_recording(is_primary);
    let mut added = core.repl.set_replicas(&wanted);
    let (move_id, targets) = move_targets(&view, is_primary);
    added.extend(core.repl.set_moves(move_id, targets));
    added
}

/// The address of core `core` of member `m`, when its host parses.
fn core_addr(host: &str, ports: &[u16], core: usize) -> Option<SocketAddr> {
    let ip: IpAddr = host.parse().ok()?;
    Some(SocketAddr::new(ip, *ports.get(core)?))
}

/// The live replicas of this node's group, with the address of their core `core`.
pub fn replica_targets(view: &NodeView, core: u32) -> Vec<(MemberId, SocketAddr)> {
    let Some(g) = view.group.and_then(|g| view.map.group(g)) else {
        return Vec::new();
    };
    g.replicas
        .iter()
        .filter_map(|&r| view.map.member(r))
        .filter(|r| r.state == MemberState::Active)
        .filter_map(|r| Some((r.id, core_addr(&r.host, &r.core_ports, core as usize)?)))
        .collect()
}

/// The range-move links a core of this node needs: one per core of each receiving group's
/// primary. Only a primary of a group on the current ring is a source.
pub fn move_targets(
    view: &Arc<NodeView>,
    is_primary: bool,
) -> (u64, Vec<(MemberId, SocketAddr, MoveFilter)>) {
    let (Some(m), Some(mine)) = (view.map.moving.as_ref(), view.group) else {
        return (0, Vec::new());
    };
    if !is_primary || !view.map.ring.groups().contains(&mine) {
        return (0, Vec::new());
    }
    let receivers: Vec<GroupId> = if m.leaving.contains(&mine) {
        m.next_ring.groups().to_vec()
    } else {
        m.joining.clone()
    };
    let mut out = Vec::new();
    for g in receivers.into_iter().filter(|&g| g != mine) {
        let Some(p) = view
            .map
            .group(g)
            .and_then(|sg| sg.primary)
            .and_then(|p| view.map.member(p))
        else {
            continue;
        };
        let cores = p.core_ports.len() as u32;
        for c in 0..p.core_ports.len() {
            let Some(addr) = core_addr(&p.host, &p.core_ports, c) else {
                continue;
            };
            let filter = MoveFilter {
                view: view.clone(),
                group: g,
                core: c as u32,
                cores,
            };
            out.push((p.id, addr, filter));
        }
    }
    (m.id, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core_state::test_support::{core, map, view};
    use crate::replication::WriteStep;
    use bytes::BytesMut;
    use ringcache_cluster::replication::WriteAck;
    use ringcache_cluster::{ClusterMap, RangeMove, Ring, DEFAULT_VNODES};

    const NOW: u64 = 10_000;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// (member, address) of each replica link of `c`, sorted.
    fn replica_links(c: &CoreState, ids: &[LinkId]) -> Vec<(MemberId, SocketAddr)> {
        let mut v: Vec<_> = ids
            .iter()
            .map(|&id| c.repl.link(id).expect("link"))
            .filter(|l| l.filter.is_none())
            .map(|l| (l.member, l.addr))
            .collect();
        v.sort();
        v
    }

    fn step(c: &mut CoreState, id: LinkId) -> WriteStep {
        c.repl.next_write(id, &mut BytesMut::new())
    }

    fn member_mut(m: &mut ClusterMap, id: MemberId) -> &mut ringcache_cluster::Member {
        m.members.iter_mut().find(|x| x.id == id).expect("member")
    }

    /// `keys` fresh keys stored on `c`'s shard.
    fn fill(c: &mut CoreState, keys: usize) -> Vec<Vec<u8>> {
        let keys: Vec<Vec<u8>> = (0..keys).map(|i| format!("key{i}").into_bytes()).collect();
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(
                c.shard.apply_write(k, b"v", 100 + i as u64, None, &[], NOW),
                Ok(true)
            );
        }
        keys
    }

    #[test]
    fn a_primary_links_to_each_live_replica_on_its_own_core_index() {
        // One group, two replicas, two cores per member.
        let m = map(1, 2, 2, 1);
        for (core_id, ports) in [(0, [8111, 8121]), (1, [8112, 8122])] {
            let mut c = core(core_id, 2, WriteAck::All);
            let links = on_map(&mut c, view(m.clone(), 1));
            assert_eq!(
                replica_links(&c, &links),
                vec![(101, addr(ports[0])), (102, addr(ports[1]))]
            );
            assert_eq!(links.len(), 2);
            assert!(c.repl.is_active());
            assert_eq!(c.repl.replica_links(), 2);
        }
    }

    #[test]
    fn a_replica_that_is_not_active_gets_no_link() {
        let mut m = map(1, 2, 1, 1);
        member_mut(&mut m, 102).state = MemberState::Waiting;
        let mut c = core(0, 1, WriteAck::All);
        let links = on_map(&mut c, view(m, 1));
        assert_eq!(replica_links(&c, &links), vec![(101, addr(8111))]);
    }

    #[test]
    fn a_later_map_keeps_existing_links_and_closes_those_of_departed_replicas() {
        let mut c = core(0, 1, WriteAck::All);
        let links = on_map(&mut c, view(map(1, 2, 1, 1), 1));
        assert_eq!(links.len(), 2);
        // The same group at a later epoch: no new link.
        assert!(on_map(&mut c, view(map(1, 2, 1, 2), 1)).is_empty());
        assert_eq!(c.repl.replica_links(), 2);
        // Replica 102 leaves the group.
        let mut m = map(1, 2, 1, 3);
        m.groups[0].replicas.retain(|&r| r != 102);
        m.members.retain(|x| x.id != 102);
        assert!(on_map(&mut c, view(m, 1)).is_empty());
        assert_eq!(c.repl.replica_links(), 1);
        let gone = links
            .iter()
            .copied()
            .find(|&id| c.repl.link(id).is_some_and(|l| l.member == 102))
            .expect("kept until its task finished");
        let kept = links.iter().copied().find(|&id| id != gone).expect("kept");
        assert_eq!(step(&mut c, gone), WriteStep::Closed);
        assert_eq!(step(&mut c, kept), WriteStep::Idle);
    }

    /// `map(1, 1, cores, epoch)` with the roles of member 1 and replica 101 swapped.
    fn swapped(cores: u16, epoch: u64) -> ClusterMap {
        let mut m = map(1, 1, cores, epoch);
        m.groups[0].primary = Some(101);
        m.groups[0].replicas = vec![1];
        member_mut(&mut m, 1).role = Role::Replica;
        member_mut(&mut m, 101).role = Role::Primary;
        m
    }

    #[test]
    fn a_primary_made_a_replica_closes_its_links_and_stops_replicating() {
        let mut c = core(0, 1, WriteAck::All);
        let links = on_map(&mut c, view(map(1, 1, 1, 1), 1));
        assert_eq!(links.len(), 1);
        assert!(on_map(&mut c, view(swapped(1, 2), 1)).is_empty());
        assert_eq!(c.role(), Some(Role::Replica));
        assert!(!c.repl.is_active());
        assert_eq!(c.repl.replica_links(), 0);
        assert_eq!(step(&mut c, links[0]), WriteStep::Closed);
        // Writes are no longer recorded.
        let before = c.repl.next_seq();
        let cmd = ringcache_proto::Command::Flush;
        assert_eq!(crate::write_path::replicate(&mut c, &cmd, NOW), None);
        assert_eq!(c.repl.next_seq(), before);

        // The new primary links to its replica (member 1) on the same core index.
        let mut p = core(0, 1, WriteAck::All);
        let links = on_map(&mut p, view(swapped(1, 2), 101));
        assert_eq!(replica_links(&p, &links), vec![(1, addr(8101))]);
    }

    #[test]
    fn a_replica_gets_no_links() {
        let mut c = core(0, 1, WriteAck::All);
        assert!(on_map(&mut c, view(map(1, 1, 1, 1), 101)).is_empty());
        assert!(!c.repl.is_active());
        assert_eq!(c.repl.replica_links(), 0);
    }

    #[test]
    fn a_member_moved_to_another_group_flushes_its_shard() {
        let mut c = core(0, 1, WriteAck::All);
        on_map(&mut c, view(map(2, 1, 1, 1), 101));
        fill(&mut c, 50);
        // The same place at a later epoch keeps the data.
        on_map(&mut c, view(map(2, 1, 1, 2), 101));
        assert_eq!(c.shard.len(), 50);

        let mut m = map(2, 1, 1, 3);
        m.groups[0].replicas.clear();
        m.groups[1].replicas.push(101);
        member_mut(&mut m, 101).group = Some(2);
        on_map(&mut c, view(m, 101));
        assert_eq!(c.cluster.as_ref().and_then(|v| v.group), Some(2));
        assert_eq!(c.shard.len(), 0);
    }

    #[test]
    fn a_changed_ring_drops_the_keys_the_group_no_longer_owns() {
        let mut c = core(0, 1, WriteAck::All);
        on_map(&mut c, view(map(1, 0, 1, 1), 1));
        let keys = fill(&mut c, 200);
        let m = map(2, 0, 1, 2);
        let ring = m.ring.clone();
        on_map(&mut c, view(m, 1));
        let (mine, theirs): (Vec<_>, Vec<_>) = keys
            .iter()
            .partition(|k| ring.owner(key_hash(k)) == Some(1));
        assert!(!mine.is_empty() && !theirs.is_empty());
        assert_eq!(c.shard.len(), mine.len());
        assert!(mine.iter().all(|k| c.shard.get(k, NOW).is_some()));
        assert!(theirs.iter().all(|k| c.shard.get(k, NOW).is_none()));
    }

    #[test]
    fn an_unchanged_ring_keeps_every_key_and_a_first_map_drops_nothing() {
        let mut c = core(0, 1, WriteAck::All);
        // Keys stored before the first map (outside a cluster) stay, whoever owns them.
        fill(&mut c, 100);
        on_map(&mut c, view(map(2, 0, 1, 1), 1));
        assert_eq!(c.shard.len(), 100);
        on_map(&mut c, view(map(2, 0, 1, 2), 1));
        assert_eq!(c.shard.len(), 100);
    }

    /// Group 1 (primary 1, replica 101) on the ring, group 2 (primary 2) joining: move 7.
    fn joining(cores: u16) -> ClusterMap {
        crate::core_state::test_support::joining_map(1, cores)
    }

    #[test]
    fn a_primary_on_the_ring_links_to_every_core_of_a_joining_primary() {
        let mut c = core(0, 2, WriteAck::All);
        let links = on_map(&mut c, view(joining(2), 1));
        assert_eq!(links.len(), 3);
        assert_eq!(replica_links(&c, &links), vec![(101, addr(8111))]);
        let mut moves: Vec<_> = links
            .iter()
            .filter_map(|&id| {
                let l = c.repl.link(id)?;
                let f = l.filter.as_ref()?;
                Some((l.member, l.addr, f.group, f.core, f.cores))
            })
            .collect();
        moves.sort();
        assert_eq!(
            moves,
            vec![(2, addr(8201), 2, 0, 2), (2, addr(8202), 2, 1, 2)]
        );
        // The same map again starts nothing new.
        assert!(on_map(&mut c, view(joining(2), 1)).is_empty());
    }

    #[test]
    fn the_joining_primary_and_replicas_start_no_move_links() {
        // The joining primary links to its own replica only: it receives, it does not send.
        let mut j = core(0, 2, WriteAck::All);
        let links = on_map(&mut j, view(joining(2), 2));
        assert_eq!(links.len(), 1);
        assert_eq!(replica_links(&j, &links), vec![(201, addr(8211))]);
        let mut r = core(0, 2, WriteAck::All);
        assert!(on_map(&mut r, view(joining(2), 101)).is_empty());
    }

    #[test]
    fn a_leaving_primary_links_to_the_groups_that_stay() {
        let mut m = map(2, 0, 1, 5);
        m.moving = Some(RangeMove {
            id: 8,
            next_ring: Ring::new(&[1], DEFAULT_VNODES),
            joining: Vec::new(),
            leaving: vec![2],
        });
        let mut c = core(0, 1, WriteAck::All);
        let links = on_map(&mut c, view(m.clone(), 2));
        assert_eq!(links.len(), 1);
        let l = c.repl.link(links[0]).expect("link");
        assert_eq!((l.member, l.addr), (1, addr(8101)));
        assert_eq!(l.filter.as_ref().map(|f| f.group), Some(1));
        // The group that stays sends nothing.
        let mut s = core(0, 1, WriteAck::All);
        assert!(on_map(&mut s, view(m, 1)).is_empty());
    }

    #[test]
    fn the_end_of_a_move_drains_its_links() {
        let mut c = core(0, 1, WriteAck::All);
        let links = on_map(&mut c, view(joining(1), 1));
        let mv = links
            .iter()
            .copied()
            .find(|&id| c.repl.link(id).is_some_and(|l| l.filter.is_some()))
            .expect("a move link");
        let mut m = map(2, 1, 1, 6);
        m.ring = Ring::new(&[1, 2], DEFAULT_VNODES);
        assert!(on_map(&mut c, view(m, 1)).is_empty());
        assert_eq!(step(&mut c, mv), WriteStep::Drained);
        assert_eq!(c.repl.replica_links(), 1);
    }
}
