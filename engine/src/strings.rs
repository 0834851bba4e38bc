//! Read-modify-write support for Redis's string commands (APPEND, SETRANGE, INCRBYFLOAT) and
//! MEMORY USAGE: a new value that keeps the entry's expiry and tags, and an entry's charge.

use crate::error::EngineError;
use crate::kv_block::KvBlock;
use crate::shard::{Found, Removal, Shard};

impl Shard {
    /// Stores `value` at `key` stamped with `version`, keeping the live entry's expiry and
    /// tags (a missing key gets neither), as INCR does.
    pub fn replace_keeping(
        &mut self,
        key: &[u8],
        value: &[u8],
        now: u64,
        version: u64,
    ) -> Result<(), EngineError> {
        let hash = self.hash(key);
        let found = self.lookup(hash, key, now);
        let (rel, tags): (u64, Vec<Box<[u8]>>) = match found {
            Found::Live(i) => {
                let meta = self.slab.get(i).meta;
                let tags = if meta.has_tags() {
                    self.tags.get(i).to_vec()
                } else {
                    Vec::new()
                };
                (meta.expiry_rel(), tags)
            }
            _ => (0, Vec::new()),
        };
        let charge = self.admit(key, value.len(), &tags)?;
        match found {
            Found::Live(i) | Found::Tombstone(i) => self.remove(i, hash, Removal::Replaced),
            Found::Absent => {}
        }
        let block = KvBlock::new(key, value);
        self.insert(hash, block, charge, version, rel, &tags, false, now);
        self.stats.sets += 1;
        Ok(())
    }

    /// The bytes `key`'s live entry is charged against the budget (key, value, tags and
    /// per-entry overhead); `None` when it is missing.
    pub fn memory_usage(&self, key: &[u8], now: u64) -> Option<usize> {
        let e = self.entry(key, now)?;
        Some(Self::new_charge(e.key.len(), e.value.len(), e.tags))
    }
}

#[cfg(test)]
mod tests {
    use crate::{Expiry, SetOptions, Shard, ShardConfig, Ttl};

    #[test]
    fn replace_keeps_ttl_and_tags() {
        let mut s = Shard::new(ShardConfig::default(), 1_000);
        let tags: [&[u8]; 1] = [b"t"];
        let opts = SetOptions {
            expiry: Expiry::At(5_000),
            tags: &tags,
            ..SetOptions::default()
        };
        s.set(b"k", b"a", &opts, 1_000, 1).expect("fits");
        s.replace_keeping(b"k", b"ab", 1_000, 2).expect("fits");
        let hit = s.get(b"k", 1_000).expect("live");
        assert_eq!((hit.value, hit.version), (&b"ab"[..], 2));
        assert_eq!(s.ttl(b"k", 1_000), Ttl::Remaining(4_000));
        assert!(s.memory_usage(b"k", 1_000).is_some_and(|n| n > 3));
        s.invalidate_tag(b"t");
        assert!(s.get(b"k", 1_000).is_none());
        s.replace_keeping(b"new", b"x", 1_000, 3).expect("fits");
        assert_eq!(s.ttl(b"new", 1_000), Ttl::Persistent);
        assert_eq!(s.memory_usage(b"missing", 1_000), None);
    }
}
