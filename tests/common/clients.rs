//! Helpers for the thin-client tests (client_commands, client_ttl_and_versions,
//! client_multi_key, client_reconnect, client_cli): a thin client and a stock Redis connection
//! to a node, Redis commands by their string arguments, and keys spread over every core.
#![allow(dead_code)]

use std::time::Duration;

use ringcache_client::Client;

use super::Node;

/// Generous bound for anything that should happen "soon" (expiry, restarts).
pub const DEADLINE: Duration = Duration::from_secs(10);

pub fn client(node: &Node) -> Client {
    Client::connect(format!("127.0.0.1:{}", node.port)).expect("thin client connects")
}

pub fn redis_con(node: &Node) -> redis::Connection {
    redis::Client::open(format!("redis://127.0.0.1:{}/", node.port))
        .expect("redis url")
        .get_connection()
        .expect("redis connects")
}

pub fn rcmd<T: redis::FromRedisValue>(con: &mut redis::Connection, args: &[&str]) -> T {
    let mut c = redis::cmd(args[0]);
    for a in &args[1..] {
        c.arg(*a);
    }
    c.query(con)
        .unwrap_or_else(|e| panic!("{args:?} failed: {e}"))
}

pub fn rerr(con: &mut redis::Connection, args: &[&str]) -> String {
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
pub fn keys_on_each_core(c: &Client, prefix: &str, n: usize) -> Vec<String> {
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

pub fn b(s: &str) -> Option<Vec<u8>> {
    Some(s.as_bytes().to_vec())
}
