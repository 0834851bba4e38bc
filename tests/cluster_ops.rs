//! Cluster-wide operations with real processes (a balancer and 2 core nodes): FLUSH and
//! INVALIDATE sent through the balancer reach every copy (primaries and replicas), reads with
//! `ReadFrom::Any` are served by replicas too, a write to a shard group without a live
//! member fails at once with an error naming the group, and only nodes given the cluster
//! secret join.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::cluster::{
    cluster_client_with, digest, member_at, retry20, signal, stats_at, wait_digests_converge,
    wait_for_map_where, Cluster, CORES,
};
use common::{read_reply, resp_command, wait_until};
use ringcache_client::{Client, ClientConfig, ClientError, ReadFrom, SetOpts};

/// Lenient failure detection, for tests that kill nothing.
const LENIENT_BALANCER: [&str; 4] = ["--heartbeat-ms", "100", "--missed-heartbeats", "30"];
/// Fast failure detection: 5 missed heartbeats of 100 ms.
const FAST_BALANCER: [&str; 4] = ["--heartbeat-ms", "100", "--missed-heartbeats", "5"];
const NODE_ARGS: [&str; 4] = ["--heartbeat-ms", "100", "--write-ack", "all"];

/// Reads every key `rounds` times; each must hold `{key}={version}`.
fn read_rounds(c: &mut Client, keys: &[String], version: &str, rounds: usize) {
    for round in 0..rounds {
        for k in keys {
            let got = c
                .get(k)
                .unwrap_or_else(|e| panic!("version {version}, round {round}: GET {k}: {e}"));
            assert_eq!(
                got.as_deref(),
                Some(format!("{k}={version}").as_bytes()),
                "version {version}, round {round}: GET {k}"
            );
        }
    }
}

/// A raw RESP connection with 5 s timeouts: a reply that does not come reads as empty.
fn resp_conn(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// Sends one RESP command and answers the reply as text.
fn resp(conn: &mut TcpStream, args: &[&str]) -> String {
    let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    conn.write_all(&resp_command(&args)).expect("send");
    String::from_utf8_lossy(&read_reply(conn)).into_owned()
}

/// A plain (non-cluster) client on one node's main port: it sends each key to that node's core.
fn node_client(port: u16) -> Result<Client, ClientError> {
    Client::connect_with(
        format!("127.0.0.1:{port}"),
        ClientConfig::default().timeout(Duration::from_secs(2)),
    )
}

/// The sum of the DIGEST key counts of the node at `port` (one count per core).
fn digest_count(port: u16) -> Result<u64, String> {
    let d = digest(port)?;
    if d.len() != 2 * CORES {
        return Err(format!("DIGEST of {port} has {} items: {d:?}", d.len()));
    }
    Ok(d.iter().step_by(2).sum())
}

/// The sum over cores of one per-core STATS counter (`core{i}.{name}`) of the node at `port`.
fn core_stat_sum(port: u16, name: &str) -> u64 {
    let s = stats_at(port);
    (0..CORES)
        .map(|i| s.get(&format!("core{i}.{name}")).copied().unwrap_or(0))
        .sum()
}

/// What each key should read as on every member of its group.
type Model = HashMap<String, Option<Vec<u8>>>;
/// Keys of a model and what they should read as.
type KeyView<'a> = Vec<(&'a String, &'a Option<Vec<u8>>)>;

/// How the node at `port` disagrees with `keys` (its group's share of the model): keys that
/// read otherwise, and a DIGEST count other than the model's live keys. Empty when it agrees.
fn node_disagreements(port: u16, keys: &[(&String, &Option<Vec<u8>>)]) -> Vec<String> {
    let mut c = match node_client(port) {
        Ok(c) => c,
        Err(e) => return vec![format!("node {port}: cannot connect: {e}")],
    };
    let names: Vec<&str> = keys.iter().map(|(k, _)| k.as_str()).collect();
    let got = match c.mget(&names) {
        Ok(v) => v,
        Err(e) => return vec![format!("node {port}: MGET failed: {e}")],
    };
    let mut bad: Vec<String> = keys
        .iter()
        .zip(got)
        .filter(|((_, want), got)| *want != got)
        .map(|((k, want), got)| {
            let s =
                |v: &Option<Vec<u8>>| v.as_ref().map(|v| String::from_utf8_lossy(v).into_owned());
            format!(
                "node {port}: {k} reads {:?}, expected {:?}",
                s(&got),
                s(want)
            )
        })
        .collect();
    let live = keys.iter().filter(|(_, v)| v.is_some()).count() as u64;
    match digest_count(port) {
        Ok(n) if n == live => {}
        Ok(n) => bad.push(format!(
            "node {port}: DIGEST counts {n} keys, expected {live}"
        )),
        Err(e) => bad.push(format!("node {port}: DIGEST failed: {e}")),
    }
    bad
}

/// Waits (up to 20 s) until every member of every group (primaries and replicas, read on
/// their own ports) answers each key of its group as `model` says and counts as many keys in
/// its DIGEST; then until the members of each group have equal DIGESTs.
fn assert_everywhere(cluster: &Cluster, c: &mut Client, model: &Model, step: &str) {
    c.refresh_map().expect("map");
    let map = c.cluster_map().unwrap().clone();
    let ports = cluster.ports();
    let mut per_node: Vec<(u16, KeyView<'_>)> = Vec::new();
    for &p in &ports {
        let group = member_at(c, p)
            .and_then(|(_, g)| g)
            .unwrap_or_else(|| panic!("{step}: node {p} is not in the map:\n{map}"));
        let mut keys: Vec<_> = model
            .iter()
            .filter(|(k, _)| map.group_for_key(k.as_bytes()) == Some(group))
            .collect();
        keys.sort();
        assert!(!keys.is_empty(), "{step}: no key of group {group}");
        per_node.push((p, keys));
    }
    let mut last = Vec::new();
    let ok = wait_until(Duration::from_secs(20), || {
        last = per_node
            .iter()
            .flat_map(|(p, keys)| node_disagreements(*p, keys))
            .collect();
        last.is_empty()
    });
    assert!(
        ok,
        "{step}: {} disagreements after 20 s, e.g.:\n{}",
        last.len(),
        last[..last.len().min(30)].join("\n")
    );
    if let Err(state) = wait_digests_converge(c, 2, Duration::from_secs(30)) {
        panic!("{step}: group members never reached equal DIGESTs:\n{state}");
    }
}

#[test]
fn cluster_wide_flush_and_invalidation_reach_every_copy() {
    let cluster = Cluster::start(3, 1, &LENIENT_BALANCER, &NODE_ARGS);
    let mut c = cluster.client();
    let mut model = Model::new();

    // Keys `user:{i}` and `post:{i}`; a third of each tagged "hot", a third of the posts
    // tagged "cold", written through the cluster client.
    for prefix in ["user:", "post:"] {
        for i in 0..90 {
            let k = format!("{prefix}{i}");
            let v = format!("value of {k}");
            let tag = match i % 3 {
                0 => Some("hot"),
                1 if prefix == "post:" => Some("cold"),
                _ => None,
            };
            let opts = tag.map_or(SetOpts::new(), |t| SetOpts::new().tag(t));
            retry20(&mut c, |c| c.set_with(&k, &v, &opts))
                .unwrap_or_else(|e| panic!("write {k}: {e}"));
            model.insert(k, Some(v.into_bytes()));
        }
    }
    // More through the balancer, by RESP, with `TAG`.
    let mut b = resp_conn(cluster.balancer.port);
    for (prefix, tag) in [("post", "hot"), ("user", "cold")] {
        for i in 0..15 {
            let (k, v) = (format!("{prefix}:r{i}"), format!("resp value {i}"));
            assert_eq!(
                resp(&mut b, &["SET", &k, &v, "TAG", tag]),
                "+OK\r\n",
                "SET {k}"
            );
            model.insert(k, Some(v.into_bytes()));
        }
    }
    assert_everywhere(&cluster, &mut c, &model, "after the writes");

    // INVALIDATE PREFIX through the balancer (RESP): no `user:` key anywhere, `post:` intact.
    assert_eq!(
        resp(&mut b, &["INVALIDATE", "PREFIX", "user:"]),
        "+OK\r\n",
        "INVALIDATE PREFIX through the balancer"
    );
    for (k, v) in model.iter_mut() {
        if k.starts_with("user:") {
            *v = None;
        }
    }
    assert_everywhere(&cluster, &mut c, &model, "after INVALIDATE PREFIX user:");

    // A key of the invalidated prefix written afterwards lives, on every copy.
    for i in 0..30 {
        let (k, v) = (format!("user:new{i}"), format!("new value {i}"));
        retry20(&mut c, |c| c.set(&k, &v)).unwrap_or_else(|e| panic!("write {k}: {e}"));
        model.insert(k, Some(v.into_bytes()));
    }
    assert_everywhere(&cluster, &mut c, &model, "after rewriting user: keys");

    // INVALIDATE TAG through the balancer (native client on the balancer's address).
    let mut native = Client::connect_with(
        cluster.addr(),
        ClientConfig::default().timeout(Duration::from_secs(5)),
    )
    .expect("native client on the balancer");
    native
        .invalidate_tag("hot")
        .expect("INVALIDATE TAG through the balancer");
    for (k, v) in model.iter_mut() {
        let hot = k
            .strip_prefix("post:")
            .is_some_and(|i| i.starts_with('r') || i.parse::<u32>().is_ok_and(|i| i % 3 == 0));
        if hot {
            *v = None;
        }
    }
    assert!(
        model
            .iter()
            .any(|(k, v)| k.starts_with("post:") && v.is_some()),
        "the model kept no post: key"
    );
    assert_everywhere(&cluster, &mut c, &model, "after INVALIDATE TAG hot");

    // FLUSH through the balancer (RESP): every copy empties.
    assert_eq!(
        resp(&mut b, &["FLUSHALL"]),
        "+OK\r\n",
        "FLUSHALL through the balancer"
    );
    let ports = cluster.ports();
    let mut counts = Vec::new();
    let empty = wait_until(Duration::from_secs(20), || {
        counts = ports.iter().map(|p| (*p, digest_count(*p))).collect();
        counts.iter().all(|(_, n)| n == &Ok(0))
    });
    assert!(empty, "DIGEST counts after FLUSHALL: {counts:?}");
    for v in model.values_mut() {
        *v = None;
    }
    assert_everywhere(&cluster, &mut c, &model, "after FLUSHALL");
}

#[test]
fn reads_from_any_member_spread_over_replicas() {
    let cluster = Cluster::start(3, 1, &LENIENT_BALANCER, &NODE_ARGS);
    let mut c = cluster_client_with(
        &cluster.addr(),
        ClientConfig::default().read_from(ReadFrom::Any),
    );
    let keys: Vec<String> = (0..300).map(|i| format!("any:{i}")).collect();
    for k in &keys {
        c.set(k, format!("{k}=1"))
            .unwrap_or_else(|e| panic!("write {k} through a ReadFrom::Any client: {e}"));
    }
    let hits =
        |ports: &[u16]| -> Vec<u64> { ports.iter().map(|p| core_stat_sum(*p, "hits")).collect() };
    let replica_ports: Vec<u16> = cluster.replicas.iter().map(|n| n.port).collect();
    let primary_ports: Vec<u16> = cluster.primaries.iter().map(|n| n.port).collect();
    let (r0, p0) = (hits(&replica_ports), hits(&primary_ports));

    const ROUNDS: usize = 5;
    read_rounds(&mut c, &keys, "1", ROUNDS);
    let reads = (ROUNDS * keys.len()) as u64;
    let (r1, p1) = (hits(&replica_ports), hits(&primary_ports));
    let by_replica: Vec<u64> = r1.iter().zip(&r0).map(|(a, b)| a - b).collect();
    let by_primary: Vec<u64> = p1.iter().zip(&p0).map(|(a, b)| a - b).collect();
    eprintln!("{reads} reads: hits on replicas {by_replica:?}, on primaries {by_primary:?}");
    assert!(
        by_replica.iter().all(|&n| n > 0),
        "some replica served no read: replicas {by_replica:?}, primaries {by_primary:?}"
    );
    let total: u64 = by_replica.iter().sum();
    assert!(
        total >= reads / 5,
        "replicas served only {total} of {reads} reads (primaries {by_primary:?})"
    );

    // A replica refuses writes on its own port ...
    let mut r = resp_conn(replica_ports[0]);
    let reply = resp(&mut r, &["SET", "any:0", "from a replica"]);
    assert!(
        reply.starts_with('-') && reply.contains("replica"),
        "a replica answered a SET with {reply:?}"
    );
    // ... and the ReadFrom::Any client still writes, to the primaries.
    for k in &keys {
        c.set(k, format!("{k}=2"))
            .unwrap_or_else(|e| panic!("rewrite {k} through a ReadFrom::Any client: {e}"));
    }
    read_rounds(&mut c, &keys, "2", 2);
    let after: Vec<u64> = hits(&replica_ports);
    assert!(
        after.iter().zip(&r1).all(|(a, b)| a > b),
        "replicas served no read after the rewrite: {r1:?} -> {after:?}"
    );
}

#[test]
fn writes_to_a_group_without_live_members_fail_clearly() {
    let cluster = Cluster::start(2, 0, &FAST_BALANCER, &["--heartbeat-ms", "100"]);
    let cfg = ClientConfig::default()
        .timeout(Duration::from_secs(2))
        .failover_timeout(Duration::from_millis(500));
    // Made before the kill: its map still names the dead primary.
    let stale = cluster_client_with(&cluster.addr(), cfg.clone());
    let map = stale.cluster_map().unwrap().clone();
    let victim = &cluster.primaries[0];
    let (_, dead) = member_at(&stale, victim.port).expect("victim in the map");
    let dead = dead.expect("victim has a group");
    let key_of = |g: u32, prefix: &str| -> Vec<String> {
        (0..)
            .map(|i| format!("{prefix}{i}"))
            .filter(|k| map.group_for_key(k.as_bytes()) == Some(g))
            .take(5)
            .collect()
    };
    let live = map
        .groups
        .iter()
        .map(|g| g.id)
        .find(|&g| g != dead)
        .expect("a second group");
    let dead_keys = key_of(dead, "d");
    let live_keys = key_of(live, "l");

    signal(victim, libc::SIGKILL);
    let mut c = wait_for_map_where(&cluster.balancer, Duration::from_secs(20), |c| {
        let m = c.cluster_map().unwrap();
        m.group(dead).is_some_and(|g| g.primary.is_none())
    });
    let m = c.cluster_map().unwrap();
    assert!(
        m.group(live).and_then(|g| g.primary).is_some(),
        "the live group lost its primary: {m:?}"
    );

    // Through the balancer (RESP): an error naming the group, at once.
    let mut b = resp_conn(cluster.balancer.port);
    for k in &dead_keys {
        let t = Instant::now();
        let reply = resp(&mut b, &["SET", k, "v"]);
        let took = t.elapsed();
        assert!(
            reply.starts_with('-')
                && reply.contains(&format!("group {dead}"))
                && reply.contains("no live primary"),
            "SET {k} (group {dead}, no live primary) through the balancer answered {reply:?} \
             after {took:?}"
        );
        // "At once" is a speed goal (checked by eye in the printed time); the test only makes
        // sure nothing hangs, even on a loaded machine.
        eprintln!("balancer answered SET {k} for a headless group in {took:?}");
        assert!(took < Duration::from_secs(15), "SET {k} took {took:?}");
    }

    // The thin client: NoPrimary within its failover budget, with a stale map or a fresh one.
    let fresh = cluster_client_with(&cluster.addr(), cfg);
    for (name, client) in [("stale-map client", stale), ("fresh-map client", fresh)] {
        let mut client = client;
        for k in &dead_keys {
            let t = Instant::now();
            let r = client.set(k, "v");
            let took = t.elapsed();
            match r {
                Err(ClientError::NoPrimary { group }) => {
                    assert_eq!(
                        group, dead,
                        "{name}: SET {k}: NoPrimary names the wrong group"
                    )
                }
                other => panic!(
                    "{name}: SET {k} (group {dead}, no live primary) answered {other:?} after \
                     {took:?}"
                ),
            }
            eprintln!("{name}: NoPrimary after {took:?} (500 ms failover budget)");
            assert!(
                took < Duration::from_secs(15),
                "{name}: SET {k} took {took:?} with a 500 ms failover budget"
            );
        }
    }

    // Keys of the other group still work, through the balancer and the thin client.
    for k in &live_keys {
        assert_eq!(
            resp(&mut b, &["SET", k, "via balancer"]),
            "+OK\r\n",
            "SET {k}"
        );
        assert_eq!(
            resp(&mut b, &["GET", k]),
            "$12\r\nvia balancer\r\n",
            "GET {k}"
        );
        c.set(k, "via client")
            .unwrap_or_else(|e| panic!("SET {k} (live group {live}): {e}"));
        assert_eq!(
            c.get(k)
                .unwrap_or_else(|e| panic!("GET {k}: {e}"))
                .as_deref(),
            Some(&b"via client"[..]),
            "GET {k}"
        );
    }
}

/// With `--cluster-secret` on the balancer, only nodes given the same secret join; replication
/// between them works (a replica catches up and holds its primary's data); an operator's
/// removal without the secret is refused.
#[test]
fn only_nodes_with_the_cluster_secret_join() {
    let secret = ["--cluster-secret", "open sesame"];
    let mut balancer_args = LENIENT_BALANCER.to_vec();
    balancer_args.extend(secret);
    let mut node_args = NODE_ARGS.to_vec();
    node_args.extend(secret);
    let cluster = Cluster::start(1, 1, &balancer_args, &node_args);

    // A node without the secret (or with another) never becomes a member.
    let addr = cluster.addr();
    let intruders = [
        common::Node::start(CORES, &["--balancer", &addr]),
        common::Node::start(CORES, &["--balancer", &addr, "--cluster-secret", "guess"]),
    ];
    let refused = wait_until(Duration::from_secs(20), || {
        cluster
            .balancer
            .log_text()
            .matches("join refused: wrong cluster secret")
            .count()
            >= 2
    });
    assert!(refused, "balancer log:\n{}", cluster.balancer.log_text());
    let mut c = cluster.client();
    c.refresh_map().expect("map");
    for n in &intruders {
        assert!(member_at(&c, n.port).is_none(), "node {} joined", n.port);
    }

    // The members replicate as usual.
    for i in 0..50 {
        retry20(&mut c, |c| c.set(format!("s{i}"), "v")).expect("set");
    }
    if let Err(state) = wait_digests_converge(&mut c, 2, Duration::from_secs(30)) {
        panic!("primary and replica never agreed:\n{state}");
    }
    let replica = cluster.replicas[0].port;
    let counts = digest(replica).expect("digest");
    assert_eq!(
        counts.iter().step_by(2).sum::<u64>(),
        50,
        "the replica holds every key"
    );

    // Removing a member takes the secret.
    let member = member_at(&c, replica).expect("replica in the map").0;
    assert!(
        c.remove_member(member, None).is_err(),
        "a removal without the secret went through"
    );
    assert!(c.remove_member(member, Some("guess".into())).is_err());
    c.remove_member(member, Some("open sesame".into()))
        .expect("removal with the secret");
    wait_for_map_where(&cluster.balancer, Duration::from_secs(20), |c| {
        member_at(c, replica).is_none()
    });
}

/// A balancer killed and started again knows nothing; the nodes rejoin naming their groups and
/// roles, and it rebuilds the same groups and so the same ring: no data moves, nothing is lost.
#[test]
fn a_restarted_balancer_rebuilds_the_map_from_the_nodes() {
    let mut cluster = Cluster::start(3, 1, &LENIENT_BALANCER, &NODE_ARGS);
    let mut c = cluster.client();
    let keys: Vec<String> = (0..600).map(|i| format!("rb{i}")).collect();
    for k in &keys {
        retry20(&mut c, |c| c.set(k, k.as_bytes())).expect("set");
    }
    c.refresh_map().expect("map");
    let before = c.cluster_map().unwrap().clone();
    let place = |map: &ringcache_cluster::ClusterMap, port: u16| {
        map.members
            .iter()
            .find(|m| m.main_port == port)
            .map(|m| (m.group, m.role))
    };

    cluster.balancer.restart(&LENIENT_BALANCER);
    let ports = cluster.ports();
    let mut c = wait_for_map_where(&cluster.balancer, Duration::from_secs(60), |c| {
        let map = c.cluster_map().unwrap();
        map.moving.is_none() && ports.iter().all(|&p| place(map, p) == place(&before, p))
    });
    let after = c.cluster_map().unwrap().clone();
    assert_eq!(after.ring, before.ring, "the ring changed");
    assert!(after.epoch > before.epoch, "epochs went back");

    for k in &keys {
        assert_eq!(
            retry20(&mut c, |c| c.get(k)).expect("get"),
            Some(k.as_bytes().to_vec()),
            "{k} after the balancer restarted"
        );
    }
    for i in 0..100 {
        retry20(&mut c, |c| c.set(format!("new{i}"), "v")).expect("set after the restart");
    }
    if let Err(state) = wait_digests_converge(&mut c, 2, Duration::from_secs(30)) {
        panic!("group members never agreed after the restart:\n{state}");
    }
}
