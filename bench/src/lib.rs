//! Shared workload generation and measured cases for ringcache's engine benchmarks.
//!
//! The criterion benches (`benches/shard.rs`) and the `engine-report` binary use the same
//! inputs and the same timed loops, so their numbers can be compared. Every input is generated
//! from a fixed seed and built before any timed loop; inside a timed loop both caches receive the
//! same borrowed key and value slices.

use std::hint::black_box;
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use lru::LruCache;
use rand::prelude::*;
use rand::rngs::StdRng;
use rand_distr::Zipf;
use ringcache_engine::{EvictionPolicy, KvBlock, SetOptions, Shard, ShardConfig, ENTRY_OVERHEAD};

/// Key length of every benchmark key.
pub const KEY_LEN: usize = 16;
/// Value length of every benchmark value.
pub const VALUE_LEN: usize = 32;
/// A benchmark key.
pub type Key = [u8; KEY_LEN];
/// A benchmark value.
pub type Value = [u8; VALUE_LEN];
/// The clock handed to the shard in throughput cases (no entry has a TTL there).
pub const NOW: u64 = 1_000_000;

/// An owned key/value pair as `lru::LruCache` stores it.
pub type Owned = (Box<[u8]>, Box<[u8]>);

/// Budget charge of one benchmark entry in a [`Shard`]: the key/value block (with its 2-byte
/// length header) plus [`ENTRY_OVERHEAD`].
pub fn entry_charge() -> usize {
    KvBlock::alloc_size_for(KEY_LEN, VALUE_LEN) + ENTRY_OVERHEAD
}

/// `n` random distinct keys from `seed` (128 random bits each; a collision is not a concern).
pub fn gen_keys(n: usize, seed: u64) -> Vec<Key> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let mut k = [0u8; KEY_LEN];
            rng.fill_bytes(&mut k);
            k
        })
        .collect()
}

/// The value stored under key number `i` (deterministic, distinct per `i`).
pub fn value_for(i: usize) -> Value {
    let mut v = [0u8; VALUE_LEN];
    let mut x = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    for chunk in v.chunks_mut(8) {
        x ^= x >> 31;
        x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
        chunk.copy_from_slice(&x.to_le_bytes());
    }
    v
}

/// The inputs of the throughput cases: `2n` keys and their values, and a random visiting order
/// of `0..n`. Keys `0..n` are the resident set; keys `n..2n` are never inserted by the get cases
/// (misses) and are the fresh keys of the set case.
pub struct Data {
    /// Resident set size.
    pub n: usize,
    /// `2n` keys.
    pub keys: Vec<Key>,
    /// `values[i]` belongs to `keys[i]`.
    pub values: Vec<Value>,
    /// A permutation of `0..n`: the order in which get cases visit keys.
    pub order: Vec<u32>,
}

impl Data {
    /// Inputs for a resident set of `n` entries.
    pub fn new(n: usize) -> Data {
        let keys = gen_keys(2 * n, 0x6b65_7973);
        let values = (0..2 * n).map(value_for).collect();
        let mut order: Vec<u32> = (0..n as u32).collect();
        order.shuffle(&mut StdRng::seed_from_u64(0x006f_7264_6572));
        Data {
            n,
            keys,
            values,
            order,
        }
    }

    /// A shard holding keys `0..n`, with room for `room` entries in its budget.
    pub fn shard(&self, policy: EvictionPolicy, room: usize) -> Shard {
        let config = ShardConfig {
            budget_bytes: room * entry_charge(),
            policy,
            ..ShardConfig::default()
        };
        let mut shard = Shard::new(config, NOW);
        let opts = SetOptions::default();
        for i in 0..self.n {
            shard
                .set(&self.keys[i], &self.values[i], &opts, NOW, i as u64 + 1)
                .expect("benchmark entry fits");
        }
        shard
    }

    /// An `lru::LruCache` of capacity `n` holding keys `0..n`.
    pub fn lru(&self) -> LruCache<Box<[u8]>, Box<[u8]>> {
        let mut lru = LruCache::new(NonZeroUsize::new(self.n.max(1)).expect("n > 0"));
        for i in 0..self.n {
            lru.put(Box::from(&self.keys[i][..]), Box::from(&self.values[i][..]));
        }
        lru
    }
}

/// A measured operation: `run(ops)` performs `ops` operations and returns the time they took
/// (setup excluded). State carries over between calls, so repeated runs keep going.
pub trait Case {
    /// Runs `ops` operations and returns their measured time.
    fn run(&mut self, ops: u64) -> Duration;
}

/// Which keys a get case reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// Resident keys (`0..n`): every get hits.
    Hit,
    /// Keys never inserted (`n..2n`): every get misses.
    Miss,
}

impl Lookup {
    fn base(self, data: &Data) -> usize {
        match self {
            Lookup::Hit => 0,
            Lookup::Miss => data.n,
        }
    }
}

/// `Shard::get` over the resident set or the absent keys, in random order.
pub struct ShardGet<'a> {
    data: &'a Data,
    shard: Shard,
    base: usize,
    pos: usize,
}

impl<'a> ShardGet<'a> {
    /// A shard (LRU) holding keys `0..n`, read with `lookup` keys.
    pub fn new(data: &'a Data, lookup: Lookup) -> Self {
        ShardGet {
            data,
            shard: data.shard(EvictionPolicy::Lru, 2 * data.n),
            base: lookup.base(data),
            pos: 0,
        }
    }
}

impl Case for ShardGet<'_> {
    fn run(&mut self, ops: u64) -> Duration {
        let (keys, order) = (&self.data.keys[self.base..], &self.data.order[..]);
        let mut pos = self.pos;
        let t = Instant::now();
        for _ in 0..ops {
            // Opaque, as a key read from a socket is: a length known at compile time would let
            // the compiler specialise an inlined lookup (hash and compare) for 16-byte keys.
            let key: &[u8] = black_box(&keys[order[pos] as usize]);
            black_box(self.shard.get(key, NOW).map(|h| h.value.len()));
            pos += 1;
            if pos == order.len() {
                pos = 0;
            }
        }
        let d = t.elapsed();
        self.pos = pos;
        d
    }
}

/// `LruCache::get` with the same keys and order as [`ShardGet`].
pub struct LruGet<'a> {
    data: &'a Data,
    lru: LruCache<Box<[u8]>, Box<[u8]>>,
    base: usize,
    pos: usize,
}

impl<'a> LruGet<'a> {
    /// An `LruCache` holding keys `0..n`, read with `lookup` keys.
    pub fn new(data: &'a Data, lookup: Lookup) -> Self {
        LruGet {
            data,
            lru: data.lru(),
            base: lookup.base(data),
            pos: 0,
        }
    }
}

impl Case for LruGet<'_> {
    fn run(&mut self, ops: u64) -> Duration {
        let (keys, order) = (&self.data.keys[self.base..], &self.data.order[..]);
        let mut pos = self.pos;
        let t = Instant::now();
        for _ in 0..ops {
            // Opaque for the same reason as in `ShardGet`.
            let key: &[u8] = black_box(&keys[order[pos] as usize]);
            black_box(self.lru.get(key).map(|v| v.len()));
            pos += 1;
            if pos == order.len() {
                pos = 0;
            }
        }
        let d = t.elapsed();
        self.pos = pos;
        d
    }
}

/// Next key of the evicting set cases: cycling through all `2n` keys starting at `n` while the
/// cache holds `n` entries, the key written was last written `2n` writes ago and has been
/// evicted since, so every write is a new entry that evicts one.
#[inline]
fn next_set_pos(pos: usize, data: &Data) -> usize {
    let p = pos + 1;
    if p == data.keys.len() {
        0
    } else {
        p
    }
}

/// `Shard::set` of absent keys into a full budget (LRU): every set evicts one entry.
pub struct ShardSet<'a> {
    data: &'a Data,
    shard: Shard,
    pos: usize,
    version: u64,
}

impl<'a> ShardSet<'a> {
    /// A shard whose budget holds exactly its `n` entries.
    pub fn new(data: &'a Data) -> Self {
        ShardSet {
            data,
            shard: data.shard(EvictionPolicy::Lru, data.n),
            pos: data.n,
            version: data.n as u64 + 1,
        }
    }

    /// The shard (to check that sets evicted).
    pub fn shard(&self) -> &Shard {
        &self.shard
    }
}

impl Case for ShardSet<'_> {
    fn run(&mut self, ops: u64) -> Duration {
        let opts = SetOptions::default();
        let data = self.data;
        let mut pos = self.pos;
        let t = Instant::now();
        for _ in 0..ops {
            self.version += 1;
            let r = self
                .shard
                .set(&data.keys[pos], &data.values[pos], &opts, NOW, self.version);
            black_box(r.is_ok());
            pos = next_set_pos(pos, data);
        }
        let d = t.elapsed();
        self.pos = pos;
        d
    }
}

/// How the `LruCache` set case gets its owned key and value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LruInput {
    /// Copies the borrowed slices into fresh boxes inside the timed loop, as the shard copies
    /// them into its block (same work for both: borrowed input in, owned copy stored).
    Copy,
    /// Gets boxes built before the timed loop (the copy and allocation are not timed; freeing
    /// the evicted pair is).
    Prebuilt,
}

/// `LruCache::push` of absent keys into a full cache of capacity `n`: every push evicts.
pub struct LruSet<'a> {
    data: &'a Data,
    lru: LruCache<Box<[u8]>, Box<[u8]>>,
    input: LruInput,
    pos: usize,
}

impl<'a> LruSet<'a> {
    /// An `LruCache` of capacity `n` holding `n` entries.
    pub fn new(data: &'a Data, input: LruInput) -> Self {
        LruSet {
            data,
            lru: data.lru(),
            input,
            pos: data.n,
        }
    }
}

/// Pairs are prebuilt this many at a time (bounded memory; building is not timed).
const PREBUILT_BATCH: u64 = 1 << 16;

impl Case for LruSet<'_> {
    fn run(&mut self, ops: u64) -> Duration {
        let data = self.data;
        match self.input {
            LruInput::Copy => {
                let mut pos = self.pos;
                let t = Instant::now();
                for _ in 0..ops {
                    let k: Box<[u8]> = Box::from(&data.keys[pos][..]);
                    let v: Box<[u8]> = Box::from(&data.values[pos][..]);
                    black_box(self.lru.push(k, v));
                    pos = next_set_pos(pos, data);
                }
                let d = t.elapsed();
                self.pos = pos;
                d
            }
            LruInput::Prebuilt => {
                let mut total = Duration::ZERO;
                let mut left = ops;
                let mut batch: Vec<Owned> = Vec::with_capacity(PREBUILT_BATCH as usize);
                while left > 0 {
                    let n = left.min(PREBUILT_BATCH);
                    for _ in 0..n {
                        let p = self.pos;
                        batch.push((Box::from(&data.keys[p][..]), Box::from(&data.values[p][..])));
                        self.pos = next_set_pos(p, data);
                    }
                    let t = Instant::now();
                    for (k, v) in batch.drain(..) {
                        black_box(self.lru.push(k, v));
                    }
                    total += t.elapsed();
                    left -= n;
                }
                total
            }
        }
    }
}

/// How many operations of `case` take about `secs` seconds (one calibration run, which also
/// warms caches and the allocator).
pub fn calibrate(case: &mut dyn Case, secs: f64) -> u64 {
    let probe = 200_000;
    let d = case.run(probe).as_secs_f64().max(1e-6);
    ((probe as f64 / d) * secs).max(10_000.0) as u64
}

/// Runs every case `runs` times for about `secs` seconds each, interleaved (case 0, case 1, ...,
/// then again), so that slow drifts in machine load hit all cases alike. Returns each case's
/// throughput per run in millions of operations per second.
pub fn interleaved_mops(cases: &mut [&mut dyn Case], runs: usize, secs: f64) -> Vec<Vec<f64>> {
    let ops: Vec<u64> = cases.iter_mut().map(|c| calibrate(*c, secs)).collect();
    let mut out = vec![Vec::with_capacity(runs); cases.len()];
    for _ in 0..runs {
        for (i, c) in cases.iter_mut().enumerate() {
            out[i].push(ops[i] as f64 / c.run(ops[i]).as_secs_f64() / 1e6);
        }
    }
    out
}

/// The median of `xs` (upper median for an even count; NaN for none).
pub fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

// ---------------------------------------------------------------------------------------------
// Hit-ratio workloads
// ---------------------------------------------------------------------------------------------

/// A request trace over a key space: an index below `key_space` names `keys[index]` (a Zipf
/// request); an index at or above it names scan key number `index - key_space`, which occurs
/// exactly once in the trace.
pub struct Trace {
    /// Size of the Zipf key space.
    pub key_space: usize,
    /// The requests, in order.
    pub requests: Vec<u64>,
}

impl Trace {
    /// `requests` Zipf(`s`) draws over `key_space` keys (rank 1 is the hottest key).
    pub fn zipf(key_space: usize, requests: usize, s: f64, seed: u64) -> Trace {
        let mut rng = StdRng::seed_from_u64(seed);
        let zipf = Zipf::new(key_space as u64, s).expect("valid Zipf parameters");
        let requests = (0..requests)
            .map(|_| (zipf.sample(&mut rng) as u64).clamp(1, key_space as u64) - 1)
            .collect();
        Trace {
            key_space,
            requests,
        }
    }

    /// This trace with a one-pass scan of `scan_len` fresh keys inserted after every `every`
    /// requests (the scan keys never repeat).
    pub fn with_scans(&self, every: usize, scan_len: usize) -> Trace {
        let mut out = Vec::with_capacity(self.requests.len() * (every + scan_len) / every + 1);
        let mut next_scan = self.key_space as u64;
        for (i, &r) in self.requests.iter().enumerate() {
            out.push(r);
            if (i + 1) % every == 0 {
                out.extend(next_scan..next_scan + scan_len as u64);
                next_scan += scan_len as u64;
            }
        }
        Trace {
            key_space: self.key_space,
            requests: out,
        }
    }

    /// The key bytes of request `r`.
    #[inline]
    pub fn key(&self, keys: &[Key], r: u64) -> Key {
        if (r as usize) < self.key_space {
            keys[r as usize]
        } else {
            let mut k = *b"scan\0\0\0\0\0\0\0\0\0\0\0\0";
            k[4..12].copy_from_slice(&(r - self.key_space as u64).to_le_bytes());
            k
        }
    }

    /// Whether request `r` is a Zipf request (not a scan).
    #[inline]
    pub fn is_zipf(&self, r: u64) -> bool {
        (r as usize) < self.key_space
    }
}

/// Hits and requests of a replay.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HitCount {
    /// Hits among the Zipf requests.
    pub zipf_hits: u64,
    /// Zipf requests.
    pub zipf_requests: u64,
    /// Requests of any kind (scan requests never hit).
    pub requests: u64,
}

impl HitCount {
    /// Hit ratio over the Zipf requests, in percent.
    pub fn zipf_percent(&self) -> f64 {
        100.0 * self.zipf_hits as f64 / self.zipf_requests.max(1) as f64
    }

    /// Hit ratio over all requests, in percent.
    pub fn all_percent(&self) -> f64 {
        100.0 * self.zipf_hits as f64 / self.requests.max(1) as f64
    }

    fn record(&mut self, zipf: bool, hit: bool) {
        self.requests += 1;
        if zipf {
            self.zipf_requests += 1;
            self.zipf_hits += u64::from(hit);
        }
    }
}

/// Replays `trace` read-through against a shard with `policy` whose budget holds `capacity`
/// benchmark entries: a miss is followed by a set. The clock advances 1 ms per 1000 requests.
pub fn replay_shard(
    trace: &Trace,
    keys: &[Key],
    policy: EvictionPolicy,
    capacity: usize,
) -> HitCount {
    let config = ShardConfig {
        budget_bytes: capacity * entry_charge(),
        policy,
        ..ShardConfig::default()
    };
    let start = 1_000;
    let mut shard = Shard::new(config, start);
    let opts = SetOptions::default();
    let mut count = HitCount::default();
    for (i, &r) in trace.requests.iter().enumerate() {
        let now = start + i as u64 / 1000;
        let key = trace.key(keys, r);
        let hit = shard.get(&key, now).is_some();
        if !hit {
            let value = value_for(r as usize);
            shard
                .set(&key, &value, &opts, now, i as u64 + 1)
                .expect("benchmark entry fits");
        }
        count.record(trace.is_zipf(r), hit);
    }
    count
}

/// How often [`replay_moka`] runs moka's pending maintenance, in requests.
pub const MOKA_MAINTENANCE_EVERY: usize = 1000;

/// Replays `trace` read-through against `moka::sync::Cache` with `max_capacity = capacity`
/// entries (same keys). moka applies evictions asynchronously from a write buffer, so
/// `run_pending_tasks()` is called every [`MOKA_MAINTENANCE_EVERY`] requests to keep its size
/// near the capacity. Its hasher is SipHash with fixed keys, so runs are repeatable.
pub fn replay_moka(trace: &Trace, keys: &[Key], capacity: usize) -> HitCount {
    use std::hash::BuildHasherDefault;
    type Hasher = BuildHasherDefault<std::collections::hash_map::DefaultHasher>;
    let cache: moka::sync::Cache<Key, Value, Hasher> = moka::sync::Cache::builder()
        .max_capacity(capacity as u64)
        .build_with_hasher(Hasher::default());
    let mut count = HitCount::default();
    for (i, &r) in trace.requests.iter().enumerate() {
        let key = trace.key(keys, r);
        let hit = cache.get(&key).is_some();
        if !hit {
            cache.insert(key, value_for(r as usize));
        }
        count.record(trace.is_zipf(r), hit);
        if (i + 1) % MOKA_MAINTENANCE_EVERY == 0 {
            cache.run_pending_tasks();
        }
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_cases_always_evict() {
        let data = Data::new(1000);
        let mut s = ShardSet::new(&data);
        s.run(5000);
        let st = s.shard().stats();
        assert_eq!(st.keys, 1000);
        assert_eq!(st.evictions, 5000);
    }

    #[test]
    fn get_cases_hit_and_miss() {
        let data = Data::new(1000);
        let mut hit = ShardGet::new(&data, Lookup::Hit);
        hit.run(3000);
        assert_eq!(hit.shard.stats().hits, 3000);
        let mut miss = ShardGet::new(&data, Lookup::Miss);
        miss.run(3000);
        assert_eq!(miss.shard.stats().misses, 3000);
        let mut lru = LruGet::new(&data, Lookup::Hit);
        lru.run(10);
        assert_eq!(lru.lru.len(), 1000);
    }

    #[test]
    fn scans_never_repeat() {
        let t = Trace::zipf(1000, 100, 0.99, 1).with_scans(10, 50);
        assert_eq!(t.requests.len(), 100 + 10 * 50);
        let scans: Vec<u64> = t.requests.iter().copied().filter(|&r| r >= 1000).collect();
        let mut dedup = scans.clone();
        dedup.dedup();
        assert_eq!(scans.len(), dedup.len());
        assert_eq!(scans.len(), 500);
    }

    #[test]
    fn replays_count_requests() {
        let keys = gen_keys(1000, 7);
        let t = Trace::zipf(1000, 5000, 0.99, 2);
        let s = replay_shard(&t, &keys, EvictionPolicy::S3Fifo, 100);
        let m = replay_moka(&t, &keys, 100);
        assert_eq!(s.requests, 5000);
        assert_eq!(m.requests, 5000);
        assert!(s.zipf_hits > 0 && m.zipf_hits > 0);
    }
}
