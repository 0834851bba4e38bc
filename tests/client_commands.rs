//! Every command through the thin client (`ringcache-client`) and through a stock Redis client
//! (the `redis` crate) against a real node with two cores, plus pipelines, reconnecting after
//! a node restart, and the `ringcache cli` front end.

// The shared harness predates this lint; it is not ours to change here.
mod common;

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{wait_until, Node};
use ringcache_client::{
    Client, ClientConfig, ClientError, ErrorKind, Reply, SetOpts, SetOutcome, Ttl,
};

/// Generous bound for anything that should happen "soon" (expiry, restarts).
const DEADLINE: Duration = Duration::from_secs(10);

fn client(node: &Node) -> Client {
    Client::connect(format!("127.0.0.1:{}", node.port)).expect("thin client connects")
}

fn redis_con(node: &Node) -> redis::Connection {
    redis::Client::open(format!("redis://127.0.0.1:{}/", node.port))
        .expect("redis url")
        .get_connection()
        .expect("redis connects")
}

fn rcmd<T: redis::FromRedisValue>(con: &mut redis::Connection, args: &[&str]) -> T {
    let mut c = redis::cmd(args[0]);
    for a in &args[1..] {
        c.arg(*a);
    }
    c.query(con)
        .unwrap_or_else(|e| panic!("{args:?} failed: {e}"))
}

fn rerr(con: &mut redis::Connection, args: &[&str]) -> String {
    let mut c = redis::cmd(args[0]);
    for a in &args[1..] {
        c.arg(*a);
    }
    match c.query::<redis::Value>(con) {
        Ok(v) => panic!("{args:?} should fail, got {v:?}"),
        Err(e) => e.to_string(),
    }
}

/// `n` keys with `prefix` owned by each core of the client's node (2n keys, alternating).
fn keys_on_each_core(c: &Client, prefix: &str, n: usize) -> Vec<String> {
    let cores = c.cores();
    let mut per_core: Vec<Vec<String>> = vec![Vec::new(); cores as usize];
    let mut i = 0;
    while per_core.iter().any(|v| v.len() < n) {
        let k = format!("{prefix}{i}");
        let core = c.core_for_key(&k) as usize;
        if per_core[core].len() < n {
            per_core[core].push(k);
        }
        i += 1;
    }
    (0..n)
        .flat_map(|j| per_core.iter().map(move |v| v[j].clone()))
        .collect()
}

fn b(s: &str) -> Option<Vec<u8>> {
    Some(s.as_bytes().to_vec())
}

#[test]
fn topology_names_every_core_port() {
    let node = Node::start(2, &[]);
    let mut c = client(&node);
    assert_eq!(c.cores(), 2);
    let t = c.topology().unwrap();
    assert_eq!(t.main_port, node.port);
    let ports: Vec<u16> = t.cores.iter().map(|c| c.port).collect();
    assert_eq!(ports, node.core_ports);
    c.warm_up().unwrap();
    c.ping().unwrap();
    let mut r = redis_con(&node);
    assert_eq!(rcmd::<String>(&mut r, &["PING"]), "PONG");
    assert_eq!(rcmd::<String>(&mut r, &["PING", "hi"]), "hi");
}

#[test]
fn get_set_del_exists_touch() {
    let node = Node::start(2, &[]);
    let mut c = client(&node);
    let mut r = redis_con(&node);
    let keys = keys_on_each_core(&c, "k", 3);

    // Thin client writes, both read.
    for k in &keys {
        c.set(k, format!("v-{k}")).unwrap();
    }
    for k in &keys {
        assert_eq!(c.get(k).unwrap(), b(&format!("v-{k}")));
        assert_eq!(
            rcmd::<Option<String>>(&mut r, &["GET", k]),
            Some(format!("v-{k}"))
        );
    }
    assert_eq!(c.get("missing").unwrap(), None);
    assert_eq!(rcmd::<Option<String>>(&mut r, &["GET", "missing"]), None);

    // Counts across cores, a key named twice counts twice, a missing one not at all.
    let k: Vec<&str> = keys.iter().map(String::as_str).collect();
    assert_eq!(c.exists(&[k[0], k[1], k[1], "missing"]).unwrap(), 3);
    assert_eq!(
        rcmd::<i64>(&mut r, &["EXISTS", k[0], k[1], k[1], "missing"]),
        3
    );
    assert_eq!(c.touch(&[k[0], k[1], "missing"]).unwrap(), 2);
    assert_eq!(rcmd::<i64>(&mut r, &["TOUCH", k[2], k[3], "missing"]), 2);
    assert_eq!(c.del(&[k[0], k[1], "missing"]).unwrap(), 2);
    assert_eq!(c.del(&[k[0], k[1]]).unwrap(), 0);
    assert_eq!(rcmd::<i64>(&mut r, &["DEL", k[2], k[3], "missing"]), 2);
    assert_eq!(rcmd::<i64>(&mut r, &["EXISTS", k[2], k[3]]), 0);
    assert_eq!(c.exists(&keys).unwrap(), 2);

    // Redis writes, the thin client reads; binary and empty values survive.
    rcmd::<String>(&mut r, &["SET", "from-redis", "hello"]);
    assert_eq!(c.get("from-redis").unwrap(), b("hello"));
    c.set(b"bin\x00key", b"\x00\xff\r\n").unwrap();
    assert_eq!(
        c.get(b"bin\x00key").unwrap(),
        Some(b"\x00\xff\r\n".to_vec())
    );
    c.set("empty", "").unwrap();
    assert_eq!(c.get("empty").unwrap(), Some(Vec::new()));
    assert_eq!(
        rcmd::<Option<String>>(&mut r, &["GET", "empty"]),
        b("").map(|_| String::new())
    );

    // A 1 MiB value both ways; one over the 8 MiB limit fails before it is sent.
    let big = vec![b'x'; 1 << 20];
    c.set("big", &big).unwrap();
    assert_eq!(c.get("big").unwrap().unwrap().len(), big.len());
    let got: Vec<u8> = redis::cmd("GET").arg("big").query(&mut r).unwrap();
    assert_eq!(got, big);
    let huge = vec![b'x'; 9 << 20];
    assert!(matches!(
        c.set("huge", &huge).unwrap_err(),
        ClientError::TooLarge(_)
    ));
    assert_eq!(c.get("huge").unwrap(), None);
}

#[test]
fn ttl_expiry_persist_and_expire() {
    let node = Node::start(2, &[]);
    let mut c = client(&node);
    let mut r = redis_con(&node);
    let keys = keys_on_each_core(&c, "t", 1);

    // A key with a short TTL is readable, reports its TTL, then disappears by itself.
    for k in &keys {
        let out = c
            .set_with(k, "v", &SetOpts::new().ttl(Duration::from_millis(800)))
            .unwrap();
        assert_eq!(out, SetOutcome::Stored { version: None });
        match c.ttl(k).unwrap() {
            Ttl::Expires(d) => assert!(d <= Duration::from_millis(800) && !d.is_zero(), "{d:?}"),
            other => panic!("ttl of {k}: {other:?}"),
        }
        let v = c.get_versioned(k).unwrap().unwrap();
        assert!(v.ttl.is_some_and(|t| t <= Duration::from_millis(800)));
    }
    rcmd::<String>(&mut r, &["SET", "rt", "v", "PX", "800"]);
    let pttl: i64 = rcmd(&mut r, &["PTTL", "rt"]);
    assert!((1..=800).contains(&pttl), "PTTL {pttl}");
    assert_eq!(rcmd::<i64>(&mut r, &["TTL", "rt"]), 1);
    let gone = wait_until(DEADLINE, || {
        keys.iter().all(|k| c.get(k).unwrap().is_none())
            && rcmd::<Option<String>>(&mut r, &["GET", "rt"]).is_none()
    });
    assert!(
        gone,
        "keys with an 800 ms TTL still readable after {DEADLINE:?}"
    );
    assert_eq!(c.ttl(&keys[0]).unwrap(), Ttl::Missing);
    assert_eq!(rcmd::<i64>(&mut r, &["TTL", "rt"]), -2);
    assert_eq!(rcmd::<i64>(&mut r, &["PTTL", "rt"]), -2);

    // EXPIRE / PERSIST / TTL on a key without expiry.
    c.set("p", "v").unwrap();
    assert_eq!(c.ttl("p").unwrap(), Ttl::Persistent);
    assert_eq!(rcmd::<i64>(&mut r, &["TTL", "p"]), -1);
    assert!(!c.persist("p").unwrap(), "nothing to persist");
    assert!(c.expire("p", Duration::from_secs(100)).unwrap());
    assert!(matches!(c.ttl("p").unwrap(), Ttl::Expires(d) if d > Duration::from_secs(90)));
    let ttl: i64 = rcmd(&mut r, &["TTL", "p"]);
    assert!((91..=100).contains(&ttl), "TTL {ttl}");
    assert!(c.persist("p").unwrap());
    assert_eq!(c.ttl("p").unwrap(), Ttl::Persistent);
    assert_eq!(rcmd::<i64>(&mut r, &["EXPIRE", "p", "100"]), 1);
    assert_eq!(rcmd::<i64>(&mut r, &["PERSIST", "p"]), 1);
    assert_eq!(rcmd::<i64>(&mut r, &["PERSIST", "p"]), 0);
    assert_eq!(rcmd::<i64>(&mut r, &["EXPIRE", "missing", "100"]), 0);
    assert!(!c.expire("missing", Duration::from_secs(1)).unwrap());
    assert!(!c.persist("missing").unwrap());

    // PEXPIRE, then the key expires without being read in between.
    assert_eq!(rcmd::<i64>(&mut r, &["PEXPIRE", "p", "200"]), 1);
    assert!(wait_until(DEADLINE, || c.exists(&["p"]).unwrap() == 0));
    // EXPIRE 0 deletes at once.
    c.set("z", "v").unwrap();
    assert!(c.expire("z", Duration::ZERO).unwrap());
    assert_eq!(c.get("z").unwrap(), None);

    // KEEPTTL keeps the TTL; a plain SET clears it.
    c.set_with("kt", "1", &SetOpts::new().ttl(Duration::from_secs(100)))
        .unwrap();
    c.set_with("kt", "2", &SetOpts::new().keep_ttl()).unwrap();
    assert!(matches!(c.ttl("kt").unwrap(), Ttl::Expires(_)));
    c.set("kt", "3").unwrap();
    assert_eq!(c.ttl("kt").unwrap(), Ttl::Persistent);
    rcmd::<String>(&mut r, &["SET", "kt", "4", "EX", "100"]);
    rcmd::<String>(&mut r, &["SET", "kt", "5", "KEEPTTL"]);
    assert!(matches!(c.ttl("kt").unwrap(), Ttl::Expires(_)));
}

#[test]
fn nx_and_xx_conditions() {
    let node = Node::start(2, &[]);
    let mut c = client(&node);
    let mut r = redis_con(&node);
    let nx = SetOpts::new().nx();
    let xx = SetOpts::new().xx();
    assert_eq!(c.set_with("a", "1", &xx).unwrap(), SetOutcome::NotStored);
    assert_eq!(c.get("a").unwrap(), None);
    assert!(c.set_with("a", "1", &nx).unwrap().is_stored());
    assert_eq!(c.set_with("a", "2", &nx).unwrap(), SetOutcome::NotStored);
    assert_eq!(c.get("a").unwrap(), b("1"));
    assert!(c.set_with("a", "3", &xx).unwrap().is_stored());
    assert_eq!(c.get("a").unwrap(), b("3"));

    assert_eq!(
        rcmd::<Option<String>>(&mut r, &["SET", "b", "1", "XX"]),
        None
    );
    assert_eq!(
        rcmd::<Option<String>>(&mut r, &["SET", "b", "1", "NX"]),
        b("OK").map(|_| "OK".into())
    );
    assert_eq!(
        rcmd::<Option<String>>(&mut r, &["SET", "b", "2", "NX"]),
        None
    );
    assert_eq!(
        rcmd::<Option<String>>(&mut r, &["SET", "b", "3", "XX", "EX", "100"]),
        Some("OK".into())
    );
    assert_eq!(c.get("b").unwrap(), b("3"));
    assert!(rerr(&mut r, &["SET", "b", "1", "NX", "XX"]).contains("syntax"));
    assert!(matches!(
        c.set_with("b", "1", &SetOpts::new().nx().xx()).unwrap_err(),
        ClientError::InvalidArgument(_)
    ));
}

#[test]
fn compare_and_set_by_version() {
    let node = Node::start(2, &[]);
    let mut c = client(&node);
    let mut r = redis_con(&node);

    c.set("cas", "1").unwrap();
    let v1 = c.get_versioned("cas").unwrap().unwrap();
    assert_eq!(v1.value, b"1");
    // The right version writes and answers the new one, which is newer.
    let out = c
        .set_with(
            "cas",
            "2",
            &SetOpts::new().if_version(v1.version).get_version(),
        )
        .unwrap();
    let SetOutcome::Stored { version: Some(v2) } = out else {
        panic!("CAS with the current version: {out:?}");
    };
    assert!(v2 > v1.version);
    assert_eq!(c.get_versioned("cas").unwrap().unwrap().version, v2);
    // A stale version does not write and names the current one.
    let out = c
        .set_with("cas", "3", &SetOpts::new().if_version(v1.version))
        .unwrap();
    assert_eq!(out, SetOutcome::VersionMismatch { current: Some(v2) });
    assert_eq!(c.get("cas").unwrap(), b("2"));
    // On a missing key any version mismatches.
    let out = c
        .set_with("nokey", "x", &SetOpts::new().if_version(5))
        .unwrap();
    assert!(matches!(out, SetOutcome::VersionMismatch { .. }), "{out:?}");
    assert_eq!(c.get("nokey").unwrap(), None);

    // The same through RESP: GETV answers [value, version]; SET ... IF-VERSION v.
    let (val, ver): (String, u64) = rcmd(&mut r, &["GETV", "cas"]);
    assert_eq!((val.as_str(), ver), ("2", v2));
    assert_eq!(
        rcmd::<Option<(String, u64)>>(&mut r, &["GETV", "nokey"]),
        None
    );
    let stale = v1.version.to_string();
    let e = rerr(&mut r, &["SET", "cas", "r", "IF-VERSION", &stale]);
    assert!(e.contains("VERSIONMISMATCH"), "{e}");
    let cur = v2.to_string();
    let v3: u64 = rcmd(
        &mut r,
        &["SET", "cas", "r", "IF-VERSION", &cur, "GETVERSION"],
    );
    assert!(v3 > v2);
    let latest = c.get_versioned("cas").unwrap().unwrap();
    assert_eq!((latest.value.as_slice(), latest.version), (&b"r"[..], v3));
    assert_eq!(
        rcmd::<String>(&mut r, &["SET", "cas", "s", "IF-VERSION", &v3.to_string()]),
        "OK"
    );
}

#[test]
fn prefix_and_tag_invalidation() {
    let node = Node::start(2, &[]);
    let mut c = client(&node);
    let mut r = redis_con(&node);
    let users = keys_on_each_core(&c, "user:", 4);
    let others = keys_on_each_core(&c, "other:", 2);
    for k in users.iter().chain(&others) {
        c.set(k, "v").unwrap();
    }
    c.invalidate_prefix("user:").unwrap();
    assert_eq!(c.exists(&users).unwrap(), 0);
    assert_eq!(c.exists(&others).unwrap(), others.len() as u64);
    // Through RESP.
    for k in &users {
        c.set(k, "v").unwrap();
    }
    assert_eq!(
        rcmd::<String>(&mut r, &["INVALIDATE", "PREFIX", "user:"]),
        "OK"
    );
    assert_eq!(c.exists(&users).unwrap(), 0);
    assert_eq!(c.exists(&others).unwrap(), others.len() as u64);

    // Tags: keys on both cores tagged t1, some also t2.
    let tagged = keys_on_each_core(&c, "tagged:", 3);
    for (i, k) in tagged.iter().enumerate() {
        let mut o = SetOpts::new().tag("t1");
        if i % 2 == 0 {
            o = o.tag("t2");
        }
        c.set_with(k, "v", &o).unwrap();
    }
    c.invalidate_tag("t2").unwrap();
    for (i, k) in tagged.iter().enumerate() {
        assert_eq!(c.get(k).unwrap().is_some(), i % 2 == 1, "{k}");
    }
    // RESP: SET ... TAG t, INVALIDATE TAG t.
    rcmd::<String>(&mut r, &["SET", "rtag", "v", "TAG", "t1", "TAG", "t3"]);
    assert_eq!(rcmd::<String>(&mut r, &["INVALIDATE", "TAG", "t1"]), "OK");
    assert_eq!(c.exists(&tagged).unwrap(), 0);
    assert_eq!(c.get("rtag").unwrap(), None);
    assert_eq!(c.exists(&others).unwrap(), others.len() as u64);
    // A key rewritten without its tag is no longer dropped by it.
    c.set_with("retag", "1", &SetOpts::new().tag("t4")).unwrap();
    c.set("retag", "2").unwrap();
    c.invalidate_tag("t4").unwrap();
    assert_eq!(c.get("retag").unwrap(), b("2"));
}

#[test]
fn mget_and_mset_across_cores() {
    let node = Node::start(2, &[]);
    let mut c = client(&node);
    let mut r = redis_con(&node);
    let keys = keys_on_each_core(&c, "m", 5);
    let cores: std::collections::BTreeSet<u32> = keys.iter().map(|k| c.core_for_key(k)).collect();
    assert_eq!(cores.len(), 2, "keys must span both cores");

    let pairs: Vec<(String, String)> = keys.iter().map(|k| (k.clone(), format!("v{k}"))).collect();
    c.mset(&pairs).unwrap();
    let mut ask: Vec<&str> = keys.iter().map(String::as_str).collect();
    ask.insert(1, "missing");
    ask.push(keys[0].as_str());
    let got = c.mget(&ask).unwrap();
    let want: Vec<Option<Vec<u8>>> = ask
        .iter()
        .map(|k| (*k != "missing").then(|| format!("v{k}").into_bytes()))
        .collect();
    assert_eq!(got, want);
    // Redis reads what the thin client wrote, in order.
    let mut args = vec!["MGET"];
    args.extend(&ask);
    let rgot: Vec<Option<String>> = rcmd(&mut r, &args);
    let rwant: Vec<Option<String>> = want
        .iter()
        .map(|v| v.as_ref().map(|v| String::from_utf8(v.clone()).unwrap()))
        .collect();
    assert_eq!(rgot, rwant);
    // Redis writes across cores, the thin client reads.
    let mut args = vec!["MSET".to_string()];
    for k in &keys {
        args.push(k.clone());
        args.push(format!("r{k}"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_eq!(rcmd::<String>(&mut r, &args), "OK");
    let versioned = c.mget_versioned(&keys).unwrap();
    for (k, v) in keys.iter().zip(&versioned) {
        let v = v.as_ref().unwrap();
        assert_eq!(v.value, format!("r{k}").into_bytes());
        assert!(v.version > 0 && v.ttl.is_none());
    }
    // MSET clears TTLs; empty lists are no-ops.
    c.set_with(&keys[0], "x", &SetOpts::new().ttl(Duration::from_secs(100)))
        .unwrap();
    c.mset(&[(&keys[0], "y")]).unwrap();
    assert_eq!(c.ttl(&keys[0]).unwrap(), Ttl::Persistent);
    assert_eq!(c.mget::<&str>(&[]).unwrap(), Vec::<Option<Vec<u8>>>::new());
    c.mset::<&str, &str>(&[]).unwrap();
}

#[test]
fn incr_decr_and_incrby() {
    let node = Node::start(2, &[]);
    let mut c = client(&node);
    let mut r = redis_con(&node);
    assert_eq!(c.incr("n").unwrap(), 1);
    assert_eq!(c.incr_by("n", 10).unwrap(), 11);
    assert_eq!(c.decr("n").unwrap(), 10);
    assert_eq!(c.incr_by("n", -15).unwrap(), -5);
    assert_eq!(rcmd::<i64>(&mut r, &["INCR", "n"]), -4);
    assert_eq!(rcmd::<i64>(&mut r, &["DECR", "n"]), -5);
    assert_eq!(rcmd::<i64>(&mut r, &["INCRBY", "n", "100"]), 95);
    assert_eq!(rcmd::<i64>(&mut r, &["DECRBY", "n", "5"]), 90);
    assert_eq!(c.get("n").unwrap(), b("90"));
    assert_eq!(rcmd::<i64>(&mut r, &["INCRBY", "fresh", "7"]), 7);
    // INCR on a value that is not an integer, or that would overflow, fails without changing it.
    c.set("s", "abc").unwrap();
    let e = c.incr("s").unwrap_err();
    assert_eq!(e.server_kind(), Some(ErrorKind::NotInteger), "{e}");
    assert!(rerr(&mut r, &["INCR", "s"]).contains("not an integer"));
    c.set("max", i64::MAX.to_string()).unwrap();
    assert_eq!(
        c.incr("max").unwrap_err().server_kind(),
        Some(ErrorKind::NotInteger)
    );
    assert_eq!(c.get("max").unwrap(), b(&i64::MAX.to_string()));
    // The client still works after a server error on the same connection.
    assert_eq!(c.incr("n").unwrap(), 91);
}

#[test]
fn ping_flush_and_stats() {
    let node = Node::start(2, &[]);
    let mut c = client(&node);
    let mut r = redis_con(&node);
    c.ping().unwrap();

    // Keys written through the thin client land on the core that owns them.
    let keys: Vec<String> = (0..200).map(|i| format!("stat{i}")).collect();
    for k in &keys {
        c.set(k, "v").unwrap();
    }
    let want: Vec<u64> = (0..2)
        .map(|core| keys.iter().filter(|k| c.core_for_key(k) == core).count() as u64)
        .collect();
    assert!(want.iter().all(|&n| n > 0));
    let stats = c.stats().unwrap();
    let stat = |name: &str| {
        stats
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("no {name} in {stats:?}"))
    };
    assert_eq!(stat("cores"), 2);
    assert_eq!(stat("keys"), 200);
    assert_eq!(stat("core0.keys"), want[0]);
    assert_eq!(stat("core1.keys"), want[1]);
    assert!(stat("sets") >= 200);
    // INFO through RESP says the same.
    let info: String = rcmd(&mut r, &["INFO"]);
    for (core, n) in want.iter().enumerate() {
        let line = format!("core{core}.keys:{n}");
        assert!(
            info.lines().any(|l| l == line),
            "{line} not in INFO:\n{info}"
        );
    }
    // Hits and misses are counted.
    let hits = stat("hits");
    c.get(&keys[0]).unwrap();
    c.get("missing").unwrap();
    let stats = c.stats().unwrap();
    let get = |name: &str| stats.iter().find(|(n, _)| n == name).unwrap().1;
    assert_eq!(get("hits"), hits + 1);

    c.flush().unwrap();
    assert_eq!(c.exists(&keys).unwrap(), 0);
    let stats = c.stats().unwrap();
    assert_eq!(stats.iter().find(|(n, _)| n == "keys").unwrap().1, 0);
    c.set("after", "v").unwrap();
    assert_eq!(rcmd::<String>(&mut r, &["FLUSHALL"]), "OK");
    assert_eq!(c.get("after").unwrap(), None);
}

#[test]
fn pipelined_batches_answer_in_order() {
    let node = Node::start(2, &[]);
    let mut c = client(&node);
    let keys = keys_on_each_core(&c, "p", 50);
    let vals: Vec<String> = keys.iter().map(|k| format!("val-{k}")).collect();
    let ttl = SetOpts::new().ttl(Duration::from_secs(60)).get_version();
    let nx = SetOpts::new().nx();
    let pairs = [("pm1", "1"), ("pm2", "2"), ("pm3", "3")];
    let mget_keys = ["pm1", "missing", "pm3", "pm2"];

    let mut p = c.pipeline();
    for (k, v) in keys.iter().zip(&vals) {
        p.set(k, v);
    }
    for k in &keys {
        p.get(k);
    }
    p.set("text", "abc")
        .incr_by("text", 1) // a server error in the middle of the batch
        .incr_by("ctr", 2)
        .incr_by("ctr", 3)
        .set_with("ttl", "v", &ttl)
        .ttl("ttl")
        .set_with(&keys[0], "no", &nx)
        .mset(&pairs)
        .mget(&mget_keys)
        .del(&keys[..4])
        .exists(&keys[..6])
        .ping();
    assert_eq!(p.len(), 2 * keys.len() + 12);
    let res = p.execute();
    let n = keys.len();
    assert_eq!(res.len(), 2 * n + 12);
    for r in &res[..n] {
        assert_eq!(r.as_ref().unwrap(), &Reply::Ok);
    }
    for (r, v) in res[n..2 * n].iter().zip(&vals) {
        assert_eq!(r.clone().unwrap().into_value().unwrap(), b(v));
    }
    let rest = &res[2 * n..];
    assert_eq!(rest[0].as_ref().unwrap(), &Reply::Ok);
    assert_eq!(
        rest[1].as_ref().unwrap_err().server_kind(),
        Some(ErrorKind::NotInteger)
    );
    assert_eq!(rest[2].as_ref().unwrap(), &Reply::Int(2));
    assert_eq!(rest[3].as_ref().unwrap(), &Reply::Int(5));
    assert!(matches!(
        SetOutcome::from_reply(rest[4].clone()).unwrap(),
        SetOutcome::Stored { version: Some(_) }
    ));
    let ms = rest[5].clone().unwrap().into_int().unwrap();
    assert!((1..=60_000).contains(&ms), "PTTL {ms}");
    assert_eq!(
        SetOutcome::from_reply(rest[6].clone()).unwrap(),
        SetOutcome::NotStored
    );
    assert_eq!(rest[7].as_ref().unwrap(), &Reply::Ok);
    let vs: Vec<Option<Vec<u8>>> = rest[8]
        .clone()
        .unwrap()
        .into_values()
        .unwrap()
        .into_iter()
        .map(|v| v.map(|v| v.value))
        .collect();
    assert_eq!(vs, vec![b("1"), None, b("3"), b("2")]);
    assert_eq!(rest[9].as_ref().unwrap(), &Reply::Int(4));
    assert_eq!(rest[10].as_ref().unwrap(), &Reply::Int(2));
    assert_eq!(rest[11].as_ref().unwrap(), &Reply::Pong);
    // Empty pipelines do nothing.
    assert!(c.pipeline().execute().is_empty());
    // A big batch (hundreds of commands, megabytes each way) completes.
    let big = vec![b'z'; 16 * 1024];
    let mut p = c.pipeline();
    for k in &keys {
        for _ in 0..4 {
            p.set(k, &big).get(k);
        }
    }
    let res = p.execute();
    assert_eq!(res.len(), keys.len() * 8);
    assert!(res.iter().all(|r| r.is_ok()));
}

#[test]
fn password_protected_node() {
    let node = Node::start(2, &["--password", "s3cret"]);
    let addr = format!("127.0.0.1:{}", node.port);
    let e = Client::connect(addr.as_str()).unwrap_err();
    assert_eq!(e.server_kind(), Some(ErrorKind::NoAuth), "{e}");
    let e =
        Client::connect_with(addr.as_str(), ClientConfig::default().password("wrong")).unwrap_err();
    assert_eq!(e.server_kind(), Some(ErrorKind::WrongPass), "{e}");
    let mut c =
        Client::connect_with(addr.as_str(), ClientConfig::default().password("s3cret")).unwrap();
    // Every core connection authenticates.
    for k in keys_on_each_core(&c, "a", 2) {
        c.set(&k, "v").unwrap();
        assert_eq!(c.get(&k).unwrap(), b("v"));
    }
    let out = cli(node.port, &["get", "x"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--password"), "{}", stderr(&out));
    let out = cli(node.port, &["--password", "s3cret", "ping"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "PONG\n");
}

/// A node started on fixed ports (so it can be restarted on the same ones), killed on drop.
struct FixedNode {
    child: Child,
    ports: [u16; 3],
}

impl FixedNode {
    fn start(port: u16, base: u16) -> FixedNode {
        let ports = [port, base, base + 1];
        let log = std::env::temp_dir().join(format!("ringcache-client-test-{port}.log"));
        let mut tries = 0;
        loop {
            let stderr = std::fs::File::create(&log).expect("create node log");
            let child = Command::new(env!("CARGO_BIN_EXE_ringcache"))
                .args(["node", "--cores", "2", "--memory", "64m"])
                .args(["--port", &port.to_string()])
                .args(["--core-port-base", &base.to_string()])
                .env("RUST_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::from(stderr))
                .spawn()
                .expect("start ringcache");
            let mut node = FixedNode { child, ports };
            let up = wait_until(DEADLINE, || {
                matches!(node.child.try_wait(), Ok(Some(_)))
                    || ports
                        .iter()
                        .all(|p| TcpStream::connect(("127.0.0.1", *p)).is_ok())
            });
            if up && matches!(node.child.try_wait(), Ok(None)) {
                let _ = std::fs::remove_file(&log);
                return node;
            }
            // Exited (a port still held by the previous run): try again shortly.
            tries += 1;
            assert!(
                tries < 20,
                "node did not start on ports {ports:?}: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Kills the node and waits until its ports refuse connections (io_uring may keep the
    /// sockets of a dead process open for a moment).
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let closed = wait_until(DEADLINE, || {
            self.ports
                .iter()
                .all(|p| TcpStream::connect(("127.0.0.1", *p)).is_err())
        });
        assert!(
            closed,
            "ports {:?} still accept after the node was killed",
            self.ports
        );
    }
}

impl Drop for FixedNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free main port and two consecutive free core ports.
fn fixed_ports() -> (u16, u16) {
    loop {
        let port = common::free_port();
        let base = common::free_port();
        if base < 65000
            && base + 1 != port
            && base != port
            && std::net::TcpListener::bind(("127.0.0.1", base + 1)).is_ok()
        {
            return (port, base);
        }
    }
}

/// A client whose node went away reports clear errors, then works again once the node is back
/// on the same ports.
#[test]
fn works_again_after_the_node_restarts() {
    let (port, base) = fixed_ports();
    let mut node = FixedNode::start(port, base);
    let cfg = ClientConfig::default()
        .idle_check(Duration::from_secs(3600))
        .timeout(Duration::from_secs(2));
    let mut c = Client::connect_with(format!("127.0.0.1:{port}"), cfg).unwrap();
    let keys = keys_on_each_core(&c, "r", 1);
    for k in &keys {
        c.set(k, "before").unwrap();
    }
    node.kill();
    // Every connection (main port and both cores) finds the node gone: the request on the
    // dead connection fails, the retry on a fresh one is refused.
    for k in &keys {
        let e = c.get(k).unwrap_err();
        assert!(matches!(e, ClientError::Connect { .. }), "{e}");
        assert!(e.to_string().contains("cannot reach ringcache"), "{e}");
    }
    assert!(matches!(c.ping().unwrap_err(), ClientError::Connect { .. }));
    assert!(c.incr("n").is_err());

    let _node = FixedNode::start(port, base);
    c.ping().unwrap();
    for k in &keys {
        assert_eq!(c.get(k).unwrap(), None, "the restarted node is empty");
        c.set(k, "after").unwrap();
        assert_eq!(c.get(k).unwrap(), b("after"));
    }
    assert_eq!(c.incr("n").unwrap(), 1);
    c.stats().unwrap();
}

/// The node restarts while the client still holds its (now dead) connections: the next call
/// on each finds it broken, an idempotent one is sent again on a fresh connection, a
/// non-idempotent one reports the error and the call after it works.
#[test]
fn reconnects_after_the_node_restarts_under_open_connections() {
    let (port, base) = fixed_ports();
    let mut node = FixedNode::start(port, base);
    // Never probe idle connections first: the broken connection is found by the request.
    let cfg = ClientConfig::default()
        .idle_check(Duration::from_secs(3600))
        .timeout(Duration::from_secs(2));
    let mut c = Client::connect_with(format!("127.0.0.1:{port}"), cfg).unwrap();
    let keys = keys_on_each_core(&c, "r", 1);
    for k in &keys {
        c.set(k, "before").unwrap();
    }
    let n_key = keys[0].clone();
    c.incr(&n_key).unwrap_err(); // "before" is not an integer; the connection stays open

    node.kill();
    let _node = FixedNode::start(port, base);
    // The old connection to core 1 is dead: an idempotent GET is retried on a fresh one and
    // succeeds (the restarted node is empty).
    assert_eq!(c.get(&keys[1]).unwrap(), None);
    // A non-idempotent INCR on core 0's dead connection is not resent: its error is
    // reported, and the next call works on a new connection.
    let e = c.incr(&n_key).unwrap_err();
    assert!(e.is_connection_broken(), "{e}");
    assert_eq!(c.incr(&n_key).unwrap(), 1);
    c.ping().unwrap();
    for k in &keys {
        c.set(k, "after").unwrap();
        assert_eq!(c.get(k).unwrap(), b("after"));
    }
}

fn cli(port: u16, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ringcache"))
        .arg("cli")
        .args(["--port", &port.to_string()])
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run ringcache cli")
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn cli_prints_like_redis_cli() {
    let node = Node::start(2, &[]);
    let p = node.port;
    let ok = |args: &[&str]| {
        let o = cli(p, args);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        stdout(&o)
    };
    assert_eq!(ok(&["ping"]), "PONG\n");
    assert_eq!(ok(&["set", "k", "v"]), "OK\n");
    assert_eq!(ok(&["get", "k"]), "v\n");
    assert_eq!(ok(&["get", "nope"]), "(nil)\n");
    assert_eq!(ok(&["set", "k", "w", "--nx"]), "(nil)\n");
    assert_eq!(ok(&["set", "k", "w", "--xx", "--ttl", "100"]), "OK\n");
    assert_eq!(ok(&["ttl", "k"]), "(integer) 100\n");
    assert_eq!(ok(&["persist", "k"]), "(integer) 1\n");
    assert_eq!(ok(&["ttl", "k"]), "(integer) -1\n");
    assert_eq!(ok(&["ttl", "nope"]), "(integer) -2\n");
    assert_eq!(ok(&["expire", "k", "50"]), "(integer) 1\n");
    assert_eq!(ok(&["expire", "nope", "50"]), "(integer) 0\n");
    assert_eq!(ok(&["incr", "n"]), "(integer) 1\n");
    assert_eq!(ok(&["incr", "n", "--by", "-11"]), "(integer) -10\n");
    assert_eq!(ok(&["decr", "n", "--by", "5"]), "(integer) -15\n");
    assert_eq!(ok(&["mset", "a", "1", "b", "2"]), "OK\n");
    assert_eq!(ok(&["mget", "a", "x", "b"]), "1) 1\n2) (nil)\n3) 2\n");
    assert_eq!(ok(&["exists", "a", "b", "x"]), "(integer) 2\n");
    assert_eq!(ok(&["touch", "a", "x"]), "(integer) 1\n");
    assert_eq!(ok(&["del", "a", "b", "x"]), "(integer) 2\n");

    // getv, then compare-and-set with the version it printed.
    let out = ok(&["getv", "k"]);
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("w"));
    let version = lines
        .next()
        .and_then(|l| l.strip_prefix("(version) "))
        .unwrap_or_else(|| panic!("getv output: {out}"))
        .to_string();
    let out = ok(&["set", "k", "cas", "--if-version", &version, "--get-version"]);
    let newer = out.trim().strip_prefix("(version) ").unwrap().to_string();
    assert!(newer.parse::<u64>().unwrap() > version.parse::<u64>().unwrap());
    assert_eq!(
        ok(&["set", "k", "late", "--if-version", &version]),
        format!("(version mismatch) current version is {newer}\n")
    );
    assert_eq!(ok(&["get", "k"]), "cas\n");

    assert_eq!(
        ok(&["set", "tagged", "v", "--tag", "t", "--ttl-ms", "100000"]),
        "OK\n"
    );
    assert_eq!(ok(&["invalidate", "tag", "t"]), "OK\n");
    assert_eq!(ok(&["get", "tagged"]), "(nil)\n");
    assert_eq!(ok(&["set", "pre:1", "v"]), "OK\n");
    assert_eq!(ok(&["invalidate", "prefix", "pre:"]), "OK\n");
    assert_eq!(ok(&["get", "pre:1"]), "(nil)\n");

    let stats = ok(&["stats"]);
    assert!(stats.lines().any(|l| l == "cores:2"), "{stats}");
    assert!(
        stats.lines().any(|l| l.starts_with("core1.keys:")),
        "{stats}"
    );
    let topo = ok(&["topology"]);
    assert!(topo.contains(&format!("main_port: {p}")), "{topo}");
    for (i, cp) in node.core_ports.iter().enumerate() {
        assert!(topo.contains(&format!("core {i}: port {cp}")), "{topo}");
    }
    assert_eq!(ok(&["flush"]), "OK\n");
    assert_eq!(ok(&["get", "k"]), "(nil)\n");

    // Server errors and bad arguments exit non-zero with a message.
    ok(&["set", "s", "abc"]);
    let o = cli(p, &["incr", "s"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("not an integer"), "{}", stderr(&o));
    let o = cli(p, &["mset", "a", "1", "b"]);
    assert!(!o.status.success());
    let o = cli(p, &["set", "k", "v", "--nx", "--xx"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--xx"), "{}", stderr(&o));
}

#[test]
fn cli_help_explains_every_subcommand() {
    let help = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_ringcache"))
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "{args:?}");
        stdout(&o)
    };
    let top = help(&["cli", "--help"]);
    for sub in [
        "get",
        "getv",
        "set",
        "del",
        "exists",
        "touch",
        "expire",
        "ttl",
        "persist",
        "incr",
        "decr",
        "mget",
        "mset",
        "ping",
        "flush",
        "invalidate",
        "stats",
        "topology",
    ] {
        assert!(
            top.contains(&format!("  {sub} ")),
            "{sub} missing in:\n{top}"
        );
        let h = help(&["cli", sub, "--help"]);
        assert!(h.contains("--port"), "{sub} --help:\n{h}");
    }
    let set = help(&["cli", "set", "--help"]);
    for flag in ["--ttl", "--ttl-ms", "--nx", "--xx", "--if-version", "--tag"] {
        assert!(set.contains(flag), "{flag} missing in set --help:\n{set}");
    }
}

#[test]
fn cli_says_when_the_node_cannot_be_reached() {
    let port = common::free_port();
    let o = cli(port, &["get", "k"]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains(&format!(
            "cannot reach ringcache at 127.0.0.1:{port}: connection refused — is `ringcache node` running?"
        )),
        "stderr: {err}"
    );
    assert!(stdout(&o).is_empty());
    // The thin client reports the same error.
    let e = Client::connect(format!("127.0.0.1:{port}")).unwrap_err();
    assert!(matches!(e, ClientError::Connect { .. }), "{e}");
}
