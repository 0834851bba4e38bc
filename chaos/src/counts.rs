//! The operator counts of a history, key by key: stale reads, forgotten reads, resurrected
//! deletes and phantoms during the run, and acknowledged writes lost by the final reads (the
//! reads the harness makes after the faults heal, by client [`FINAL_CLIENT`]).

use std::collections::HashMap;

use crate::anomaly::{Anomaly, Kind};
use crate::history::{Nanos, Op, OpKind, Outcome};

/// The client id of the reads made after healing, which decide lost writes.
pub const FINAL_CLIENT: u32 = u32::MAX;

/// Acknowledged writes of one key, by complete time, with the running latest invocation.
struct Acked<'a> {
    /// `(complete, op)` sorted by complete.
    by_complete: Vec<(Nanos, &'a Op)>,
    /// `best[i]`: the op with the largest invoke among `by_complete[..=i]`.
    best: Vec<&'a Op>,
}

impl<'a> Acked<'a> {
    fn new(ops: &[&'a Op], pick: impl Fn(&Op) -> bool) -> Acked<'a> {
        let mut by_complete: Vec<(Nanos, &Op)> = ops
            .iter()
            .filter(|o| o.is_acked_write() && pick(o))
            .map(|o| (o.complete, *o))
            .collect();
        by_complete.sort_by_key(|p| p.0);
        let mut best: Vec<&Op> = Vec::with_capacity(by_complete.len());
        for (i, (_, o)) in by_complete.iter().enumerate() {
            let b = if i > 0 && best[i - 1].invoke > o.invoke {
                best[i - 1]
            } else {
                o
            };
            best.push(b);
        }
        Acked { by_complete, best }
    }

    /// The acknowledged write completed before `t` with the latest invocation.
    fn latest_before(&self, t: Nanos) -> Option<&'a Op> {
        let n = self.by_complete.partition_point(|p| p.0 < t);
        (n > 0).then(|| self.best[n - 1])
    }
}

/// Counts the anomalies of one key's ops (keys with INCR are left to the linearizability
/// check: their values are not unique).
pub fn check_key(key: &str, ops: &[&Op]) -> Vec<Anomaly> {
    let mut out = Vec::new();
    if ops.iter().any(|o| matches!(o.kind, OpKind::Incr)) {
        return out;
    }
    let mut writer: HashMap<&[u8], &Op> = HashMap::new();
    for o in ops {
        if matches!(o.outcome, Outcome::Fail) {
            continue;
        }
        if let Some(Some(v)) = o.written() {
            writer.insert(v, o);
        }
    }
    let acked_any = Acked::new(ops, |_| true);
    let acked_sets = Acked::new(ops, |o| !matches!(o.kind, OpKind::Delete));
    // Deletes that may have taken effect, by invoke, with the running latest completion.
    let mut dels: Vec<&Op> = ops
        .iter()
        .copied()
        .filter(|o| matches!(o.kind, OpKind::Delete) && !matches!(o.outcome, Outcome::Fail))
        .collect();
    dels.sort_by_key(|o| o.invoke);
    let mut del_done: Vec<Nanos> = Vec::with_capacity(dels.len());
    for (i, d) in dels.iter().enumerate() {
        let prev = if i > 0 { del_done[i - 1] } else { 0 };
        del_done.push(prev.max(d.complete));
    }
    // The latest completion of a delete invoked before `t`.
    let del_done_by = |t: Nanos| -> Option<Nanos> {
        let n = dels.partition_point(|d| d.invoke < t);
        (n > 0).then(|| del_done[n - 1])
    };
    let mut push = |kind: Kind, r: &Op, detail: String, others: Vec<&Op>| {
        let mut involved = vec![r.clone()];
        involved.extend(others.into_iter().cloned());
        out.push(Anomaly {
            kind,
            at: r.invoke,
            key: key.to_string(),
            detail,
            ops: involved,
        });
    };
    for r in ops {
        let Some(got) = r.read_value() else { continue };
        let is_final = r.client == FINAL_CLIENT;
        match got {
            Some(v) => {
                let Some(x) = writer.get(v) else {
                    push(Kind::Phantom, r, "no write wrote this value".into(), vec![]);
                    continue;
                };
                if x.invoke > r.complete {
                    push(
                        Kind::Phantom,
                        r,
                        "the value was written after the read ended".into(),
                        vec![x],
                    );
                    continue;
                }
                // Acknowledged writes invoked after x completed and completed before r began.
                let Some(w) = acked_any.latest_before(r.invoke) else {
                    continue;
                };
                if w.invoke <= x.complete || x.complete == crate::history::NEVER {
                    continue;
                }
                if is_final {
                    let lost: Vec<&Op> = acked_any
                        .by_complete
                        .iter()
                        .map(|p| p.1)
                        .filter(|o| o.invoke > x.complete)
                        .collect();
                    let detail = format!(
                        "after healing the key holds an older value; {} acknowledged write(s) after it are gone",
                        lost.len()
                    );
                    for l in &lost {
                        push(Kind::LostWrite, r, detail.clone(), vec![l, x]);
                    }
                } else if acked_sets
                    .latest_before(r.invoke)
                    .is_some_and(|s| s.invoke > x.complete)
                {
                    push(
                        Kind::StaleRead,
                        r,
                        "returned a value older than one acknowledged before the read began".into(),
                        vec![w, x],
                    );
                } else {
                    push(
                        Kind::ResurrectedDelete,
                        r,
                        "returned a value deleted (acknowledged) before the read began".into(),
                        vec![w, x],
                    );
                }
            }
            None => {
                let Some(w) = acked_sets.latest_before(r.invoke) else {
                    continue;
                };
                // A delete invoked before the read ended and not finished before w began
                // may explain the nil.
                if del_done_by(r.complete).is_some_and(|d| d > w.invoke) {
                    continue;
                }
                if is_final {
                    let lost: Vec<&Op> = acked_sets
                        .by_complete
                        .iter()
                        .map(|p| p.1)
                        .filter(|o| del_done_by(r.complete).is_none_or(|d| d < o.invoke))
                        .collect();
                    let detail = format!(
                        "after healing the key is absent; {} acknowledged write(s) are gone",
                        lost.len()
                    );
                    for l in &lost {
                        push(Kind::LostWrite, r, detail.clone(), vec![l]);
                    }
                } else {
                    push(
                        Kind::ForgottenRead,
                        r,
                        "answered nil after a SET was acknowledged and no delete can explain it"
                            .into(),
                        vec![w],
                    );
                }
            }
        }
    }
    out
}
