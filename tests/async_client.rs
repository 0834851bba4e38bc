//! The async client (`AsyncClient`, feature `tokio` of ringcache-client) against real
//! processes: thousands of tasks sharing one client on a 2-core node, every typed call and a
//! pipeline, password, futures dropped at random points, and a primary killed in the middle
//! of a load on a cluster (every task finishes or gets a typed error, none hangs).

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::cluster::{signal, Cluster};
use common::Node;
use ringcache_client::{AsyncClient, ClientConfig, ClientError, ErrorKind, ReadFrom};
use ringcache_client::{Reply, SetOpts, SetOutcome, Ttl};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn addr(node: &Node) -> String {
    format!("127.0.0.1:{}", node.port)
}

#[test]
fn thousands_of_tasks_on_one_client_get_their_own_replies() {
    let node = Node::start(2, &[]);
    runtime().block_on(async {
        let c = AsyncClient::connect(&addr(&node)).await.unwrap();
        let tasks: Vec<_> = (0..4000)
            .map(|i| {
                let c = c.clone();
                tokio::spawn(async move {
                    let key = format!("task:{i}");
                    c.set(&key, format!("value of {i}")).await?;
                    let n = c.incr_by(format!("count:{}", i % 10), 1).await?;
                    let got = c.get(&key).await?;
                    Ok::<_, ClientError>((i, got, n))
                })
            })
            .collect();
        for t in tasks {
            let (i, got, n) = t.await.unwrap().unwrap();
            assert_eq!(got, Some(format!("value of {i}").into_bytes()), "task {i}");
            assert!((1..=400).contains(&n));
        }
        let counts: Vec<String> = (0..10).map(|j| format!("count:{j}")).collect();
        let totals = c.mget(&counts).await.unwrap();
        assert!(totals.iter().all(|v| v.as_deref() == Some(&b"400"[..])));
        // One connection per core plus the main port, shared by every clone.
        assert_eq!(c.open_connections(), 3);
        let w = c.write_stats();
        eprintln!(
            "4000 tasks: {} request frames in {} writes ({:.1} per write)",
            w.frames,
            w.writes,
            w.frames as f64 / w.writes.max(1) as f64
        );
    });
}

#[test]
fn every_typed_call_and_a_pipeline() {
    let node = Node::start(2, &["--password", "s3cret"]);
    runtime().block_on(async {
        let err = AsyncClient::connect(&addr(&node)).await.unwrap_err();
        assert_eq!(err.server_kind(), Some(ErrorKind::NoAuth), "{err}");
        let cfg = ClientConfig::default()
            .password("s3cret")
            .timeout(Duration::from_secs(5));
        let c = AsyncClient::connect_with(&addr(&node), cfg).await.unwrap();
        assert_eq!(c.cores(), 2);
        assert_eq!(c.cached_topology().main_port, node.port);
        c.warm_up().await.unwrap();
        c.ping().await.unwrap();

        c.set("a", "1").await.unwrap();
        assert_eq!(c.get("a").await.unwrap(), Some(b"1".to_vec()));
        let v = c.get_versioned("a").await.unwrap().unwrap();
        let stale = SetOpts::new().if_version(v.version + 1);
        assert!(matches!(
            c.set_with("a", "x", &stale).await.unwrap(),
            SetOutcome::VersionMismatch { .. }
        ));
        let cas = SetOpts::new().if_version(v.version).get_version();
        assert!(c.set_with("a", "2", &cas).await.unwrap().is_stored());
        assert_eq!(
            c.set_with("a", "3", &SetOpts::new().nx()).await.unwrap(),
            SetOutcome::NotStored
        );
        let ttl = SetOpts::new().ttl(Duration::from_secs(60)).tag("t1");
        assert!(c.set_with("b", "x", &ttl).await.unwrap().is_stored());
        assert!(
            matches!(c.ttl("b").await.unwrap(), Ttl::Expires(d) if d > Duration::from_secs(50))
        );
        assert!(c.persist("b").await.unwrap());
        assert_eq!(c.ttl("b").await.unwrap(), Ttl::Persistent);
        assert!(c.expire("b", Duration::from_secs(30)).await.unwrap());
        assert_eq!(c.ttl("nope").await.unwrap(), Ttl::Missing);
        assert_eq!(c.incr("n").await.unwrap(), 1);
        assert_eq!(c.incr_by("n", 10).await.unwrap(), 11);
        assert_eq!(c.decr("n").await.unwrap(), 10);

        let pairs: Vec<(String, String)> = (0..20)
            .map(|i| (format!("m{i}"), format!("v{i}")))
            .collect();
        c.mset(&pairs).await.unwrap();
        let keys: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
        let got = c.mget(&keys).await.unwrap();
        assert!(got
            .iter()
            .zip(&pairs)
            .all(|(g, (_, v))| g.as_deref() == Some(v.as_bytes())));
        assert_eq!(c.mget_versioned(&["m0", "zz"]).await.unwrap()[1], None);
        assert_eq!(c.exists(&["m0", "m1", "m1", "zz"]).await.unwrap(), 3);
        assert_eq!(c.touch(&["m0", "zz"]).await.unwrap(), 1);
        assert_eq!(c.del(&["m0", "m1", "zz"]).await.unwrap(), 2);

        c.invalidate_tag("t1").await.unwrap();
        assert_eq!(c.get("b").await.unwrap(), None);
        c.invalidate_prefix("m1").await.unwrap();
        assert_eq!(c.get("m15").await.unwrap(), None);
        assert_eq!(c.get("m2").await.unwrap(), Some(b"v2".to_vec()));
        let stats: HashMap<String, u64> = c.stats().await.unwrap().into_iter().collect();
        assert!(stats.contains_key("keys"), "{stats:?}");

        let mut p = c.pipeline();
        p.set("p1", "x")
            .incr_by("n", 5)
            .get("p1")
            .mget(&keys[2..5])
            .exists(&keys[2..5])
            .ping();
        let r = p.execute().await;
        assert_eq!(r[0].clone().unwrap(), Reply::Ok);
        assert_eq!(r[1].clone().unwrap(), Reply::Int(15));
        assert_eq!(
            r[2].clone().unwrap().into_value().unwrap(),
            Some(b"x".to_vec())
        );
        assert_eq!(r[3].clone().unwrap().into_values().unwrap().len(), 3);
        assert_eq!(r[4].clone().unwrap(), Reply::Int(3));
        assert_eq!(r[5].clone().unwrap(), Reply::Pong);

        c.flush().await.unwrap();
        assert_eq!(c.get("a").await.unwrap(), None);
    });
}

#[test]
fn futures_dropped_at_random_points_leave_every_later_request_correct() {
    let node = Node::start(2, &[]);
    runtime().block_on(async {
        let cfg = ClientConfig::default().max_in_flight(64);
        let c = AsyncClient::connect_with(&addr(&node), cfg).await.unwrap();
        c.warm_up().await.unwrap();
        let (mut dropped, mut finished) = (0, 0);
        for round in 0..10u64 {
            let tasks: Vec<_> = (0..500u64)
                .map(|i| {
                    let c = c.clone();
                    // A pseudo-random budget of 0 to 30 ms: some requests finish, the others
                    // are dropped waiting for room, queued, or sent and unanswered.
                    let budget = Duration::from_micros((round * 7919 + i * 104_729) % 30_000);
                    tokio::spawn(async move {
                        let key = format!("drop:{round}:{i}");
                        let work = async {
                            c.set(&key, &key).await?;
                            c.get(&key).await
                        };
                        tokio::time::timeout(budget, work).await
                    })
                })
                .collect();
            for t in tasks {
                match t.await.unwrap() {
                    Err(_) => dropped += 1,
                    Ok(r) => {
                        assert!(r.unwrap().is_some());
                        finished += 1;
                    }
                }
            }
        }
        assert!(dropped > 0, "no future was dropped mid-request");
        assert!(finished > 0, "no request finished within its budget");
        // Every later request, from many tasks at once, gets its own answer.
        let tasks: Vec<_> = (0..1000)
            .map(|i| {
                let c = c.clone();
                tokio::spawn(async move {
                    let key = format!("after:{i}");
                    c.set(&key, format!("v{i}")).await?;
                    Ok::<_, ClientError>((i, c.get(&key).await?))
                })
            })
            .collect();
        for t in tasks {
            let (i, got) = t.await.unwrap().unwrap();
            assert_eq!(got, Some(format!("v{i}").into_bytes()));
        }
        assert_eq!(c.open_connections(), 3, "a connection was replaced");
        eprintln!("{dropped} of 5000 futures dropped mid-request, {finished} finished");
    });
}

/// Fast failure detection: 5 missed heartbeats of 100 ms.
const FAST_BALANCER: [&str; 4] = ["--heartbeat-ms", "100", "--missed-heartbeats", "5"];
const NODE_ARGS: [&str; 4] = ["--heartbeat-ms", "100", "--write-ack", "all"];

#[test]
fn a_primary_killed_under_load_every_task_finishes_or_gets_a_typed_error() {
    let cluster = Cluster::start(2, 1, &FAST_BALANCER, &NODE_ARGS);
    runtime().block_on(async {
        let cfg = ClientConfig::default()
            .timeout(Duration::from_secs(2))
            .failover_timeout(Duration::from_secs(10));
        let c = AsyncClient::connect_cluster_with(&cluster.addr(), cfg.clone())
            .await
            .unwrap();
        let before = c.cluster_map().unwrap();
        let group = before.groups[0].id;
        let victim_id = before.groups[0].primary.unwrap();
        let replica = before.groups[0].replicas[0];
        let victim_port = before.member(victim_id).unwrap().main_port;
        eprintln!(
            "balancer {}; members (id, main port, core ports): {:?}",
            cluster.addr(),
            before
                .members
                .iter()
                .map(|m| (m.id, m.main_port, m.core_ports.clone()))
                .collect::<Vec<_>>()
        );

        let map = std::sync::Arc::new(before.clone());
        let start = Instant::now();
        let (kill_tx, kill_rx) = tokio::sync::oneshot::channel::<()>();
        // 1000 tasks, each writing and reading its own keys for 4 s; the primary of group
        // 0 dies after the first second.
        let tasks: Vec<_> = (0..1000)
            .map(|i| {
                let (c, map) = (c.clone(), map.clone());
                tokio::spawn(async move {
                    let (mut ok, mut late, mut errors) = (0u64, 0u64, Vec::new());
                    let mut n = 0u64;
                    while start.elapsed() < Duration::from_secs(4) {
                        n += 1;
                        let key = format!("fo:{i}:{}", n % 8);
                        let value = format!("{i}:{n}");
                        let after_kill = start.elapsed() > Duration::from_secs(2);
                        let r = async {
                            c.set(&key, &value).await?;
                            c.get(&key).await
                        };
                        match r.await {
                            Ok(Some(v)) if v == value.as_bytes() => {
                                ok += 1;
                                if after_kill && map.group_for_key(key.as_bytes()) == Some(group) {
                                    late += 1;
                                }
                            }
                            Ok(other) => panic!("task {i} read {other:?} after writing {value}"),
                            Err(e) => errors.push(e),
                        }
                    }
                    (ok, late, errors)
                })
            })
            .collect();
        let killer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let _ = kill_tx.send(());
        });
        kill_rx.await.unwrap();
        signal(cluster.node(victim_port), libc::SIGKILL);
        killer.await.unwrap();

        let (mut ok, mut late, mut errors) = (0u64, 0u64, Vec::new());
        for t in tasks {
            // Each task stops starting requests at 4 s; one request may then take the
            // failover budget and a timeout: 30 s means it hung.
            let (o, l, e) = tokio::time::timeout(Duration::from_secs(30), t)
                .await
                .expect("a task hung")
                .unwrap();
            ok += o;
            late += l;
            errors.extend(e);
        }
        eprintln!(
            "failover under load: {ok} set+get pairs ok ({late} on the killed primary's group \
             1 s after the kill), {} typed errors in {:?}",
            errors.len(),
            start.elapsed()
        );
        // Every error is one of the client's typed errors; those that are not what a dying
        // node causes (refused, reset, timed out, no primary, a server's answer) are shown.
        // A protocol error can come from a node or the balancer closing a connection with an
        // error frame while the map changes; the blocking client reports it the same way.
        for e in &errors {
            assert!(
                !matches!(
                    e,
                    ClientError::InvalidArgument(_) | ClientError::TooLarge(_)
                ),
                "a request was refused as invalid: {e}"
            );
            if !matches!(
                e,
                ClientError::Io { .. }
                    | ClientError::Timeout { .. }
                    | ClientError::Connect { .. }
                    | ClientError::NoPrimary { .. }
                    | ClientError::Server { .. }
            ) {
                eprintln!("error during the failover: {e}");
            }
        }
        assert!(ok > 1000, "the load made little progress: {ok}");
        assert!(
            late > 0,
            "no write and read of the killed primary's group succeeded after it"
        );

        // The replica took over, and the same client writes and reads that group's keys.
        let after = c.refresh_map().await.unwrap();
        assert!(after.epoch > before.epoch);
        assert_eq!(after.group(group).and_then(|g| g.primary), Some(replica));
        let keys: Vec<String> = (0..)
            .map(|i| format!("after:{i}"))
            .filter(|k| after.group_for_key(k.as_bytes()) == Some(group))
            .take(50)
            .collect();
        for k in &keys {
            c.set(k, k).await.unwrap();
            assert_eq!(c.get(k).await.unwrap(), Some(k.clone().into_bytes()));
        }

        // Reads from any member answer too (the group now has no replica: the primary does).
        let any = AsyncClient::connect_cluster_with(&cluster.addr(), cfg.read_from(ReadFrom::Any))
            .await
            .unwrap();
        let got = any.mget(&keys).await.unwrap();
        assert!(got
            .iter()
            .zip(&keys)
            .all(|(g, k)| g.as_deref() == Some(k.as_bytes())));
    });
}
