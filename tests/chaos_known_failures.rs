//! The fault-injection scenarios the cluster fails today (issue 16), kept as ignored tests to
//! be turned on by the issues that fix them: each runs its named scenario against the real
//! binary and fails on any anomaly. Run them with `cargo nextest run --run-ignored only`.

use std::path::Path;

use ringcache_chaos::{report, scenario};

fn assert_passes(name: &str) {
    let s = scenario::find(name).expect("a named scenario");
    let dir = std::env::temp_dir().join(format!("ringcache-chaos-{name}-{}", std::process::id()));
    let r = s
        .run(Path::new(env!("CARGO_BIN_EXE_ringcache")), &dir, true, 1)
        .unwrap_or_else(|e| panic!("{name}: the scenario did not complete: {e}"));
    assert!(
        r.violations().is_empty(),
        "{}\nlogs: {}",
        report::text(&r),
        dir.display()
    );
}

#[test]
#[ignore = "fails today: a replica declared dead while paused is promoted after the primary crashes and serves an older value; fixed by the fencing and in-sync replicas issue"]
fn paused_replica_then_crashed_primary_keeps_acknowledged_writes() {
    assert_passes("paused-replica");
}

#[test]
#[ignore = "fails today: a restarted balancer renumbers members and nodes drop or copy data; fixed by the control-plane-on-Raft issue"]
fn balancer_restart_keeps_ids_groups_roles_and_data() {
    assert_passes("balancer-restart");
}

#[test]
#[ignore = "fails today: a primary cut off from the balancer keeps acknowledging writes and serving reads after its replica is promoted; fixed by the fencing (epochs, leases) issue"]
fn primary_cut_off_stops_acknowledging_writes() {
    assert_passes("primary-cut-off");
}
