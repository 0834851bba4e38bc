//! The `Shard`: one core's store. This file holds its storage internals — lookup, insertion,
//! removal, the budget and eviction, and `advance` (expiry and invalidation sweeps); the commands
//! are in `commands.rs` and replica writes in `replica.rs`.

use std::hash::BuildHasher;

use crate::entry::{Entry, Meta, MAX_EXPIRY_REL};
use crate::index::Index;
use crate::invalidation::Invalidations;
use crate::kv_block::KvBlock;
use crate::policy::{EvictionPolicy, Policy};
use crate::slab::Slab;
use crate::stats::Stats;
use crate::tags::{tags_charge, TagStore};
use crate::timing_wheel::{Poll, TimingWheel, WheelItem};

/// Bytes charged per entry on top of its key and value: the 32-byte slab slot, its share of the
/// hash table, the allocation header and the allocator's rounding.
pub const ENTRY_OVERHEAD: usize = 56;

/// Work units one removal counts for in `advance` (a wheel step or a slot check is one).
const REMOVAL_WORK: usize = 4;

/// The table seed of `ShardConfig::default()`: fixed, so tests and benchmarks hash a key the
/// same in every run. A node hands each core a random seed instead (see `ShardConfig::hash_seed`).
pub const DEFAULT_HASH_SEED: u64 = 0x5eed_cafe_f00d_d00d;

/// How a shard is built.
#[derive(Clone, Debug)]
pub struct ShardConfig {
    /// Hard memory budget in bytes (keys, values and per-entry overhead).
    pub budget_bytes: usize,
    /// Which entry leaves when the budget is full.
    pub policy: EvictionPolicy,
    /// Longest key accepted.
    pub max_key_len: usize,
    /// Longest value accepted.
    pub max_value_len: usize,
    /// How long a replicated delete's tombstone is kept, in ms.
    pub tombstone_ttl_ms: u64,
    /// Seeds the table's key hash. Keys come from clients: a server gives every shard a random
    /// seed so collisions cannot be prepared offline. Only the table uses it; where a key is
    /// placed (ring, core) is the cluster-wide `key_hash`, never this.
    pub hash_seed: u64,
}

impl Default for ShardConfig {
    fn default() -> Self {
        ShardConfig {
            budget_bytes: 64 << 20,
            policy: EvictionPolicy::Lru,
            max_key_len: 64 << 10,
            max_value_len: 8 << 20,
            tombstone_ttl_ms: 60_000,
            hash_seed: DEFAULT_HASH_SEED,
        }
    }
}

/// Why an entry left the shard (selects the counter).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Removal {
    Replaced,
    Deleted,
    Evicted,
    Expired,
    /// Expired by the wheel item now being consumed (that item is not left stale).
    ExpiredByWheel,
    Invalidated,
}

/// What a key lookup found, after lazily dropping an expired or invalidated entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Found {
    Live(u32),
    Tombstone(u32),
    Absent,
}

/// One core's store. Times are milliseconds on the caller's clock (the node uses Unix time);
/// versions are handed in by the caller and must rise with every write for invalidation rules
/// to spare writes made after them.
///
/// Invariants: every live slab slot is in `table` exactly once and known to `policy`; `used` is
/// the sum of the charges of the live slots and never exceeds the budget after a call returns;
/// an entry with an expiry has a wheel item at that expiry (`ttl_entries` counts them); items
/// that name a removed entry or an old expiry are `wheel_stale` (approximately).
#[derive(Debug)]
pub struct Shard {
    pub(crate) config: ShardConfig,
    /// Time base: an expiry is stored as milliseconds after `base` (always >= 1).
    pub(crate) base: u64,
    hasher: foldhash::fast::FixedState,
    table: Index,
    pub(crate) slab: Slab,
    pub(crate) policy: Policy,
    pub(crate) wheel: TimingWheel,
    wheel_stale: usize,
    ttl_entries: usize,
    pub(crate) tags: TagStore,
    pub(crate) rules: Invalidations,
    pub(crate) max_version: u64,
    used: usize,
    pub(crate) stats: Stats,
    /// Structures of an emptied store, freed a slice per `advance` (see `release_step`).
    graveyard: Vec<crate::entry::Entry>,
    /// Whether the index may still hold empty segments worth freeing.
    index_to_release: bool,
}

impl Shard {
    /// An empty shard; `now` starts its clock.
    pub fn new(config: ShardConfig, now: u64) -> Shard {
        let policy = Policy::new(config.policy);
        let hasher = foldhash::fast::FixedState::with_seed(config.hash_seed);
        Shard {
            stats: Stats {
                budget: config.budget_bytes as u64,
                ..Stats::default()
            },
            config,
            base: now.saturating_sub(1),
            hasher,
            table: Index::default(),
            slab: Slab::default(),
            policy,
            wheel: TimingWheel::new(0),
            wheel_stale: 0,
            ttl_entries: 0,
            tags: TagStore::default(),
            rules: Invalidations::default(),
            max_version: 0,
            used: 0,
            graveyard: Vec::new(),
            index_to_release: false,
        }
    }

    /// The configuration it was built with.
    pub fn config(&self) -> &ShardConfig {
        &self.config
    }

    /// Counters and gauges.
    pub fn stats(&self) -> Stats {
        let mut s = self.stats;
        s.tombstones = s.tombstones.min(self.slab.live() as u64);
        s.keys = self.slab.live() as u64 - s.tombstones;
        s.bytes_used = self.used as u64;
        s
    }

    /// Bytes charged against the budget.
    pub fn used_bytes(&self) -> usize {
        self.used
    }

    /// Entries held, live or awaiting reclamation (tombstones excluded).
    pub fn len(&self) -> usize {
        self.stats().keys as usize
    }

    /// Whether the shard holds no entry.
    pub fn is_empty(&self) -> bool {
        self.slab.live() == 0
    }

    /// Heap bytes of the shard's own structures beyond the entries' blocks (diagnostics).
    pub fn structure_bytes(&self) -> usize {
        self.slab.heap_bytes()
            + self.table.capacity() * (std::mem::size_of::<u32>() + 1)
            + self.wheel.heap_bytes()
            + self.policy.heap_bytes()
    }

    /// The shard's hash of a key.
    #[inline]
    pub(crate) fn hash(&self, key: &[u8]) -> u64 {
        hash_key(&self.hasher, key)
    }

    #[inline]
    pub(crate) fn rel_expiry(&self, at: u64) -> u64 {
        at.saturating_sub(self.base).clamp(1, MAX_EXPIRY_REL)
    }

    #[inline]
    pub(crate) fn abs_expiry(&self, meta: Meta) -> Option<u64> {
        let rel = meta.expiry_rel();
        (rel != 0).then(|| self.base + rel)
    }

    #[inline]
    pub(crate) fn is_expired(&self, meta: Meta, now: u64) -> bool {
        let rel = meta.expiry_rel();
        rel != 0 && self.base + rel <= now
    }

    /// The slot holding `key`, whatever its state.
    #[inline]
    pub(crate) fn locate(&self, hash: u64, key: &[u8]) -> Option<u32> {
        self.locate_value(hash, key).map(|(i, _, _)| i)
    }

    /// The slot holding `key`, its entry and its value, whatever its state, all read in the
    /// one pass that compares the key.
    #[inline(always)]
    pub(crate) fn locate_value(&self, hash: u64, key: &[u8]) -> Option<(u32, &Entry, &[u8])> {
        let slab = &self.slab;
        self.table.find_map(hash, |i| {
            let e = slab.get(i);
            let value = e.block.as_ref()?.value_if_key(key)?;
            Some((i, e, value))
        })
    }

    /// The hash `key` is filed under, for [`Shard::prefetch_hashes`].
    #[inline]
    pub fn key_hash(&self, key: &[u8]) -> u64 {
        self.hash(key)
    }

    /// Starts loading the entries filed under `hashes` (normally one each), their key/value
    /// blocks and their recency-list neighbours into the CPU cache, changing nothing. Calling it
    /// with a batch's keys before running the batch lets the cache misses of independent keys
    /// overlap instead of queueing.
    ///
    /// Two passes, so that the misses overlap at every step of the chain (index, slot, block)
    /// rather than key by key: the first walks the index and only hints each entry's slot; the
    /// second reads the slots, arriving by then, and hints the blocks and neighbours.
    pub fn prefetch_hashes(&self, hashes: &[u64]) {
        let slab = &self.slab;
        for &hash in hashes {
            let _ = self.table.find(hash, |&i| {
                slab.prefetch(i);
                false
            });
        }
        for &hash in hashes {
            let _ = self.table.find(hash, |&i| {
                let e = slab.get(i);
                if let Some(b) = e.block.as_ref() {
                    b.prefetch();
                }
                slab.prefetch(e.prev);
                slab.prefetch(e.next);
                false
            });
        }
    }

    /// [`Shard::prefetch_hashes`] of `keys`, a bounded number at a time.
    pub fn prefetch_keys<'k>(&self, keys: impl IntoIterator<Item = &'k [u8]>) {
        const CHUNK: usize = 32;
        let mut hashes = [0u64; CHUNK];
        let mut n = 0;
        for k in keys {
            hashes[n] = self.hash(k);
            n += 1;
            if n == CHUNK {
                self.prefetch_hashes(&hashes);
                n = 0;
            }
        }
        self.prefetch_hashes(&hashes[..n]);
    }

    /// Finds `key`, dropping it first if it has expired or been invalidated.
    #[inline(always)]
    pub(crate) fn lookup(&mut self, hash: u64, key: &[u8], now: u64) -> Found {
        let Some(idx) = self.locate(hash, key) else {
            return Found::Absent;
        };
        let meta = self.slab.get(idx).meta;
        // The common case, kept small so it inlines into every command: a live, unexpired
        // entry (most entries of a cache carry a TTL) and no pending invalidation.
        if self.is_plain_live(meta, now) {
            return Found::Live(idx);
        }
        self.lookup_slow(idx, hash, now)
    }

    /// Whether an entry with this `meta` is readable as is at `now`: unexpired, not a
    /// tombstone, and no invalidation rule pending (the common case of every lookup).
    #[inline(always)]
    pub(crate) fn is_plain_live(&self, meta: Meta, now: u64) -> bool {
        self.rules.is_empty() && !meta.tombstone() && !self.is_expired(meta, now)
    }

    /// The rest of [`Shard::lookup`], for an entry that is not plainly live.
    #[cold]
    #[inline(never)]
    pub(crate) fn lookup_slow(&mut self, idx: u32, hash: u64, now: u64) -> Found {
        let meta = self.slab.get(idx).meta;
        if self.is_expired(meta, now) {
            self.remove(idx, hash, Removal::Expired);
            return Found::Absent;
        }
        if meta.tombstone() {
            return Found::Tombstone(idx);
        }
        if !self.rules.is_empty() && self.invalidated(idx) {
            self.remove(idx, hash, Removal::Invalidated);
            return Found::Absent;
        }
        Found::Live(idx)
    }

    /// Whether a pending invalidation rule covers the live entry at `idx`.
    pub(crate) fn invalidated(&self, idx: u32) -> bool {
        let e = self.slab.get(idx);
        let Some(block) = e.block.as_ref() else {
            return false;
        };
        let tags = if e.meta.has_tags() {
            self.tags.get(idx)
        } else {
            &[]
        };
        self.rules.kills(block.key(), e.version, tags)
    }

    /// Budget charge of the entry at `idx`.
    pub(crate) fn charge(&self, idx: u32) -> usize {
        entry_charge(&self.slab, &self.tags, idx)
    }

    /// Removes the entry at `idx`, whose key hashes to `hash`.
    pub(crate) fn remove(&mut self, idx: u32, hash: u64, why: Removal) {
        let charge = self.charge(idx);
        let meta = self.slab.get(idx).meta;
        self.policy.on_remove(&mut self.slab, idx, charge);
        self.table.remove(hash, idx);
        if meta.expiry_rel() != 0 {
            self.ttl_entries -= 1;
            if why != Removal::ExpiredByWheel {
                self.wheel_stale += 1;
            }
        }
        if meta.has_tags() {
            self.tags.remove(idx);
        }
        if meta.tombstone() {
            self.stats.tombstones -= 1;
        }
        self.used -= charge;
        self.slab.remove(idx);
        match why {
            Removal::Replaced => {}
            Removal::Deleted => self.stats.deletes += 1,
            Removal::Evicted => self.stats.evictions += 1,
            Removal::Expired | Removal::ExpiredByWheel => {
                if !meta.tombstone() {
                    self.stats.expirations += 1
                }
            }
            Removal::Invalidated => self.stats.invalidations += 1,
        }
    }

    /// Removes the entry at `idx`, hashing its key to find it in the table.
    pub(crate) fn remove_idx(&mut self, idx: u32, why: Removal) {
        let hash = match self.slab.get(idx).block.as_ref() {
            Some(b) => self.hash(b.key()),
            None => return,
        };
        self.remove(idx, hash, why);
    }

    /// Evicts until `charge` more bytes fit in the budget.
    fn make_room(&mut self, charge: usize, now: u64) {
        let budget = self.config.budget_bytes;
        while self.used + charge > budget {
            let (tags, hasher) = (&self.tags, &self.hasher);
            let victim = self.policy.victim(
                &mut self.slab,
                budget,
                now,
                |slab, i| entry_charge(slab, tags, i),
                |slab, i| {
                    slab.get(i)
                        .block
                        .as_ref()
                        .map_or(0, |b| hash_key(hasher, b.key()))
                },
            );
            let Some(v) = victim else { break };
            let why = if self.is_expired(self.slab.get(v).meta, now) {
                Removal::Expired
            } else {
                Removal::Evicted
            };
            self.remove_idx(v, why);
        }
    }

    /// Stores a new entry for a key that is not in the table, evicting first to make room.
    /// `charge` is what [`Shard::new_charge`] said for the same lengths and tags; it fits the
    /// budget (the caller checked).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn insert<T: AsRef<[u8]>>(
        &mut self,
        hash: u64,
        block: KvBlock,
        charge: usize,
        version: u64,
        expiry_rel: u64,
        tags: &[T],
        tombstone: bool,
        now: u64,
    ) -> u32 {
        self.make_room(charge, now);
        let mut meta = Meta::default();
        meta.set_expiry_rel(expiry_rel);
        meta.set_tombstone(tombstone);
        meta.set_has_tags(!tags.is_empty());
        let idx = self.slab.insert(block, version, meta);
        let (slab, hasher) = (&self.slab, &self.hasher);
        self.table.insert(hash, idx, |&i| {
            slab.get(i)
                .block
                .as_ref()
                .map_or(0, |b| hash_key(hasher, b.key()))
        });
        self.policy
            .on_insert(&mut self.slab, idx, charge, hash, now);
        if expiry_rel != 0 {
            self.wheel.insert(WheelItem::new(idx, expiry_rel));
            self.ttl_entries += 1;
        }
        if !tags.is_empty() {
            self.tags.set(idx, tags);
        }
        if tombstone {
            self.stats.tombstones += 1;
        }
        self.used += charge;
        self.max_version = self.max_version.max(version);
        idx
    }

    /// Charge of an entry with these lengths and tags.
    pub(crate) fn new_charge<T: AsRef<[u8]>>(
        key_len: usize,
        value_len: usize,
        tags: &[T],
    ) -> usize {
        KvBlock::alloc_size_for(key_len, value_len) + ENTRY_OVERHEAD + tags_charge(tags)
    }

    /// Changes the expiry of the live entry at `idx` (0 = none), keeping the wheel in step.
    pub(crate) fn set_expiry(&mut self, idx: u32, rel: u64) {
        let old = self.slab.get(idx).meta.expiry_rel();
        if old == rel {
            return;
        }
        if old != 0 {
            self.wheel_stale += 1;
            self.ttl_entries -= 1;
        }
        if rel != 0 {
            self.wheel.insert(WheelItem::new(idx, rel));
            self.ttl_entries += 1;
        }
        self.slab.get_mut(idx).meta.set_expiry_rel(rel);
    }

    /// Reclaims expired entries and sweeps pending invalidations, doing at most about `budget`
    /// units of work (a wheel step or a slot checked is one unit, removing an entry four). Work
    /// left over carries to the next call. Returns the number of entries expired.
    pub fn advance(&mut self, now: u64, budget: usize) -> usize {
        let wheel_now = now.saturating_sub(self.base);
        let mut work = 0;
        let mut expired = 0;
        while work < budget {
            match self.wheel.poll(wheel_now) {
                Poll::Due(item) => {
                    work += 1;
                    let idx = item.slot();
                    let current = self
                        .slab
                        .get_live(idx)
                        .is_some_and(|e| e.meta.expiry_rel() == item.when());
                    if current {
                        self.remove_idx(idx, Removal::ExpiredByWheel);
                        expired += 1;
                        // A removal (unlink, table delete, free) costs several wheel steps.
                        work += REMOVAL_WORK - 1;
                    } else {
                        self.wheel_stale = self.wheel_stale.saturating_sub(1);
                    }
                }
                Poll::Worked => work += 1,
                Poll::Idle => break,
            }
        }
        // Items left behind by changed or removed expiries: purge them once they outnumber the
        // live ones, so the wheel stays proportional to the entries with a TTL.
        if work < budget && self.wheel_stale > self.ttl_entries + 1024 {
            let n = budget - work;
            let slab = &self.slab;
            let dropped = self.wheel.sweep(n, |it| {
                slab.get_live(it.slot())
                    .is_some_and(|e| e.meta.expiry_rel() == it.when())
            });
            self.wheel_stale = self.wheel_stale.saturating_sub(dropped);
            work += n;
        }
        if work < budget && !self.rules.is_empty() {
            self.sweep_rules(budget - work);
        }
        self.release_step();
        expired
    }

    /// Gives back the memory of an emptied store a bounded slice at a time: about 2 MiB of the
    /// old slot array and four index segments per call, so a core that expired or deleted
    /// everything returns its memory within a few hundred calls without ever stalling.
    fn release_step(&mut self) {
        const SLOT_STEP: usize = (2 << 20) / std::mem::size_of::<crate::entry::Entry>();
        if let Some(old) = self.slab.take_if_empty() {
            // Only free slots are left: the array holds no block to drop.
            self.graveyard = old;
            self.index_to_release = true;
        }
        if !self.graveyard.is_empty() || self.graveyard.capacity() > 0 {
            let keep = self.graveyard.len().saturating_sub(SLOT_STEP);
            self.graveyard.truncate(keep);
            self.graveyard.shrink_to(keep);
        }
        if self.index_to_release {
            self.index_to_release = self.table.release_empty(4);
        }
    }

    /// Checks up to `n` slab slots against the pending invalidation rules.
    pub(crate) fn sweep_rules(&mut self, n: usize) {
        let (start, len) = self.rules.next_slice(n, self.slab.capacity_slots());
        for idx in start..start + len as u32 {
            let live = self.slab.get_live(idx).is_some_and(|e| !e.meta.tombstone());
            if live && self.invalidated(idx) {
                self.remove_idx(idx, Removal::Invalidated);
            }
        }
        self.rules.swept(start, len);
    }

    /// Drops every entry at once and releases their memory.
    pub fn flush(&mut self) {
        self.graveyard = Vec::new();
        self.index_to_release = false;
        self.table = Index::default();
        self.slab.clear();
        self.policy.clear();
        self.wheel.clear(0);
        self.tags.clear();
        self.rules.clear();
        self.wheel_stale = 0;
        self.ttl_entries = 0;
        self.used = 0;
        self.stats.tombstones = 0;
    }

    /// Checks the structural invariants (for tests; O(n)).
    #[doc(hidden)]
    pub fn check_invariants(&self) {
        assert!(self.used <= self.config.budget_bytes, "over budget");
        assert_eq!(
            self.table.len(),
            self.slab.live(),
            "table and slab disagree"
        );
        let mut sum = 0;
        let mut ttl = 0;
        for i in 0..self.slab.capacity_slots() as u32 {
            if let Some(e) = self.slab.get_live(i) {
                sum += self.charge(i);
                ttl += usize::from(e.meta.expiry_rel() != 0);
                let key = e.block.as_ref().map(|b| b.key()).unwrap_or_default();
                assert_eq!(
                    self.locate(self.hash(key), key),
                    Some(i),
                    "slot not indexed"
                );
            }
        }
        assert_eq!(sum, self.used, "charges do not add up");
        assert_eq!(ttl, self.ttl_entries, "ttl entry count off");
    }
}

/// The table hash of a key. No length prefix is mixed in: keys are compared whole on lookup, so
/// the hash need not be prefix-free.
#[inline]
fn hash_key(hasher: &foldhash::fast::FixedState, key: &[u8]) -> u64 {
    use std::hash::Hasher;
    let mut h = hasher.build_hasher();
    h.write(key);
    h.finish()
}

fn entry_charge(slab: &Slab, tags: &TagStore, idx: u32) -> usize {
    let e = slab.get(idx);
    let base = e.block.as_ref().map_or(0, |b| b.alloc_size()) + ENTRY_OVERHEAD;
    if e.meta.has_tags() {
        base + tags_charge(tags.get(idx))
    } else {
        base
    }
}
