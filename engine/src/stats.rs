//! Counters a shard keeps about itself, read by `STATS`/`INFO`.

/// A snapshot of one shard's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Reads that found a live entry.
    pub hits: u64,
    /// Reads that found nothing (or an expired or invalidated entry).
    pub misses: u64,
    /// Writes stored (SET, INCR, replicated writes).
    pub sets: u64,
    /// Entries deleted by a command.
    pub deletes: u64,
    /// Entries evicted to stay under the budget.
    pub evictions: u64,
    /// Entries removed because their TTL ran out.
    pub expirations: u64,
    /// Entries removed by prefix or tag invalidation.
    pub invalidations: u64,
    /// Live keys (expired entries not yet reclaimed count until they are).
    pub keys: u64,
    /// Tombstones kept for replicated deletes.
    pub tombstones: u64,
    /// Bytes charged against the budget.
    pub bytes_used: u64,
    /// The budget in bytes.
    pub budget: u64,
}

impl Stats {
    /// Adds another shard's counters to these (for per-node totals).
    pub fn merge(&mut self, o: &Stats) {
        self.hits += o.hits;
        self.misses += o.misses;
        self.sets += o.sets;
        self.deletes += o.deletes;
        self.evictions += o.evictions;
        self.expirations += o.expirations;
        self.invalidations += o.invalidations;
        self.keys += o.keys;
        self.tombstones += o.tombstones;
        self.bytes_used += o.bytes_used;
        self.budget += o.budget;
    }

    /// Name and value of every counter, in a stable order (for INFO output).
    pub fn fields(&self) -> [(&'static str, u64); 11] {
        [
            ("hits", self.hits),
            ("misses", self.misses),
            ("sets", self.sets),
            ("deletes", self.deletes),
            ("evictions", self.evictions),
            ("expirations", self.expirations),
            ("invalidations", self.invalidations),
            ("keys", self.keys),
            ("tombstones", self.tombstones),
            ("bytes_used", self.bytes_used),
            ("budget", self.budget),
        ]
    }
}
