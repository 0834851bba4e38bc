//! Multi-key commands and batches through the thin client against a real node with two cores:
//! MGET / MSET across cores (read back by a stock Redis client too) and pipelines that answer
//! in order, server errors included.

mod common;

use std::time::Duration;

use common::clients::{b, client, keys_on_each_core, rcmd, redis_con};
use common::Node;
use ringcache_client::{ErrorKind, Reply, SetOpts, SetOutcome, Ttl};

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
