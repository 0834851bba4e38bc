//! The memory budget holds under a write load several times larger than it, with every eviction
//! policy: `bytes_used` never passes `budget` (in total and per core), entries are evicted,
//! writes never fail, recent keys read back, and the process's resident memory stays near the
//! budget instead of growing with the data written.

// `common::read_line` (shared, not ours to change) trips this lint.
mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;

use common::{parse_stats, resp_command, Node};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const MIB: u64 = 1 << 20;
/// The node's budget.
const BUDGET: u64 = 8 * MIB;
/// Bytes of values written per pass: eight times the budget.
const LOAD: u64 = 64 * MIB;
/// SETs sent before their replies are read.
const PIPELINE: usize = 256;

fn key(pass: &str, i: usize) -> Vec<u8> {
    format!("{pass}:{i:08}").into_bytes()
}

/// A value that names its key, so a read can tell it got the right one.
fn value(pass: &str, i: usize, len: usize) -> Vec<u8> {
    let tag = format!("<{pass}:{i:08}>");
    tag.as_bytes().iter().copied().cycle().take(len).collect()
}

/// Reads `n` replies of `+OK\r\n`, failing the test on anything else (an error reply means a
/// write was refused, which the budget must never cause).
fn read_oks(conn: &mut TcpStream, n: usize) {
    let want = n * 5;
    let mut got = Vec::with_capacity(want);
    let mut buf = [0u8; 8192];
    while got.len() < want {
        match conn.read(&mut buf) {
            Ok(0) => panic!("connection closed after {} reply bytes", got.len()),
            Ok(k) => {
                got.extend_from_slice(&buf[..k]);
                if let Some(bad) = got.chunks(5).find(|c| c.len() == 5 && *c != b"+OK\r\n") {
                    let at = got.len().saturating_sub(200);
                    panic!(
                        "a SET was not answered +OK: {:?} (last bytes: {:?})",
                        String::from_utf8_lossy(bad),
                        String::from_utf8_lossy(&got[at..])
                    );
                }
            }
            Err(e) => panic!("reading SET replies ({} of {want} bytes): {e}", got.len()),
        }
    }
    assert_eq!(got.len(), want, "more replies than requests");
}

/// Writes `count` keys of pass `pass` with values of `size(i)` bytes, pipelined; returns the
/// largest RSS seen while writing.
fn write_pass(node: &Node, pass: &str, count: usize, mut size: impl FnMut(usize) -> usize) -> u64 {
    let mut conn = node.connect();
    let mut max_rss = node.rss_bytes();
    let mut batch = Vec::new();
    let mut i = 0;
    while i < count {
        batch.clear();
        let n = PIPELINE.min(count - i);
        for j in i..i + n {
            batch.extend_from_slice(&resp_command(&[
                b"SET",
                &key(pass, j),
                &value(pass, j, size(j)),
            ]));
        }
        conn.write_all(&batch).expect("write SETs");
        read_oks(&mut conn, n);
        i += n;
        max_rss = max_rss.max(node.rss_bytes());
    }
    max_rss.max(node.rss_bytes())
}

/// Checks the budget in STATS and INFO: in total and per core; returns the STATS fields.
fn check_budget(node: &Node, what: &str) -> HashMap<String, u64> {
    let mut c = node.connect();
    let stats = parse_stats(&node.roundtrip(&mut c, b"*1\r\n$5\r\nSTATS\r\n"));
    let info = parse_stats(&node.roundtrip(&mut c, b"*1\r\n$4\r\nINFO\r\n"));
    for (name, s) in [("STATS", &stats), ("INFO", &info)] {
        let field = |f: &str| {
            *s.get(f)
                .unwrap_or_else(|| panic!("{what}: {name} lacks {f}: {s:?}"))
        };
        let (used, budget) = (field("bytes_used"), field("budget"));
        assert_eq!(budget, BUDGET, "{what}: {name} budget");
        assert!(
            used <= budget,
            "{what}: {name} bytes_used {used} over budget {budget}"
        );
        assert!(
            used > budget / 2,
            "{what}: {name} bytes_used {used}: the store barely filled"
        );
        let cores = field("cores");
        let mut sum = 0;
        for core in 0..cores {
            let (u, b) = (
                field(&format!("core{core}.bytes_used")),
                field(&format!("core{core}.budget")),
            );
            assert_eq!(b, BUDGET / cores, "{what}: {name} core{core}.budget");
            assert!(u <= b, "{what}: {name} core{core}.bytes_used {u} over {b}");
            sum += u;
        }
        assert_eq!(
            sum, used,
            "{what}: {name} per-core bytes_used do not add up"
        );
    }
    stats
}

/// How many of `keys` read back with their exact values (pipelined GETs).
fn readable(node: &Node, keys: &[(Vec<u8>, Vec<u8>)]) -> usize {
    let mut c = node.connect();
    let mut req = Vec::new();
    for (k, _) in keys {
        req.extend_from_slice(&resp_command(&[b"GET", k]));
    }
    c.write_all(&req).expect("write GETs");
    keys.iter()
        .filter(|(_, v)| {
            let reply = common::read_reply(&mut c);
            if reply == b"$-1\r\n" || reply == b"_\r\n" {
                return false;
            }
            let mut want = format!("${}\r\n", v.len()).into_bytes();
            want.extend_from_slice(v);
            want.extend_from_slice(b"\r\n");
            assert!(
                reply == want,
                "a GET returned a wrong value: {:?}",
                String::from_utf8_lossy(&reply[..reply.len().min(80)])
            );
            true
        })
        .count()
}

/// Writes 8x the budget twice (1 KiB values, then mixed sizes) under `policy`.
fn budget_holds(policy: &str, recent_min: usize) {
    let mut node = Node::start_with_memory(2, "8m", &["--policy", policy]);
    let base_rss = node.rss_bytes();
    let count = (LOAD / 1024) as usize;

    // Pass 1: 64 MiB of 1 KiB values.
    let rss1 = write_pass(&node, "a", count, |_| 1024);
    let s = check_budget(&node, &format!("{policy}, 1 KiB values"));
    let evictions = s.get("evictions").copied().unwrap_or(0);
    let keys = s.get("keys").copied().unwrap_or(0);
    assert!(
        evictions > 0,
        "{policy}: no evictions after 8x the budget: {s:?}"
    );
    assert!(
        keys > 0 && keys < count as u64,
        "{policy}: {keys} keys resident of {count} written"
    );
    assert_eq!(
        s.get("sets").copied(),
        Some(count as u64),
        "{policy}: every SET counted"
    );
    let recent: Vec<(Vec<u8>, Vec<u8>)> = (count - 256..count)
        .map(|i| (key("a", i), value("a", i, 1024)))
        .collect();
    let last = &recent[recent.len() - 1..];
    assert_eq!(
        readable(&node, last),
        1,
        "{policy}: the last key written is gone"
    );
    let n = readable(&node, &recent);
    assert!(
        n >= recent_min,
        "{policy}: only {n} of the last 256 keys written read back (want >= {recent_min})"
    );

    // Pass 2: another 64 MiB with sizes from 16 B to 16 KiB: the budget still holds, and
    // memory does not creep up with a changing size mix.
    let mut rng = StdRng::seed_from_u64(7);
    let sizes: Vec<usize> = (0..count * 2)
        .map(|_| {
            let exp = rng.gen_range(4..=14);
            rng.gen_range(1usize << exp..=(1usize << exp) * 2 - 1)
                .min(16 * 1024)
        })
        .collect();
    let total: usize = sizes.iter().sum();
    let n_mixed = sizes
        .iter()
        .scan(0usize, |acc, s| {
            *acc += s;
            Some(*acc)
        })
        .take_while(|&acc| acc < LOAD as usize)
        .count()
        .max(1);
    assert!(total as u64 >= LOAD);
    let rss2 = write_pass(&node, "b", n_mixed, |i| sizes[i]);
    let s2 = check_budget(&node, &format!("{policy}, mixed sizes"));
    assert!(
        s2.get("evictions").copied().unwrap_or(0) > evictions,
        "{policy}: no evictions in the mixed pass"
    );
    let last_b = [(
        key("b", n_mixed - 1),
        value("b", n_mixed - 1, sizes[n_mixed - 1]),
    )];
    assert_eq!(
        readable(&node, &last_b),
        1,
        "{policy}: the last mixed key is gone"
    );

    let max_rss = rss1.max(rss2);
    eprintln!(
        "{policy}: RSS base {} MiB, after 1 KiB pass {} MiB, after mixed pass {} MiB; \
         {n} of the last 256 keys readable; stats after pass 1: keys {keys}, evictions \
         {evictions}, bytes_used {}",
        base_rss / MIB,
        rss1 / MIB,
        rss2 / MIB,
        s.get("bytes_used").copied().unwrap_or(0)
    );
    assert!(
        max_rss < base_rss + BUDGET + 100 * MIB,
        "{policy}: RSS reached {max_rss} bytes from {base_rss} with an 8 MiB budget"
    );
    assert!(
        rss2 < rss1 + 32 * MIB,
        "{policy}: RSS grew from {rss1} to {rss2} bytes on a second pass over a full store"
    );
    assert!(node.is_running(), "node exited; log:\n{}", node.log_text());
}

#[test]
fn lru_budget_holds_under_eight_times_the_load() {
    budget_holds("lru", 256);
}

#[test]
fn lfu_budget_holds_under_eight_times_the_load() {
    budget_holds("lfu", 128);
}

#[test]
fn s3fifo_budget_holds_under_eight_times_the_load() {
    budget_holds("s3fifo", 256);
}
