//! Writes that arrive from a primary (replication, catch-up, range moves): applied only when
//! their version is newer than what the shard holds, so copies converge in any arrival order;
//! deletes leave tombstones so a late older write cannot bring a key back.

use crate::error::EngineError;
use crate::kv_block::KvBlock;
use crate::shard::{Removal, Shard};

/// One stored entry as seen by [`Shard::for_each_entry`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryView<'a> {
    /// The key.
    pub key: &'a [u8],
    /// The value (empty for a tombstone).
    pub value: &'a [u8],
    /// Its version.
    pub version: u64,
    /// Absolute expiry (caller's clock, ms).
    pub expires_at: Option<u64>,
    /// Whether this is a delete's tombstone.
    pub tombstone: bool,
    /// Its tags.
    pub tags: &'a [Box<[u8]>],
}

impl Shard {
    /// The version held for `key` (live, expired-but-unreclaimed or tombstone), if any.
    fn held_version(&self, hash: u64, key: &[u8]) -> Option<(u32, u64)> {
        self.locate(hash, key)
            .map(|i| (i, self.slab.get(i).version))
    }

    /// Applies a replicated write if `version` is newer than what is held. `expires_at` is the
    /// absolute expiry chosen by the primary. Returns whether it was applied.
    pub fn apply_write(
        &mut self,
        key: &[u8],
        value: &[u8],
        version: u64,
        expires_at: Option<u64>,
        tags: &[&[u8]],
        now: u64,
    ) -> Result<bool, EngineError> {
        let charge = self.admit(key, value.len(), tags)?;
        let hash = self.hash(key);
        let held = self.held_version(hash, key);
        if held.is_some_and(|(_, v)| v >= version) {
            return Ok(false);
        }
        if !self.rules.is_empty() && self.rules.kills(key, version, tags) {
            return Ok(false);
        }
        if let Some((i, _)) = held {
            self.remove(i, hash, Removal::Replaced);
        }
        let rel = match expires_at {
            Some(at) if at <= now => return Ok(true),
            Some(at) => self.rel_expiry(at),
            None => 0,
        };
        let block = KvBlock::new(key, value);
        self.insert(hash, block, charge, version, rel, tags, false, now);
        self.stats.sets += 1;
        Ok(true)
    }

    /// Applies a replicated delete if `version` is newer than what is held, leaving a tombstone
    /// for the configured time. Returns whether it was applied.
    pub fn apply_delete(
        &mut self,
        key: &[u8],
        version: u64,
        now: u64,
    ) -> Result<bool, EngineError> {
        let none: &[&[u8]] = &[];
        let charge = self.admit(key, 0, none)?;
        let hash = self.hash(key);
        let held = self.held_version(hash, key);
        if held.is_some_and(|(_, v)| v >= version) {
            return Ok(false);
        }
        if let Some((i, _)) = held {
            let live = !self.slab.get(i).meta.tombstone();
            let why = if live {
                Removal::Deleted
            } else {
                Removal::Replaced
            };
            self.remove(i, hash, why);
        }
        let at = now.saturating_add(self.config.tombstone_ttl_ms.max(1));
        let rel = self.rel_expiry(at);
        let block = KvBlock::new(key, &[]);
        self.insert(hash, block, charge, version, rel, none, true, now);
        Ok(true)
    }

    /// Calls `f` on every entry held, tombstones and not-yet-reclaimed expired ones included
    /// (invalidated ones not), in slab order (for full copies and range moves).
    pub fn for_each_entry(&self, f: impl FnMut(EntryView<'_>)) {
        self.for_each_entry_in(0, usize::MAX, f);
    }

    /// Like [`Shard::for_each_entry`] for the slab slots `start..start + slots` only, so a long
    /// walk can be cut into steps between which the shard changes; returns the slot to start
    /// the next step at, or `None` once the walk reached the end. An entry that stays put is
    /// seen exactly once by a walk; one written meanwhile may be seen or not. Entries an
    /// invalidation already killed (awaiting reclamation) are not shown: a copy made from the
    /// walk must not bring them back.
    pub fn for_each_entry_in(
        &self,
        start: usize,
        slots: usize,
        mut f: impl FnMut(EntryView<'_>),
    ) -> Option<usize> {
        let cap = self.slab.capacity_slots();
        let end = start.saturating_add(slots).min(cap);
        for i in start..end {
            if let Some(e) = self.slab.get_live(i as u32) {
                if !self.rules.is_empty() && self.invalidated(i as u32) {
                    continue;
                }
                if let Some(b) = e.block.as_ref() {
                    let (key, value) = b.parts();
                    let tags = if e.meta.has_tags() {
                        self.tags.get(i as u32)
                    } else {
                        &[]
                    };
                    f(EntryView {
                        key,
                        value,
                        version: e.version,
                        expires_at: self.abs_expiry(e.meta),
                        tombstone: e.meta.tombstone(),
                        tags,
                    });
                }
            }
        }
        (end < cap).then_some(end)
    }

    /// `key`'s live entry (not a tombstone, not expired or invalidated), with its tags: what a
    /// primary replicates after changing it.
    pub fn entry(&self, key: &[u8], now: u64) -> Option<EntryView<'_>> {
        let idx = self.locate(self.hash(key), key)?;
        let e = self.slab.get(idx);
        if e.meta.tombstone()
            || self.is_expired(e.meta, now)
            || (!self.rules.is_empty() && self.invalidated(idx))
        {
            return None;
        }
        let (key, value) = e.block.as_ref()?.parts();
        let tags = if e.meta.has_tags() {
            self.tags.get(idx)
        } else {
            &[]
        };
        Some(EntryView {
            key,
            value,
            version: e.version,
            expires_at: self.abs_expiry(e.meta),
            tombstone: false,
            tags,
        })
    }

    /// Gives `key`'s live entry a new version (after a change that did not stamp one, such as
    /// a new expiry, so replicas accept it). Returns whether the key was there.
    pub fn restamp(&mut self, key: &[u8], version: u64, now: u64) -> bool {
        if self.entry(key, now).is_none() {
            return false;
        }
        let Some(idx) = self.locate(self.hash(key), key) else {
            return false;
        };
        self.slab.get_mut(idx).version = version;
        self.max_version = self.max_version.max(version);
        true
    }

    /// Removes every entry whose key `drop` selects (tombstones included), without leaving
    /// tombstones: a replica clears what a full copy will replace.
    pub fn remove_where(&mut self, mut drop: impl FnMut(&[u8]) -> bool) -> usize {
        let mut doomed = Vec::new();
        for i in 0..self.slab.capacity_slots() as u32 {
            if let Some(b) = self.slab.get_live(i).and_then(|e| e.block.as_ref()) {
                if drop(b.key()) {
                    doomed.push((i, self.hash(b.key())));
                }
            }
        }
        for &(i, hash) in &doomed {
            self.remove(i, hash, Removal::Deleted);
        }
        doomed.len()
    }

    /// Live entries (no tombstones, nothing expired at `now`) and an order-independent digest of
    /// their keys, values, versions and expiries: two copies holding the same data agree.
    pub fn digest(&self, now: u64) -> (u64, u64) {
        let (mut count, mut sum) = (0u64, 0u64);
        for i in 0..self.slab.capacity_slots() as u32 {
            let Some(e) = self.slab.get_live(i) else {
                continue;
            };
            let Some(b) = e.block.as_ref() else { continue };
            if e.meta.tombstone()
                || self.is_expired(e.meta, now)
                || (!self.rules.is_empty() && self.invalidated(i))
            {
                continue;
            }
            let (key, value) = b.parts();
            let mut h = xxhash_rust::xxh3::Xxh3::new();
            h.update(&(key.len() as u64).to_le_bytes());
            h.update(key);
            h.update(value);
            h.update(&e.version.to_le_bytes());
            h.update(&self.abs_expiry(e.meta).unwrap_or(0).to_le_bytes());
            count += 1;
            sum = sum.wrapping_add(h.digest());
        }
        (count, sum)
    }
}
