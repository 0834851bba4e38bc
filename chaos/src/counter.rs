//! Linearizability of a counter key (only INCR and GET) in O(n log n): each increment is placed
//! as early as every constraint allows, value gaps filled by the earliest-invoked unknown INCR;
//! earliest placement only loosens later constraints, so it finds an order whenever one exists.

use std::collections::{BTreeMap, VecDeque};

use crate::history::{Answer, Nanos, Op, OpKind, Outcome};
use crate::linear::Verdict;

/// What a counter op says about the count: `(invoke, complete)` bounds per value.
#[derive(Default)]
struct Value<'a> {
    /// The definite INCR that produced this value.
    incr: Option<&'a Op>,
    /// GETs that read it.
    reads: Vec<&'a Op>,
}

fn not_lin(op: &Op, state: i64) -> Verdict {
    Verdict::NotLinearizable {
        op: op.clone(),
        state: Some(state.to_string().into_bytes()),
        before: Vec::new(),
    }
}

/// Adds to a verdict the ops that made or read the counts around `state`.
fn with_context(v: Verdict, ops: &[&Op]) -> Verdict {
    let Verdict::NotLinearizable { op, state, .. } = v else {
        return v;
    };
    let n: i64 = state
        .as_deref()
        .and_then(|b| std::str::from_utf8(b).ok()?.parse().ok())
        .unwrap_or(0);
    let near = |o: &&&Op| match &o.outcome {
        Outcome::Ok(Answer::Count(c)) => (n - 1..=n + 1).contains(c),
        Outcome::Ok(Answer::Value(Some(b))) => std::str::from_utf8(b)
            .ok()
            .and_then(|t| t.parse::<i64>().ok())
            .is_some_and(|c| (n - 1..=n + 1).contains(&c)),
        _ => false,
    };
    let before = ops
        .iter()
        .filter(near)
        .filter(|o| **o != &op)
        .take(8)
        .map(|o| (*o).clone())
        .collect();
    Verdict::NotLinearizable { op, state, before }
}

/// Checks a key whose operations are only INCR and GET (`None` when the key has others, or a
/// read of a non-number: the general search applies).
pub fn check(ops: &[&Op]) -> Option<Verdict> {
    if !ops.iter().any(|o| matches!(o.kind, OpKind::Incr)) {
        return None;
    }
    greedy(ops).map(|v| with_context(v, ops))
}

fn greedy(ops: &[&Op]) -> Option<Verdict> {
    let mut values: BTreeMap<i64, Value> = BTreeMap::new();
    let mut unknown: Vec<Nanos> = Vec::new();
    for o in ops {
        match (&o.kind, &o.outcome) {
            (_, Outcome::Fail) | (OpKind::Read, Outcome::Unknown) => {}
            (OpKind::Incr, Outcome::Unknown) => unknown.push(o.invoke),
            (OpKind::Incr, Outcome::Ok(Answer::Count(n))) => {
                let v = values.entry(*n).or_default();
                if v.incr.is_some() || *n < 1 {
                    return Some(not_lin(o, n - 1));
                }
                v.incr = Some(o);
            }
            (OpKind::Read, Outcome::Ok(Answer::Value(v))) => {
                let n = match v {
                    None => 0,
                    Some(b) => std::str::from_utf8(b).ok()?.parse().ok()?,
                };
                if n < 0 {
                    return None;
                }
                values.entry(n).or_default().reads.push(o);
            }
            _ => return None,
        }
    }
    unknown.sort_unstable();
    let mut unknown: VecDeque<Nanos> = unknown.into();
    let top = values.keys().next_back().copied().unwrap_or(0);
    // p: the linearization point of the increment that made the current value.
    let mut p: Nanos = 0;
    let empty = Value::default();
    for k in 1..=top {
        let prev = values.get(&(k - 1)).unwrap_or(&empty);
        let cur = values.get(&k).unwrap_or(&empty);
        // Reads of k-1 must be placed before this increment: it cannot come before they began.
        let mut lb = prev.reads.iter().map(|r| r.invoke).fold(p, Nanos::max);
        let ub = match cur.incr {
            Some(i) => {
                lb = lb.max(i.invoke);
                i.complete
            }
            None => match unknown.pop_front() {
                Some(a) => {
                    lb = lb.max(a);
                    Nanos::MAX
                }
                None => {
                    // No increment can have made k: blame the first op that saw k or more.
                    let who = values
                        .range(k..)
                        .find_map(|(_, v)| v.incr.or(v.reads.first().copied()));
                    return who.map(|o| not_lin(o, k - 1));
                }
            },
        };
        // Reads of k-1 must not have ended before this value existed... they end after p.
        if let Some(r) = prev.reads.iter().find(|r| r.complete < p) {
            return Some(not_lin(r, k - 1));
        }
        if lb > ub {
            let who = cur.incr.or(prev.reads.first().copied());
            return who.map(|o| not_lin(o, k - 1));
        }
        p = lb;
    }
    if let Some(r) = values
        .get(&top)
        .and_then(|v| v.reads.iter().find(|r| r.complete < p))
    {
        return Some(not_lin(r, top));
    }
    Some(Verdict::Linearizable)
}
