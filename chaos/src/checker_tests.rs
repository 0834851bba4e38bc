//! Unit tests of the checker: small histories known to be linearizable and known not to be
//! (unknown outcomes included), the operator counts, and synthetic histories.

use crate::anomaly::Kind;
use crate::checker::check;
use crate::counts::FINAL_CLIENT;
use crate::history::{Answer, Op, OpKind, Outcome, NEVER};
use crate::linear::{check_key, Verdict};
use crate::synth;

fn op(client: u32, kind: OpKind, outcome: Outcome, invoke: u64, complete: u64) -> Op {
    Op {
        client,
        key: "k".into(),
        kind,
        outcome,
        invoke,
        complete,
    }
}
fn set(c: u32, v: &str, a: u64, b: u64) -> Op {
    op(c, OpKind::Write(v.into()), Outcome::Ok(Answer::Done), a, b)
}
fn set_unknown(c: u32, v: &str, a: u64) -> Op {
    op(c, OpKind::Write(v.into()), Outcome::Unknown, a, NEVER)
}
fn get(c: u32, v: Option<&str>, a: u64, b: u64) -> Op {
    let v = v.map(|s| s.as_bytes().to_vec());
    op(c, OpKind::Read, Outcome::Ok(Answer::Value(v)), a, b)
}
fn del(c: u32, a: u64, b: u64) -> Op {
    op(c, OpKind::Delete, Outcome::Ok(Answer::Done), a, b)
}
fn cas(c: u32, expect: &str, new: &str, stored: bool, a: u64, b: u64) -> Op {
    let kind = OpKind::Cas {
        expect: expect.into(),
        new: new.into(),
    };
    op(c, kind, Outcome::Ok(Answer::Stored(stored)), a, b)
}
fn incr(c: u32, n: Option<i64>, a: u64, b: u64) -> Op {
    match n {
        Some(n) => op(c, OpKind::Incr, Outcome::Ok(Answer::Count(n)), a, b),
        None => op(c, OpKind::Incr, Outcome::Unknown, a, NEVER),
    }
}
fn lin(ops: &[Op]) -> Verdict {
    let refs: Vec<&Op> = ops.iter().collect();
    check_key(&refs, 100_000)
}
fn is_lin(ops: &[Op]) -> bool {
    matches!(lin(ops), Verdict::Linearizable)
}
fn is_not(ops: &[Op]) -> bool {
    matches!(lin(ops), Verdict::NotLinearizable { .. })
}

#[test]
fn sequential_histories() {
    assert!(is_lin(&[]));
    assert!(is_lin(&[get(0, None, 0, 1)]));
    assert!(is_lin(&[set(0, "a", 0, 1), get(1, Some("a"), 2, 3)]));
    assert!(
        is_not(&[get(1, Some("a"), 0, 1)]),
        "read of a value never written"
    );
    assert!(
        is_not(&[set(0, "a", 0, 1), get(1, None, 2, 3)]),
        "lost write"
    );
    assert!(is_not(&[
        set(0, "a", 0, 1),
        set(0, "b", 2, 3),
        get(1, Some("a"), 4, 5)
    ]));
    assert!(is_lin(&[
        set(0, "a", 0, 1),
        del(0, 2, 3),
        get(1, None, 4, 5)
    ]));
    assert!(is_not(&[
        set(0, "a", 0, 1),
        del(0, 2, 3),
        get(1, Some("a"), 4, 5)
    ]));
}

#[test]
fn concurrent_histories() {
    // A read overlapping a write may see either value.
    assert!(is_lin(&[
        set(0, "a", 0, 1),
        set(0, "b", 2, 10),
        get(1, Some("a"), 3, 4)
    ]));
    assert!(is_lin(&[
        set(0, "a", 0, 1),
        set(0, "b", 2, 10),
        get(1, Some("b"), 3, 4)
    ]));
    // ...but once a read saw the new value, a later read may not see the old one.
    assert!(is_not(&[
        set(0, "a", 0, 1),
        set(0, "b", 2, 20),
        get(1, Some("b"), 3, 4),
        get(2, Some("a"), 5, 6)
    ]));
    // Two concurrent writes, reads agree on one order.
    assert!(is_lin(&[
        set(0, "a", 0, 10),
        set(1, "b", 0, 10),
        get(2, Some("b"), 11, 12),
        get(2, Some("b"), 13, 14)
    ]));
    assert!(is_not(&[
        set(0, "a", 0, 10),
        set(1, "b", 0, 10),
        get(2, Some("b"), 11, 12),
        get(2, Some("a"), 13, 14)
    ]));
}

#[test]
fn unknown_outcomes_may_take_effect_or_not() {
    // Never observed: fine either way.
    assert!(is_lin(&[
        set(0, "a", 0, 1),
        set_unknown(1, "b", 2),
        get(2, Some("a"), 5, 6)
    ]));
    // Observed later: it took effect.
    assert!(is_lin(&[
        set(0, "a", 0, 1),
        set_unknown(1, "b", 2),
        get(2, Some("b"), 50, 60)
    ]));
    // Observed, then the older value again: not linearizable.
    assert!(is_not(&[
        set(0, "a", 0, 1),
        set_unknown(1, "b", 2),
        get(2, Some("b"), 50, 60),
        get(2, Some("a"), 61, 62)
    ]));
    // Observed before it was invoked: not linearizable.
    assert!(is_not(&[
        set(0, "a", 0, 1),
        get(2, Some("b"), 3, 4),
        set_unknown(1, "b", 5)
    ]));
    // An unknown write overwrites an acknowledged one only if some read shows it.
    assert!(is_lin(&[
        set_unknown(1, "b", 0),
        set(0, "a", 5, 6),
        get(2, Some("b"), 7, 8)
    ]));
    // A failed op never took effect.
    assert!(is_not(&[
        set(0, "a", 0, 1),
        op(1, OpKind::Write(b"b".to_vec()), Outcome::Fail, 2, 3),
        get(2, Some("b"), 4, 5)
    ]));
}

#[test]
fn compare_and_set_and_incr() {
    assert!(is_lin(&[
        set(0, "a", 0, 1),
        cas(1, "a", "b", true, 2, 3),
        get(2, Some("b"), 4, 5)
    ]));
    assert!(is_not(&[
        set(0, "a", 0, 1),
        set(0, "x", 2, 3),
        cas(1, "a", "b", true, 4, 5)
    ]));
    assert!(is_lin(&[incr(0, Some(1), 0, 1), incr(1, Some(2), 2, 3)]));
    assert!(
        is_not(&[incr(0, Some(1), 0, 1), incr(1, Some(1), 2, 3)]),
        "duplicate count"
    );
    assert!(
        is_lin(&[incr(0, None, 0, 0), incr(1, Some(2), 5, 6)]),
        "unknown took effect"
    );
    assert!(
        is_lin(&[incr(0, None, 0, 0), incr(1, Some(1), 5, 6)]),
        "unknown did not"
    );
    assert!(is_not(&[
        incr(0, None, 0, 0),
        incr(1, Some(2), 5, 6),
        incr(1, Some(2), 7, 8)
    ]));
    assert!(is_not(&[incr(0, Some(1), 0, 1), get(1, None, 2, 3)]));
}

#[test]
fn counters_with_many_unknown_increments() {
    let mut ops: Vec<Op> = (0..40).map(|i| incr(i, None, 10 * i as u64, 0)).collect();
    ops.push(incr(99, Some(31), 1000, 1001));
    ops.push(get(98, Some("31"), 1002, 1003));
    assert!(is_lin(&ops), "30 of the 40 unknown increments took effect");
    ops.push(incr(99, Some(45), 1004, 1005));
    assert!(is_not(&ops), "only 40 unknown increments");
    // An increment cannot take effect before it was invoked.
    let early = vec![get(1, Some("1"), 0, 5), incr(0, None, 10, 0)];
    assert!(is_not(&early));
    // A read of an older count after a newer one was acknowledged.
    let stale = vec![
        incr(0, Some(1), 0, 1),
        incr(0, Some(2), 2, 3),
        get(1, Some("1"), 4, 5),
    ];
    assert!(is_not(&stale));
    // Reads overlapping an increment may see either count.
    let overlap = vec![
        incr(0, Some(1), 0, 1),
        incr(0, Some(2), 2, 10),
        get(1, Some("1"), 3, 4),
        get(2, Some("2"), 5, 6),
        get(FINAL_CLIENT, Some("2"), 20, 21),
    ];
    assert!(is_lin(&overlap));
}

#[test]
fn budget_gives_undecided() {
    // Many concurrent unknown writes, each observed once, then an impossible read: every
    // subset of the writes placed before each observation is explored.
    let mut ops: Vec<Op> = (0..20)
        .map(|i| set_unknown(i, &format!("v{i}"), 0))
        .collect();
    ops.extend((0..20).map(|i| {
        get(
            99,
            Some(&format!("v{i}")),
            10 + 2 * i as u64,
            11 + 2 * i as u64,
        )
    }));
    ops.push(get(99, Some("v0"), 100, 101));
    ops.push(get(99, Some("zz"), 102, 103));
    let refs: Vec<&Op> = ops.iter().collect();
    assert!(matches!(
        check_key(&refs, 1000),
        Verdict::Undecided { budget: 1000 }
    ));
}

#[test]
fn operator_counts() {
    let ops = vec![
        set(0, "a", 0, 1),
        set(0, "b", 2, 3),
        get(1, Some("a"), 4, 5), // stale
        del(0, 6, 7),
        get(1, Some("b"), 8, 9), // resurrected
        set(0, "c", 10, 11),
        get(1, None, 12, 13),                 // forgotten
        get(1, Some("zz"), 14, 15),           // phantom
        get(FINAL_CLIENT, Some("a"), 20, 21), // final: b, del, c lost
    ];
    let c = check(&ops, 100_000);
    let n = c.counts();
    assert_eq!(n[&Kind::StaleRead], 1, "{:#?}", c.anomalies);
    assert_eq!(n[&Kind::ResurrectedDelete], 1);
    assert_eq!(n[&Kind::ForgottenRead], 1);
    assert_eq!(n[&Kind::Phantom], 1);
    assert_eq!(n[&Kind::LostWrite], 3);
    assert_eq!(n[&Kind::NotLinearizable], 1);
    // A clean history counts nothing.
    let ok = vec![
        set(0, "a", 0, 1),
        set(0, "b", 2, 10),
        get(1, Some("a"), 3, 4),
        get(FINAL_CLIENT, Some("b"), 20, 21),
    ];
    let c = check(&ok, 100_000);
    assert!(c.anomalies.is_empty(), "{:#?}", c.anomalies);
}

#[test]
fn synthetic_histories_are_linearizable_and_a_mutation_is_caught() {
    let shape = synth::Shape {
        clients: 8,
        keys: 4,
        counters: 1,
        duration_ns: 2_000_000_000,
        op_ns: 1_000_000,
        unknown: 0.02,
        seed: 7,
    };
    let mut ops = synth::history(&shape);
    assert!(ops.len() > 5_000, "{}", ops.len());
    let c = check(&ops, 1_000_000);
    assert!(
        c.anomalies.is_empty(),
        "{:#?}",
        &c.anomalies[..c.anomalies.len().min(3)]
    );
    // Make one late read of a register answer the key's first written value.
    let first = ops
        .iter()
        .find_map(|o| match (&o.kind, o.key.as_str()) {
            (OpKind::Write(v), "r0") if o.is_ok() => Some(v.clone()),
            _ => None,
        })
        .expect("a write to r0");
    let late = ops
        .iter()
        .rposition(|o| o.key == "r0" && o.read_value().is_some_and(|v| v != Some(&first[..])))
        .expect("a late read of r0");
    ops[late].outcome = Outcome::Ok(Answer::Value(Some(first)));
    let c = check(&ops, 1_000_000);
    let n = c.counts();
    assert_eq!(n[&Kind::NotLinearizable], 1, "{:#?}", c.anomalies);
    assert!(n[&Kind::StaleRead] + n[&Kind::ResurrectedDelete] >= 1);
}

#[test]
fn the_counter_greedy_agrees_with_the_general_search() {
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};
    let mut rng = SmallRng::seed_from_u64(3);
    let (mut lin, mut not) = (0, 0);
    for seed in 0..400 {
        let shape = synth::Shape {
            clients: 3,
            keys: 1,
            counters: 1,
            duration_ns: 40_000,
            op_ns: 3_000,
            unknown: 0.15,
            seed,
        };
        let mut ops: Vec<Op> = synth::history(&shape)
            .into_iter()
            .filter(|o| o.key == "c0")
            .collect();
        if ops.is_empty() {
            continue;
        }
        // Half of them get one answer changed by one.
        if seed % 2 == 1 {
            let i = rng.gen_range(0..ops.len());
            let delta = if rng.gen_bool(0.5) { 1 } else { -1 };
            match &mut ops[i].outcome {
                Outcome::Ok(Answer::Count(n)) => *n += delta,
                Outcome::Ok(Answer::Value(v)) => {
                    let n: i64 = v
                        .as_deref()
                        .map_or(0, |b| std::str::from_utf8(b).unwrap().parse().unwrap());
                    *v = Some((n + 1).to_string().into_bytes());
                }
                _ => {}
            }
        }
        let refs: Vec<&Op> = ops.iter().collect();
        let greedy = crate::counter::check(&refs);
        let general = crate::linear::search(&refs, 1_000_000);
        match (greedy, general) {
            (None, _) => {}
            (Some(Verdict::Linearizable), Verdict::Linearizable) => lin += 1,
            (Some(Verdict::NotLinearizable { .. }), Verdict::NotLinearizable { .. }) => not += 1,
            (g, s) => panic!("seed {seed}: greedy {g:?}, search {s:?}\n{ops:#?}"),
        }
    }
    assert!(lin > 100 && not > 50, "{lin} linearizable, {not} not");
}
