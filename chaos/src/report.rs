//! The text report of a run: seed, cluster and workload, the schedule and the faults as they
//! happened, operation totals, the operator counts, the verdict against the promise, and the
//! first anomalies with the operations involved.

use std::fmt::Write;

use crate::anomaly::{Kind, Promise};
use crate::history::Outcome;
use crate::run::RunReport;

/// Anomalies listed in full in the report.
pub const FIRST: usize = 5;

/// The report as text.
pub fn text(r: &RunReport) -> String {
    let mut s = String::new();
    let secs = |n: u64| n as f64 / 1e9;
    let _ = writeln!(
        s,
        "== ringcache chaos: {} (seed {}), {:.0} s ==",
        r.name, r.seed, r.seconds
    );
    let _ = writeln!(
        s,
        "cluster: {} primaries x {} replica(s), --write-ack {}, heartbeat {} ms x {} missed",
        r.spec.primaries,
        r.spec.replicas,
        r.spec.write_ack,
        r.spec.heartbeat_ms,
        r.spec.missed_heartbeats
    );
    let _ = writeln!(
        s,
        "workload: {} thin + {} RESP clients, {} register keys + {} counters, <= {} ops/s each, reads from {}",
        r.load.thin_clients,
        r.load.resp_clients,
        r.load.keys,
        r.load.counters,
        r.load.rate,
        if r.load.read_any { "any member" } else { "primaries" }
    );
    let promise = match r.promise {
        Promise::Strong => "strong: every key a linearizable register, no acknowledged write lost, copies converge",
        Promise::Weak => "weak: no phantom reads, copies converge, balancer restarts keep roles (stale reads and lost writes counted, allowed)",
    };
    let _ = writeln!(s, "promise: {promise}");
    for n in &r.notes {
        let _ = writeln!(s, "note: {n}");
    }
    if !r.schedule.is_empty() {
        let _ = writeln!(s, "schedule ({} faults):", r.schedule.len());
        for w in &r.schedule {
            let _ = writeln!(s, "  {:>6.1}s .. {:>6.1}s  {}", w.start, w.end, w.fault);
        }
    }
    let _ = writeln!(s, "faults as they happened ({}):", r.events.len());
    for e in &r.events {
        let _ = writeln!(
            s,
            "  {:>6.1}s .. {:>6.1}s  {}",
            secs(e.start),
            secs(e.end),
            e.what
        );
    }
    let total = r.ops.len();
    let ok = r.ops.iter().filter(|o| o.is_ok()).count();
    let failed = r.ops.iter().filter(|o| o.outcome == Outcome::Fail).count();
    let unknown = total - ok - failed;
    let _ = writeln!(
        s,
        "operations: {total} ({ok} ok, {failed} failed, {unknown} unknown outcome)"
    );
    let _ = writeln!(
        s,
        "checker: {} keys, linearizability search {:.2} s",
        r.checked.keys,
        r.checked.search_time.as_secs_f64()
    );
    let _ = writeln!(s, "counts:");
    for (k, n) in r.checked.counts() {
        let flag = if n > 0 && r.promise.forbids(k) {
            "  <- breaks the promise"
        } else {
            ""
        };
        let _ = writeln!(s, "  {:<42} {n}{flag}", k.label());
    }
    // When each kind showed (to the second), to tell which fault window it falls in.
    for (k, n) in r.checked.counts() {
        if n == 0 {
            continue;
        }
        let mut at: Vec<u64> = r
            .checked
            .anomalies
            .iter()
            .filter(|a| a.kind == k)
            .map(|a| a.at / 1_000_000_000)
            .collect();
        at.dedup();
        let shown: Vec<String> = at.iter().take(20).map(|t| format!("{t}s")).collect();
        let more = if at.len() > 20 { " ..." } else { "" };
        let _ = writeln!(s, "  {} at: {}{more}", k.label(), shown.join(" "));
    }
    let bad = r.violations();
    if bad.is_empty() {
        let _ = writeln!(s, "verdict: PASS (no anomaly breaks the promise)");
    } else {
        let _ = writeln!(
            s,
            "verdict: FAIL ({} anomalies break the promise)",
            bad.len()
        );
    }
    let shown: Vec<_> = r
        .checked
        .anomalies
        .iter()
        .filter(|a| a.kind != Kind::Undecided || bad.is_empty())
        .take(FIRST)
        .collect();
    if !shown.is_empty() {
        let _ = writeln!(s, "first anomalies:");
        for a in shown {
            let _ = write!(s, "  {a}");
        }
    }
    s
}
