//! Replication, failover, catch-up and resharding under load, with real processes: a balancer
//! and 3 primaries (2 cores each) with replicas. A thin-client load records, per key, the last
//! acknowledged write and the writes attempted since; whatever happens to the nodes, a key
//! must read as one of those (never older, never missing), and the members of a group must end
//! with equal DIGEST arrays.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::cluster::{
    group_ports, groups_of, member_at, retry20, signal, stat, verify, wait_digests_converge,
    wait_for_map_where, Cluster, Load, Mix, CORES,
};
use common::wait_until;

/// Fast failure detection: 5 missed heartbeats of 100 ms.
const FAST_BALANCER: [&str; 4] = ["--heartbeat-ms", "100", "--missed-heartbeats", "5"];
/// Failure detection for the catch-up tests: 10 missed heartbeats of 100 ms.
const CATCHUP_BALANCER: [&str; 4] = ["--heartbeat-ms", "100", "--missed-heartbeats", "10"];
/// Lenient failure detection, for tests that kill nothing.
const LENIENT_BALANCER: [&str; 4] = ["--heartbeat-ms", "100", "--missed-heartbeats", "30"];
const NODE_ARGS: [&str; 4] = ["--heartbeat-ms", "100", "--write-ack", "all"];

/// `n` keys owned by `group` (by the client's map), named `{prefix}{i}`.
fn keys_of_group(c: &ringcache_client::Client, group: u32, prefix: &str, n: usize) -> Vec<String> {
    let map = c.cluster_map().expect("cluster mode");
    (0..)
        .map(|i| format!("{prefix}{i}"))
        .filter(|k| map.group_for_key(k.as_bytes()) == Some(group))
        .take(n)
        .collect()
}

/// Writes each key (value `{key}={tag}` padded to `value_len`), retrying errors.
fn write_keys(c: &mut ringcache_client::Client, keys: &[String], tag: &str, value_len: usize) {
    for k in keys {
        let mut v = format!("{k}={tag}=");
        v.extend(std::iter::repeat_n('x', value_len.saturating_sub(v.len())));
        retry20(c, |c| c.set(k, &v)).unwrap_or_else(|e| panic!("write {k}: {e}"));
    }
}

/// Asserts every group's members reach equal DIGESTs within 30 s (on failure the cluster
/// prints the balancer's and the nodes' logs as it drops).
fn assert_converge(c: &mut ringcache_client::Client, min_members: usize) {
    if let Err(state) = wait_digests_converge(c, min_members, Duration::from_secs(30)) {
        panic!("group members never reached equal DIGESTs within 30 s:\n{state}");
    }
}

#[test]
fn kill_primary_promotes_replica_without_losing_acknowledged_writes() {
    let cluster = Cluster::start(3, 1, &FAST_BALANCER, &NODE_ARGS);
    let mut c = cluster.client();
    let before = c.cluster_map().unwrap().clone();
    let load = Load::start(&cluster.addr(), 2, 300, Mix::SetGet);
    assert!(
        load.wait_progress(2000, Duration::from_secs(30)),
        "the load made no progress"
    );

    let g = before.groups[0].id;
    let old_primary = before.groups[0].primary.unwrap();
    let replica = before.groups[0].replicas[0];
    let victim = cluster.node(before.member(old_primary).unwrap().main_port);
    let killed_at = Instant::now();
    signal(victim, libc::SIGKILL);

    // The first write to a key of the dead primary's group acknowledged after the kill.
    let in_group = |k: &String| before.group_for_key(k.as_bytes()) == Some(g);
    let mut first_write = None;
    wait_until(Duration::from_secs(20), || {
        first_write = load
            .acks_since(killed_at)
            .into_iter()
            .find(|(_, k)| in_group(k))
            .map(|(t, _)| t - killed_at);
        first_write.is_some()
    });
    let Some(failover) = first_write else {
        panic!(
            "no write to group {g} succeeded within 20 s of the kill; balancer log:\n{}",
            cluster.balancer.log_text()
        );
    };
    eprintln!(
        "failover: writes to group {g} succeeded again {} ms after the kill",
        failover.as_millis()
    );
    assert!(
        load.wait_progress(1000, Duration::from_secs(20)),
        "the load stalled after the failover"
    );
    let report = load.stop();
    eprintln!(
        "load: {} ops acknowledged, {} given up, {} keys",
        report.ok,
        report.failed,
        report.keys.len()
    );

    c.refresh_map().unwrap();
    let after = c.cluster_map().unwrap();
    assert!(after.epoch > before.epoch, "epoch did not rise");
    assert_eq!(
        after.group(g).and_then(|g| g.primary),
        Some(replica),
        "the replica of group {g} was not promoted"
    );
    assert!(
        failover < Duration::from_secs(10),
        "failover took {failover:?}"
    );
    assert!(
        report.stale_reads.is_empty(),
        "{} GETs during the load answered older than acknowledged, e.g. {:?}",
        report.stale_reads.len(),
        &report.stale_reads[..report.stale_reads.len().min(10)]
    );
    let bad = verify(&mut c, &report.keys);
    assert!(
        bad.is_empty(),
        "{} of {} keys lost or went back after the failover ({} ops ok, {} given up), e.g.:\n{}",
        bad.len(),
        report.keys.len(),
        report.ok,
        report.failed,
        bad[..bad.len().min(20)].join("\n")
    );
}

#[test]
fn replicas_converge_digest_per_core() {
    let cluster = Cluster::start(3, 2, &LENIENT_BALANCER, &NODE_ARGS);
    let load = Load::start(&cluster.addr(), 2, 500, Mix::Mixed);
    assert!(
        load.wait_progress(5000, Duration::from_secs(60)),
        "the load made no progress"
    );
    let report = load.stop();
    assert!(report.ok >= 5000, "{report:?}");
    let mut c = cluster.client();
    assert_converge(&mut c, 3);
    // Not trivially equal: the primaries hold data on both cores.
    for p in &cluster.primaries {
        let d = common::cluster::digest(p.port).unwrap();
        assert_eq!(d.len(), 2 * CORES, "{d:?}");
        assert!(d[0] > 0 && d[2] > 0, "primary {} digest {d:?}", p.port);
    }
}

/// Stops a replica until the balancer drops it, writes `keys` keys of `value_len` bytes to its
/// group, resumes it; returns once it is back in the map (new id), caught up, with equal
/// digests. Answers the primary's `(repl_backlog_catchups, repl_full_copies)` rise.
fn outage_and_rejoin(cluster: &Cluster, keys: usize, value_len: usize, tag: &str) -> (u64, u64) {
    let mut c = cluster.client();
    let replica = &cluster.replicas[0];
    let (old_id, group) = member_at(&c, replica.port).expect("replica in the map");
    let group = group.expect("replica in a group");
    let primary = group_ports(&c, group)[0];
    let counters = || {
        (
            stat(primary, "repl_backlog_catchups").unwrap_or(0),
            stat(primary, "repl_full_copies").unwrap_or(0),
        )
    };
    let before = counters();

    signal(replica, libc::SIGSTOP);
    wait_for_map_where(&cluster.balancer, Duration::from_secs(20), |c| {
        member_at(c, replica.port).is_none()
    });
    let keys = keys_of_group(&c, group, &format!("{tag}-"), keys);
    write_keys(&mut c, &keys, tag, value_len);
    signal(replica, libc::SIGCONT);

    wait_for_map_where(&cluster.balancer, Duration::from_secs(30), |c| {
        member_at(c, replica.port).is_some_and(|(id, g)| id != old_id && g == Some(group))
    });
    cluster.wait_caught_up(&[replica.port], Duration::from_secs(30));
    assert_converge(&mut c, 2);
    let after = counters();
    (after.0 - before.0, after.1 - before.1)
}

#[test]
fn restarted_replica_catches_up_by_backlog_and_by_full_copy() {
    let mut cluster = Cluster::start(3, 1, &CATCHUP_BALANCER, &NODE_ARGS);

    // (a) A short outage: the primary's backlog still holds what the replica missed.
    let (backlog, full) = outage_and_rejoin(&cluster, 300, 32, "short");
    assert!(
        backlog >= 1,
        "a short outage did not catch up from the backlog (backlog +{backlog}, full copies +{full})"
    );

    // (c) kill -9 and a new process on the same ports: nothing to replay from, a full copy,
    // while a load keeps writing.
    let mut c = cluster.client();
    let port = cluster.replicas[0].port;
    let (_, group) = member_at(&c, port).expect("replica in the map");
    let primary = group_ports(&c, group.unwrap())[0];
    let full_before = stat(primary, "repl_full_copies").unwrap_or(0);
    signal(&cluster.replicas[0], libc::SIGKILL);
    wait_for_map_where(&cluster.balancer, Duration::from_secs(20), |c| {
        member_at(c, port).is_none()
    });
    let keys = keys_of_group(&c, group.unwrap(), "dead-", 300);
    write_keys(&mut c, &keys, "dead", 32);
    let load = Load::start(&cluster.addr(), 1, 300, Mix::SetGet);
    let old = cluster.replicas.remove(0);
    let restarted = cluster.restart_replica(old);
    wait_for_map_where(&cluster.balancer, Duration::from_secs(30), |c| {
        member_at(c, port).is_some_and(|(_, g)| g == group)
    });
    cluster.wait_caught_up(&[restarted.port], Duration::from_secs(30));
    assert!(load.wait_progress(300, Duration::from_secs(20)));
    let report = load.stop();
    cluster.replicas.insert(0, restarted);
    assert_converge(&mut c, 2);
    assert!(
        stat(primary, "repl_full_copies").unwrap_or(0) > full_before,
        "a restarted replica was not given a full copy"
    );
    let bad = verify(&mut c, &report.keys);
    assert!(bad.is_empty(), "{bad:?}");
}

/// Reads every key (retrying errors in batches) and lists those not equal to `{key}=pre=`.
fn missing_prepopulated(c: &mut ringcache_client::Client, keys: &[String]) -> Vec<String> {
    let mut bad = Vec::new();
    for chunk in keys.chunks(500) {
        match retry20(c, |c| c.mget(chunk)) {
            Ok(vals) => {
                for (k, v) in chunk.iter().zip(vals) {
                    if v.as_deref() != Some(format!("{k}=pre=").as_bytes()) {
                        bad.push(format!(
                            "{k}: {:?}",
                            v.map(|v| String::from_utf8_lossy(&v).into_owned())
                        ));
                    }
                }
            }
            Err(e) => bad.push(format!("{} keys from {}: {e}", chunk.len(), chunk[0])),
        }
    }
    bad
}

fn moved_share(before: &[Option<u32>], after: &[Option<u32>]) -> f64 {
    let moved = before.iter().zip(after).filter(|(a, b)| a != b).count();
    moved as f64 / before.len() as f64
}

#[test]
fn adding_and_removing_a_primary_under_load_loses_nothing() {
    let cluster = Cluster::start(3, 1, &LENIENT_BALANCER, &NODE_ARGS);
    let mut c = cluster.client();
    let keys: Vec<String> = (0..20_000).map(|i| format!("pre-{i}")).collect();
    for chunk in keys.chunks(500) {
        let pairs: Vec<(String, String)> = chunk
            .iter()
            .map(|k| (k.clone(), format!("{k}=pre=")))
            .collect();
        retry20(&mut c, |c| c.mset(&pairs)).expect("populate");
    }
    let groups3 = groups_of(&c, &keys);
    let load = Load::start(&cluster.addr(), 2, 300, Mix::SetGet);
    assert!(load.wait_progress(500, Duration::from_secs(30)));

    // Scale out.
    let added = cluster.start_node("primary", &[]);
    let ring_has = |n: usize| {
        move |c: &ringcache_client::Client| {
            let map = c.cluster_map().unwrap();
            map.groups.len() == n && map.ring.groups().len() == n
        }
    };
    let mut c = wait_for_map_where(&cluster.balancer, Duration::from_secs(60), ring_has(4));
    let groups4 = groups_of(&c, &keys);
    let share = moved_share(&groups3, &groups4);
    eprintln!("scale out 3 -> 4: {:.2}% of the keys moved", share * 100.0);
    let lost = missing_prepopulated(&mut c, &keys);
    assert!(
        lost.is_empty(),
        "{} of 20000 keys lost after a primary joined, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    assert!((share - 0.25).abs() <= 0.025, "moved share {share}");
    assert!(load.wait_progress(300, Duration::from_secs(20)));

    // Scale in: remove the member that joined.
    let (id, _) = member_at(&c, added.port).expect("the new primary in the map");
    let out = Command::new(env!("CARGO_BIN_EXE_ringcache"))
        .args(["cli", "--port", &cluster.balancer.port.to_string()])
        .args(["cluster", "remove", &id.to_string()])
        .output()
        .expect("run ringcache cli");
    assert!(
        out.status.success(),
        "cluster remove {id}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut c = wait_for_map_where(&cluster.balancer, Duration::from_secs(60), |c| {
        ring_has(3)(c) && member_at(c, added.port).is_none()
    });
    let groups3b = groups_of(&c, &keys);
    let share = moved_share(&groups4, &groups3b);
    eprintln!("scale in 4 -> 3: {:.2}% of the keys moved", share * 100.0);
    let lost = missing_prepopulated(&mut c, &keys);
    assert!(
        lost.is_empty(),
        "{} of 20000 keys lost after a primary left, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    assert!((share - 0.25).abs() <= 0.025, "moved share {share}");

    assert!(load.wait_progress(300, Duration::from_secs(20)));
    let report = load.stop();
    let bad = verify(&mut c, &report.keys);
    assert!(
        bad.is_empty(),
        "{} of {} load keys lost or went back, e.g.:\n{}",
        bad.len(),
        report.keys.len(),
        bad[..bad.len().min(20)].join("\n")
    );
    drop(added);
}

#[test]
fn a_spare_replica_moves_to_a_new_group_and_takes_over_its_keys() {
    // One group with two replicas; a second primary then joins without any.
    let mut cluster = Cluster::start(1, 2, &FAST_BALANCER, &NODE_ARGS);
    let p2 = cluster.start_node("primary", &[]);
    let p2_port = p2.port;
    cluster.primaries.push(p2);
    let mut c = wait_for_map_where(&cluster.balancer, Duration::from_secs(60), |c| {
        let map = c.cluster_map().expect("cluster mode");
        map.groups.len() == 2
            && map.moving.is_none()
            && map.groups.iter().all(|g| g.replicas.len() == 1)
    });
    let map = c.cluster_map().unwrap().clone();
    let g2 = member_at(&c, p2_port)
        .and_then(|(_, g)| g)
        .expect("p2's group");
    let moved = map.group(g2).unwrap().replicas[0];
    let keys = keys_of_group(&c, g2, "spare", 300);
    write_keys(&mut c, &keys, "a", 32);
    cluster.wait_caught_up(&cluster.ports(), Duration::from_secs(30));
    // The moved replica holds group 2's keys: with its primary gone it serves every one.
    signal(cluster.node(p2_port), libc::SIGKILL);
    let mut c = wait_for_map_where(&cluster.balancer, Duration::from_secs(30), |c| {
        c.cluster_map()
            .is_some_and(|m| m.group(g2).and_then(|g| g.primary) == Some(moved))
    });
    let missing: Vec<&String> = keys
        .iter()
        .filter(|k| {
            let want = format!("{k}=a=");
            !retry20(&mut c, |c| c.get(k.as_str()))
                .ok()
                .flatten()
                .is_some_and(|v| v.starts_with(want.as_bytes()))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} keys missing after the moved replica took over, e.g. {:?}",
        missing.len(),
        keys.len(),
        &missing[..missing.len().min(10)]
    );
}
