//! The expiry section's 1 ms tick: calls `Shard::advance` when the clock moves and records
//! each call's wall and thread CPU time, preemption, page faults and largest allocation.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use ringcache_engine::Shard;

use crate::alloc::LARGEST;

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
pub(crate) struct Call {
    at_ms: u64,
    pub(crate) wall: Duration,
    pub(crate) cpu: Duration,
    expired: usize,
    preempted: bool,
    faults: i64,
    largest_alloc: usize,
}

impl Call {
    pub(crate) fn describe(&self) -> String {
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
pub(crate) struct Ticker {
    pub(crate) last: u64,
    pub(crate) worst_wall: Call,
    pub(crate) worst_cpu: Call,
    pub(crate) preempted: usize,
    /// Wall nanoseconds of each call (up to the preallocated capacity: recording never
    /// allocates).
    pub(crate) durations: Vec<u32>,
}

impl Ticker {
    pub(crate) fn new(now: u64) -> Ticker {
        Ticker {
            last: now,
            worst_wall: Call::default(),
            worst_cpu: Call::default(),
            preempted: 0,
            durations: Vec::with_capacity(1 << 16),
        }
    }

    pub(crate) fn tick(&mut self, shard: &mut Shard, now: u64, budget: usize) {
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
