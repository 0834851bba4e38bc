//! The slab: every entry of a shard in one `Vec`, addressed by `u32` index, with a free list and
//! intrusive doubly-linked lists threaded through the entries (no `Rc`, no per-node boxes).

use crate::entry::{Entry, Meta, NIL};
use crate::kv_block::KvBlock;

/// Entries by index; free slots form a singly linked list through `next`.
#[derive(Debug, Default)]
pub(crate) struct Slab {
    entries: Vec<Entry>,
    free_head: Option<u32>,
    live: usize,
}

impl Slab {
    /// Stores a block and returns its index; the entry starts unlinked.
    pub fn insert(&mut self, block: KvBlock, version: u64, meta: Meta) -> u32 {
        self.live += 1;
        let entry = Entry {
            block: Some(block),
            prev: NIL,
            next: NIL,
            version,
            meta,
        };
        match self.free_head {
            Some(idx) => {
                let slot = &mut self.entries[idx as usize];
                self.free_head = (slot.next != NIL).then_some(slot.next);
                *slot = entry;
                idx
            }
            None => {
                let idx = self.entries.len() as u32;
                assert!(idx != NIL, "slab full: 2^32-1 entries in one shard");
                self.entries.push(entry);
                idx
            }
        }
    }

    /// Frees a slot and returns its block. The caller has unlinked it from every list.
    pub fn remove(&mut self, idx: u32) -> Option<KvBlock> {
        let slot = &mut self.entries[idx as usize];
        let block = slot.block.take()?;
        self.live -= 1;
        slot.prev = NIL;
        slot.next = self.free_head.unwrap_or(NIL);
        slot.meta = Meta::default();
        self.free_head = Some(idx);
        Some(block)
    }

    #[inline]
    pub fn get(&self, idx: u32) -> &Entry {
        &self.entries[idx as usize]
    }

    #[inline]
    pub fn get_mut(&mut self, idx: u32) -> &mut Entry {
        &mut self.entries[idx as usize]
    }

    /// The entry at `idx` if the slot is in use (for sampling and sweeping by index).
    #[inline]
    pub fn get_live(&self, idx: u32) -> Option<&Entry> {
        self.entries.get(idx as usize).filter(|e| e.block.is_some())
    }

    /// Asks the CPU to start loading slot `idx` (if it exists) into cache. A hint: nothing
    /// waits for it, so it costs no stall even when the line is far away.
    #[inline]
    pub fn prefetch(&self, idx: u32) {
        if let Some(e) = self.entries.get(idx as usize) {
            crate::cache_hint::prefetch(e);
        }
    }

    /// Number of slots ever allocated (live and free).
    #[inline]
    pub fn capacity_slots(&self) -> usize {
        self.entries.len()
    }

    /// Number of slots in use.
    #[inline]
    pub fn live(&self) -> usize {
        self.live
    }

    /// Drops every entry and releases the memory.
    pub fn clear(&mut self) {
        *self = Slab::default();
    }

    /// When no slot is in use, hands the slot array over to be freed piecemeal (freeing a large
    /// array at once would stall the core). Returns `None` while any slot is in use.
    pub fn take_if_empty(&mut self) -> Option<Vec<Entry>> {
        if self.live != 0 || self.entries.capacity() == 0 {
            return None;
        }
        self.free_head = None;
        Some(std::mem::take(&mut self.entries))
    }

    /// Bytes held by the slab's own array.
    pub fn heap_bytes(&self) -> usize {
        self.entries.capacity() * std::mem::size_of::<Entry>()
    }
}

/// An intrusive doubly-linked list over slab indices; head is the most recent insertion.
#[derive(Debug, Clone, Copy)]
pub(crate) struct List {
    head: u32,
    tail: u32,
    len: usize,
}

impl Default for List {
    fn default() -> Self {
        List {
            head: NIL,
            tail: NIL,
            len: 0,
        }
    }
}

impl List {
    /// Links `idx` at the head. It must not be in any list.
    #[inline]
    pub fn push_front(&mut self, slab: &mut Slab, idx: u32) {
        let old = self.head;
        {
            let e = slab.get_mut(idx);
            e.prev = NIL;
            e.next = old;
        }
        if old != NIL {
            slab.get_mut(old).prev = idx;
        } else {
            self.tail = idx;
        }
        self.head = idx;
        self.len += 1;
    }

    /// Unlinks `idx`, which must be in this list.
    #[inline]
    pub fn unlink(&mut self, slab: &mut Slab, idx: u32) {
        let (prev, next) = {
            let e = slab.get_mut(idx);
            let pn = (e.prev, e.next);
            e.prev = NIL;
            e.next = NIL;
            pn
        };
        if prev != NIL {
            slab.get_mut(prev).next = next;
        } else {
            self.head = next;
        }
        if next != NIL {
            slab.get_mut(next).prev = prev;
        } else {
            self.tail = prev;
        }
        self.len -= 1;
    }

    /// Moves `idx`, which is in this list, to the head: four link writes, the hot path of
    /// every LRU hit.
    #[inline]
    pub fn move_to_front(&mut self, slab: &mut Slab, idx: u32) {
        let head = self.head;
        if head == idx {
            return;
        }
        let entries = &mut slab.entries;
        let e = &mut entries[idx as usize];
        let (prev, next) = (e.prev, e.next);
        e.prev = NIL;
        e.next = head;
        // `idx` is not the head, so it has a predecessor, and the list has a head.
        entries[prev as usize].next = next;
        if next != NIL {
            entries[next as usize].prev = prev;
        } else {
            self.tail = prev;
        }
        entries[head as usize].prev = idx;
        self.head = idx;
    }

    /// The oldest element.
    #[inline]
    pub fn back(&self) -> Option<u32> {
        (self.tail != NIL).then_some(self.tail)
    }

    /// Number of linked elements.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(list: &List, slab: &Slab) -> Vec<u32> {
        let mut out = vec![];
        let mut at = list.back();
        while let Some(i) = at {
            out.push(i);
            let p = slab.get(i).prev;
            at = (p != NIL).then_some(p);
        }
        out
    }

    #[test]
    fn slots_are_reused_and_lists_keep_order() {
        let mut slab = Slab::default();
        let mut list = List::default();
        let ids: Vec<u32> = (0..4u8)
            .map(|i| slab.insert(KvBlock::new(&[i], b"v"), 0, Meta::default()))
            .collect();
        for &i in &ids {
            list.push_front(&mut slab, i);
        }
        assert_eq!(collect(&list, &slab), ids);
        list.move_to_front(&mut slab, ids[0]);
        assert_eq!(collect(&list, &slab), vec![ids[1], ids[2], ids[3], ids[0]]);
        list.unlink(&mut slab, ids[2]);
        assert!(slab.remove(ids[2]).is_some());
        assert_eq!(slab.live(), 3);
        let again = slab.insert(KvBlock::new(b"x", b"v"), 0, Meta::default());
        assert_eq!(again, ids[2]);
        assert_eq!(list.len(), 3);
        assert_eq!(collect(&list, &slab), vec![ids[1], ids[3], ids[0]]);
    }
}
