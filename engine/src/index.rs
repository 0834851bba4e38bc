//! The key index: slab slots by key hash, split into segments that grow independently, so a
//! growing shard rehashes 1/64 of its entries at a time instead of stalling one write on all.

use hashbrown::HashTable;

/// Number of segments (a power of two).
const SEGMENTS: usize = 64;

/// Slab indices keyed by the key hash. The segment is chosen by hash bits 32..38, which
/// hashbrown uses neither for bucket positions (low bits) nor for its tags (top 7 bits).
#[derive(Debug)]
pub(crate) struct Index {
    /// A fixed-size array, so the masked segment number needs no bounds check.
    segments: Box<[HashTable<u32>; SEGMENTS]>,
}

impl Default for Index {
    fn default() -> Self {
        Index {
            segments: Box::new(std::array::from_fn(|_| HashTable::new())),
        }
    }
}

#[inline]
fn segment(hash: u64) -> usize {
    ((hash >> 32) as usize) & (SEGMENTS - 1)
}

impl Index {
    /// The slot whose entry satisfies `eq`, among those filed under `hash`.
    #[inline(always)]
    pub fn find(&self, hash: u64, eq: impl FnMut(&u32) -> bool) -> Option<u32> {
        self.segments[segment(hash)].find(hash, eq).copied()
    }

    /// The first `Some` that `f` gives for a slot filed under `hash`, probing as
    /// [`Index::find`] does, so a caller can keep what it read while comparing.
    #[inline(always)]
    pub fn find_map<R>(&self, hash: u64, mut f: impl FnMut(u32) -> Option<R>) -> Option<R> {
        let mut out = None;
        self.segments[segment(hash)].find(hash, |&i| {
            out = f(i);
            out.is_some()
        })?;
        out
    }

    /// Files `slot` under `hash`; `rehash` gives any filed slot's hash when a segment grows.
    #[inline]
    pub fn insert(&mut self, hash: u64, slot: u32, rehash: impl Fn(&u32) -> u64) {
        self.segments[segment(hash)].insert_unique(hash, slot, rehash);
    }

    /// Removes `slot`, filed under `hash`.
    #[inline]
    pub fn remove(&mut self, hash: u64, slot: u32) {
        if let Ok(entry) = self.segments[segment(hash)].find_entry(hash, |&i| i == slot) {
            entry.remove();
        }
    }

    /// Frees up to `n` empty segments' memory; says whether any allocated empty segment is left.
    pub fn release_empty(&mut self, n: usize) -> bool {
        let mut freed = 0;
        for seg in self.segments.iter_mut() {
            if seg.is_empty() && seg.capacity() > 0 {
                if freed == n {
                    return true;
                }
                *seg = HashTable::new();
                freed += 1;
            }
        }
        false
    }

    /// Number of slots filed.
    pub fn len(&self) -> usize {
        self.segments.iter().map(HashTable::len).sum()
    }

    /// Buckets allocated over all segments.
    pub fn capacity(&self) -> usize {
        self.segments.iter().map(HashTable::capacity).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_finds_and_removes_across_segments() {
        let mut ix = Index::default();
        let hash_of = |i: &u32| u64::from(*i).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        for i in 0..10_000u32 {
            ix.insert(hash_of(&i), i, hash_of);
        }
        assert_eq!(ix.len(), 10_000);
        assert_eq!(ix.find(hash_of(&777), |&s| s == 777), Some(777));
        ix.remove(hash_of(&777), 777);
        assert_eq!(ix.find(hash_of(&777), |&s| s == 777), None);
        assert_eq!(ix.len(), 9_999);
        let used = (0..10_000u32)
            .map(|i| segment(hash_of(&i)))
            .collect::<std::collections::HashSet<_>>();
        assert_eq!(used.len(), SEGMENTS, "every segment is used");
    }
}
