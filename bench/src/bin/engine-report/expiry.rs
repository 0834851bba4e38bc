//! Section `expiry`: loads `N` entries with a 1 s TTL (staggered, or all due at one instant)
//! and ticks until their memory is reclaimed, timing every `advance` call.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use ringcache_bench::{entry_charge, Data};
use ringcache_engine::{Expiry, SetOptions, Shard, ShardConfig};

use crate::alloc::{live, live_blocks};
use crate::ticker::{Call, Ticker};
use crate::{ms, pass, N};

pub(crate) struct ExpiryRun {
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

/// Loads `N` entries with a 1 s TTL (each its own `now + 1000`, or all the same instant when
/// `same_instant`) and no reads, calling `advance(now, 4096)` whenever the millisecond clock
/// moves, as a node's 1 ms tick would, until 99% of the memory is freed or 5 s after the last
/// expiry.
pub(crate) fn expiry(data: &Data, same_instant: bool) -> ExpiryRun {
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

fn fmt_lag(l: Option<i64>) -> String {
    l.map_or_else(|| "never".to_string(), |l| format!("{l} ms"))
}

pub(crate) fn report_expiry(w: &mut String, stag: &ExpiryRun, same: &ExpiryRun) {
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
