//! S3-FIFO's ghost queue: hashes of keys recently evicted from the small queue, remembered
//! without their data so a quick return goes straight to the main queue.

use std::collections::VecDeque;

use hashbrown::HashMap;

/// A bounded FIFO set of key hashes.
#[derive(Debug, Default)]
pub(crate) struct Ghost {
    order: VecDeque<(u64, u64)>,
    members: HashMap<u64, u64, foldhash::fast::FixedState>,
    seq: u64,
}

impl Ghost {
    /// Remembers `hash`, forgetting the oldest ones beyond `capacity`.
    pub fn insert(&mut self, hash: u64, capacity: usize) {
        self.seq += 1;
        self.members.insert(hash, self.seq);
        self.order.push_back((hash, self.seq));
        while self.order.len() > capacity.max(1) {
            if let Some((h, s)) = self.order.pop_front() {
                if self.members.get(&h) == Some(&s) {
                    self.members.remove(&h);
                }
            }
        }
    }

    /// Forgets `hash` and says whether it was remembered.
    pub fn take(&mut self, hash: u64) -> bool {
        self.members.remove(&hash).is_some()
    }

    /// Approximate heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.order.capacity() * 16 + self.members.capacity() * 17
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forgets_oldest_beyond_capacity() {
        let mut g = Ghost::default();
        for h in 0..10 {
            g.insert(h, 4);
        }
        assert!(!g.take(5));
        assert!(g.take(6) && g.take(9));
        assert!(!g.take(9));
    }

    #[test]
    fn reinserted_hash_survives_its_old_slot() {
        let mut g = Ghost::default();
        g.insert(1, 2);
        g.insert(2, 2);
        g.insert(1, 2);
        g.insert(3, 2);
        assert!(g.take(1));
    }
}
