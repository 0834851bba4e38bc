//! Synthetic histories for measuring and testing the checker: clients against a simulated store,
//! each op taking effect at a random point of its interval, some timing out (effect random), so
//! the history is linearizable by construction.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;

use crate::history::{Answer, Nanos, Op, OpKind, Outcome, NEVER};

/// Shape of a synthetic history.
#[derive(Clone, Debug)]
pub struct Shape {
    /// Concurrent clients.
    pub clients: u32,
    /// Register keys (SET, GET, DEL, CAS).
    pub keys: u32,
    /// Counter keys (INCR, GET).
    pub counters: u32,
    /// Length of the history.
    pub duration_ns: Nanos,
    /// Mean time an operation takes, invoke to answer.
    pub op_ns: Nanos,
    /// Chance an operation times out (unknown outcome; takes effect with chance 1/2).
    pub unknown: f64,
    /// Seed.
    pub seed: u64,
}

/// Generates a linearizable history of `shape`.
pub fn history(shape: &Shape) -> Vec<Op> {
    let mut rng = SmallRng::seed_from_u64(shape.seed);
    // (linearization point, op index, takes effect)
    let mut ops: Vec<Op> = Vec::new();
    let mut points: Vec<(Nanos, usize, bool)> = Vec::new();
    for c in 0..shape.clients {
        let mut t = rng.gen_range(0..shape.op_ns.max(1));
        let mut seq = 0u64;
        while t < shape.duration_ns {
            seq += 1;
            let span = rng
                .gen_range(shape.op_ns / 2..shape.op_ns * 3 / 2 + 1)
                .max(2);
            let point = t + rng.gen_range(0..span);
            let counter = shape.counters > 0 && rng.gen_bool(0.2);
            let (key, kind) = if counter {
                let k = format!("c{}", rng.gen_range(0..shape.counters));
                let kind = if rng.gen_bool(0.6) {
                    OpKind::Incr
                } else {
                    OpKind::Read
                };
                (k, kind)
            } else {
                let k = format!("r{}", rng.gen_range(0..shape.keys.max(1)));
                let v = format!("c{c}-{seq}").into_bytes();
                let kind = match rng.gen_range(0..10) {
                    0..=3 => OpKind::Read,
                    4..=7 => OpKind::Write(v),
                    8 => OpKind::Delete,
                    // The expected value is filled in from the simulated store.
                    _ => OpKind::Cas {
                        expect: Vec::new(),
                        new: v,
                    },
                };
                (k, kind)
            };
            let unknown = rng.gen_bool(shape.unknown) && !matches!(kind, OpKind::Read);
            let effect = !unknown || rng.gen_bool(0.5);
            points.push((point, ops.len(), effect));
            ops.push(Op {
                client: c,
                key,
                kind,
                outcome: if unknown {
                    Outcome::Unknown
                } else {
                    Outcome::Ok(Answer::Done)
                },
                invoke: t,
                complete: if unknown { NEVER } else { t + span },
            });
            t += span + rng.gen_range(0..shape.op_ns / 4 + 1);
        }
    }
    points.sort();
    let mut store: HashMap<String, Option<Vec<u8>>> = HashMap::new();
    for (_, i, effect) in points {
        let op = &mut ops[i];
        let cur = store.entry(op.key.clone()).or_default();
        let answer = match &mut op.kind {
            OpKind::Read => Answer::Value(cur.clone()),
            OpKind::Write(v) => {
                if effect {
                    *cur = Some(v.clone());
                }
                Answer::Done
            }
            OpKind::Delete => {
                if effect {
                    *cur = None;
                }
                Answer::Done
            }
            OpKind::Cas { expect, new } => {
                // Half the time expect the current value (stored), else a stale guess.
                let hit = cur.is_some() && (rng.gen_bool(0.5) || !effect);
                match (hit, cur.clone()) {
                    (true, Some(c)) => {
                        *expect = c;
                        if effect {
                            *cur = Some(new.clone());
                        }
                        Answer::Stored(true)
                    }
                    _ => {
                        *expect = b"stale-guess".to_vec();
                        Answer::Stored(false)
                    }
                }
            }
            OpKind::Incr => {
                let n: i64 = cur
                    .as_deref()
                    .and_then(|b| std::str::from_utf8(b).ok()?.parse().ok())
                    .unwrap_or(0)
                    + 1;
                if effect {
                    *cur = Some(n.to_string().into_bytes());
                }
                Answer::Count(n)
            }
        };
        if op.outcome != Outcome::Unknown {
            op.outcome = Outcome::Ok(answer);
        }
    }
    ops
}
