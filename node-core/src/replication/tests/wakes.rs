//! Live operations reach streaming links only, and each link is woken once per batch.

use super::*;

// ---------------------------------------------------------------------------------------------
// Live operations and wakes
// ---------------------------------------------------------------------------------------------

#[test]
fn live_ops_reach_only_streaming_links_and_each_link_is_woken_once() {
    let (mut r, a, b) = two_replicas(WriteAck::All);
    let op1 = put(b"a", b"1", 10);
    r.push(&op1, Some(b"a"));
    // New links need no wake until they stream.
    assert!(r.take_wakes().is_empty());
    assert_eq!(
        r.start_stream(a, &StreamPosition { applied: Some(1) }),
        Some(CatchUp::Backlog { from: 2 })
    );
    assert_eq!(r.take_wakes(), vec![a]);
    assert!(!r.has_output());

    let op2 = put(b"b", b"2", 11);
    let op3 = put(b"c", b"3", 12);
    r.push(&op2, Some(b"b"));
    r.push(&op3, Some(b"c"));
    assert!(r.has_output());
    assert_eq!(r.take_wakes(), vec![a], "one wake for two ops, none for b");
    assert!(r.take_wakes().is_empty());

    let (step, sent) = take(&mut r, a);
    assert_eq!(step, WriteStep::Write);
    assert_eq!(
        kinds(&sent),
        vec![
            (ReplFrame::Synced, 1),
            (ReplFrame::Op, 2),
            (ReplFrame::Op, 3)
        ]
    );
    assert_eq!(sent[1].op(), op2);
    assert_eq!(sent[2].op(), op3);
    let (step, sent) = take(&mut r, b);
    assert_eq!(step, WriteStep::Idle);
    assert!(sent.is_empty());

    // After the wake was taken, the next op wakes the link again.
    r.push(&put(b"d", b"4", 13), Some(b"d"));
    assert_eq!(r.take_wakes(), vec![a]);
    assert_eq!(kinds(&take(&mut r, a).1), vec![(ReplFrame::Op, 4)]);
}
