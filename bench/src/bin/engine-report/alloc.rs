//! The counting global allocator installed for the whole report (live heap bytes, those of
//! alignment 1, largest single allocation) and the process's resident set size.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// Counts live heap bytes: all of them, and those of alignment 1 (in the shard these are only
/// the key/value blocks, `KvBlock`; its arrays and tables have larger alignment).
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static LIVE_ALIGN1: AtomicUsize = AtomicUsize::new(0);
/// Largest single allocation (or reallocation target) since last reset.
pub(crate) static LARGEST: AtomicUsize = AtomicUsize::new(0);

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
        // SAFETY: the caller's contract for this method is `System`'s, forwarded unchanged.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            add(layout, layout.size());
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for this method is `System`'s, forwarded unchanged.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            add(layout, layout.size());
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract for this method is `System`'s, forwarded unchanged.
        unsafe { System.dealloc(ptr, layout) };
        sub(layout, layout.size());
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract for this method is `System`'s, forwarded unchanged.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            sub(layout, layout.size());
            add(layout, new_size);
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

pub(crate) fn live() -> usize {
    LIVE.load(Relaxed)
}

pub(crate) fn live_blocks() -> usize {
    LIVE_ALIGN1.load(Relaxed)
}

/// Resident set size of this process in bytes (VmRSS of /proc/self/status).
pub(crate) fn rss() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
        .map_or(0, |kb| kb * 1024)
}
