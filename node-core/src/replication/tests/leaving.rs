//! Replicas leaving, timeouts and demotion: how waiting writes end without their acks.

use super::*;

// ---------------------------------------------------------------------------------------------
// Replicas leaving, timeouts, demotion
// ---------------------------------------------------------------------------------------------

#[test]
fn a_leaving_replica_completes_writes_waiting_only_on_it_as_ok_degraded() {
    let (mut r, a, b) = two_replicas(WriteAck::All);
    let seq = r.push(&put(b"k", b"v", 10), Some(b"k"));
    let g = r.gate(seq, 1_000).expect("All waits");
    r.on_ack(a, seq);
    assert!(r.take_done().is_empty());
    r.take_wakes();

    // Member 102 leaves the group: no new link, and the write that only waited on it is
    // answered Ok (degraded: every live member holds it), not as a failure.
    assert!(r.set_replicas(&[(101, addr(8111))]).is_empty());
    assert_eq!(r.take_done(), vec![(g, Ok(()))]);
    assert_eq!(r.counters.ack_failures, 0);
    assert_eq!(r.pending_acks(), 0);
    assert_eq!(r.replica_links(), 1);

    // Its task is woken and told to stop; the link stays visible until the task finished.
    assert_eq!(r.take_wakes(), vec![b]);
    assert!(
        r.link(b)
            .expect("kept until its task finished")
            .state
            .closed
    );
    assert_eq!(take(&mut r, b).0, WriteStep::Closed);
    r.link_finished(b);
    assert!(r.link(b).is_none());
    assert_eq!(take(&mut r, b).0, WriteStep::Closed);
    // The remaining link is untouched.
    assert!(!r.link(a).expect("kept").state.closed);
}

#[test]
fn a_leaving_replica_leaves_writes_waiting_for_the_remaining_one() {
    let (mut r, a, b) = two_replicas(WriteAck::All);
    let seq = r.push(&put(b"k", b"v", 10), Some(b"k"));
    let g = r.gate(seq, 1_000).expect("All waits");
    r.set_replicas(&[(101, addr(8111))]);
    assert!(r.take_done().is_empty());
    assert_eq!(r.pending_acks(), 1);
    // A late ack from the departed link changes nothing; the remaining replica's does.
    r.on_ack(b, seq);
    assert!(r.take_done().is_empty());
    r.on_ack(a, seq);
    assert_eq!(r.take_done(), vec![(g, Ok(()))]);
}

#[test]
fn a_replica_at_a_new_address_gets_a_new_link_and_the_old_one_closes() {
    let (mut r, a, b) = two_replicas(WriteAck::All);
    let added = r.set_replicas(&[(101, addr(8111)), (102, addr(9999))]);
    assert_eq!(added.len(), 1);
    let c = added[0];
    assert!(c != a && c != b);
    assert_eq!(r.link(c).expect("new link").addr, addr(9999));
    assert_eq!(r.link(c).expect("new link").member, 102);
    assert_eq!(take(&mut r, b).0, WriteStep::Closed);
    assert_eq!(take(&mut r, c).0, WriteStep::Idle);
    assert_eq!(r.replica_links(), 2);
}

#[test]
fn a_write_without_acks_fails_after_the_timeout() {
    // test_support's config waits 1000 ms for replica acks.
    let mut c = core(0, 1, WriteAck::All);
    let r = &mut c.repl;
    r.set_recording(true);
    let ids = r.set_replicas(&[(101, addr(8111))]);
    let seq = r.push(&put(b"k", b"v", 10), Some(b"k"));
    let g = r.gate(seq, 5_000).expect("All waits");
    r.expire_waits(6_000);
    assert!(
        r.take_done().is_empty(),
        "exactly the timeout is not over it"
    );
    assert_eq!(r.counters.ack_failures, 0);
    r.expire_waits(6_001);
    let done = r.take_done();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].0, g);
    let err = done[0].1.clone().expect_err("a timed-out write fails");
    assert!(err.contains("1000 ms"), "{err}");
    assert_eq!(r.counters.ack_failures, 1);
    assert_eq!(r.pending_acks(), 0);
    // A late ack does not answer the write a second time.
    r.on_ack(ids[0], seq);
    assert!(r.take_done().is_empty());
}

#[test]
fn only_writes_older_than_the_timeout_expire() {
    let (mut r, a, _) = two_replicas(WriteAck::Quorum);
    let s1 = r.push(&put(b"k", b"1", 10), Some(b"k"));
    let g1 = r.gate(s1, 1_000).expect("waits");
    let s2 = r.push(&put(b"k", b"2", 11), Some(b"k"));
    let g2 = r.gate(s2, 1_500).expect("waits");
    r.expire_waits(2_001);
    let done = r.take_done();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].0, g1);
    assert!(done[0].1.is_err());
    r.on_ack(a, s2);
    assert_eq!(r.take_done(), vec![(g2, Ok(()))]);
    assert_eq!(r.counters.ack_failures, 1);
}

#[test]
fn stop_all_closes_every_link_and_stops_recording() {
    let (mut r, a, b) = two_replicas(WriteAck::All);
    r.take_wakes();
    r.stop_all();
    assert!(!r.is_active());
    assert_eq!(r.replica_links(), 0);
    let mut woken = r.take_wakes();
    woken.sort_unstable();
    assert_eq!(woken, vec![a, b]);
    assert_eq!(take(&mut r, a).0, WriteStep::Closed);
    assert_eq!(take(&mut r, b).0, WriteStep::Closed);
}

#[test]
fn stop_all_fails_waiting_writes_with_an_error() {
    let (mut r, _, _) = two_replicas(WriteAck::All);
    let seq = r.push(&put(b"k", b"v", 10), Some(b"k"));
    let g = r.gate(seq, 1_000).expect("All waits");
    r.stop_all();
    let done = r.take_done();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].0, g);
    let err = done[0]
        .1
        .clone()
        .expect_err("a demoted primary fails its waiting writes");
    assert!(err.contains("no longer the primary"), "{err}");
    assert_eq!(r.pending_acks(), 0);
}
