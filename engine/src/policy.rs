//! Eviction policies: which entry leaves when a shard is over budget.
//!
//! LRU keeps one recency list; LFU keeps a logarithmic, decaying counter per entry and evicts
//! the lowest of a random sample (as Redis does); S3-FIFO keeps a small probationary FIFO, a
//! main FIFO with reinsertion, and a ghost list, which resists one-pass scans.

use crate::entry::LFU_TIME_MASK;
use crate::ghost::Ghost;
use crate::slab::{List, Slab};

/// The eviction policy a shard is built with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum EvictionPolicy {
    /// Least recently used (exact).
    #[default]
    Lru,
    /// Least frequently used, with counters that decay over idle minutes (sampled).
    Lfu,
    /// S3-FIFO: scan-resistant, cheap on hits (no list movement).
    S3Fifo,
}

impl std::str::FromStr for EvictionPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "lru" => Ok(Self::Lru),
            "lfu" => Ok(Self::Lfu),
            "s3fifo" | "s3-fifo" => Ok(Self::S3Fifo),
            other => Err(format!(
                "unknown eviction policy '{other}' (lru, lfu, s3fifo)"
            )),
        }
    }
}

const LFU_INIT: u8 = 5;
const LFU_LOG_FACTOR: u32 = 10;
const LFU_SAMPLES: usize = 10;
const S3_MAX_FREQ: u8 = 3;
/// Share of the budget the S3-FIFO small queue aims at, in percent.
const S3_SMALL_PERCENT: usize = 10;

/// Per-shard policy state. Every live entry (tombstones too) is known to the policy between
/// `on_insert` and `on_remove`.
#[derive(Debug)]
pub(crate) struct Policy {
    kind: EvictionPolicy,
    /// LRU: the recency list. S3-FIFO: the small queue. LFU: unused.
    small: List,
    /// S3-FIFO main queue.
    main: List,
    small_bytes: usize,
    ghost: Ghost,
    rng: u64,
}

impl Policy {
    pub fn new(kind: EvictionPolicy) -> Self {
        Policy {
            kind,
            small: List::default(),
            main: List::default(),
            small_bytes: 0,
            ghost: Ghost::default(),
            rng: 0x9E37_79B9_7F4A_7C15,
        }
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*: deterministic, so eviction is reproducible in tests.
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A new entry `idx` of `charge` bytes whose key hashes to `hash`.
    #[inline]
    pub fn on_insert(&mut self, slab: &mut Slab, idx: u32, charge: usize, hash: u64, now: u64) {
        match self.kind {
            EvictionPolicy::Lru => self.small.push_front(slab, idx),
            EvictionPolicy::Lfu => slab.get_mut(idx).meta.set_lfu(LFU_INIT, minute_of(now)),
            EvictionPolicy::S3Fifo => {
                if self.ghost.take(hash) {
                    slab.get_mut(idx).meta.set_in_main(true);
                    self.main.push_front(slab, idx);
                } else {
                    self.small.push_front(slab, idx);
                    self.small_bytes += charge;
                }
            }
        }
    }

    /// A read or touch of `idx`.
    #[inline(always)]
    pub fn on_access(&mut self, slab: &mut Slab, idx: u32, now: u64) {
        match self.kind {
            // The whole hit path of the default policy: kept inline.
            EvictionPolicy::Lru => self.small.move_to_front(slab, idx),
            EvictionPolicy::Lfu => self.lfu_access(slab, idx, now),
            EvictionPolicy::S3Fifo => {
                let meta = &mut slab.get_mut(idx).meta;
                let f = meta.s3_freq();
                if f < S3_MAX_FREQ {
                    meta.set_s3_freq(f + 1);
                }
            }
        }
    }

    /// LFU's counter update on an access (decay, then a probabilistic increment), out of line
    /// so that it does not weigh on the inlined hit path of the other policies.
    #[inline(never)]
    fn lfu_access(&mut self, slab: &mut Slab, idx: u32, now: u64) {
        let minute = minute_of(now);
        let meta = slab.get(idx).meta;
        let mut count = lfu_decayed(meta.lfu_count(), meta.lfu_time(), minute);
        if count < u8::MAX {
            let base = u32::from(count.saturating_sub(LFU_INIT));
            let r = (self.next_random() >> 40) as u32; // 24 random bits
            if u64::from(r) * u64::from(base * LFU_LOG_FACTOR + 1) < (1 << 24) {
                count += 1;
            }
        }
        slab.get_mut(idx).meta.set_lfu(count, minute);
    }

    /// `idx` of `charge` bytes is leaving the shard.
    #[inline]
    pub fn on_remove(&mut self, slab: &mut Slab, idx: u32, charge: usize) {
        match self.kind {
            EvictionPolicy::Lru => self.small.unlink(slab, idx),
            EvictionPolicy::Lfu => {}
            EvictionPolicy::S3Fifo => {
                if slab.get(idx).meta.in_main() {
                    self.main.unlink(slab, idx);
                } else {
                    self.small.unlink(slab, idx);
                    self.small_bytes -= charge;
                }
            }
        }
    }

    /// Picks the entry to evict. `charge_of` gives an entry's charge and `hash_of` its key hash
    /// (S3-FIFO moves entries between queues on the way and remembers evicted hashes).
    pub fn victim(
        &mut self,
        slab: &mut Slab,
        budget: usize,
        now: u64,
        charge_of: impl Fn(&Slab, u32) -> usize,
        hash_of: impl Fn(&Slab, u32) -> u64,
    ) -> Option<u32> {
        match self.kind {
            EvictionPolicy::Lru => self.small.back(),
            EvictionPolicy::Lfu => self.lfu_victim(slab, minute_of(now)),
            EvictionPolicy::S3Fifo => {
                let small_target = budget / 100 * S3_SMALL_PERCENT;
                // Each pass either returns or lowers a frequency / promotes an entry, so the
                // loop ends; the bound guards against a broken invariant.
                for _ in 0..(4 * (self.small.len() + self.main.len()) + 8) {
                    if self.small_bytes > small_target || self.main.len() == 0 {
                        let idx = self.small.back().or_else(|| self.main.back())?;
                        let meta = slab.get(idx).meta;
                        if meta.in_main() {
                            return Some(idx);
                        }
                        if meta.s3_freq() > 0 {
                            let c = charge_of(slab, idx);
                            self.small.unlink(slab, idx);
                            self.small_bytes -= c;
                            let m = &mut slab.get_mut(idx).meta;
                            m.set_in_main(true);
                            m.set_s3_freq(0);
                            self.main.push_front(slab, idx);
                        } else {
                            let cap = self.main.len() + self.small.len();
                            self.ghost.insert(hash_of(slab, idx), cap);
                            return Some(idx);
                        }
                    } else {
                        let idx = self.main.back()?;
                        let f = slab.get(idx).meta.s3_freq();
                        if f > 0 {
                            slab.get_mut(idx).meta.set_s3_freq(f - 1);
                            self.main.move_to_front(slab, idx);
                        } else {
                            return Some(idx);
                        }
                    }
                }
                self.main.back().or(self.small.back())
            }
        }
    }

    fn lfu_victim(&mut self, slab: &Slab, minute: u64) -> Option<u32> {
        let slots = slab.capacity_slots();
        if slab.live() == 0 || slots == 0 {
            return None;
        }
        let mut best: Option<(u8, u32)> = None;
        let mut found = 0;
        for _ in 0..LFU_SAMPLES * 8 {
            let idx = (self.next_random() % slots as u64) as u32;
            if let Some(e) = slab.get_live(idx) {
                let c = lfu_decayed(e.meta.lfu_count(), e.meta.lfu_time(), minute);
                if best.is_none_or(|(bc, _)| c < bc) {
                    best = Some((c, idx));
                }
                found += 1;
                if found == LFU_SAMPLES {
                    break;
                }
            }
        }
        if best.is_none() {
            // A sparse slab: scan from a random point for the first live slot.
            let start = (self.next_random() % slots as u64) as usize;
            best = (0..slots)
                .map(|i| ((start + i) % slots) as u32)
                .find(|&i| slab.get_live(i).is_some())
                .map(|i| (0, i));
        }
        best.map(|(_, i)| i)
    }

    /// Forgets every entry.
    pub fn clear(&mut self) {
        *self = Policy::new(self.kind);
    }

    /// Heap bytes the policy holds beyond the entries.
    pub fn heap_bytes(&self) -> usize {
        self.ghost.heap_bytes()
    }
}

/// The LFU decay clock: whole minutes of the caller's clock (a division, so only LFU pays it).
#[inline]
fn minute_of(now: u64) -> u64 {
    now / 60_000
}

/// An LFU counter after the decay of the minutes since `last` (one step per minute).
fn lfu_decayed(count: u8, last: u64, minute: u64) -> u8 {
    let elapsed = (minute.wrapping_sub(last)) & LFU_TIME_MASK;
    count.saturating_sub(elapsed.min(255) as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lfu_counter_decays_per_idle_minute() {
        assert_eq!(lfu_decayed(10, 5, 5), 10);
        assert_eq!(lfu_decayed(10, 5, 8), 7);
        assert_eq!(lfu_decayed(10, 5, 500), 0);
    }

    #[test]
    fn policy_names_parse() {
        assert_eq!("LRU".parse::<EvictionPolicy>(), Ok(EvictionPolicy::Lru));
        assert_eq!(
            "s3-fifo".parse::<EvictionPolicy>(),
            Ok(EvictionPolicy::S3Fifo)
        );
        assert!("arc".parse::<EvictionPolicy>().is_err());
    }
}
