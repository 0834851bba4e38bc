//! Section `memory`: overhead per entry beyond key + value of a shard loaded with `N` entries,
//! by the counting allocator and by VmRSS, and the slowest single `set` of the load.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use ringcache_bench::{entry_charge, Data, KEY_LEN, NOW, VALUE_LEN};
use ringcache_engine::{SetOptions, Shard, ShardConfig};

use crate::alloc::{live, live_blocks, rss};
use crate::{ms, pass, N};

const KV: f64 = (KEY_LEN + VALUE_LEN) as f64;

pub(crate) struct Memory {
    alloc_per_entry: f64,
    rss_per_entry: f64,
    block_per_entry: f64,
    structures_per_entry: f64,
    /// The slowest single `set` of the load and its index (a hash table growth lands on one).
    slowest_set: (Duration, usize),
}

pub(crate) fn memory(data: &Data) -> Memory {
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

pub(crate) fn report_memory(w: &mut String, mem: &Memory) {
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
