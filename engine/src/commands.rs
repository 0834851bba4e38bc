//! The commands a client can run against a shard: reads, writes with conditions and TTLs,
//! deletes, TTL changes, counters and invalidation.

use std::io::Write;

use crate::error::EngineError;
use crate::invalidation::Matcher;
use crate::kv_block::KvBlock;
use crate::shard::{Found, Removal, Shard};

/// A live entry returned by a read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hit<'a> {
    /// The value.
    pub value: &'a [u8],
    /// The version stamped by the write that stored it.
    pub version: u64,
    /// When it expires (caller's clock, ms), if it does.
    pub expires_at: Option<u64>,
}

/// The expiry a write gives its entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Expiry {
    /// No expiry (a plain SET clears any previous TTL).
    #[default]
    Never,
    /// Keep the existing entry's expiry (KEEPTTL).
    Keep,
    /// Expire at this time (caller's clock, ms). A time not after `now` deletes the key.
    At(u64),
}

/// The existence condition of a write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SetCondition {
    /// Always write.
    #[default]
    Always,
    /// Write only if the key is absent (NX).
    IfAbsent,
    /// Write only if the key is present (XX).
    IfPresent,
}

/// Options of [`Shard::set`].
#[derive(Clone, Copy, Debug, Default)]
pub struct SetOptions<'a> {
    /// The entry's expiry.
    pub expiry: Expiry,
    /// NX / XX.
    pub condition: SetCondition,
    /// Compare-and-set: write only if the live entry has exactly this version.
    pub if_version: Option<u64>,
    /// Tags for `INVALIDATE TAG`.
    pub tags: &'a [&'a [u8]],
}

/// What a write did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetOutcome {
    /// Stored (or, for an expiry already past, deleted).
    Stored,
    /// NX or XX did not hold; nothing changed.
    NotStored,
    /// IF-VERSION did not match the live entry's version (`None`: no live entry).
    VersionMismatch {
        /// The live entry's version, if there is one.
        current: Option<u64>,
    },
}

/// The remaining life of a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ttl {
    /// No such key.
    Missing,
    /// The key never expires.
    Persistent,
    /// Milliseconds left.
    Remaining(u64),
}

impl Shard {
    fn check_key(&self, key: &[u8]) -> Result<(), EngineError> {
        let max = self.config.max_key_len;
        if key.len() > max {
            return Err(EngineError::KeyTooLarge {
                len: key.len(),
                max,
            });
        }
        Ok(())
    }

    /// Checks limits and budget for a new entry and returns its charge.
    pub(crate) fn admit<T: AsRef<[u8]>>(
        &self,
        key: &[u8],
        value_len: usize,
        tags: &[T],
    ) -> Result<usize, EngineError> {
        self.check_key(key)?;
        let max = self.config.max_value_len;
        if value_len > max {
            return Err(EngineError::ValueTooLarge {
                len: value_len,
                max,
            });
        }
        let charge = Self::new_charge(key.len(), value_len, tags);
        let budget = self.config.budget_bytes;
        if charge > budget {
            return Err(EngineError::EntryTooLarge { charge, budget });
        }
        Ok(charge)
    }

    /// Reads `key`: its value, version and expiry, counting a hit or a miss.
    // Always inlined, and the hit path kept to one index probe that reads slot, key and value
    // together: a lookup loop is bound by how many lookups' cache misses fit in the CPU's
    // window, so every instruction counts (figures in tuning.md and the commit history). Mind
    // that the probe's comparison closure sits at LLVM's inlining limit: a few more
    // instructions in it and it is called out of line, which costs far more than they do.
    #[inline(always)]
    pub fn get(&mut self, key: &[u8], now: u64) -> Option<Hit<'_>> {
        let hash = self.hash(key);
        let Some((idx, e, value)) = self.locate_value(hash, key) else {
            self.stats.misses += 1;
            return None;
        };
        let (meta, version, value) = (e.meta, e.version, value as *const [u8]);
        if !self.is_plain_live(meta, now) {
            return self.get_unusual(idx, hash, now);
        }
        // The hit path reads the slot and block once: the value is taken while comparing the
        // key, before the policy update (which only relinks slots).
        let expires_at = self.abs_expiry(meta);
        self.stats.hits += 1;
        self.policy.on_access(&mut self.slab, idx, now);
        // SAFETY: `value` points into the entry's key/value block, a heap allocation of its own.
        // `Policy::on_access` rewrites links and policy bits only (it never drops, replaces or
        // writes a block), so the bytes are alive and unchanged; the returned `Hit` borrows
        // `self`, so nothing can free them while it lives.
        let value = unsafe { &*value };
        Some(Hit {
            value,
            version,
            expires_at,
        })
    }

    /// [`Shard::get`] of an entry that has expired, is a tombstone or may be under a pending
    /// invalidation rule. Out of line, so that the inlined hit path stays small.
    #[cold]
    #[inline(never)]
    fn get_unusual(&mut self, idx: u32, hash: u64, now: u64) -> Option<Hit<'_>> {
        match self.lookup_slow(idx, hash, now) {
            Found::Live(idx) => {
                self.stats.hits += 1;
                self.policy.on_access(&mut self.slab, idx, now);
                let e = self.slab.get(idx);
                let expires_at = self.abs_expiry(e.meta);
                e.block.as_ref().map(|b| Hit {
                    value: b.value(),
                    version: e.version,
                    expires_at,
                })
            }
            _ => {
                self.stats.misses += 1;
                None
            }
        }
    }

    /// Reads `key` without counting it or refreshing its recency (for building multi-key
    /// replies after [`Shard::get`] has counted each key).
    pub fn peek(&self, key: &[u8], now: u64) -> Option<Hit<'_>> {
        self.entry(key, now).map(|e| Hit {
            value: e.value,
            version: e.version,
            expires_at: e.expires_at,
        })
    }

    /// Reads several keys, handing each result to `each` in order.
    pub fn get_many<'k>(
        &mut self,
        keys: impl IntoIterator<Item = &'k [u8]>,
        now: u64,
        mut each: impl FnMut(Option<Hit<'_>>),
    ) {
        for k in keys {
            each(self.get(k, now));
        }
    }

    /// Writes `key` = `value` stamped with `version`, under the conditions of `opts`.
    pub fn set(
        &mut self,
        key: &[u8],
        value: &[u8],
        opts: &SetOptions<'_>,
        now: u64,
        version: u64,
    ) -> Result<SetOutcome, EngineError> {
        let charge = self.admit(key, value.len(), opts.tags)?;
        let hash = self.hash(key);
        let found = self.lookup(hash, key, now);
        let live = match found {
            Found::Live(i) => Some(i),
            _ => None,
        };
        match opts.condition {
            SetCondition::IfAbsent if live.is_some() => return Ok(SetOutcome::NotStored),
            SetCondition::IfPresent if live.is_none() => return Ok(SetOutcome::NotStored),
            _ => {}
        }
        if let Some(want) = opts.if_version {
            let current = live.map(|i| self.slab.get(i).version);
            if current != Some(want) {
                return Ok(SetOutcome::VersionMismatch { current });
            }
        }
        let rel = match opts.expiry {
            Expiry::Never => 0,
            Expiry::Keep => live.map_or(0, |i| self.slab.get(i).meta.expiry_rel()),
            Expiry::At(at) if at <= now => {
                if let Some(i) = live {
                    self.remove(i, hash, Removal::Deleted);
                }
                return Ok(SetOutcome::Stored);
            }
            Expiry::At(at) => self.rel_expiry(at),
        };
        match found {
            Found::Live(i) | Found::Tombstone(i) => self.remove(i, hash, Removal::Replaced),
            Found::Absent => {}
        }
        let block = KvBlock::new(key, value);
        self.insert(hash, block, charge, version, rel, opts.tags, false, now);
        self.stats.sets += 1;
        Ok(SetOutcome::Stored)
    }

    /// Deletes `key`; says whether a live entry was removed.
    pub fn delete(&mut self, key: &[u8], now: u64) -> bool {
        let hash = self.hash(key);
        match self.lookup(hash, key, now) {
            Found::Live(i) => {
                self.remove(i, hash, Removal::Deleted);
                true
            }
            _ => false,
        }
    }

    /// Whether `key` is live (does not count as a read or refresh recency).
    pub fn exists(&mut self, key: &[u8], now: u64) -> bool {
        let hash = self.hash(key);
        matches!(self.lookup(hash, key, now), Found::Live(_))
    }

    /// Marks `key` as used (recency/frequency) without reading it; says whether it is live.
    pub fn touch(&mut self, key: &[u8], now: u64) -> bool {
        let hash = self.hash(key);
        match self.lookup(hash, key, now) {
            Found::Live(i) => {
                self.policy.on_access(&mut self.slab, i, now);
                true
            }
            _ => false,
        }
    }

    /// Sets `key` to expire at `at`; a time not after `now` deletes it. Says whether it was live.
    pub fn expire_at(&mut self, key: &[u8], at: u64, now: u64) -> bool {
        let hash = self.hash(key);
        let Found::Live(i) = self.lookup(hash, key, now) else {
            return false;
        };
        if at <= now {
            self.remove(i, hash, Removal::Deleted);
        } else {
            let rel = self.rel_expiry(at);
            self.set_expiry(i, rel);
        }
        true
    }

    /// Removes `key`'s expiry; says whether it had one.
    pub fn persist(&mut self, key: &[u8], now: u64) -> bool {
        let hash = self.hash(key);
        let Found::Live(i) = self.lookup(hash, key, now) else {
            return false;
        };
        let had = self.slab.get(i).meta.expiry_rel() != 0;
        self.set_expiry(i, 0);
        had
    }

    /// The remaining life of `key`.
    pub fn ttl(&mut self, key: &[u8], now: u64) -> Ttl {
        let hash = self.hash(key);
        let Found::Live(i) = self.lookup(hash, key, now) else {
            return Ttl::Missing;
        };
        match self.abs_expiry(self.slab.get(i).meta) {
            None => Ttl::Persistent,
            Some(at) => Ttl::Remaining(at.saturating_sub(now)),
        }
    }

    /// Adds `delta` to the decimal integer at `key` (absent counts as 0), keeping its TTL and
    /// tags; the result is stamped with `version`. Returns the new value.
    pub fn incr_by(
        &mut self,
        key: &[u8],
        delta: i64,
        now: u64,
        version: u64,
    ) -> Result<i64, EngineError> {
        self.check_key(key)?;
        let hash = self.hash(key);
        let found = self.lookup(hash, key, now);
        let (current, rel) = match found {
            Found::Live(i) => {
                let e = self.slab.get(i);
                let v = e.block.as_ref().map(|b| b.value()).unwrap_or_default();
                (parse_i64(v)?, e.meta.expiry_rel())
            }
            _ => (0, 0),
        };
        let next = current.checked_add(delta).ok_or(EngineError::Overflow)?;
        let mut digits = [0u8; 20];
        let len = {
            let mut cur = &mut digits[..];
            // 20 bytes hold any i64 in decimal, so this write cannot fail.
            let _ = write!(cur, "{next}");
            20 - cur.len()
        };
        let tags: Vec<Box<[u8]>> = match found {
            Found::Live(i) if self.slab.get(i).meta.has_tags() => self.tags.get(i).to_vec(),
            _ => Vec::new(),
        };
        let charge = self.admit(key, len, &tags)?;
        match found {
            Found::Live(i) | Found::Tombstone(i) => self.remove(i, hash, Removal::Replaced),
            Found::Absent => {}
        }
        let block = KvBlock::new(key, &digits[..len]);
        self.insert(hash, block, charge, version, rel, &tags, false, now);
        self.stats.sets += 1;
        Ok(next)
    }

    /// Invalidates every key starting with `prefix`: gone for reads at once, memory reclaimed
    /// by later `advance` calls.
    pub fn invalidate_prefix(&mut self, prefix: &[u8]) {
        self.add_rule(Matcher::Prefix(prefix.into()));
    }

    /// Invalidates every key written with `tag`, like [`Shard::invalidate_prefix`].
    pub fn invalidate_tag(&mut self, tag: &[u8]) {
        self.add_rule(Matcher::Tag(tag.into()));
    }

    /// Invalidates like [`Shard::invalidate_prefix`], but only entries written at or before
    /// version `cut` (a replicated invalidation carries its primary's cut).
    pub fn invalidate_prefix_at(&mut self, prefix: &[u8], cut: u64) {
        self.add_rule_at(Matcher::Prefix(prefix.into()), cut);
    }

    /// Invalidates like [`Shard::invalidate_tag`], up to version `cut`.
    pub fn invalidate_tag_at(&mut self, tag: &[u8], cut: u64) {
        self.add_rule_at(Matcher::Tag(tag.into()), cut);
    }

    /// The newest version this shard has stored (the cut of an invalidation made now).
    pub fn max_version(&self) -> u64 {
        self.max_version
    }

    fn add_rule(&mut self, matcher: Matcher) {
        self.add_rule_at(matcher, self.max_version);
    }

    fn add_rule_at(&mut self, matcher: Matcher, cut: u64) {
        // Too many pending rules would slow every read: finish the oldest now. Two passes over
        // the slab always suffice (the first may start mid-slab).
        for _ in 0..2 {
            if !self.rules.is_full() {
                break;
            }
            let n = self.slab.capacity_slots().max(1);
            self.sweep_rules(n);
        }
        self.rules.add(matcher, cut, self.slab.capacity_slots());
    }
}

/// Parses a strict decimal i64 (Redis rules: optional '-', digits, no spaces or '+').
fn parse_i64(v: &[u8]) -> Result<i64, EngineError> {
    let s = std::str::from_utf8(v).map_err(|_| EngineError::NotAnInteger)?;
    let valid = !s.is_empty()
        && !s.starts_with('+')
        && !(s.len() > 1 && (s.starts_with('0') || s.starts_with("-0")));
    if !valid {
        return Err(EngineError::NotAnInteger);
    }
    s.parse().map_err(|_| EngineError::NotAnInteger)
}

#[cfg(test)]
mod tests {
    use super::parse_i64;
    use crate::{SetOptions, Shard, ShardConfig};

    #[test]
    fn prefetches_change_nothing() {
        let mut shard = Shard::new(ShardConfig::default(), 1_000);
        for i in 0..100u32 {
            let key = i.to_be_bytes();
            shard
                .set(&key, b"v", &SetOptions::default(), 1_000, u64::from(i) + 1)
                .expect("fits");
        }
        let before = (shard.stats(), shard.len());
        let hashes: Vec<u64> = (0..200u32)
            .map(|i| shard.key_hash(&i.to_be_bytes()))
            .collect();
        shard.prefetch_hashes(&hashes);
        shard.prefetch_hashes(&hashes[..1]);
        let keys: Vec<[u8; 4]> = (0..100u32).map(u32::to_be_bytes).collect();
        shard.prefetch_keys(keys.iter().map(|k| &k[..]));
        assert_eq!((shard.stats(), shard.len()), before);
        assert_eq!(
            shard
                .get(&7u32.to_be_bytes(), 1_000)
                .map(|h| h.value.to_vec()),
            Some(b"v".to_vec())
        );
        assert!(shard.get(&150u32.to_be_bytes(), 1_000).is_none());
    }

    #[test]
    fn integers_parse_strictly() {
        assert_eq!(parse_i64(b"0"), Ok(0));
        assert_eq!(parse_i64(b"-12"), Ok(-12));
        assert!(parse_i64(b"+1").is_err());
        assert!(parse_i64(b"01").is_err());
        assert!(parse_i64(b" 1").is_err());
        assert!(parse_i64(b"").is_err());
        assert!(parse_i64(b"9223372036854775808").is_err());
    }
}
