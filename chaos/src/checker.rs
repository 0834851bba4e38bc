//! Runs every check over a history: per-key linearizability (under the strong promise) and
//! the operator counts, and sums them into a [`Checked`] the report prints.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::anomaly::{Anomaly, Kind, Promise};
use crate::history::{by_key, Op};
use crate::linear::{self, Verdict};

/// Default budget of memoised configurations per key for the linearizability search (a
/// 10-minute history of ~1M operations checks in about 2 s: `bench/chaos --bench-checker 10`).
pub const DEFAULT_BUDGET: usize = 2_000_000;

/// What the checker found.
#[derive(Debug, Default)]
pub struct Checked {
    /// Every anomaly, in time order.
    pub anomalies: Vec<Anomaly>,
    /// Keys checked.
    pub keys: usize,
    /// Operations checked.
    pub ops: usize,
    /// Time the linearizability search took.
    pub search_time: Duration,
}

impl Checked {
    /// How many anomalies of each kind (every kind listed, zeros included).
    pub fn counts(&self) -> BTreeMap<Kind, usize> {
        let mut m: BTreeMap<Kind, usize> = Kind::ALL.iter().map(|k| (*k, 0)).collect();
        for a in &self.anomalies {
            *m.entry(a.kind).or_default() += 1;
        }
        m
    }

    /// The anomalies that break `promise`.
    pub fn violations(&self, promise: Promise) -> Vec<&Anomaly> {
        self.anomalies
            .iter()
            .filter(|a| promise.forbids(a.kind))
            .collect()
    }

    /// Adds anomalies found outside the history (DIGEST, membership).
    pub fn add(&mut self, more: impl IntoIterator<Item = Anomaly>) {
        self.anomalies.extend(more);
        self.anomalies.sort_by_key(|a| a.at);
    }
}

/// Checks `ops`: the counts always, linearizability per key too (it is what the strong
/// promise means, and shown for information under the weak one).
pub fn check(ops: &[Op], budget: usize) -> Checked {
    let keys = by_key(ops);
    let mut out = Checked {
        keys: keys.len(),
        ops: ops.len(),
        ..Checked::default()
    };
    for (key, kops) in &keys {
        out.anomalies.extend(crate::counts::check_key(key, kops));
        let t = Instant::now();
        let verdict = linear::check_key(kops, budget);
        out.search_time += t.elapsed();
        match verdict {
            Verdict::Linearizable => {}
            Verdict::NotLinearizable { op, state, before } => {
                let mut involved = vec![op.clone()];
                involved.extend(before);
                out.anomalies.push(Anomaly {
                    kind: Kind::NotLinearizable,
                    at: op.invoke,
                    key: key.to_string(),
                    detail: format!(
                        "no order of the key's operations explains this answer (register value {} at the deepest point reached; the operations before it follow)",
                        crate::history::show(state.as_deref())
                    ),
                    ops: involved,
                });
            }
            Verdict::Undecided { budget } => out.anomalies.push(Anomaly {
                kind: Kind::Undecided,
                at: 0,
                key: key.to_string(),
                detail: format!(
                    "search budget of {budget} configurations exhausted over {} operations",
                    kops.len()
                ),
                ops: Vec::new(),
            }),
        }
    }
    out.anomalies.sort_by_key(|a| a.at);
    out
}
