//! Per-key linearizability of a register history: the Wing-Gong search with Lowe's
//! memoisation (as in Knossos and Porcupine). Operations with an unknown outcome may take
//! effect at any point after their invocation, or never.

use std::collections::{HashMap, HashSet};

use crate::history::{Answer, Nanos, Op, OpKind, Outcome, NEVER};

/// The verdict on one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Some order of the operations, each taking effect between its invocation and its answer,
    /// explains every answer.
    Linearizable,
    /// No such order exists; `op` is the operation that could not be placed at the deepest
    /// point the search reached, `state` the register value there, `before` the operations
    /// linearized just before it (oldest first).
    NotLinearizable {
        /// The operation no order could place.
        op: Op,
        /// The register's value at that point (`None`: absent).
        state: Option<Vec<u8>>,
        /// The last few operations of that partial order.
        before: Vec<Op>,
    },
    /// The search gave up after `budget` memoised configurations.
    Undecided {
        /// The budget that was exhausted.
        budget: usize,
    },
}

/// The register's sequential specification: the value after `op` from `state`, or `None`
/// when `op`'s answer is impossible from `state`.
fn step(state: Option<&[u8]>, op: &Op) -> Option<Option<Vec<u8>>> {
    let unknown = matches!(op.outcome, Outcome::Unknown);
    match (&op.kind, &op.outcome) {
        (OpKind::Read, Outcome::Ok(Answer::Value(v))) => {
            (v.as_deref() == state).then(|| state.map(<[u8]>::to_vec))
        }
        (OpKind::Write(v), _) => Some(Some(v.clone())),
        (OpKind::Delete, _) => Some(None),
        (OpKind::Cas { expect, new }, Outcome::Ok(Answer::Stored(true))) => {
            (state == Some(expect.as_slice())).then(|| Some(new.clone()))
        }
        // A refused compare-and-set is not held to account (it changes nothing); see
        // `prune_unobserved` for why.
        (OpKind::Cas { .. }, Outcome::Ok(Answer::Stored(false))) => Some(state.map(<[u8]>::to_vec)),
        (OpKind::Cas { expect, new }, _) if unknown => {
            (state == Some(expect.as_slice())).then(|| Some(new.clone()))
        }
        (OpKind::Incr, outcome) => {
            let cur: i64 = match state {
                None => 0,
                Some(b) => std::str::from_utf8(b).ok()?.parse().ok()?,
            };
            let next = cur.checked_add(1)?;
            match outcome {
                Outcome::Ok(Answer::Count(n)) if *n != next => None,
                _ => Some(Some(next.to_string().into_bytes())),
            }
        }
        _ => Some(state.map(<[u8]>::to_vec)),
    }
}

/// The operations the search must consider: answered ones and unknown writes; failed ops and
/// unanswered reads change nothing and are left out, and so are unknown SETs whose value
/// nobody ever observed (see `prune_unobserved`).
fn relevant<'a>(ops: &[&'a Op]) -> Vec<&'a Op> {
    let kept: Vec<&Op> = ops
        .iter()
        .copied()
        .filter(|o| match o.outcome {
            Outcome::Fail => false,
            Outcome::Unknown => o.is_write(),
            Outcome::Ok(Answer::Stored(false)) => false,
            Outcome::Ok(_) => true,
        })
        .collect();
    prune_unobserved(&kept)
}

/// Drops unknown SETs and compare-and-sets whose value no read returned and no
/// compare-and-set expected, on keys without INCR. Sound: with unique values, such a write
/// taking effect could only be seen by operations that do not look at the value (writes,
/// deletes, refused compare-and-sets, which the model does not check), so a history is
/// linearizable with it exactly when it is without it. It keeps the search small: unknown
/// writes otherwise stay pending to the end and multiply the configurations.
fn prune_unobserved<'a>(ops: &[&'a Op]) -> Vec<&'a Op> {
    if ops.iter().any(|o| matches!(o.kind, OpKind::Incr)) {
        return ops.to_vec();
    }
    let mut observed: HashSet<&[u8]> = HashSet::new();
    for o in ops {
        if let Some(Some(v)) = o.read_value() {
            observed.insert(v);
        }
        if let OpKind::Cas { expect, .. } = &o.kind {
            observed.insert(expect);
        }
    }
    ops.iter()
        .copied()
        .filter(|o| {
            let unobserved = match &o.kind {
                OpKind::Write(v) | OpKind::Cas { new: v, .. } => !observed.contains(v.as_slice()),
                _ => false,
            };
            !(matches!(o.outcome, Outcome::Unknown) && unobserved)
        })
        .collect()
}

/// SplitMix64: the per-operation hash words of the memo keys.
fn splitmix(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[derive(Clone, Copy)]
enum Ev {
    Call(usize),
    Ret(usize),
}

/// Checks one key's operations (any order) against a register that starts absent, giving up
/// after `budget` memoised configurations.
///
/// The set of linearized operations is memoised as a 128-bit Zobrist hash (two words per
/// operation) with the register's value: two different sets collide with probability about
/// 2^-128 per pair, so a wrong "already explored" is negligible.
pub fn check_key(ops: &[&Op], budget: usize) -> Verdict {
    if let Some(v) = crate::counter::check(ops) {
        return v;
    }
    search(ops, budget)
}

/// The general search (what [`check_key`] runs on keys that are not plain counters).
pub(crate) fn search(ops: &[&Op], budget: usize) -> Verdict {
    let ops = relevant(ops);
    let n = ops.len();
    // Events: calls before returns at equal times (concurrent, the lenient reading).
    let mut evs: Vec<(Nanos, u8, Ev)> = Vec::with_capacity(2 * n);
    for (i, o) in ops.iter().enumerate() {
        evs.push((o.invoke, 0, Ev::Call(i)));
        let ret = if matches!(o.outcome, Outcome::Unknown) {
            NEVER
        } else {
            o.complete.max(o.invoke)
        };
        evs.push((ret, 1, Ev::Ret(i)));
    }
    evs.sort_by_key(|e| (e.0, e.1));
    let m = evs.len();
    if m == 0 {
        return Verdict::Linearizable;
    }
    // A doubly linked list over the events, with a sentinel head at index m.
    let head = m;
    let mut next: Vec<usize> = (1..=m).collect();
    next[m - 1] = usize::MAX;
    next.push(0);
    let mut prev: Vec<usize> = (0..m).map(|e| if e == 0 { head } else { e - 1 }).collect();
    prev.push(usize::MAX);
    let mut ret_of = vec![0usize; n];
    for (e, ev) in evs.iter().enumerate() {
        if let Ev::Ret(i) = ev.2 {
            ret_of[i] = e;
        }
    }
    // Unknown INCRs (and unknown DELs) all have the same effect and no deadline, so which of
    // them take effect matters only by how many: they are taken in invocation order, each
    // after the previous one of its class (an exchange argument keeps this complete), which
    // turns 2^k subsets into k + 1 counts.
    let mut after: Vec<Option<usize>> = vec![None; n];
    let mut last: [Option<usize>; 2] = [None, None];
    let mut by_invoke: Vec<usize> = (0..n).collect();
    by_invoke.sort_by_key(|&i| ops[i].invoke);
    for i in by_invoke {
        if !matches!(ops[i].outcome, Outcome::Unknown) {
            continue;
        }
        let class = match ops[i].kind {
            OpKind::Incr => 0,
            OpKind::Delete => 1,
            _ => continue,
        };
        after[i] = last[class];
        last[class] = Some(i);
    }
    let mut placed = vec![false; n];
    let mut seed = 0x5EED_u64;
    let zob: Vec<(u64, u64)> = (0..n)
        .map(|_| (splitmix(&mut seed), splitmix(&mut seed)))
        .collect();
    // Interned register values.
    let mut ids: HashMap<Option<Vec<u8>>, u32> = HashMap::new();
    let mut values: Vec<Option<Vec<u8>>> = Vec::new();
    let mut intern = |v: Option<Vec<u8>>, values: &mut Vec<Option<Vec<u8>>>| -> u32 {
        *ids.entry(v.clone()).or_insert_with(|| {
            values.push(v);
            values.len() as u32 - 1
        })
    };
    let mut state = intern(None, &mut values);
    let mut z = (0u64, 0u64);
    let mut cache: HashSet<(u64, u64, u32)> = HashSet::new();
    let mut stack: Vec<(usize, u32)> = Vec::new();
    let mut deepest: Option<(usize, usize, u32, Vec<usize>)> = None;

    let unlink = |e: usize, next: &mut Vec<usize>, prev: &mut Vec<usize>| {
        let (p, nx) = (prev[e], next[e]);
        next[p] = nx;
        if nx != usize::MAX {
            prev[nx] = p;
        }
    };
    let relink = |e: usize, next: &mut Vec<usize>, prev: &mut Vec<usize>| {
        let (p, nx) = (prev[e], next[e]);
        next[p] = e;
        if nx != usize::MAX {
            prev[nx] = e;
        }
    };

    let mut entry = next[head];
    loop {
        if entry == usize::MAX {
            return Verdict::Linearizable;
        }
        if cache.len() > budget {
            return Verdict::Undecided { budget };
        }
        match evs[entry].2 {
            Ev::Call(i) => {
                let cur = values[state as usize].clone();
                let in_turn = after[i].is_none_or(|p| placed[p]);
                if let Some(ns) = step(cur.as_deref(), ops[i]).filter(|_| in_turn) {
                    let ns = intern(ns, &mut values);
                    let z2 = (z.0 ^ zob[i].0, z.1 ^ zob[i].1);
                    if cache.insert((z2.0, z2.1, ns)) {
                        stack.push((entry, state));
                        placed[i] = true;
                        state = ns;
                        z = z2;
                        unlink(entry, &mut next, &mut prev);
                        unlink(ret_of[i], &mut next, &mut prev);
                        entry = next[head];
                        continue;
                    }
                }
                entry = next[entry];
            }
            Ev::Ret(i) => {
                if evs[entry].0 == NEVER {
                    // Every answered op is placed; the rest may never take effect.
                    return Verdict::Linearizable;
                }
                if deepest.as_ref().is_none_or(|d| stack.len() > d.0) {
                    let tail: Vec<usize> = stack
                        .iter()
                        .rev()
                        .take(6)
                        .map(|(e, _)| match evs[*e].2 {
                            Ev::Call(j) | Ev::Ret(j) => j,
                        })
                        .collect();
                    deepest = Some((stack.len(), i, state, tail));
                }
                let Some((call, prev_state)) = stack.pop() else {
                    break;
                };
                let Ev::Call(j) = evs[call].2 else {
                    break;
                };
                state = prev_state;
                placed[j] = false;
                z = (z.0 ^ zob[j].0, z.1 ^ zob[j].1);
                relink(ret_of[j], &mut next, &mut prev);
                relink(call, &mut next, &mut prev);
                entry = next[call];
            }
        }
    }
    let (_, i, st, tail) = deepest.unwrap_or((0, 0, 0, Vec::new()));
    Verdict::NotLinearizable {
        op: ops[i].clone(),
        state: values[st as usize].clone(),
        before: tail.into_iter().rev().map(|j| ops[j].clone()).collect(),
    }
}
