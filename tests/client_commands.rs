//! The single-key commands through the thin client (`ringcache-client`) and through a stock
//! Redis client (the `redis` crate) against a real node with two cores: topology, GET / SET /
//! DEL / EXISTS / TOUCH, NX / XX, INCR / DECR, prefix and tag invalidation, PING, FLUSH, STATS.

mod common;

use common::clients::{b, client, keys_on_each_core, rcmd, redis_con, rerr};
use common::Node;
use ringcache_client::{ClientError, ErrorKind, SetOpts, SetOutcome};

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
