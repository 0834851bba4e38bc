//! A primary core and a replica core talking through their bytes, without sockets.

use super::*;
use crate::replication::handshake;

// ---------------------------------------------------------------------------------------------
// A primary core and a replica core, without sockets
// ---------------------------------------------------------------------------------------------

const NOW: u64 = 10_000;

/// A primary core (member 1) and a replica core (member 101) of group 1, core 0 of one, each
/// with its map; returns them with the primary's link to the replica.
pub(super) fn pair() -> (CoreState, CoreState, LinkId) {
    let m = map(1, 1, 1, 3);
    let mut p = core(0, 1, WriteAck::All);
    let mut r = core(0, 1, WriteAck::All);
    let links = on_map(&mut p, view(m.clone(), 1));
    assert_eq!(links.len(), 1);
    let link = p.repl.link(links[0]).expect("link");
    assert_eq!((link.member, link.addr), (101, addr(8111)));
    assert!(on_map(&mut r, view(m, 101)).is_empty());
    assert!(p.repl.is_active());
    assert!(!r.repl.is_active());
    (p, r, links[0])
}

/// The hello the primary's link task sends.
fn hello_of(p: &CoreState, id: LinkId) -> StreamHello {
    handshake::stream_hello(p, id).expect("link").0
}

fn hello_bytes(hi: &StreamHello) -> BytesMut {
    let mut out = BytesMut::new();
    encode_control(&mut out, ReplFrame::Hello, false, 0, 0, &encode_body(hi));
    out
}

/// The challenge nonce of the receivers of these tests.
const NONCE: [u8; 32] = [9; 32];

/// A receiver on connection `conn` of a node whose clients need no password.
fn rx(conn: u64) -> StreamReceiver {
    StreamReceiver::new(conn, NONCE, false)
}

/// Runs a stream's opening between a sender holding `secret` with hello `hi` and `rx` on `r`:
/// the hello, then challenge and proof if `r` asks; the position, or why it failed.
fn handshake_with(
    secret: Option<&str>,
    hi: &StreamHello,
    rx: &mut StreamReceiver,
    r: &mut CoreState,
) -> Result<StreamPosition, crate::replica::StreamRefused> {
    let mut opening = handshake::Opening::new(hi, secret.map(str::to_string));
    let mut out = BytesMut::new();
    opening.hello_frame(&mut out);
    for _ in 0..3 {
        let answers = deliver(rx, r, &out)?;
        out.clear();
        for a in answers {
            let step = opening.on_frame(&a.header, &a.body, &mut out);
            let step = step.map_err(|e| crate::replica::StreamRefused {
                reason: e.to_string(),
                quiet: false,
            })?;
            if let Some(pos) = step {
                return Ok(pos);
            }
        }
    }
    panic!("the opening did not end")
}

/// `handshake_with` from primary `p` (its hello and its secret).
fn handshake(
    p: &CoreState,
    hi: &StreamHello,
    rx: &mut StreamReceiver,
    r: &mut CoreState,
) -> Result<StreamPosition, crate::replica::StreamRefused> {
    handshake_with(p.secret.as_deref(), hi, rx, r)
}

/// Feeds every frame of `bytes` to `rx` on core `r`, then ends the batch; returns the answers.
fn deliver(
    rx: &mut StreamReceiver,
    r: &mut CoreState,
    bytes: &[u8],
) -> Result<Vec<Sent>, crate::replica::StreamRefused> {
    let mut back = BytesMut::new();
    for f in frames(bytes) {
        rx.on_frame(r, &f.header, &f.body, NOW, &mut back)?;
    }
    rx.end_of_batch(&mut back);
    Ok(frames(&back))
}

/// Opens a stream from `p`'s link `id` to `r` over connection `conn`: hello, the replica's
/// position, `start_stream`. Returns the receiver and the plan.
pub(super) fn connect(
    p: &mut CoreState,
    r: &mut CoreState,
    id: LinkId,
    conn: u64,
) -> (StreamReceiver, CatchUp) {
    let mut rx = rx(conn);
    let hi = hello_of(p, id);
    let pos = handshake(p, &hi, &mut rx, r).expect("accepted");
    let plan = p.repl.start_stream(id, &pos).expect("link exists");
    (rx, plan)
}

/// Carries what `p` queued on link `id` to `r` and the replica's acks back to `p`.
pub(super) fn pump(
    p: &mut CoreState,
    r: &mut CoreState,
    rx: &mut StreamReceiver,
    id: LinkId,
) -> Vec<Sent> {
    {
        let CoreState { repl, shard, .. } = p;
        repl.fill_copy(id, shard, NOW);
    }
    let (_, sent) = take(&mut p.repl, id);
    let mut bytes = BytesMut::new();
    for s in &sent {
        encode_control(&mut bytes, s.kind, false, s.seq(), 0, &s.body);
    }
    let answers = deliver(rx, r, &bytes).expect("accepted");
    for a in &answers {
        match a.kind {
            ReplFrame::Ack => p.repl.on_ack(id, a.seq()),
            // A range move's receiver holds the whole copy (as net's ack reader handles it).
            ReplFrame::Synced => p.repl.on_copied(id),
            other => panic!("unexpected answer {other:?}"),
        }
    }
    sent
}

fn set<'a>(key: &'a [u8], value: &'a [u8]) -> Command<'a> {
    Command::set(key, value)
}

/// Runs `cmd` on the primary and replicates it; returns its gate.
fn write(p: &mut CoreState, cmd: &Command<'_>) -> Option<GateId> {
    let resp = execute(p, cmd, NOW);
    assert!(
        matches!(resp, Response::Ok | Response::Int(_) | Response::Bool(true)),
        "{resp:?}"
    );
    replicate(p, cmd, NOW)
}

#[test]
fn a_set_reaches_the_replica_with_the_primarys_version_and_opens_its_gate() {
    let (mut p, mut r, id) = pair();

    // A write before the replica connected waits for it.
    let g1 = write(&mut p, &set(b"early", b"1")).expect("All waits");
    let (mut rx, plan) = connect(&mut p, &mut r, id, 1);
    assert_eq!(plan, CatchUp::FullCopy, "a fresh replica holds no position");
    assert!(!r.serves_reads());
    let sent = pump(&mut p, &mut r, &mut rx, id);
    assert_eq!(
        kinds(&sent),
        vec![
            (ReplFrame::Reset, 1),
            (ReplFrame::Op, 0),
            (ReplFrame::Synced, 1)
        ]
    );
    assert_eq!(p.repl.take_done(), vec![(g1, Ok(()))]);
    assert!(r.serves_reads(), "caught up after the copy");

    // A live write.
    let g2 = write(&mut p, &set(b"k", b"hello")).expect("All waits");
    assert!(p.repl.take_done().is_empty());
    let sent = pump(&mut p, &mut r, &mut rx, id);
    assert_eq!(kinds(&sent), vec![(ReplFrame::Op, 2)]);
    assert_eq!(p.repl.take_done(), vec![(g2, Ok(()))]);

    for key in [&b"early"[..], b"k"] {
        let want = p.shard.get(key, NOW).expect("primary holds it");
        let (value, version) = (want.value.to_vec(), want.version);
        let got = r.shard.get(key, NOW).expect("replica holds it");
        assert_eq!(got.value, &value[..]);
        assert_eq!(got.version, version);
    }
    assert_eq!(r.streams.applied_total, 1, "only live ops count as applied");

    // A delete travels too.
    let g3 = write(&mut p, &Command::Del { keys: vec![b"k"] }).expect("All waits");
    pump(&mut p, &mut r, &mut rx, id);
    assert_eq!(p.repl.take_done(), vec![(g3, Ok(()))]);
    assert!(r.shard.get(b"k", NOW).is_none());
}

#[test]
fn a_replica_that_reconnects_catches_up_from_the_backlog() {
    let (mut p, mut r, id) = pair();
    let (mut rx, _) = connect(&mut p, &mut r, id, 1);
    pump(&mut p, &mut r, &mut rx, id);
    let ga = write(&mut p, &set(b"a", b"1")).expect("All waits");
    pump(&mut p, &mut r, &mut rx, id);
    assert_eq!(p.repl.take_done(), vec![(ga, Ok(()))]);

    // The connection drops; writes continue meanwhile.
    assert_eq!(p.repl.session_ended(id), (true, true));
    rx.finish(&mut r);
    assert!(!r.serves_reads());
    let g = write(&mut p, &set(b"b", b"2")).expect("All waits");

    let (mut rx, plan) = connect(&mut p, &mut r, id, 2);
    assert_eq!(plan, CatchUp::Backlog { from: 2 });
    let sent = pump(&mut p, &mut r, &mut rx, id);
    assert_eq!(
        kinds(&sent),
        vec![(ReplFrame::Op, 2), (ReplFrame::Synced, 2)]
    );
    assert_eq!(p.repl.take_done(), vec![(g, Ok(()))]);
    assert_eq!(
        r.shard.get(b"b", NOW).map(|h| h.value.to_vec()),
        Some(b"2".to_vec())
    );
    assert!(r.serves_reads());
    assert_eq!(p.repl.counters.backlog_catchups, 1);
    assert_eq!(p.repl.counters.full_copies, 1);
}

#[test]
fn a_replica_refuses_a_stream_for_another_group() {
    let (p, mut r, id) = pair();
    let mut hi = hello_of(&p, id);
    hi.group = 2;
    let mut rx1 = rx(1);
    let err = handshake(&p, &hi, &mut rx1, &mut r).expect_err("refused");
    assert!(err.reason.contains("shard group 2"), "{}", err.reason);
    assert!(!err.quiet, "same epoch: nothing to wait for");
    assert!(rx1.hello().is_none());

    // A primary with a newer map: this member's map is behind, so the refusal is quiet.
    hi.epoch = p.epoch() + 1;
    let err = handshake(&p, &hi, &mut rx(2), &mut r).expect_err("refused");
    assert!(err.quiet);
}

#[test]
fn a_primary_refuses_a_stream_for_its_own_group() {
    let (mut p, _, id) = pair();
    let hi = hello_of(&p, id);
    let p2 = p.secret.clone();
    let err = handshake_with(p2.as_deref(), &hi, &mut rx(1), &mut p).expect_err("refused");
    assert!(err.reason.contains("shard group 1"), "{}", err.reason);
}

#[test]
fn a_replica_refuses_a_stream_from_another_core_index() {
    let (p, mut r, id) = pair();
    // Primary core i streams to replica core i of a node with as many cores.
    let mut hi = hello_of(&p, id);
    hi.primary_core = 1;
    assert!(handshake(&p, &hi, &mut rx(1), &mut r).is_err());
    let mut hi = hello_of(&p, id);
    hi.primary_cores = 2;
    assert!(handshake(&p, &hi, &mut rx(1), &mut r).is_err());
}

#[test]
fn with_a_cluster_secret_a_stream_opens_only_on_a_proof_made_with_it() {
    let (mut p, mut r, id) = pair();
    r.secret = Some("s3cret".into());
    let hi = hello_of(&p, id);
    // The hello alone gets a challenge, not a position, and nothing else is taken before the
    // proof: an operation sent right after the hello closes the stream unapplied.
    let mut rx1 = rx(1);
    let mut bytes = hello_bytes(&hi);
    encode_frame(
        &mut bytes,
        ReplFrame::Op,
        1,
        Some(&put(b"k", b"v", 10)),
        &mut Vec::new(),
    );
    let err = deliver(&mut rx1, &mut r, &bytes).expect_err("refused");
    assert!(err.reason.contains("challenge"), "{}", err.reason);
    assert!(r.shard.get(b"k", NOW).is_none());

    // No secret, or the wrong one: refused, and the sender or the receiver says why.
    let err = handshake_with(None, &hi, &mut rx(2), &mut r).expect_err("refused");
    assert!(err.reason.contains("--cluster-secret"), "{}", err.reason);
    let err = handshake_with(Some("wrong"), &hi, &mut rx(3), &mut r).expect_err("refused");
    assert!(
        err.reason.contains("wrong cluster secret"),
        "{}",
        err.reason
    );
    assert!(rx(3).hello().is_none());

    // A proof is good for its own nonce only: replayed to a receiver with a fresh nonce, it is
    // refused.
    let body = encode_body(&hi);
    let replayed = ringcache_cluster::stream_auth::stream_proof("s3cret", &NONCE, &body);
    let mut fresh = StreamReceiver::new(4, [1; 32], false);
    let mut bytes = hello_bytes(&hi);
    encode_control(
        &mut bytes,
        ReplFrame::Proof,
        false,
        0,
        0,
        &encode_body(&replayed),
    );
    let err = deliver(&mut fresh, &mut r, &bytes).expect_err("refused");
    assert!(
        err.reason.contains("wrong cluster secret"),
        "{}",
        err.reason
    );

    // The right secret: the stream opens and carries writes.
    p.secret = Some("s3cret".into());
    let (mut rx5, plan) = connect(&mut p, &mut r, id, 5);
    assert_eq!(plan, CatchUp::FullCopy);
    assert!(rx5.hello().is_some());
    let mut bytes = BytesMut::new();
    encode_frame(
        &mut bytes,
        ReplFrame::Op,
        1,
        Some(&put(b"k", b"v", 10)),
        &mut Vec::new(),
    );
    deliver(&mut rx5, &mut r, &bytes).expect("taken");
    assert!(r.shard.get(b"k", NOW).is_some());
}

#[test]
fn a_node_with_a_password_and_no_cluster_secret_takes_no_stream() {
    let (p, mut r, id) = pair();
    let hi = hello_of(&p, id);
    let mut rx = StreamReceiver::new(1, NONCE, true);
    let err = handshake(&p, &hi, &mut rx, &mut r).expect_err("refused");
    assert!(err.reason.contains("--cluster-secret"), "{}", err.reason);
    assert!(!err.quiet);
}

#[test]
fn a_move_stream_is_taken_only_when_the_map_names_a_move_to_this_group() {
    // Group 1's primary streams to group 2's primary while group 2 joins the ring.
    let moving = crate::core_state::test_support::joining_map(1, 1);
    let mut src = core(0, 1, WriteAck::All);
    let mut dst = core(0, 1, WriteAck::All);
    let mut replica = core(0, 1, WriteAck::All);
    assert!(!on_map(&mut src, view(moving.clone(), 1)).is_empty());
    on_map(&mut dst, view(moving.clone(), 2));
    on_map(&mut replica, view(moving.clone(), 101));
    let hi = StreamHello {
        stream: 5,
        primary_core: 0,
        primary_cores: 1,
        group: 1,
        moving: true,
        epoch: moving.epoch,
    };
    assert!(handshake(&src, &hi, &mut rx(1), &mut dst).is_ok());
    // Not to a replica, not from a group that is not on the ring, not to the sender's group.
    let err = handshake(&src, &hi, &mut rx(2), &mut replica).expect_err("refused");
    assert!(err.reason.contains("range move"), "{}", err.reason);
    let stranger = StreamHello {
        group: 3,
        ..hi.clone()
    };
    assert!(handshake(&src, &stranger, &mut rx(3), &mut dst).is_err());
    let own = StreamHello {
        group: 2,
        ..hi.clone()
    };
    assert!(handshake(&src, &own, &mut rx(4), &mut dst).is_err());
    // Once the move is over, the same stream is refused: no move stream without a move.
    let mut done = moving.clone();
    done.moving = None;
    done.epoch += 1;
    on_map(&mut dst, view(done, 2));
    let err = handshake(&src, &hi, &mut rx(5), &mut dst).expect_err("refused");
    assert!(!err.quiet);
}

#[test]
fn an_op_with_a_version_far_ahead_of_the_clock_is_refused_and_counted() {
    let (mut p, mut r, id) = pair();
    let (mut rx, _) = connect(&mut p, &mut r, id, 1);
    let wall = NOW;
    let before = r.clock.stamp(wall);
    let far = u64::MAX;
    let near = (wall + 1) << 20 | 5;
    let mut bytes = BytesMut::new();
    let mut scratch = Vec::new();
    encode_frame(
        &mut bytes,
        ReplFrame::Op,
        1,
        Some(&put(b"far", b"x", far)),
        &mut scratch,
    );
    let cut = ReplOp::InvalidatePrefix {
        prefix: b"",
        cut: far,
    };
    encode_frame(&mut bytes, ReplFrame::Op, 2, Some(&cut), &mut scratch);
    encode_frame(
        &mut bytes,
        ReplFrame::Op,
        3,
        Some(&put(b"near", b"y", near)),
        &mut scratch,
    );
    deliver(&mut rx, &mut r, &bytes).expect("the stream goes on");
    assert!(
        r.shard.get(b"far", NOW).is_none(),
        "applied with a bogus version"
    );
    assert!(
        r.shard.get(b"near", NOW).is_some(),
        "the cut from the future was applied"
    );
    assert_eq!(r.streams.clock_refused, 2);
    let after = r.clock.stamp(wall);
    assert!(after > near && after > before);
    assert!(ringcache_cluster::HybridClock::physical_ms(after) <= wall + 2);
    let stats = crate::stats::core_stats(&r).0;
    assert!(stats.contains(&("core0.repl_clock_refused".to_string(), 2)));
}

#[test]
fn an_op_before_the_hello_is_refused() {
    let (_, mut r, _) = pair();
    let mut bytes = BytesMut::new();
    encode_frame(
        &mut bytes,
        ReplFrame::Op,
        1,
        Some(&put(b"k", b"v", 10)),
        &mut Vec::new(),
    );
    assert!(deliver(&mut rx(1), &mut r, &bytes).is_err());
    assert!(r.shard.get(b"k", NOW).is_none());
}

#[test]
fn a_replica_applies_only_newer_versions() {
    let (mut p, mut r, id) = pair();
    let (mut rx, _) = connect(&mut p, &mut r, id, 1);
    let mut bytes = BytesMut::new();
    let mut scratch = Vec::new();
    let ops = [
        put(b"k", b"new", 200),
        put(b"k", b"old", 100),
        ReplOp::Del {
            key: b"k",
            version: 150,
        },
        put(b"j", b"1", 300),
        ReplOp::Del {
            key: b"j",
            version: 400,
        },
        put(b"j", b"stale", 350),
    ];
    for (i, op) in ops.iter().enumerate() {
        encode_frame(
            &mut bytes,
            ReplFrame::Op,
            i as u64 + 1,
            Some(op),
            &mut scratch,
        );
    }
    let answers = deliver(&mut rx, &mut r, &bytes).expect("accepted");
    assert_eq!(kinds(&answers), vec![(ReplFrame::Ack, 6)]);
    let hit = r.shard.get(b"k", NOW).expect("the newer value stays");
    assert_eq!((hit.value, hit.version), (&b"new"[..], 200));
    assert!(
        r.shard.get(b"j", NOW).is_none(),
        "an older put does not undo a newer delete"
    );
}

#[test]
fn nothing_is_replicated_outside_a_cluster() {
    let mut c = core(0, 1, WriteAck::All);
    let cmd = set(b"k", b"v");
    assert!(matches!(execute(&mut c, &cmd, NOW), Response::Ok));
    assert_eq!(replicate(&mut c, &cmd, NOW), None);
    assert_eq!(c.repl.next_seq(), 1);
}

#[test]
fn a_set_that_leaves_no_entry_replicates_nothing_and_needs_no_gate() {
    let (mut p, _, _) = pair();
    let xx = Command::Set {
        key: b"absent",
        value: b"w",
        expiry: Expiry::None,
        cond: SetCond::Xx,
        if_version: None,
        tags: Vec::new(),
        get_version: false,
    };
    assert!(matches!(execute(&mut p, &xx, NOW), Response::Nil));
    assert_eq!(replicate(&mut p, &xx, NOW), None);
    assert_eq!(p.repl.next_seq(), 1);
    assert_eq!(p.repl.pending_acks(), 0);
}

#[test]
fn a_failed_nx_resends_the_keys_unchanged_state() {
    // Documents today's behaviour: replicate reads the key back whatever the command did, so
    // an NX that stored nothing still sends the existing entry (same version: harmless).
    let (mut p, _, id) = pair();
    p.repl
        .start_stream(id, &StreamPosition { applied: Some(0) });
    write(&mut p, &set(b"k", b"v"));
    let version = p.shard.get(b"k", NOW).expect("stored").version;
    let nx = Command::Set {
        key: b"k",
        value: b"w",
        expiry: Expiry::None,
        cond: SetCond::Nx,
        if_version: None,
        tags: Vec::new(),
        get_version: false,
    };
    assert!(matches!(execute(&mut p, &nx, NOW), Response::Nil));
    assert!(replicate(&mut p, &nx, NOW).is_some());
    let sent = take(&mut p.repl, id).1;
    assert_eq!(
        kinds(&sent),
        vec![
            (ReplFrame::Synced, 0),
            (ReplFrame::Op, 1),
            (ReplFrame::Op, 2)
        ]
    );
    assert_eq!(sent[1].op(), put(b"k", b"v", version));
    assert_eq!(sent[2].op(), put(b"k", b"v", version));
}

#[test]
fn an_expire_reaches_the_replica_with_a_new_version() {
    let (mut p, mut r, id) = pair();
    let (mut rx, _) = connect(&mut p, &mut r, id, 1);
    pump(&mut p, &mut r, &mut rx, id);
    write(&mut p, &set(b"k", b"v"));
    pump(&mut p, &mut r, &mut rx, id);
    let v1 = r.shard.get(b"k", NOW).expect("replicated").version;

    let g = write(
        &mut p,
        &Command::Expire {
            key: b"k",
            ms: 5_000,
        },
    )
    .expect("All waits");
    pump(&mut p, &mut r, &mut rx, id);
    assert_eq!(p.repl.take_done().last(), Some(&(g, Ok(()))));
    let primary = p.shard.get(b"k", NOW).expect("held");
    let (pv, pexp) = (primary.version, primary.expires_at);
    assert!(pv > v1, "the new expiry carries a new version");
    let hit = r.shard.get(b"k", NOW).expect("held");
    assert_eq!(
        (hit.value, hit.version, hit.expires_at),
        (&b"v"[..], pv, pexp)
    );
    assert_eq!(pexp, Some(NOW + 5_000));
    assert!(r.shard.get(b"k", NOW + 5_000).is_none());

    // PERSIST travels the same way.
    write(&mut p, &Command::Persist { key: b"k" });
    pump(&mut p, &mut r, &mut rx, id);
    assert_eq!(r.shard.get(b"k", NOW).expect("held").expires_at, None);
}

#[test]
fn an_invalidated_prefix_is_gone_on_the_replica_and_stays_gone() {
    let (mut p, mut r, id) = pair();
    let (mut rx, _) = connect(&mut p, &mut r, id, 1);
    pump(&mut p, &mut r, &mut rx, id);
    for k in [&b"p:1"[..], b"p:2", b"q:1"] {
        write(&mut p, &set(k, b"v"));
    }
    // The replica sees p:2's put only after the invalidation (a late arrival).
    let early = take(&mut p.repl, id).1;
    let cmd = Command::InvalidatePrefix { prefix: b"p:" };
    let g = write(&mut p, &cmd).expect("All waits");
    let late = take(&mut p.repl, id).1;
    let mut bytes = BytesMut::new();
    for s in [&early[0], &early[2], &late[0], &early[1]] {
        encode_control(&mut bytes, s.kind, false, s.seq(), 0, &s.body);
    }
    let answers = deliver(&mut rx, &mut r, &bytes).expect("accepted");
    assert_eq!(kinds(&answers), vec![(ReplFrame::Ack, 4)]);
    p.repl.on_ack(id, 4);
    assert_eq!(p.repl.take_done().last(), Some(&(g, Ok(()))));
    assert!(r.shard.get(b"p:1", NOW).is_none());
    assert!(
        r.shard.get(b"p:2", NOW).is_none(),
        "an older put does not outlive the cut"
    );
    assert!(r.shard.get(b"q:1", NOW).is_some());
    // A newer write under the prefix is kept.
    write(&mut p, &set(b"p:1", b"new"));
    pump(&mut p, &mut r, &mut rx, id);
    assert_eq!(
        r.shard.get(b"p:1", NOW).map(|h| h.value.to_vec()),
        Some(b"new".to_vec())
    );
}

#[test]
fn a_range_move_copies_the_carried_keys_to_the_new_owner_and_its_replica() {
    // Group 1 (primary 1, replica 101) on the ring; group 2 (primary 2, replica 201) joining.
    // One core per node.
    let m = moving_map(1);
    let mut m1 = m.clone();
    for mem in &mut m1.members {
        mem.core_ports.truncate(1);
    }
    let mut src = core(0, 1, WriteAck::All);
    let mut dst = core(0, 1, WriteAck::All);
    let links = on_map(&mut src, view(m1.clone(), 1));
    assert_eq!(links.len(), 2);
    let (rep, mv) = (links[0], links[1]);
    assert!(src.repl.link(rep).expect("link").filter.is_none());
    let filter = src
        .repl
        .link(mv)
        .expect("link")
        .filter
        .clone()
        .expect("a move link");
    assert_eq!((filter.group, filter.core, filter.cores), (2, 0, 1));
    // The new owner's own replica link, streaming.
    let dst_links = on_map(&mut dst, view(m1, 2));
    assert_eq!(dst_links.len(), 1);
    let dst_rep = dst_links[0];
    dst.repl
        .start_stream(dst_rep, &StreamPosition { applied: Some(0) });
    take(&mut dst.repl, dst_rep);

    let moving = keys_where(1, |k| filter.carries(k)).remove(0);
    let staying = keys_where(1, |k| !filter.carries(k)).remove(0);
    let g1 = write(&mut src, &set(&moving, b"m")).expect("waits");
    let g2 = write(&mut src, &set(&staying, b"s")).expect("waits");

    // The move stream: its hello is answered with no position, and the copy starts without a
    // reset (the receiver keeps its own keys).
    let (mut rx, plan) = connect(&mut src, &mut dst, mv, 1);
    assert_eq!(plan, CatchUp::FullCopy);
    assert!(rx.hello().expect("hello").moving);
    let sent = pump(&mut src, &mut dst, &mut rx, mv);
    assert_eq!(
        kinds(&sent),
        vec![(ReplFrame::Op, 0), (ReplFrame::Synced, 2)]
    );
    assert_eq!(
        src.repl.moved, 7,
        "the receiver answered the end of the copy"
    );
    assert_eq!(src.repl.counters.move_streams, 1);
    // The moved write also waits for the source's replica.
    assert!(src.repl.take_done().is_empty());
    src.repl.on_ack(rep, 2);
    assert_eq!(src.repl.take_done(), vec![(g1, Ok(())), (g2, Ok(()))]);

    let version = src.shard.get(&moving, NOW).expect("held").version;
    let hit = dst.shard.get(&moving, NOW).expect("moved");
    assert_eq!((hit.value, hit.version), (&b"m"[..], version));
    assert!(dst.shard.get(&staying, NOW).is_none());
    // The new owner passed it on to its own replica.
    let fwd = take(&mut dst.repl, dst_rep).1;
    assert_eq!(kinds(&fwd), vec![(ReplFrame::Op, 1)]);
    assert_eq!(fwd[0].op(), put(&moving, b"m", version));
    assert_eq!(
        dst.streams.applied_total, 0,
        "a move is not a replica position"
    );
}
