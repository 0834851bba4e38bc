//! Section `throughput`: get-hit, get-miss and evicting set of the shard against
//! `lru::LruCache`, Mops/s over interleaved runs.

use std::fmt::Write as _;

use ringcache_bench::{
    interleaved_mops, median, Data, Lookup, LruGet, LruInput, LruSet, ShardGet, ShardSet,
};

use crate::{pass, N};

const RUNS: usize = 9;
const RUN_SECS: f64 = 0.3;
/// Child processes whose runs the full report pools: the same binary measures up to ~15% apart
/// from one process to the next (where the heap and the tables land), for `lru` as for the
/// shard, so one process's placement should not decide a verdict. Five rather than three: with
/// get-hit near parity, three processes gave verdicts from 0.99x to 1.05x on the same build.
pub(crate) const PROCESSES: usize = 5;

/// The measured operations: name, whether issue #2 sets a target for it (at least `lru`), and
/// the `lru` variants it is compared with.
const CASES: [(&str, bool, &[&str]); 3] = [
    ("get (hit)", true, &["lru"]),
    ("get (miss)", false, &["lru"]),
    (
        "set (full, every set evicts)",
        true,
        &["lru", "lru prebuilt"],
    ),
];

/// One operation's runs, per process: Mops/s of the shard and of each `lru` variant, measured
/// in alternation (run `i` of every series ran back to back).
pub(crate) struct Throughput {
    name: &'static str,
    targeted: bool,
    shard: Vec<Vec<f64>>,
    /// (label, per-process runs) of each `lru` variant.
    lru: Vec<(&'static str, Vec<Vec<f64>>)>,
}

/// An empty result per case, to be filled with [`add_runs`].
pub(crate) fn empty() -> Vec<Throughput> {
    CASES
        .iter()
        .map(|&(name, targeted, labels)| Throughput {
            name,
            targeted,
            shard: Vec::new(),
            lru: labels.iter().map(|&l| (l, Vec::new())).collect(),
        })
        .collect()
}

/// Adds one process's runs of case `case`: `series[0]` the shard's, then each `lru` variant's.
fn add_runs(thr: &mut [Throughput], case: usize, series: Vec<Vec<f64>>) {
    let Some(t) = thr.get_mut(case) else { return };
    let mut series = series.into_iter();
    t.shard.push(series.next().unwrap_or_default());
    for (_, runs) in &mut t.lru {
        runs.push(series.next().unwrap_or_default());
    }
}

/// Measures every case in this process.
pub(crate) fn throughput(data: &Data) -> Vec<Throughput> {
    let mut out = empty();
    for (case, lookup) in [Lookup::Hit, Lookup::Miss].into_iter().enumerate() {
        eprintln!("throughput: {}", CASES[case].0);
        let mut shard = ShardGet::new(data, lookup);
        let mut lru = LruGet::new(data, lookup);
        let runs = interleaved_mops(&mut [&mut shard, &mut lru], RUNS, RUN_SECS);
        add_runs(&mut out, case, runs);
    }
    eprintln!("throughput: set");
    let mut shard = ShardSet::new(data);
    let mut copy = LruSet::new(data, LruInput::Copy);
    let mut prebuilt = LruSet::new(data, LruInput::Prebuilt);
    let runs = interleaved_mops(&mut [&mut shard, &mut copy, &mut prebuilt], RUNS, RUN_SECS);
    assert_eq!(shard.shard().len(), N, "set case must stay full");
    assert!(shard.shard().stats().evictions > 0, "set case must evict");
    add_runs(&mut out, 2, runs);
    out
}

/// This process's runs as text for a parent process: per case and series, a line
/// `case series mops mops ...`.
pub(crate) fn to_raw(thr: &[Throughput]) -> String {
    let mut w = String::new();
    for (case, t) in thr.iter().enumerate() {
        let series = t
            .shard
            .iter()
            .chain(t.lru.iter().flat_map(|(_, r)| r.iter()));
        for (i, runs) in series.enumerate() {
            let _ = write!(w, "{case} {i}");
            for r in runs {
                let _ = write!(w, " {r}");
            }
            w.push('\n');
        }
    }
    w
}

/// Adds the runs a child printed with [`to_raw`] to `thr`; `None` if the text is malformed.
pub(crate) fn add_raw(thr: &mut [Throughput], text: &str) -> Option<()> {
    let mut by_case: Vec<Vec<Vec<f64>>> = vec![Vec::new(); CASES.len()];
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let case: usize = fields.next()?.parse().ok()?;
        let series: usize = fields.next()?.parse().ok()?;
        let runs = fields
            .map(str::parse)
            .collect::<Result<Vec<f64>, _>>()
            .ok()?;
        let slot = by_case.get_mut(case)?;
        (slot.len() == series).then_some(())?;
        slot.push(runs);
    }
    // Every case with every series (the shard's and each `lru` variant's), or nothing.
    let complete = by_case
        .iter()
        .zip(CASES)
        .all(|(series, (_, _, labels))| series.len() == 1 + labels.len());
    complete.then_some(())?;
    for (case, series) in by_case.into_iter().enumerate() {
        add_runs(thr, case, series);
    }
    Some(())
}

// ---------------------------------------------------------------------------------------------

fn spread(runs: &[f64]) -> String {
    let lo = runs.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = runs.iter().copied().fold(0.0, f64::max);
    format!("{:.2} ({lo:.2}–{hi:.2})", median(runs))
}

/// Shard/lru ratio of every run, per process (each run against the `lru` run beside it).
fn ratios(shard: &[Vec<f64>], lru: &[Vec<f64>]) -> Vec<Vec<f64>> {
    shard
        .iter()
        .zip(lru)
        .map(|(s, l)| s.iter().zip(l).map(|(s, l)| s / l).collect())
        .collect()
}

pub(crate) fn report_throughput(w: &mut String, thr: &[Throughput]) {
    let processes = thr.first().map_or(0, |t| t.shard.len());
    let _ = writeln!(
        w,
        "\n## Throughput (Mops/s: median of {RUNS} runs of ~{RUN_SECS} s in each of {processes} \
         process(es), (min–max))\n"
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
         per-run ratios of all processes, each process's median in brackets (the same binary \
         measures up to ~15% apart between processes, for either side); the target (issue #2) \
         is get-hit and set at least `lru`'s.\n"
    );
    let _ = writeln!(
        w,
        "| operation | Shard | lru variant | lru | Shard / lru (per process) | target |"
    );
    let _ = writeln!(w, "|---|---:|---|---:|---:|---|");
    for t in thr {
        let shard: Vec<f64> = t.shard.concat();
        for (label, runs) in &t.lru {
            let per_process = ratios(&t.shard, runs);
            let ratio = median(&per_process.concat());
            let each: Vec<String> = per_process
                .iter()
                .map(|r| format!("{:.2}", median(r)))
                .collect();
            let target = if t.targeted {
                format!("≥ 1.00x {}", pass(ratio >= 1.0))
            } else {
                "—".to_string()
            };
            let _ = writeln!(
                w,
                "| {} | {} | {label} | {} | {ratio:.2}x ({}) | {target} |",
                t.name,
                spread(&shard),
                spread(&runs.concat()),
                each.join(", "),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_process(k: f64) -> Vec<Throughput> {
        let mut thr = empty();
        for (case, &(_, _, labels)) in CASES.iter().enumerate() {
            let series = (0..=labels.len())
                .map(|i| vec![k + i as f64, k + i as f64 + 0.5])
                .collect();
            add_runs(&mut thr, case, series);
        }
        thr
    }

    #[test]
    fn a_childs_runs_travel_as_text_and_pool_per_process() {
        let mut pooled = empty();
        for k in [1.0, 2.0] {
            assert!(add_raw(&mut pooled, &to_raw(&one_process(k))).is_some());
        }
        let set = &pooled[2];
        assert_eq!(set.shard, vec![vec![1.0, 1.5], vec![2.0, 2.5]]);
        assert_eq!(set.lru[1].1, vec![vec![3.0, 3.5], vec![4.0, 4.5]]);
        let mut report = String::new();
        report_throughput(&mut report, &pooled);
        assert!(report.contains("in each of 2 process(es)"), "{report}");
    }

    #[test]
    fn malformed_child_output_is_refused() {
        let missing_a_series: String = to_raw(&one_process(1.0))
            .lines()
            .filter(|l| !l.starts_with("2 2 "))
            .map(|l| format!("{l}\n"))
            .collect();
        for bad in [
            "0 0 1.0 x",
            "9 0 1.0",
            "0 1 1.0",
            "zero",
            "",
            &missing_a_series,
        ] {
            assert!(add_raw(&mut empty(), bad).is_none(), "{bad}");
        }
    }
}
