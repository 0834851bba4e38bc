//! Catch-up: backlog replay or reset and full copy, and the link lifecycle around it.

use super::*;

// ---------------------------------------------------------------------------------------------
// Catch-up: backlog or full copy
// ---------------------------------------------------------------------------------------------

#[test]
fn a_replica_with_its_gap_in_the_backlog_gets_the_missing_ops_then_synced() {
    let mut r = Replicator::new(WriteAck::All, 1 << 20, 1000, 7);
    r.set_recording(true);
    let id = r.set_replicas(&[(101, addr(8111))])[0];
    let ops = [
        put(b"a", b"1", 10),
        put(b"b", b"2", 11),
        ReplOp::Del {
            key: b"a",
            version: 12,
        },
    ];
    for (i, op) in ops.iter().enumerate() {
        assert_eq!(r.push(op, None), i as u64 + 1);
    }
    // Not streaming yet: nothing was queued on the link.
    let (step, sent) = take(&mut r, id);
    assert_eq!(step, WriteStep::Idle);
    assert!(sent.is_empty());

    let plan = r.start_stream(id, &StreamPosition { applied: Some(1) });
    assert_eq!(plan, Some(CatchUp::Backlog { from: 2 }));
    assert_eq!(r.streaming_links(), 1);
    let (step, sent) = take(&mut r, id);
    assert_eq!(step, WriteStep::Write);
    assert_eq!(
        kinds(&sent),
        vec![
            (ReplFrame::Op, 2),
            (ReplFrame::Op, 3),
            (ReplFrame::Synced, 3)
        ]
    );
    assert_eq!(sent[0].op(), ops[1]);
    assert_eq!(sent[1].op(), ops[2]);
    assert!(sent.iter().all(|s| s.header.flags & FLAG_RESPONSE == 0));
    assert_eq!(r.counters.backlog_catchups, 1);
    assert_eq!(r.counters.full_copies, 0);
}

#[test]
fn a_replica_that_holds_everything_gets_only_synced() {
    let mut r = Replicator::new(WriteAck::All, 1 << 20, 1000, 7);
    r.set_recording(true);
    let id = r.set_replicas(&[(101, addr(8111))])[0];
    r.push(&put(b"a", b"1", 10), None);
    r.push(&put(b"b", b"2", 11), None);
    let plan = r.start_stream(id, &StreamPosition { applied: Some(2) });
    assert_eq!(plan, Some(CatchUp::Backlog { from: 3 }));
    assert_eq!(kinds(&take(&mut r, id).1), vec![(ReplFrame::Synced, 2)]);
    assert_eq!(r.counters.backlog_catchups, 1);
}

#[test]
fn a_replica_without_a_position_gets_a_reset_and_a_full_copy() {
    let mut r = Replicator::new(WriteAck::All, 1 << 20, 1000, 7);
    r.set_recording(true);
    let id = r.set_replicas(&[(101, addr(8111))])[0];
    r.push(&put(b"a", b"1", 10), None);
    let plan = r.start_stream(id, &StreamPosition { applied: None });
    assert_eq!(plan, Some(CatchUp::FullCopy));
    assert_eq!(kinds(&take(&mut r, id).1), vec![(ReplFrame::Reset, 1)]);
    assert_eq!(r.counters.full_copies, 1);
    assert_eq!(r.counters.backlog_catchups, 0);
}

#[test]
fn a_position_from_another_life_of_the_stream_gets_a_full_copy() {
    let mut r = Replicator::new(WriteAck::All, 1 << 20, 1000, 7);
    r.set_recording(true);
    let id = r.set_replicas(&[(101, addr(8111))])[0];
    r.push(&put(b"a", b"1", 10), None);
    let plan = r.start_stream(id, &StreamPosition { applied: Some(40) });
    assert_eq!(plan, Some(CatchUp::FullCopy));
    assert_eq!(r.counters.full_copies, 1);
}

#[test]
fn a_replica_behind_the_backlog_gets_a_reset_then_the_shard_then_synced() {
    // Five equal-sized ops into a backlog that holds two: sequences 4 and 5 remain.
    let size = op_frame_len(&put(b"k1", b"value-1", 10));
    let mut r = Replicator::new(WriteAck::All, 2 * size, 1000, 7);
    r.set_recording(true);
    let id = r.set_replicas(&[(101, addr(8111))])[0];
    for i in 1..=5u64 {
        let key = format!("k{i}");
        let value = format!("value-{i}");
        r.push(&put(key.as_bytes(), value.as_bytes(), 10 + i), None);
    }
    assert_eq!(r.backlog.first(), 4);

    // The gap 2..=3 is gone: a full copy.
    let plan = r.start_stream(id, &StreamPosition { applied: Some(1) });
    assert_eq!(plan, Some(CatchUp::FullCopy));
    assert_eq!(r.counters.full_copies, 1);
    assert_eq!(r.counters.backlog_catchups, 0);
    let (step, sent) = take(&mut r, id);
    assert_eq!(step, WriteStep::Write);
    assert_eq!(kinds(&sent), vec![(ReplFrame::Reset, 5)]);

    // The shard: a plain entry, one with a TTL and tags, one already expired at copy time,
    // and a tombstone.
    let now = 1_000;
    let mut s = shard();
    let t: &[u8] = b"t1";
    assert_eq!(s.apply_write(b"a", b"1", 100, None, &[], now), Ok(true));
    assert_eq!(
        s.apply_write(b"b", b"2", 200, Some(10_000), &[t], now),
        Ok(true)
    );
    assert_eq!(
        s.apply_write(b"c", b"3", 300, Some(5_000), &[], now),
        Ok(true)
    );
    assert_eq!(s.apply_delete(b"d", 400, now), Ok(true));

    let copy_at = 6_000;
    r.fill_copy(id, &s, copy_at);
    let (step, sent) = take(&mut r, id);
    assert_eq!(step, WriteStep::Write);
    let (last, copied) = sent.split_last().expect("frames");
    assert_eq!((last.kind, last.seq()), (ReplFrame::Synced, 5));
    assert!(copied
        .iter()
        .all(|s| s.kind == ReplFrame::Op && s.seq() == 0));
    let mut ops: Vec<ReplOp<'_>> = copied.iter().map(Sent::op).collect();
    ops.sort_by_key(|op| match op {
        ReplOp::Put { key, .. } | ReplOp::Del { key, .. } => key.to_vec(),
        _ => Vec::new(),
    });
    assert_eq!(
        ops,
        vec![
            put(b"a", b"1", 100),
            ReplOp::Put {
                key: b"b",
                value: b"2",
                version: 200,
                expires_at: Some(10_000),
                tags: vec![Tag(b"t1")],
            },
            ReplOp::Del {
                key: b"d",
                version: 400
            },
        ]
    );

    // The copy is over: nothing more is added.
    r.fill_copy(id, &s, copy_at);
    assert_eq!(take(&mut r, id).0, WriteStep::Idle);
}

#[test]
fn a_full_copy_ends_with_the_sequence_current_when_it_ends() {
    // Live ops pushed while a copy is under way are queued too, and the final Synced covers
    // them.
    let mut r = Replicator::new(WriteAck::All, 1 << 20, 1000, 7);
    r.set_recording(true);
    let id = r.set_replicas(&[(101, addr(8111))])[0];
    r.push(&put(b"a", b"1", 10), None);
    r.start_stream(id, &StreamPosition { applied: None });
    r.push(&put(b"b", b"2", 11), None);
    let mut s = shard();
    assert_eq!(s.apply_write(b"a", b"1", 10, None, &[], 1_000), Ok(true));
    r.fill_copy(id, &s, 1_000);
    let (_, sent) = take(&mut r, id);
    assert_eq!(
        kinds(&sent),
        vec![
            (ReplFrame::Reset, 1),
            (ReplFrame::Op, 2),
            (ReplFrame::Op, 0),
            (ReplFrame::Synced, 2)
        ]
    );
}

#[test]
fn start_stream_on_an_unknown_link_is_none() {
    let mut r = Replicator::new(WriteAck::All, 1 << 20, 1000, 7);
    assert_eq!(r.start_stream(9, &StreamPosition { applied: None }), None);
    assert_eq!(r.counters.full_copies, 0);
    assert_eq!(take(&mut r, 9).0, WriteStep::Closed);
}

#[test]
fn a_session_that_ends_stops_streaming_and_drops_what_was_queued() {
    let mut r = Replicator::new(WriteAck::All, 1 << 20, 1000, 7);
    r.set_recording(true);
    let id = r.set_replicas(&[(101, addr(8111))])[0];
    r.start_stream(id, &StreamPosition { applied: None });
    r.push(&put(b"a", b"1", 10), None);
    assert_eq!(r.session_ended(id), (true, true));
    assert_eq!(r.streaming_links(), 0);
    assert_eq!(take(&mut r, id).0, WriteStep::Idle);
    r.push(&put(b"b", b"2", 11), None);
    assert_eq!(take(&mut r, id).0, WriteStep::Idle);
    // The next session replays what it missed from the backlog.
    let plan = r.start_stream(id, &StreamPosition { applied: Some(1) });
    assert_eq!(plan, Some(CatchUp::Backlog { from: 2 }));
    assert_eq!(
        kinds(&take(&mut r, id).1),
        vec![(ReplFrame::Op, 2), (ReplFrame::Synced, 2)]
    );
    // A closed link's session ending does not ask to reconnect.
    r.set_replicas(&[]);
    assert_eq!(r.session_ended(id), (true, false));
    assert_eq!(r.session_ended(999), (false, false));
}

#[test]
fn a_broken_link_tells_its_writer_to_start_over() {
    let mut r = Replicator::new(WriteAck::All, 1 << 20, 1000, 7);
    let id = r.set_replicas(&[(101, addr(8111))])[0];
    r.take_wakes();
    r.link_broken(id);
    assert_eq!(r.take_wakes(), vec![id]);
    assert_eq!(take(&mut r, id).0, WriteStep::Broken);
    r.session_ended(id);
    assert_eq!(take(&mut r, id).0, WriteStep::Idle);
}
