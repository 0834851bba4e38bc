//! Section `throughput`: get-hit, get-miss and evicting set of the shard against
//! `lru::LruCache`, Mops/s over interleaved runs.

use std::fmt::Write as _;

use ringcache_bench::{
    interleaved_mops, median, Data, Lookup, LruGet, LruInput, LruSet, ShardGet, ShardSet,
};

use crate::{pass, N};

const RUNS: usize = 9;
const RUN_SECS: f64 = 0.3;

/// One operation's runs: Mops/s per run of the shard and of the `lru` variants, interleaved.
pub(crate) struct Throughput {
    name: &'static str,
    /// Whether issue #2 sets a target for it (get-hit and set: at least `lru`).
    targeted: bool,
    shard: Vec<f64>,
    /// (label, runs) of each `lru` variant.
    lru: Vec<(&'static str, Vec<f64>)>,
}

pub(crate) fn throughput(data: &Data) -> Vec<Throughput> {
    let mut out = Vec::new();
    for (name, lookup) in [("get (hit)", Lookup::Hit), ("get (miss)", Lookup::Miss)] {
        eprintln!("throughput: {name}");
        let mut shard = ShardGet::new(data, lookup);
        let mut lru = LruGet::new(data, lookup);
        let mut runs = interleaved_mops(&mut [&mut shard, &mut lru], RUNS, RUN_SECS).into_iter();
        out.push(Throughput {
            name,
            targeted: lookup == Lookup::Hit,
            shard: runs.next().unwrap_or_default(),
            lru: vec![("lru", runs.next().unwrap_or_default())],
        });
    }
    eprintln!("throughput: set");
    let mut shard = ShardSet::new(data);
    let mut copy = LruSet::new(data, LruInput::Copy);
    let mut prebuilt = LruSet::new(data, LruInput::Prebuilt);
    let mut runs =
        interleaved_mops(&mut [&mut shard, &mut copy, &mut prebuilt], RUNS, RUN_SECS).into_iter();
    assert_eq!(shard.shard().len(), N, "set case must stay full");
    assert!(shard.shard().stats().evictions > 0, "set case must evict");
    out.push(Throughput {
        name: "set (full, every set evicts)",
        targeted: true,
        shard: runs.next().unwrap_or_default(),
        lru: vec![
            ("lru", runs.next().unwrap_or_default()),
            ("lru prebuilt", runs.next().unwrap_or_default()),
        ],
    });
    out
}

// ---------------------------------------------------------------------------------------------

fn spread(runs: &[f64]) -> String {
    let lo = runs.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = runs.iter().copied().fold(0.0, f64::max);
    format!("{:.2} ({lo:.2}–{hi:.2})", median(runs))
}

pub(crate) fn report_throughput(w: &mut String, thr: &[Throughput]) {
    let _ = writeln!(
        w,
        "\n## Throughput (Mops/s: median of {RUNS} runs of ~{RUN_SECS} s, (min–max))\n"
    );
    let _ = writeln!(
        w,
        "Shard (LRU policy) vs `lru::LruCache` 0.12 holding the same {N} entries, both built in \
         the same process and measured in alternation (shard run, lru run, ...). Keys visited in \
         one fixed random order; misses use {N} other keys. Set: both caches full at {N} \
         entries, every set writes an absent key and evicts one. `lru` copies the borrowed key \
         and value into boxes inside the timed loop (as the shard copies them into its block); \
         `lru prebuilt` gets boxes built outside the timed loop (only freeing the evicted pair \
         is timed; the prebuilt boxes are cold in cache by the time they are inserted). Keys \
         reach both as slices of a length the compiler cannot see (as keys read from a socket), \
         so neither lookup is specialised for 16-byte keys. The ratio is the median of the \
         per-run ratios; the target (issue #2) is get-hit and set at least `lru`'s.\n"
    );
    let _ = writeln!(
        w,
        "| operation | Shard | lru variant | lru | Shard / lru | target |"
    );
    let _ = writeln!(w, "|---|---:|---|---:|---:|---|");
    for t in thr {
        for (label, runs) in &t.lru {
            let ratios: Vec<f64> = t.shard.iter().zip(runs).map(|(s, l)| s / l).collect();
            let ratio = median(&ratios);
            let target = if t.targeted {
                format!("≥ 1.00x {}", pass(ratio >= 1.0))
            } else {
                "—".to_string()
            };
            let _ = writeln!(
                w,
                "| {} | {} | {label} | {} | {ratio:.2}x | {target} |",
                t.name,
                spread(&t.shard),
                spread(runs),
            );
        }
    }
}
