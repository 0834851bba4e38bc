//! A hierarchical timing wheel of due times for slab entries, driven by `poll` one unit of work
//! at a time so the caller bounds the work of every tick.
//!
//! Six levels of 64 slots at 1 ms resolution cover about 795 days; later times wait in an
//! overflow list. Items are never removed individually: the owner checks each fired item against
//! the entry it names and drops stale ones, and may `sweep` to purge them early.

const LEVELS: usize = 6;
const SLOT_BITS: u32 = 6;
const SLOTS: usize = 1 << SLOT_BITS;
const SLOT_MASK: u64 = (SLOTS as u64) - 1;
/// Span of the top level; items due later than this wait in `overflow`.
const HORIZON_BITS: u32 = SLOT_BITS * LEVELS as u32;

/// A due time for one slab slot (12 bytes, 4-byte aligned).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WheelItem {
    slot: u32,
    when_lo: u32,
    when_hi: u32,
}

impl WheelItem {
    /// An item for slab slot `slot`, due at `when` (ms in the owner's time base).
    pub fn new(slot: u32, when: u64) -> Self {
        WheelItem {
            slot,
            when_lo: when as u32,
            when_hi: (when >> 32) as u32,
        }
    }
    /// The slab slot it names.
    pub fn slot(self) -> u32 {
        self.slot
    }
    /// When it is due.
    pub fn when(self) -> u64 {
        (u64::from(self.when_hi) << 32) | u64::from(self.when_lo)
    }
}

/// Items per chunk: a chunk never grows, so filing an item never copies more than one chunk's
/// worth of memory, however many items share a slot.
const CHUNK: usize = 1024;
/// Empty chunks kept for reuse.
const POOL_MAX: usize = 64;

/// A list of items stored as fixed-size chunks.
#[derive(Debug, Default)]
struct ChunkList {
    chunks: Vec<Vec<WheelItem>>,
}

impl ChunkList {
    fn push(&mut self, item: WheelItem, pool: &mut Vec<Vec<WheelItem>>) {
        match self.chunks.last_mut() {
            Some(c) if c.len() < CHUNK => c.push(item),
            _ => {
                let mut c = pool.pop().unwrap_or_else(|| Vec::with_capacity(CHUNK));
                c.push(item);
                self.chunks.push(c);
            }
        }
    }

    fn pop(&mut self, pool: &mut Vec<Vec<WheelItem>>) -> Option<WheelItem> {
        loop {
            let last = self.chunks.last_mut()?;
            if let Some(item) = last.pop() {
                return Some(item);
            }
            if let Some(c) = self.chunks.pop() {
                if pool.len() < POOL_MAX {
                    pool.push(c);
                }
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.chunks.iter().all(Vec::is_empty)
    }

    fn append(&mut self, other: &mut ChunkList) {
        self.chunks.append(&mut other.chunks);
    }

    fn capacity(&self) -> usize {
        self.chunks.iter().map(Vec::capacity).sum()
    }
}

/// What one call to [`TimingWheel::poll`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Poll {
    /// An item is due; the caller checks and acts on it.
    Due(WheelItem),
    /// Internal work was done (a slot opened or an item moved down a level); call again.
    Worked,
    /// Nothing is due at or before the time given.
    Idle,
}

#[derive(Debug)]
struct Level {
    occupied: u64,
    slots: [ChunkList; SLOTS],
}

impl Default for Level {
    fn default() -> Self {
        Level {
            occupied: 0,
            slots: std::array::from_fn(|_| ChunkList::default()),
        }
    }
}

/// The wheel. Invariant: every item in level `l` is due after `elapsed`, in the same
/// `64^(l+1)` ms block as `elapsed`, in a slot after `elapsed`'s slot at that level; items due at
/// or before `elapsed` are in `due`; items taken from an opened slot wait in `cascade`.
#[derive(Debug)]
pub struct TimingWheel {
    elapsed: u64,
    levels: Box<[Level; LEVELS]>,
    overflow: ChunkList,
    next_overflow_check: u64,
    cascade: ChunkList,
    due: ChunkList,
    pool: Vec<Vec<WheelItem>>,
    len: usize,
    sweep_at: (usize, usize),
}

fn level_for(elapsed: u64, when: u64) -> usize {
    let masked = (elapsed ^ when) | SLOT_MASK;
    let significant = 63 - masked.leading_zeros();
    (significant / SLOT_BITS) as usize
}

impl TimingWheel {
    /// An empty wheel whose clock starts at `now`.
    pub fn new(now: u64) -> Self {
        TimingWheel {
            elapsed: now,
            levels: Box::default(),
            overflow: ChunkList::default(),
            next_overflow_check: Self::overflow_boundary(now),
            cascade: ChunkList::default(),
            due: ChunkList::default(),
            pool: Vec::new(),
            len: 0,
            sweep_at: (0, 0),
        }
    }

    fn overflow_boundary(t: u64) -> u64 {
        let top = HORIZON_BITS - SLOT_BITS;
        ((t >> top) + 1) << top
    }

    /// Number of items held (stale ones included until they fire or are swept).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no item is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Files `item`; one already due goes straight to the due list.
    pub fn insert(&mut self, item: WheelItem) {
        self.len += 1;
        self.place(item);
    }

    fn place(&mut self, item: WheelItem) {
        let when = item.when();
        if when <= self.elapsed {
            self.due.push(item, &mut self.pool);
            return;
        }
        let level = level_for(self.elapsed, when);
        if level >= LEVELS {
            self.overflow.push(item, &mut self.pool);
            return;
        }
        let slot = ((when >> (level as u32 * SLOT_BITS)) & SLOT_MASK) as usize;
        let lvl = &mut self.levels[level];
        lvl.slots[slot].push(item, &mut self.pool);
        lvl.occupied |= 1 << slot;
    }

    /// The earliest occupied slot: (level, slot, its start time).
    fn next_slot(&self) -> Option<(usize, usize, u64)> {
        for (l, lvl) in self.levels.iter().enumerate() {
            if lvl.occupied == 0 {
                continue;
            }
            let shift = l as u32 * SLOT_BITS;
            let now_slot = (self.elapsed >> shift) & SLOT_MASK;
            let after = if now_slot == SLOT_MASK {
                0
            } else {
                !0u64 << (now_slot + 1)
            };
            let occ = lvl.occupied & after;
            if occ == 0 {
                continue;
            }
            let slot = occ.trailing_zeros() as u64;
            let block = self.elapsed & !((1u64 << (shift + SLOT_BITS)) - 1);
            return Some((l, slot as usize, block + (slot << shift)));
        }
        None
    }

    /// Does one unit of work toward firing everything due at or before `now`.
    pub fn poll(&mut self, now: u64) -> Poll {
        if let Some(item) = self.due.pop(&mut self.pool) {
            self.len -= 1;
            return Poll::Due(item);
        }
        if let Some(item) = self.cascade.pop(&mut self.pool) {
            self.place(item);
            return Poll::Worked;
        }
        if now <= self.elapsed {
            return Poll::Idle;
        }
        match self.next_slot() {
            Some((l, s, start)) if start <= now => {
                self.elapsed = start;
                let lvl = &mut self.levels[l];
                lvl.occupied &= !(1 << s);
                // A level-0 slot holds items due exactly at its start: they are all due now.
                // Its chunks move over whole; nothing is copied.
                let to = if l == 0 {
                    &mut self.due
                } else {
                    &mut self.cascade
                };
                to.append(&mut lvl.slots[s]);
            }
            _ => self.elapsed = now,
        }
        if self.elapsed >= self.next_overflow_check {
            self.next_overflow_check = Self::overflow_boundary(self.elapsed);
            self.cascade.append(&mut self.overflow);
        }
        Poll::Worked
    }

    /// Checks up to `max` filed items with `keep` and drops those it rejects, resuming where the
    /// last sweep stopped. Returns how many were dropped.
    pub fn sweep(&mut self, max: usize, mut keep: impl FnMut(WheelItem) -> bool) -> usize {
        let mut work = 0;
        let mut dropped = 0;
        let total_slots = LEVELS * SLOTS + 1;
        let mut visited = 0;
        while work < max && visited <= total_slots {
            let (l, s) = self.sweep_at;
            let list = if l < LEVELS {
                &mut self.levels[l].slots[s]
            } else {
                &mut self.overflow
            };
            // The position inside the slot is not remembered: restarting a slot only re-checks.
            let mut finished = true;
            'chunks: for chunk in list.chunks.iter_mut() {
                let mut i = 0;
                while i < chunk.len() {
                    if work >= max {
                        finished = false;
                        break 'chunks;
                    }
                    work += 1;
                    if keep(chunk[i]) {
                        i += 1;
                    } else {
                        chunk.swap_remove(i);
                        dropped += 1;
                    }
                }
            }
            list.chunks.retain(|c| !c.is_empty());
            if l < LEVELS && list.is_empty() {
                self.levels[l].occupied &= !(1 << s);
            }
            if finished {
                visited += 1;
                self.sweep_at = if l >= LEVELS {
                    (0, 0)
                } else if s + 1 == SLOTS {
                    (l + 1, 0)
                } else {
                    (l, s + 1)
                };
            }
        }
        self.len -= dropped;
        dropped
    }

    /// Drops every item and restarts the clock at `now`.
    pub fn clear(&mut self, now: u64) {
        *self = TimingWheel::new(now);
    }

    /// Bytes held by the item chunks.
    pub fn heap_bytes(&self) -> usize {
        let per = std::mem::size_of::<WheelItem>();
        let slots: usize = self
            .levels
            .iter()
            .flat_map(|l| l.slots.iter())
            .map(ChunkList::capacity)
            .sum();
        let pooled: usize = self.pool.iter().map(Vec::capacity).sum();
        (slots + self.overflow.capacity() + self.cascade.capacity() + self.due.capacity() + pooled)
            * per
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn drain(w: &mut TimingWheel, now: u64) -> Vec<WheelItem> {
        let mut out = vec![];
        for _ in 0..10_000_000 {
            match w.poll(now) {
                Poll::Due(i) => out.push(i),
                Poll::Worked => {}
                Poll::Idle => return out,
            }
        }
        panic!("wheel did not go idle");
    }

    #[test]
    fn fires_at_exact_times_across_levels() {
        let mut w = TimingWheel::new(1000);
        let times = [1001u64, 1063, 1064, 5000, 70_000, 1 << 30, (1 << 37) + 5];
        for (i, &t) in times.iter().enumerate() {
            w.insert(WheelItem::new(i as u32, t));
        }
        for (i, &t) in times.iter().enumerate() {
            assert!(drain(&mut w, t - 1).is_empty(), "item {i} fired early");
            let fired = drain(&mut w, t);
            assert_eq!(fired, vec![WheelItem::new(i as u32, t)]);
        }
        assert!(w.is_empty());
    }

    #[test]
    fn sweep_drops_rejected_items() {
        let mut w = TimingWheel::new(0);
        for i in 0..1000u32 {
            w.insert(WheelItem::new(i, 10 + u64::from(i) * 37));
        }
        let mut dropped = 0;
        for _ in 0..1000 {
            dropped += w.sweep(64, |it| it.slot() % 2 == 0);
            if dropped == 500 {
                break;
            }
        }
        assert_eq!(dropped, 500);
        assert_eq!(w.len(), 500);
        let fired = drain(&mut w, 1_000_000);
        assert_eq!(fired.len(), 500);
        assert!(fired.iter().all(|i| i.slot() % 2 == 0));
    }

    proptest! {
        #[test]
        fn every_item_fires_once_no_earlier_than_due(
            start in 0u64..1_000_000,
            offsets in prop::collection::vec(0u64..(1 << 38), 1..200),
            steps in prop::collection::vec(1u64..(1 << 34), 1..60),
        ) {
            let mut w = TimingWheel::new(start);
            for (i, off) in offsets.iter().enumerate() {
                w.insert(WheelItem::new(i as u32, start + off));
            }
            let mut now = start;
            let mut fired = vec![false; offsets.len()];
            let mut check = |w: &mut TimingWheel, now: u64| {
                for it in drain(w, now) {
                    prop_assert!(it.when() <= now);
                    prop_assert!(!fired[it.slot() as usize]);
                    fired[it.slot() as usize] = true;
                }
                for (i, off) in offsets.iter().enumerate() {
                    if start + off <= now {
                        prop_assert!(fired[i], "item {} due {} not fired at {}", i, start + off, now);
                    }
                }
                Ok(())
            };
            for s in steps {
                now += s;
                check(&mut w, now)?;
            }
            check(&mut w, start + (1 << 38))?;
            prop_assert!(w.is_empty());
        }
    }
}
