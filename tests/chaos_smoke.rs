//! CI smoke of the fault-injection harness (`chaos/`): runs, one after another, the named
//! scenarios the cluster passes today — a primary killed under `--write-ack all`, a replica
//! outage with backlog catch-up then a kill -9 and restart, a range move during writes —
//! against the real binary in the harness's own network namespace, and fails on any anomaly.

use std::path::{Path, PathBuf};

use ringcache_chaos::{report, scenario};

fn out_dir(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("ringcache-chaos-{name}-{}", std::process::id()))
}

/// Runs scenario `name` and answers its report text when an anomaly breaks the promise.
pub fn run_scenario(name: &str) -> Result<(), String> {
    let s = scenario::find(name).map_err(|e| e.to_string())?;
    let dir = out_dir(name);
    let r = s
        .run(Path::new(env!("CARGO_BIN_EXE_ringcache")), &dir, true, 1)
        .map_err(|e| format!("{name}: the scenario did not complete: {e}"))?;
    let text = report::text(&r);
    if r.violations().is_empty() {
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    } else {
        Err(format!("{text}\nlogs: {}", dir.display()))
    }
}

#[test]
fn chaos_smoke_scenarios_the_cluster_passes_today() {
    // One test, scenarios in sequence: several clusters at once on a small CI machine would
    // miss heartbeats.
    for name in ["kill-primary", "restart-replica", "range-move"] {
        let t = std::time::Instant::now();
        if let Err(e) = run_scenario(name) {
            panic!("{e}");
        }
        eprintln!("{name}: no anomaly ({:.0} s)", t.elapsed().as_secs_f64());
    }
}
