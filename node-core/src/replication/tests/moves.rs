//! Range moves: which keys a move link carries, and what moved writes wait for.

use super::*;

// ---------------------------------------------------------------------------------------------
// Range moves
// ---------------------------------------------------------------------------------------------

#[test]
fn a_move_filter_carries_exactly_the_keys_the_next_ring_gives_its_core() {
    let v = view(moving_map(0), 1);
    let next = v.map.moving.as_ref().expect("moving").next_ring.clone();
    let [f0, f1] = filters(&v);
    let (mut stay, mut c0, mut c1) = (0, 0, 0);
    for i in 0..4_000 {
        let k = format!("key{i}").into_bytes();
        let to_group2 = next.owner(key_hash(&k)) == Some(2);
        let (a, b) = (f0.carries(&k), f1.carries(&k));
        assert!(!(a && b), "a key travels on one link at most");
        if to_group2 {
            assert!(a || b, "every moving key travels");
            // ... on the link of the core that owns it on the receiving node.
            assert_eq!(a, core_for_key(&k, 2) == 0);
            if a {
                c0 += 1;
            } else {
                c1 += 1;
            }
        } else {
            assert!(!a && !b, "a key that stays does not travel");
            stay += 1;
        }
    }
    // Two groups, two cores: every class is well populated.
    assert!(stay > 1_000 && c0 > 500 && c1 > 500, "{stay} {c0} {c1}");

    // A filter for the group keeping the keys carries nothing that moves away.
    let keep = MoveFilter {
        view: v.clone(),
        group: 1,
        core: 0,
        cores: 1,
    };
    assert!((0..500)
        .map(|i| format!("key{i}").into_bytes())
        .all(|k| keep.carries(&k) == (next.owner(key_hash(&k)) == Some(1))));

    // Without a move in the map, nothing travels.
    let still = view(map(2, 0, 2, 5), 1);
    let [g0, g1] = filters(&still);
    assert!((0..500)
        .map(|i| format!("key{i}").into_bytes())
        .all(|k| !g0.carries(&k) && !g1.carries(&k)));
}

/// A recording replicator of group 1's primary with one streaming replica link and the two
/// streaming move links of range move 7 (group 2's cores 0 and 1).
fn moving_replicator(policy: WriteAck) -> (Replicator, LinkId, [LinkId; 2], [MoveFilter; 2]) {
    let v = view(moving_map(1), 1);
    let fs = filters(&v);
    let mut r = Replicator::new(policy, 1 << 20, 1000, 7);
    r.set_recording(true);
    let rep = r.set_replicas(&[(101, addr(8111))])[0];
    let moves = r.set_moves(
        7,
        vec![
            (2, addr(8201), fs[0].clone()),
            (2, addr(8202), fs[1].clone()),
        ],
    );
    assert_eq!(moves.len(), 2);
    // Asking again for the same move changes nothing.
    assert!(r.set_moves(7, Vec::new()).is_empty());
    let m = [moves[0], moves[1]];
    assert_eq!(
        r.start_stream(rep, &StreamPosition { applied: Some(0) }),
        Some(CatchUp::Backlog { from: 1 })
    );
    for &id in &m {
        // A move link always copies, whatever the position, and without a reset.
        assert_eq!(
            r.start_stream(id, &StreamPosition { applied: Some(0) }),
            Some(CatchUp::FullCopy)
        );
        assert!(take(&mut r, id).1.is_empty());
    }
    assert_eq!(r.counters.move_streams, 2);
    assert_eq!(r.counters.full_copies, 0);
    take(&mut r, rep);
    r.take_wakes();
    (r, rep, m, fs)
}

#[test]
fn a_moving_key_goes_to_its_move_link_and_its_write_waits_for_that_link_too() {
    let (mut r, rep, [m0, m1], [f0, f1]) = moving_replicator(WriteAck::All);
    let key = keys_where(1, |k| f0.carries(k)).remove(0);
    let op = put(&key, b"v", 10);
    let seq = r.push(&op, Some(&key));
    let mut woken = r.take_wakes();
    woken.sort_unstable();
    assert_eq!(woken, vec![rep, m0]);
    let sent = take(&mut r, m0).1;
    assert_eq!(kinds(&sent), vec![(ReplFrame::Op, seq)]);
    assert_eq!(sent[0].op(), op);
    assert!(take(&mut r, m1).1.is_empty());
    assert_eq!(kinds(&take(&mut r, rep).1), vec![(ReplFrame::Op, seq)]);

    let g = r.gate(seq, 1_000).expect("waits");
    r.on_ack(rep, seq);
    assert!(r.take_done().is_empty(), "the move link must ack too");
    r.on_ack(m1, seq);
    assert!(
        r.take_done().is_empty(),
        "the other move link does not count"
    );
    r.on_ack(m0, seq);
    assert_eq!(r.take_done(), vec![(g, Ok(()))]);

    // The next write (a key that stays) does not inherit this one's move link.
    let stay = keys_where(1, |k| !f0.carries(k) && !f1.carries(k)).remove(0);
    let seq2 = r.push(&put(&stay, b"w", 11), Some(&stay));
    let g2 = r.gate(seq2, 1_000).expect("waits");
    r.on_ack(rep, seq2);
    assert_eq!(r.take_done(), vec![(g2, Ok(()))]);
}

#[test]
fn a_key_that_stays_goes_to_no_move_link_and_waits_for_replicas_only() {
    let (mut r, rep, [m0, m1], [f0, f1]) = moving_replicator(WriteAck::All);
    let key = keys_where(1, |k| !f0.carries(k) && !f1.carries(k)).remove(0);
    let seq = r.push(&put(&key, b"v", 10), Some(&key));
    assert_eq!(r.take_wakes(), vec![rep]);
    assert!(take(&mut r, m0).1.is_empty());
    assert!(take(&mut r, m1).1.is_empty());
    let g = r.gate(seq, 1_000).expect("waits");
    r.on_ack(rep, seq);
    assert_eq!(r.take_done(), vec![(g, Ok(()))]);
}

#[test]
fn a_keyless_op_goes_to_every_move_link_without_waiting_for_them() {
    let (mut r, rep, [m0, m1], _) = moving_replicator(WriteAck::All);
    let seq = r.push(&ReplOp::Flush, None);
    for id in [rep, m0, m1] {
        assert_eq!(kinds(&take(&mut r, id).1), vec![(ReplFrame::Op, seq)]);
    }
    let g = r.gate(seq, 1_000).expect("waits");
    r.on_ack(rep, seq);
    assert_eq!(r.take_done(), vec![(g, Ok(()))]);
}

#[test]
fn under_one_a_moving_write_still_waits_for_its_move_link() {
    let (mut r, rep, [m0, _], [f0, _]) = moving_replicator(WriteAck::One);
    let key = keys_where(1, |k| f0.carries(k)).remove(0);
    let seq = r.push(&put(&key, b"v", 10), Some(&key));
    let g = r.gate(seq, 1_000).expect("waits for the move link");
    r.on_ack(rep, seq);
    assert!(
        r.take_done().is_empty(),
        "a replica's ack is not the new owner's"
    );
    r.on_ack(m0, seq);
    assert_eq!(r.take_done(), vec![(g, Ok(()))]);
}

#[test]
fn under_one_a_moving_write_waits_for_its_move_link_when_no_replica_acks() {
    let (mut r, _, [m0, _], [f0, _]) = moving_replicator(WriteAck::One);
    let key = keys_where(1, |k| f0.carries(k)).remove(0);
    let seq = r.push(&put(&key, b"v", 10), Some(&key));
    let g = r.gate(seq, 1_000).expect("waits for the move link");
    assert!(r.take_done().is_empty());
    r.on_ack(m0, seq);
    assert_eq!(r.take_done(), vec![(g, Ok(()))]);
}

#[test]
fn a_move_copy_sends_only_the_keys_its_link_carries() {
    let (mut r, _, [m0, m1], [f0, f1]) = moving_replicator(WriteAck::All);
    let mut s = shard();
    let k0 = keys_where(3, |k| f0.carries(k));
    let k1 = keys_where(2, |k| f1.carries(k));
    let stay = keys_where(4, |k| !f0.carries(k) && !f1.carries(k));
    for (i, k) in k0.iter().chain(&k1).chain(&stay).enumerate() {
        assert_eq!(
            s.apply_write(k, b"v", 100 + i as u64, None, &[], 1_000),
            Ok(true)
        );
    }
    for (id, want) in [(m0, &k0), (m1, &k1)] {
        r.fill_copy(id, &s, 1_000);
        let sent = take(&mut r, id).1;
        let (last, ops) = sent.split_last().expect("frames");
        assert_eq!(last.kind, ReplFrame::Synced);
        let mut got: Vec<Vec<u8>> = ops
            .iter()
            .map(|o| match o.op() {
                ReplOp::Put { key, .. } => key.to_vec(),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        got.sort();
        let mut want = want.clone();
        want.sort();
        assert_eq!(got, want);
    }
}

#[test]
fn the_move_is_done_once_every_move_link_has_its_copy() {
    let (mut r, rep, [m0, m1], _) = moving_replicator(WriteAck::All);
    assert_eq!(r.moved, 0);
    r.on_copied(m0);
    assert_eq!(r.moved, 0);
    // A replica link's answer is not a move's.
    r.on_copied(rep);
    assert_eq!(r.moved, 0);
    r.on_copied(m1);
    assert_eq!(r.moved, 7);

    // Ending the move drains its links: they write what they hold, then stop.
    r.push(&ReplOp::Flush, None);
    r.take_wakes();
    assert!(r.set_moves(0, Vec::new()).is_empty());
    let mut woken = r.take_wakes();
    woken.sort_unstable();
    assert_eq!(woken, vec![m0, m1]);
    let (step, sent) = take(&mut r, m0);
    assert_eq!(step, WriteStep::Write);
    assert_eq!(sent.len(), 1);
    assert_eq!(take(&mut r, m0).0, WriteStep::Drained);
    assert_eq!(take(&mut r, m0).0, WriteStep::Closed);
    assert_eq!(r.session_ended(m1), (true, false));
    assert_eq!(r.moved, 7, "the last finished move stays reported");
}

#[test]
fn a_move_without_receiving_cores_is_done_at_once() {
    let mut r = Replicator::new(WriteAck::All, 1 << 20, 1000, 7);
    assert!(r.set_moves(9, Vec::new()).is_empty());
    assert_eq!(r.moved, 9);
}
