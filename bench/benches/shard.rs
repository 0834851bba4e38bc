//! Throughput of one `Shard` side by side with `lru::LruCache` on the same 1M 16-byte keys and
//! 32-byte values: get of resident keys, get of absent keys, and set of absent keys into a full
//! cache (every set evicts). Both caches receive the same borrowed slices in the same order.
//!
//! `cargo bench -p ringcache-bench --bench shard`

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ringcache_bench::{Case, Data, Lookup, LruGet, LruInput, LruSet, ShardGet, ShardSet};

const KEYS: usize = 1_000_000;

fn bench(c: &mut Criterion) {
    let data = Data::new(KEYS);

    for (name, lookup) in [("get_hit", Lookup::Hit), ("get_miss", Lookup::Miss)] {
        let mut g = c.benchmark_group(name);
        g.throughput(Throughput::Elements(1));
        let mut shard = ShardGet::new(&data, lookup);
        g.bench_function("shard", |b| b.iter_custom(|n| shard.run(n)));
        drop(shard);
        let mut lru = LruGet::new(&data, lookup);
        g.bench_function("lru", |b| b.iter_custom(|n| lru.run(n)));
        g.finish();
    }

    let mut g = c.benchmark_group("set_evicting");
    g.throughput(Throughput::Elements(1));
    let mut shard = ShardSet::new(&data);
    g.bench_function("shard", |b| b.iter_custom(|n| shard.run(n)));
    drop(shard);
    let mut lru = LruSet::new(&data, LruInput::Copy);
    g.bench_function("lru_copy", |b| b.iter_custom(|n| lru.run(n)));
    drop(lru);
    let mut lru = LruSet::new(&data, LruInput::Prebuilt);
    g.bench_function("lru_prebuilt", |b| b.iter_custom(|n| lru.run(n)));
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench
}
criterion_main!(benches);
