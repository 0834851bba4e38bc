//! A real cluster: a balancer and 3 primaries with a replica each, as processes. Writes through
//! the balancer (native thin client and the `redis` crate) and through the thin client in
//! cluster mode land on the owning core of the owning primary and read back both ways; a stale
//! epoch or a foreign key gets a redirect; a node that joins late gets the map and serves.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::cluster::{wait_for_map, Balancer};
use common::{free_port, parse_stats, wait_until, Node};
use ringcache_client::{Client, ErrorKind};
use ringcache_proto::{decode_frame, decode_response, encode_request, Limits, Response};

fn node(cores: usize, balancer: &str, role: &str) -> Node {
    Node::start(cores, &["--balancer", balancer, "--role", role])
}

/// Per-core key counts of a node: `core{i}.keys`.
fn core_keys(n: &Node) -> Vec<u64> {
    let stats = n.stats();
    (0..n.core_ports.len())
        .map(|i| stats.get(&format!("core{i}.keys")).copied().unwrap_or(0))
        .collect()
}

/// Sends one native GET with `epoch` to `port` and answers the response.
fn native_get(port: u16, key: &[u8], epoch: u32) -> Response<'static> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    let mut b = bytes::BytesMut::new();
    encode_request(&mut b, 1, epoch, &ringcache_proto::Command::Get { key }).unwrap();
    s.write_all(&b).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let limits = Limits::default();
    loop {
        if let Some(f) = decode_frame(&buf, &limits).unwrap() {
            let r = decode_response(&f.header, f.body(&buf), &limits).unwrap();
            return match r {
                Response::Error { kind, message } => Response::error(kind, message.into_owned()),
                Response::Nil => Response::Nil,
                Response::Value { .. } => Response::Ok,
                other => panic!("unexpected {other:?}"),
            };
        }
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "connection closed");
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[test]
fn cluster_routes_keys_to_their_owning_core_and_redirects() {
    let b = Balancer::start();
    let addr = b.addr();
    let primaries: Vec<Node> = (0..3).map(|_| node(2, &addr, "primary")).collect();
    // Replicas have as many cores as their primary.
    let replicas: Vec<Node> = (0..3).map(|_| node(2, &addr, "replica")).collect();
    let mut cc = wait_for_map(&b, 3, Some(1));

    // Writes: RESP through the balancer, native through the balancer, cluster-mode client.
    let rclient = redis::Client::open(format!("redis://{addr}/")).unwrap();
    let mut rc = rclient
        .get_connection()
        .expect("redis connection to the balancer");
    let info: String = redis::cmd("CLUSTER").arg("INFO").query(&mut rc).unwrap();
    assert!(
        info.contains("groups: 3") && info.contains("members: 6"),
        "{info}"
    );
    let mut via_balancer = Client::connect(&addr).expect("native client on the balancer");
    let mut keys: Vec<String> = Vec::new();
    for i in 0..150 {
        let (r, n, c) = (
            format!("resp:{i}"),
            format!("native:{i}"),
            format!("direct:{i}"),
        );
        let _: () = redis::cmd("SET")
            .arg(&r)
            .arg(format!("v-{r}"))
            .query(&mut rc)
            .unwrap();
        via_balancer.set(&n, format!("v-{n}")).unwrap();
        cc.set(&c, format!("v-{c}")).unwrap();
        keys.extend([r, n, c]);
    }
    let pairs: Vec<(String, String)> = (0..50)
        .map(|i| (format!("mset:{i}"), format!("v-mset:{i}")))
        .collect();
    cc.mset(&pairs).unwrap();
    keys.extend(pairs.iter().map(|(k, _)| k.clone()));

    // Every key reads back both ways.
    for k in &keys {
        let want = format!("v-{k}").into_bytes();
        let got: Option<Vec<u8>> = redis::cmd("GET").arg(k).query(&mut rc).unwrap();
        assert_eq!(got.as_deref(), Some(&want[..]), "{k} through the balancer");
        assert_eq!(cc.get(k).unwrap(), Some(want), "{k} straight from its core");
    }
    let got = cc.mget(&keys).unwrap();
    assert!(got.iter().all(Option::is_some));
    let got: Vec<Option<Vec<u8>>> = redis::cmd("MGET").arg(&keys).query(&mut rc).unwrap();
    assert!(
        got.iter().all(Option::is_some),
        "MGET split by the balancer"
    );

    // Each key sits on the core the map names, of the primary the map names.
    let map = cc.cluster_map().unwrap().clone();
    let mut want: HashMap<(u16, u32), u64> = HashMap::new();
    for k in &keys {
        let r = map.route(k.as_bytes()).unwrap();
        *want.entry((r.member.main_port, r.core)).or_default() += 1;
    }
    for p in &primaries {
        let counts = core_keys(p);
        for (core, &n) in counts.iter().enumerate() {
            let expected = want.get(&(p.port, core as u32)).copied().unwrap_or(0);
            assert_eq!(n, expected, "node {} core {core}", p.port);
        }
    }
    assert_eq!(
        want.values().sum::<u64>(),
        keys.len() as u64,
        "every key routed to a primary"
    );
    // Each replica holds its primary's keys, core for core (writes were acknowledged by all).
    for g in &map.groups {
        let p = map.member(g.primary.unwrap()).unwrap();
        let primary = primaries.iter().find(|n| n.port == p.main_port).unwrap();
        for r in &g.replicas {
            let rm = map.member(*r).unwrap();
            let replica = replicas.iter().find(|n| n.port == rm.main_port).unwrap();
            assert_eq!(
                core_keys(replica),
                core_keys(primary),
                "replica of group {}",
                g.id
            );
        }
    }

    // Multi-key commands through the balancer are split per owner and merged.
    let tmp = ["tmp:a", "tmp:b", "tmp:c", "tmp:d", "tmp:e", "tmp:f"];
    for k in tmp {
        let _: () = redis::cmd("SET").arg(k).arg("1").query(&mut rc).unwrap();
    }
    let n: i64 = redis::cmd("EXISTS").arg(&tmp).query(&mut rc).unwrap();
    assert_eq!(n, 6);
    let n: i64 = redis::cmd("DEL")
        .arg(&tmp)
        .arg("tmp:missing")
        .query(&mut rc)
        .unwrap();
    assert_eq!(n, 6);
    assert_eq!(via_balancer.exists(&tmp).unwrap(), 0);

    // A stale epoch gets a redirect naming the current one; so does a key another group owns.
    let k = &keys[0];
    let route = map.route(k.as_bytes()).unwrap();
    let epoch = map.epoch as u32;
    assert_eq!(native_get(route.port, k.as_bytes(), epoch), Response::Ok);
    match native_get(route.port, k.as_bytes(), 1) {
        Response::Error {
            kind: ErrorKind::Redirect { epoch: e },
            ..
        } => assert_eq!(e, epoch),
        other => panic!("stale epoch answered {other:?}"),
    }
    let other = primaries
        .iter()
        .find(|p| p.port != route.member.main_port)
        .unwrap();
    match native_get(other.core_ports[0], k.as_bytes(), 0) {
        Response::Error {
            kind: ErrorKind::Redirect { .. },
            ..
        } => {}
        other => panic!("foreign key answered {other:?}"),
    }
    let mut s = other.connect();
    let reply = other.roundtrip(&mut s, &common::resp_command(&[b"GET", k.as_bytes()]));
    assert!(
        reply.starts_with(format!("-REDIRECT {epoch} ").as_bytes()),
        "{}",
        String::from_utf8_lossy(&reply)
    );

    // A primary that joins late gets the map and serves its share.
    let mut stale = Client::connect_cluster(&addr).unwrap();
    let mut stale_pipe = Client::connect_cluster(&addr).unwrap();
    let old_epoch = stale.cluster_map().unwrap().epoch as u32;
    let late = node(2, &addr, "primary");
    let mut cc = wait_for_map(&b, 4, None);
    let map = cc.cluster_map().unwrap().clone();
    let late_member = map
        .members
        .iter()
        .find(|m| m.main_port == late.port)
        .expect("late node in the map");
    let late_keys: Vec<String> = (0..200)
        .map(|i| format!("late:{i}"))
        .filter(|k| map.route(k.as_bytes()).unwrap().member.id == late_member.id)
        .collect();
    assert!(!late_keys.is_empty());
    // The node learns the map within a heartbeat or so; until then nothing is lost: writes
    // answered with a redirect are retried by the client.
    for k in &late_keys {
        cc.set(k, "x").unwrap();
        let _: () = redis::cmd("SET").arg(k).arg("x").query(&mut rc).unwrap();
    }
    for k in &late_keys {
        assert_eq!(cc.get(k).unwrap(), Some(b"x".to_vec()));
        let got: Option<Vec<u8>> = redis::cmd("GET").arg(k).query(&mut rc).unwrap();
        assert_eq!(got, Some(b"x".to_vec()));
    }
    // It holds its keys: the new ones and those streamed to it from their former owners.
    let moved = keys
        .iter()
        .filter(|k| map.route(k.as_bytes()).unwrap().member.id == late_member.id)
        .count();
    assert!(moved > 0, "some earlier keys moved to the late primary");
    assert_eq!(
        core_keys(&late).iter().sum::<u64>(),
        (late_keys.len() + moved) as u64,
        "the late primary holds its keys"
    );
    for k in &keys {
        let want = format!("v-{k}").into_bytes();
        assert_eq!(cc.get(k).unwrap(), Some(want), "{k} after the late join");
    }

    // A client still on the old map is redirected once the nodes know the new one, refreshes
    // its map and gets its answers, one request at a time and in a pipeline.
    let p0 = &primaries[0];
    let learned = wait_until(Duration::from_secs(10), || {
        matches!(
            native_get(p0.core_ports[0], b"any", old_epoch),
            Response::Error {
                kind: ErrorKind::Redirect { .. },
                ..
            }
        )
    });
    assert!(learned, "old primaries never learned the new map");
    assert_eq!(stale.get(&late_keys[0]).unwrap(), Some(b"x".to_vec()));
    assert!(stale.cluster_map().unwrap().epoch > u64::from(old_epoch));
    {
        let mut p = stale_pipe.pipeline();
        for k in &late_keys {
            p.get(k);
        }
        for r in p.execute() {
            assert_eq!(r.unwrap().into_value().unwrap(), Some(b"x".to_vec()));
        }
    }
    assert!(stale_pipe.cluster_map().unwrap().epoch > u64::from(old_epoch));
    let stats = parse_stats(&{
        let mut s = late.connect();
        late.roundtrip(&mut s, b"*1\r\n$5\r\nSTATS\r\n")
    });
    assert!(stats.contains_key("keys"));

    // FLUSH through the balancer reaches every primary.
    let _: () = redis::cmd("FLUSHALL").query(&mut rc).unwrap();
    assert_eq!(cc.get(&late_keys[0]).unwrap(), None);
    assert_eq!(cc.get(&keys[1]).unwrap(), None);

    // SIGTERM: the node tells the balancer it leaves (well before a heartbeat timeout would).
    let mut late = late;
    let late_port = late.port;
    assert!(late.terminate(Duration::from_secs(10)).is_some());
    let gone = wait_until(Duration::from_secs(10), || {
        cc.refresh_map()
            .is_ok_and(|m| m.members.iter().all(|m| m.main_port != late_port))
    });
    assert!(gone, "balancer log:\n{}", b.log_text());
    assert!(b.log_text().contains("member leaves"), "{}", b.log_text());
}

#[test]
fn a_node_without_a_balancer_keeps_retrying_with_a_clear_message() {
    let port = free_port();
    let n = Node::start(1, &["--balancer", &format!("127.0.0.1:{port}")]);
    let ok = wait_until(Duration::from_secs(10), || {
        n.log_text().contains("cannot reach the balancer")
    });
    assert!(ok, "log: {}", n.log_text());
    // It still serves alone meanwhile.
    let mut c = Client::connect(format!("127.0.0.1:{}", n.port)).unwrap();
    c.set("k", "v").unwrap();
    assert_eq!(c.get("k").unwrap(), Some(b"v".to_vec()));
}

#[test]
fn local_starts_a_whole_cluster_and_stops_it() {
    use std::io::BufRead;
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringcache"))
        .args([
            "local",
            "--port",
            &port.to_string(),
            "--primaries",
            "2",
            "--replicas",
            "1",
            "--memory",
            "32m",
            "--missed-heartbeats",
            "25",
        ])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ringcache local");
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    // The children's logs (they inherit this stderr), read until every writer has exited.
    let (log_tx, log_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut std::io::BufReader::new(stderr), &mut text);
        let _ = log_tx.send(text);
    });
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(l);
        }
    });
    let mut printed = String::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !printed.contains("Ctrl-C") {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => {
                printed.push_str(&l);
                printed.push('\n');
            }
            Err(_) => {
                let _ = child.kill();
                panic!("ringcache local did not come up; printed:\n{printed}");
            }
        }
    }
    assert!(
        printed.contains(&format!("redis-cli -p {port}")),
        "{printed}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_ringcache"))
        .args(["cli", "--port", &port.to_string(), "cluster"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text.contains("groups: 2") && text.contains("members: 4"),
        "{text}"
    );
    let mut c = Client::connect_cluster(format!("127.0.0.1:{port}")).unwrap();
    c.set("k", "v").unwrap();
    assert_eq!(c.get("k").unwrap(), Some(b"v".to_vec()));
    let map = c.cluster_map().unwrap();
    // Primaries start first, so every group gets its replica (not the first group two).
    assert!(
        map.groups.iter().all(|g| g.replicas.len() == 1),
        "{:?}",
        map.groups
    );
    let node_ports: Vec<u16> = map.members.iter().map(|m| m.main_port).collect();
    drop(c);
    // SAFETY: kill(2) on our own child.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let exited = wait_until(Duration::from_secs(15), || {
        matches!(child.try_wait(), Ok(Some(_)))
    });
    assert!(exited, "ringcache local did not stop on SIGTERM");
    let all_down = wait_until(Duration::from_secs(10), || {
        std::iter::once(port)
            .chain(node_ports.iter().copied())
            .all(|p| TcpStream::connect(("127.0.0.1", p)).is_err())
    });
    assert!(
        all_down,
        "children still listen after ringcache local stopped"
    );
    // Neither starting (replication streams racing the map) nor stopping (nodes leaving a
    // balancer that is gone) is worth a warning.
    let logs = log_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("a child of ringcache local still holds its stderr");
    assert!(
        !logs.contains("WARN") && !logs.contains("ERROR"),
        "warnings from a clean start and stop:\n{logs}"
    );
}

#[test]
fn map_changes_are_pushed_to_nodes_at_once() {
    let b = Balancer::start();
    let addr = b.addr();
    // Heartbeats every 5 s: a node that learns of a new member within 2 s was pushed the map.
    let slow = |role: &str| {
        Node::start(
            1,
            &[
                "--balancer",
                &addr,
                "--role",
                role,
                "--heartbeat-ms",
                "5000",
            ],
        )
    };
    let first = slow("primary");
    let c = wait_for_map(&b, 1, Some(0));
    let epoch = c.cluster_map().unwrap().epoch as u32;
    let started = std::time::Instant::now();
    let _second = slow("primary");
    let learned = wait_until(Duration::from_secs(2), || {
        matches!(
            native_get(first.core_ports[0], b"k", epoch),
            Response::Error {
                kind: ErrorKind::Redirect { .. },
                ..
            }
        )
    });
    assert!(
        learned,
        "the first node did not learn the new map within {:?}",
        started.elapsed()
    );
}
