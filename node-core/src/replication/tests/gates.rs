//! Gates per ack policy: when a write waiting for replica acks may be answered.

use super::*;

// ---------------------------------------------------------------------------------------------
// Gates per policy
// ---------------------------------------------------------------------------------------------

#[test]
fn all_opens_a_gate_only_after_every_replica_acked() {
    let (mut r, a, b) = two_replicas(WriteAck::All);
    let seq = r.push(&put(b"k", b"v", 10), Some(b"k"));
    assert_eq!(seq, 1);
    assert_eq!(r.next_seq(), 2);
    let g = r.gate(seq, 1_000).expect("All waits for the replicas");
    assert_eq!(r.pending_acks(), 1);
    r.on_ack(a, seq);
    assert!(r.take_done().is_empty());
    // The same link acknowledging again does not count twice.
    r.on_ack(a, seq);
    assert!(r.take_done().is_empty());
    r.on_ack(b, seq);
    assert_eq!(r.take_done(), vec![(g, Ok(()))]);
    assert_eq!(r.pending_acks(), 0);
    // Once open, a gate never opens again.
    r.on_ack(b, seq);
    assert!(r.take_done().is_empty());
}

#[test]
fn quorum_opens_a_gate_after_one_of_two_replicas_acked() {
    let (mut r, a, b) = two_replicas(WriteAck::Quorum);
    let seq = r.push(&put(b"k", b"v", 10), Some(b"k"));
    let g = r
        .gate(seq, 1_000)
        .expect("Quorum waits for one replica of two");
    assert!(r.take_done().is_empty());
    r.on_ack(b, seq);
    assert_eq!(r.take_done(), vec![(g, Ok(()))]);
    r.on_ack(a, seq);
    assert!(r.take_done().is_empty());
    assert_eq!(r.pending_acks(), 0);
}

#[test]
fn one_needs_no_gate() {
    let (mut r, _, _) = two_replicas(WriteAck::One);
    let seq = r.push(&put(b"k", b"v", 10), Some(b"k"));
    assert_eq!(r.gate(seq, 1_000), None);
    assert_eq!(r.pending_acks(), 0);
    assert!(r.take_done().is_empty());
}

#[test]
fn all_without_replicas_needs_no_gate() {
    let mut r = Replicator::new(WriteAck::All, 1 << 20, 1000, 7);
    r.set_recording(true);
    let seq = r.push(&put(b"k", b"v", 10), Some(b"k"));
    assert_eq!(r.gate(seq, 1_000), None);
    assert_eq!(r.pending_acks(), 0);
}

#[test]
fn an_ack_of_a_later_sequence_opens_every_earlier_gate() {
    let (mut r, a, b) = two_replicas(WriteAck::All);
    let gates: Vec<GateId> = (1..=3u64)
        .map(|i| {
            let seq = r.push(&put(b"k", b"v", 10 + i), Some(b"k"));
            assert_eq!(seq, i);
            r.gate(seq, 1_000).expect("All waits")
        })
        .collect();
    assert_eq!(r.pending_acks(), 3);
    r.on_ack(a, 3);
    assert!(r.take_done().is_empty());
    // An ack below every waiting write opens nothing.
    r.on_ack(b, 0);
    assert!(r.take_done().is_empty());
    r.on_ack(b, 2);
    assert_eq!(r.take_done(), vec![(gates[0], Ok(())), (gates[1], Ok(()))]);
    r.on_ack(b, 3);
    assert_eq!(r.take_done(), vec![(gates[2], Ok(()))]);
    assert_eq!(r.pending_acks(), 0);
}
