//! Section `hits`: hit ratio of each eviction policy and of `moka` under Zipf read-through,
//! plain and with one-pass scans mixed in.

use std::fmt::Write as _;

use ringcache_bench::{
    entry_charge, replay_moka, replay_shard, Data, HitCount, Trace, MOKA_MAINTENANCE_EVERY,
};
use ringcache_engine::EvictionPolicy;

use crate::{pass, N};

const ZIPF_S: f64 = 0.99;
const REQUESTS: usize = 5_000_000;
const SCAN_EVERY: usize = 500_000;
const POLICIES: [(EvictionPolicy, &str); 3] = [
    (EvictionPolicy::Lru, "Shard LRU"),
    (EvictionPolicy::Lfu, "Shard LFU"),
    (EvictionPolicy::S3Fifo, "Shard S3-FIFO"),
];

pub(crate) struct HitRatios {
    capacity: usize,
    scan_len: usize,
    plain_requests: usize,
    scan_requests: usize,
    /// (name, plain Zipf, Zipf with scans), for each policy then moka.
    rows: Vec<(&'static str, HitCount, HitCount)>,
}

pub(crate) fn hit_ratios(data: &Data) -> HitRatios {
    let keys = &data.keys[..N];
    let capacity = N / 10;
    let scan_len = capacity;
    let plain = Trace::zipf(N, REQUESTS, ZIPF_S, 0x7a69_7066);
    let scans = plain.with_scans(SCAN_EVERY, scan_len);
    let mut rows = Vec::new();
    for (policy, name) in POLICIES {
        eprintln!("hit ratio: {name}");
        rows.push((
            name,
            replay_shard(&plain, keys, policy, capacity),
            replay_shard(&scans, keys, policy, capacity),
        ));
    }
    eprintln!("hit ratio: moka");
    rows.push((
        "moka::sync::Cache",
        replay_moka(&plain, keys, capacity),
        replay_moka(&scans, keys, capacity),
    ));
    HitRatios {
        capacity,
        scan_len,
        plain_requests: plain.requests.len(),
        scan_requests: scans.requests.len(),
        rows,
    }
}

// ---------------------------------------------------------------------------------------------

pub(crate) fn report_hits(w: &mut String, hits: &HitRatios) {
    let _ = writeln!(
        w,
        "\n## Hit ratio (Zipf {ZIPF_S}, {N} keys, cache = {} entries = 10%)\n",
        hits.capacity
    );
    let _ = writeln!(
        w,
        "Read-through: a get, and on a miss a set. Shard budget = {} × {} bytes (key + value + \
         2-byte header + ENTRY_OVERHEAD), so it holds the same {} entries as moka's \
         `max_capacity`. *Plain*: {} Zipf requests. *Scan mix*: the same requests with a \
         one-pass scan of {} never-repeating keys (= the cache size) after every {} of them \
         ({} requests in all, {:.0}% scan). Ratios are hits / Zipf requests (scan requests \
         cannot hit), cold start included. moka runs `run_pending_tasks()` every \
         {MOKA_MAINTENANCE_EVERY} requests (it evicts asynchronously; without it, it overshoots \
         its capacity). Seeded, deterministic.\n",
        hits.capacity,
        entry_charge(),
        hits.capacity,
        hits.plain_requests,
        hits.scan_len,
        SCAN_EVERY,
        hits.scan_requests,
        100.0 * (hits.scan_requests - hits.plain_requests) as f64 / hits.scan_requests as f64,
    );
    let _ = writeln!(w, "| cache | plain Zipf | Zipf + scans |");
    let _ = writeln!(w, "|---|---:|---:|");
    for (name, plain, scans) in &hits.rows {
        let _ = writeln!(
            w,
            "| {name} | {:.2}% | {:.2}% |",
            plain.zipf_percent(),
            scans.zipf_percent()
        );
    }
    let get = |n: &str| hits.rows.iter().find(|r| r.0 == n).expect("row");
    let (lru, s3, moka) = (
        get("Shard LRU"),
        get("Shard S3-FIFO"),
        get("moka::sync::Cache"),
    );
    let scan_gain = s3.2.zipf_percent() - lru.2.zipf_percent();
    let vs_moka = s3.1.zipf_percent() - moka.1.zipf_percent();
    let _ = writeln!(w, "\n| target | result | |");
    let _ = writeln!(w, "|---|---:|---|");
    let _ = writeln!(
        w,
        "| S3-FIFO ≥ LRU + 5 points on the scan mix | {scan_gain:+.2} points | {} |",
        pass(scan_gain >= 5.0)
    );
    let _ = writeln!(
        w,
        "| S3-FIFO ≥ moka − 1 point on plain Zipf | {vs_moka:+.2} points | {} |",
        pass(vs_moka >= -1.0)
    );
}
