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

    /// Calls `f` on every entry held, tombstones and not-yet-reclaimed expired ones included,
    /// in slab order (for digests, full copies and range moves).
    pub fn for_each_entry(&self, mut f: impl FnMut(EntryView<'_>)) {
        for i in 0..self.slab.capacity_slots() as u32 {
            if let Some(e) = self.slab.get_live(i) {
                if let Some(b) = e.block.as_ref() {
                    let (key, value) = b.parts();
                    f(EntryView {
                        key,
                        value,
                        version: e.version,
                        expires_at: self.abs_expiry(e.meta),
                        tombstone: e.meta.tombstone(),
                    });
                }
            }
        }
    }
}
