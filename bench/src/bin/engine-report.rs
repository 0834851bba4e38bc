//! `engine-report`: measures one core's store (`ringcache_engine::Shard`) in one run and prints a
//! markdown report with targets and PASS/MISS: throughput against `lru::LruCache`, memory
//! overhead per entry, hit ratio of each eviction policy against `moka`, and expiry reclamation.
//!
//! `cargo run --release -p ringcache-bench --bin engine-report`
//!
//! Progress goes to stderr, the report to stdout. Without arguments every section runs, each in
//! a fresh child process (this binary with the section's name as argument); with section names
//! (`throughput`, `memory`, `hits`, `expiry`) only those run, in this process.

use std::alloc::{GlobalAlloc, Layout, System};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use ringcache_bench::{
    entry_charge, interleaved_mops, median, replay_moka, replay_shard, Data, HitCount, Lookup,
    LruGet, LruInput, LruSet, ShardGet, ShardSet, Trace, KEY_LEN, MOKA_MAINTENANCE_EVERY, NOW,
    VALUE_LEN,
};
use ringcache_engine::{EvictionPolicy, Expiry, SetOptions, Shard, ShardConfig};

/// Counts live heap bytes: all of them, and those of alignment 1 (in the shard these are only
/// the key/value blocks, `KvBlock`; its arrays and tables have larger alignment).
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static LIVE_ALIGN1: AtomicUsize = AtomicUsize::new(0);
/// Largest single allocation (or reallocation target) since last reset.
static LARGEST: AtomicUsize = AtomicUsize::new(0);

fn add(layout: Layout, n: usize) {
    LIVE.fetch_add(n, Relaxed);
    LARGEST.fetch_max(n, Relaxed);
    if layout.align() == 1 {
        LIVE_ALIGN1.fetch_add(n, Relaxed);
    }
}

fn sub(layout: Layout, n: usize) {
    LIVE.fetch_sub(n, Relaxed);
    if layout.align() == 1 {
        LIVE_ALIGN1.fetch_sub(n, Relaxed);
    }
}

// SAFETY: every call is forwarded unchanged to `System`; the counters are only bookkeeping.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            add(layout, layout.size());
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if !p.is_null() {
            add(layout, layout.size());
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        sub(layout, layout.size());
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            sub(layout, layout.size());
            add(layout, new_size);
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn live() -> usize {
    LIVE.load(Relaxed)
}

fn live_blocks() -> usize {
    LIVE_ALIGN1.load(Relaxed)
}

/// Resident set size of this process in bytes (VmRSS of /proc/self/status).
fn rss() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
        .map_or(0, |kb| kb * 1024)
}

const N: usize = 1_000_000;
const KV: f64 = (KEY_LEN + VALUE_LEN) as f64;
const RUNS: usize = 5;
const RUN_SECS: f64 = 0.3;

fn pass(ok: bool) -> &'static str {
    if ok {
        "PASS"
    } else {
        "MISS"
    }
}

// ---------------------------------------------------------------------------------------------

struct Memory {
    alloc_per_entry: f64,
    rss_per_entry: f64,
    block_per_entry: f64,
    structures_per_entry: f64,
    /// The slowest single `set` of the load and its index (a hash table growth lands on one).
    slowest_set: (Duration, usize),
}

fn memory(data: &Data) -> Memory {
    let config = ShardConfig {
        budget_bytes: 2 * N * entry_charge(),
        ..ShardConfig::default()
    };
    let opts = SetOptions::default();
    let mut slowest_set = (Duration::ZERO, 0);
    let (a0, b0, r0) = (live(), live_blocks(), rss());
    let mut shard = Shard::new(config, NOW);
    for i in 0..N {
        let t = Instant::now();
        let r = shard.set(&data.keys[i], &data.values[i], &opts, NOW, i as u64 + 1);
        let d = t.elapsed();
        r.expect("fits");
        if d > slowest_set.0 {
            slowest_set = (d, i);
        }
    }
    let (a1, b1, r1) = (live(), live_blocks(), rss());
    assert_eq!(shard.stats().evictions, 0, "memory run must not evict");
    assert_eq!(shard.len(), N);
    let m = Memory {
        alloc_per_entry: (a1 - a0) as f64 / N as f64 - KV,
        rss_per_entry: r1.saturating_sub(r0) as f64 / N as f64 - KV,
        block_per_entry: (b1 - b0) as f64 / N as f64,
        structures_per_entry: shard.structure_bytes() as f64 / N as f64,
        slowest_set,
    };
    drop(shard);
    m
}

// ---------------------------------------------------------------------------------------------

struct ExpiryRun {
    load_ms: u64,
    /// When 99% of the entries were due, ms after the start.
    due99: u64,
    last_due: u64,
    /// ms after `due99` at which 99% of the charged bytes were freed.
    used_lag: Option<i64>,
    /// ms after `due99` at which 99% of the allocator bytes added by the load were freed.
    alloc_lag: Option<i64>,
    /// Same for the key/value blocks alone.
    block_lag: Option<i64>,
    alloc_freed_pct: f64,
    block_freed_pct: f64,
    expired: u64,
    calls: usize,
    worst_wall: Call,
    worst_cpu: Call,
    preempted: usize,
    p50: Duration,
    p99: Duration,
    p999: Duration,
    over_1ms: usize,
    waited_ms: u64,
}

/// CPU time consumed by this thread.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// (involuntary context switches, minor page faults) of this thread so far.
fn switches_and_faults() -> (i64, i64) {
    // SAFETY: an all-zero rusage is a valid value, and getrusage only writes into it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    (ru.ru_nivcsw as i64, ru.ru_minflt as i64)
}

/// What happened during one `advance` call.
#[derive(Clone, Copy, Debug, Default)]
struct Call {
    at_ms: u64,
    wall: Duration,
    cpu: Duration,
    expired: usize,
    preempted: bool,
    faults: i64,
    largest_alloc: usize,
}

impl Call {
    fn describe(&self) -> String {
        format!(
            "at {} ms: {:.3} ms wall, {:.3} ms CPU, {} expired, {} page faults, largest \
             allocation {} KiB{}",
            self.at_ms,
            self.wall.as_secs_f64() * 1e3,
            self.cpu.as_secs_f64() * 1e3,
            self.expired,
            self.faults,
            self.largest_alloc / 1024,
            if self.preempted { ", preempted" } else { "" }
        )
    }
}

/// Calls `advance` when the millisecond clock has moved, timing each call (wall and thread CPU
/// time) and noting what else happened in it (preemption, page faults, large allocations).
struct Ticker {
    last: u64,
    worst_wall: Call,
    worst_cpu: Call,
    preempted: usize,
    /// Wall nanoseconds of each call (up to the preallocated capacity: recording never
    /// allocates).
    durations: Vec<u32>,
}

impl Ticker {
    fn new(now: u64) -> Ticker {
        Ticker {
            last: now,
            worst_wall: Call::default(),
            worst_cpu: Call::default(),
            preempted: 0,
            durations: Vec::with_capacity(1 << 16),
        }
    }

    fn tick(&mut self, shard: &mut Shard, now: u64, budget: usize) {
        if now == self.last {
            return;
        }
        self.last = now;
        let (sw0, pf0) = switches_and_faults();
        LARGEST.store(0, Relaxed);
        let cpu = thread_cpu();
        let t = Instant::now();
        let expired = std::hint::black_box(shard.advance(now, budget));
        let wall = t.elapsed();
        let cpu = thread_cpu().saturating_sub(cpu);
        let (sw1, pf1) = switches_and_faults();
        let call = Call {
            at_ms: now,
            wall,
            cpu,
            expired,
            preempted: sw1 != sw0,
            faults: pf1 - pf0,
            largest_alloc: LARGEST.load(Relaxed),
        };
        self.preempted += usize::from(call.preempted);
        if wall > self.worst_wall.wall {
            self.worst_wall = call;
        }
        if cpu > self.worst_cpu.cpu {
            self.worst_cpu = call;
        }
        if self.durations.len() < self.durations.capacity() {
            self.durations
                .push(wall.as_nanos().min(u128::from(u32::MAX)) as u32);
        }
    }
}

/// Loads `N` entries with a 1 s TTL (each its own `now + 1000`, or all the same instant when
/// `same_instant`) and no reads, calling `advance(now, 4096)` whenever the millisecond clock
/// moves, as a node's 1 ms tick would, until 99% of the memory is freed or 5 s after the last
/// expiry.
fn expiry(data: &Data, same_instant: bool) -> ExpiryRun {
    const TTL: u64 = 1000;
    const TICK_BUDGET: usize = 4096;
    const WAIT_AFTER_LAST_DUE: u64 = 5000;
    let mut ticker = Ticker::new(0);
    let start = Instant::now();
    let clock = || start.elapsed().as_millis() as u64 + 1;
    let config = ShardConfig {
        budget_bytes: 2 * N * entry_charge(),
        ..ShardConfig::default()
    };
    let (a0, b0) = (live(), live_blocks());
    let mut shard = Shard::new(config, clock());
    ticker.last = clock();
    let common_due = clock() + TTL;
    let idx99 = (N * 99).div_ceil(100) - 1;
    let (mut due99, mut last_due) = (0, 0);
    let mut now = clock();
    for i in 0..N {
        if i % 64 == 0 {
            now = clock();
            ticker.tick(&mut shard, now, TICK_BUDGET);
        }
        let due = if same_instant { common_due } else { now + TTL };
        let opts = SetOptions {
            expiry: Expiry::At(due),
            ..SetOptions::default()
        };
        shard
            .set(&data.keys[i], &data.values[i], &opts, now, i as u64 + 1)
            .expect("fits");
        if i == idx99 {
            due99 = due;
        }
        last_due = due;
    }
    let load_ms = clock();
    assert!(
        load_ms < common_due.min(due99),
        "load took longer than the TTL"
    );
    let used0 = shard.used_bytes();
    let (a_peak, b_peak) = (live() - a0, live_blocks() - b0);
    let (mut used_at, mut alloc_at, mut block_at) = (None, None, None);
    let deadline = last_due + WAIT_AFTER_LAST_DUE;
    loop {
        let now = clock();
        if now == ticker.last {
            std::hint::spin_loop();
            continue;
        }
        ticker.tick(&mut shard, now, TICK_BUDGET);
        if used_at.is_none() && shard.used_bytes() * 100 <= used0 {
            used_at = Some(now);
        }
        if alloc_at.is_none() && (live() - a0) * 100 <= a_peak {
            alloc_at = Some(now);
        }
        if block_at.is_none() && (live_blocks() - b0) * 100 <= b_peak {
            block_at = Some(now);
        }
        let done = used_at.is_some() && alloc_at.is_some() && block_at.is_some();
        if done || now >= deadline {
            break;
        }
    }
    let waited_ms = clock();
    let alloc_freed_pct = 100.0 * (a_peak - (live() - a0)) as f64 / a_peak as f64;
    let block_freed_pct = 100.0 * (b_peak - (live_blocks() - b0)) as f64 / b_peak as f64;
    let expired = shard.stats().expirations;
    drop(shard);
    let lag = |t: Option<u64>| t.map(|t| t as i64 - due99 as i64);
    let mut sorted = ticker.durations.clone();
    sorted.sort_unstable();
    let pct = |p: usize| {
        let i = sorted.len().saturating_sub(1) * p / 1000;
        Duration::from_nanos(u64::from(sorted.get(i).copied().unwrap_or(0)))
    };
    ExpiryRun {
        load_ms,
        due99,
        last_due,
        used_lag: lag(used_at),
        alloc_lag: lag(alloc_at),
        block_lag: lag(block_at),
        alloc_freed_pct,
        block_freed_pct,
        expired,
        calls: ticker.durations.len(),
        worst_wall: ticker.worst_wall,
        worst_cpu: ticker.worst_cpu,
        preempted: ticker.preempted,
        p50: pct(500),
        p99: pct(990),
        p999: pct(999),
        over_1ms: ticker.durations.iter().filter(|&&d| d > 1_000_000).count(),
        waited_ms,
    }
}

// ---------------------------------------------------------------------------------------------

/// One operation's runs: Mops/s per run of the shard and of the `lru` variants, interleaved.
struct Throughput {
    name: &'static str,
    shard: Vec<f64>,
    /// (label, runs) of each `lru` variant.
    lru: Vec<(&'static str, Vec<f64>)>,
}

fn throughput(data: &Data) -> Vec<Throughput> {
    let mut out = Vec::new();
    for (name, lookup) in [("get (hit)", Lookup::Hit), ("get (miss)", Lookup::Miss)] {
        eprintln!("throughput: {name}");
        let mut shard = ShardGet::new(data, lookup);
        let mut lru = LruGet::new(data, lookup);
        let mut runs = interleaved_mops(&mut [&mut shard, &mut lru], RUNS, RUN_SECS).into_iter();
        out.push(Throughput {
            name,
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
        shard: runs.next().unwrap_or_default(),
        lru: vec![
            ("lru", runs.next().unwrap_or_default()),
            ("lru prebuilt", runs.next().unwrap_or_default()),
        ],
    });
    out
}

// ---------------------------------------------------------------------------------------------

const ZIPF_S: f64 = 0.99;
const REQUESTS: usize = 5_000_000;
const SCAN_EVERY: usize = 500_000;
const POLICIES: [(EvictionPolicy, &str); 3] = [
    (EvictionPolicy::Lru, "Shard LRU"),
    (EvictionPolicy::Lfu, "Shard LFU"),
    (EvictionPolicy::S3Fifo, "Shard S3-FIFO"),
];

struct HitRatios {
    capacity: usize,
    scan_len: usize,
    plain_requests: usize,
    scan_requests: usize,
    /// (name, plain Zipf, Zipf with scans), for each policy then moka.
    rows: Vec<(&'static str, HitCount, HitCount)>,
}

fn hit_ratios(data: &Data) -> HitRatios {
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

/// The sections, in the order they are reported. Each runs in its own child process (this
/// binary with the section's name as argument), so that none sees the heap another left behind.
const SECTIONS: [&str; 4] = ["throughput", "memory", "hits", "expiry"];

fn main() {
    // glibc's fastbins make the first large free after a mass expiry consolidate every freed
    // small block at once (measured: 8 ms in one `advance`); the node ships with mimalloc,
    // which has no such pass. Turning fastbins off keeps this report about the engine.
    // SAFETY: mallopt only changes glibc's tunables; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MXFAST, 0);
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(bad) = args.iter().find(|a| !SECTIONS.contains(&a.as_str())) {
        eprintln!(
            "unknown section '{bad}'; usage: engine-report [{}]...",
            SECTIONS.join(" | ")
        );
        std::process::exit(2);
    }
    if args.is_empty() {
        run_all();
    } else {
        let data = Data::new(N);
        let mut r = String::new();
        for section in &args {
            run_section(&mut r, section, &data);
        }
        print!("{r}");
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

fn run_all() {
    let t0 = Instant::now();
    let load0 = loadavg();
    let exe = std::env::current_exe().expect("own path");
    let mut body = String::new();
    for section in SECTIONS {
        let out = std::process::Command::new(&exe)
            .arg(section)
            .stderr(std::process::Stdio::inherit())
            .output()
            .expect("run a section");
        if !out.status.success() {
            eprintln!("section {section} failed: {}", out.status);
            std::process::exit(1);
        }
        body.push_str(&String::from_utf8_lossy(&out.stdout));
    }
    let mut r = String::new();
    let w = &mut r;
    let _ = writeln!(w, "# ringcache engine report\n");
    let _ = writeln!(
        w,
        "`cargo run --release -p ringcache-bench --bin engine-report` — {N} entries of \
         {KEY_LEN}-byte keys and {VALUE_LEN}-byte values, one thread per measurement, {} CPUs; \
         each section in a fresh process; whole run {:.0} s; 1-minute load average {} at the \
         start, {} at the end (a load above ~1 means other processes competed for the CPUs and \
         timings are noisier).",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        t0.elapsed().as_secs_f64(),
        load0,
        loadavg()
    );
    print!("{r}{body}");
}

fn run_section(w: &mut String, section: &str, data: &Data) {
    match section {
        "throughput" => report_throughput(w, &throughput(data)),
        "memory" => {
            eprintln!("memory");
            report_memory(w, &memory(data));
        }
        "hits" => report_hits(w, &hit_ratios(data)),
        "expiry" => {
            eprintln!("expiry (staggered)");
            let a = expiry(data, false);
            eprintln!("expiry (same instant)");
            let b = expiry(data, true);
            report_expiry(w, &a, &b);
        }
        _ => unreachable!("checked in main"),
    }
}

fn spread(runs: &[f64]) -> String {
    let lo = runs.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = runs.iter().copied().fold(0.0, f64::max);
    format!("{:.2} ({lo:.2}–{hi:.2})", median(runs))
}

fn report_throughput(w: &mut String, thr: &[Throughput]) {
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
         is timed; the prebuilt boxes are cold in cache by the time they are inserted). The \
         ratio is the median of the per-run ratios.\n"
    );
    let _ = writeln!(w, "| operation | Shard | lru variant | lru | Shard / lru |");
    let _ = writeln!(w, "|---|---:|---|---:|---:|");
    for t in thr {
        for (label, runs) in &t.lru {
            let ratios: Vec<f64> = t.shard.iter().zip(runs).map(|(s, l)| s / l).collect();
            let _ = writeln!(
                w,
                "| {} | {} | {label} | {} | {:.2}x |",
                t.name,
                spread(&t.shard),
                spread(runs),
                median(&ratios)
            );
        }
    }
}

fn report_memory(w: &mut String, mem: &Memory) {
    let _ = writeln!(
        w,
        "\n## Memory overhead per entry beyond key + value ({N} entries, nothing evicted)\n"
    );
    let _ = writeln!(w, "| measure | bytes/entry | target | |");
    let _ = writeln!(w, "|---|---:|---:|---|");
    let _ = writeln!(
        w,
        "| (a) allocator accounting: (live bytes after − before) / N − 48 | {:.1} | ≤ 48 | {} |",
        mem.alloc_per_entry,
        pass(mem.alloc_per_entry <= 48.0)
    );
    let _ = writeln!(
        w,
        "| (b) resident memory: (VmRSS after − before) / N − 48 | {:.1} | ≤ 64 | {} |",
        mem.rss_per_entry,
        pass(mem.rss_per_entry <= 64.0)
    );
    let _ = writeln!(
        w,
        "\nBy allocator: key/value blocks {:.1} B/entry (48 + 2-byte length header); slab, hash \
         table, wheel and policy structures {:.1} B/entry (`Shard::structure_bytes`, spare \
         capacity included). Measured in its own process on a fresh heap, glibc malloc with fastbins off (`M_MXFAST=0`).",
        mem.block_per_entry, mem.structures_per_entry
    );
    let _ = writeln!(
        w,
        "\nLongest single `set` of the {N}-entry load: {} (set number {}). The shard's key \
         index is split into 64 segments that grow independently, so the `set` that makes one \
         grow rehashes about 1/64 of the entries; the slab array's doubling is the other \
         occasional cost.",
        ms(mem.slowest_set.0),
        mem.slowest_set.1 + 1
    );
}

fn report_hits(w: &mut String, hits: &HitRatios) {
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

fn fmt_lag(l: Option<i64>) -> String {
    l.map_or_else(|| "never".to_string(), |l| format!("{l} ms"))
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

fn report_expiry(w: &mut String, stag: &ExpiryRun, same: &ExpiryRun) {
    let _ = writeln!(
        w,
        "\n## Expiry ({N} entries, 1 s TTL, no reads, `advance(now, 4096)` every 1 ms of wall \
         time)\n"
    );
    let _ = writeln!(
        w,
        "`now` is the real clock (ms since start); the load also ticks. Lags are measured from \
         the instant by which 99% of the entries were due. *Staggered*: each entry expires 1 s \
         after its own set. *Same instant*: all expire at the same millisecond (load start + \
         1 s). An `advance` call's wall time includes any preemption of the thread by other \
         processes; its thread CPU time does not.\n"
    );
    let _ = writeln!(w, "| | staggered | same instant | target |");
    let _ = writeln!(w, "|---|---:|---:|---|");
    let row = |w: &mut String, label: &str, f: &dyn Fn(&ExpiryRun) -> String, target: &str| {
        let _ = writeln!(w, "| {label} | {} | {} | {target} |", f(stag), f(same));
    };
    let lag_ok = |l: Option<i64>| l.is_some_and(|l| l <= 2000);
    row(
        w,
        "load done / 99% due / last due (ms after start)",
        &|e| format!("{} / {} / {}", e.load_ms, e.due99, e.last_due),
        "",
    );
    row(
        w,
        "99% of `used_bytes()` freed after",
        &|e| format!("{} {}", fmt_lag(e.used_lag), pass(lag_ok(e.used_lag))),
        "≤ 2000 ms",
    );
    row(
        w,
        "99% of allocator bytes (everything the load added) freed after",
        &|e| {
            format!(
                "{} {} ({:.1}% freed at the end)",
                fmt_lag(e.alloc_lag),
                pass(lag_ok(e.alloc_lag)),
                e.alloc_freed_pct
            )
        },
        "≤ 2000 ms",
    );
    row(
        w,
        "99% of key/value block bytes freed after",
        &|e| {
            format!(
                "{} ({:.1}% freed at the end)",
                fmt_lag(e.block_lag),
                e.block_freed_pct
            )
        },
        "(diagnostic)",
    );
    row(
        w,
        "longest `advance` call, wall time",
        &|e| {
            format!(
                "{} {}",
                ms(e.worst_wall.wall),
                pass(e.worst_wall.wall <= Duration::from_millis(1))
            )
        },
        "≤ 1 ms",
    );
    row(
        w,
        "longest `advance` call, thread CPU time",
        &|e| {
            format!(
                "{} {}",
                ms(e.worst_cpu.cpu),
                pass(e.worst_cpu.cpu <= Duration::from_millis(1))
            )
        },
        "≤ 1 ms",
    );
    row(
        w,
        "`advance` calls: count / wall > 1 ms / preempted (involuntary switch)",
        &|e| format!("{} / {} / {}", e.calls, e.over_1ms, e.preempted),
        "",
    );
    row(
        w,
        "`advance` wall time p50 / p99 / p99.9",
        &|e| format!("{} / {} / {}", ms(e.p50), ms(e.p99), ms(e.p999)),
        "",
    );
    row(
        w,
        "call with the longest wall time",
        &|e| e.worst_wall.describe(),
        "",
    );
    row(
        w,
        "call with the longest CPU time",
        &|e| e.worst_cpu.describe(),
        "",
    );
    row(
        w,
        "entries expired (run stopped at)",
        &|e| format!("{} ({} ms)", e.expired, e.waited_ms),
        "",
    );
}
