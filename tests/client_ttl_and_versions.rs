//! Expiry and versions through the thin client and a stock Redis client against a real node
//! with two cores: TTLs that run out, EXPIRE / PERSIST / KEEPTTL, and compare-and-set by
//! version (GETV, SET ... IF-VERSION).

mod common;

use std::time::Duration;

use common::clients::{b, client, keys_on_each_core, rcmd, redis_con, rerr, DEADLINE};
use common::{wait_until, Node};
use ringcache_client::{SetOpts, SetOutcome, Ttl};

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
