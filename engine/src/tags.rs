//! Tags attached to entries by `SET ... TAG t`, kept beside the slab for the few entries that
//! carry them (an entry's `has_tags` bit says whether to look here).

use hashbrown::HashMap;

/// Per-tag bookkeeping bytes charged to the budget on top of the tag's own length.
pub(crate) const TAG_OVERHEAD: usize = 24;
/// Per-tagged-entry bookkeeping bytes charged to the budget.
pub(crate) const TAGGED_ENTRY_OVERHEAD: usize = 40;

/// Tags by slab slot.
#[derive(Debug, Default)]
pub(crate) struct TagStore {
    by_slot: HashMap<u32, Box<[Box<[u8]>]>, foldhash::fast::FixedState>,
}

/// Budget charge of an entry's tags.
pub(crate) fn tags_charge<T: AsRef<[u8]>>(tags: &[T]) -> usize {
    if tags.is_empty() {
        return 0;
    }
    TAGGED_ENTRY_OVERHEAD
        + tags
            .iter()
            .map(|t| t.as_ref().len() + TAG_OVERHEAD)
            .sum::<usize>()
}

impl TagStore {
    pub fn set<T: AsRef<[u8]>>(&mut self, slot: u32, tags: &[T]) {
        let owned = tags.iter().map(|t| Box::from(t.as_ref())).collect();
        self.by_slot.insert(slot, owned);
    }

    pub fn get(&self, slot: u32) -> &[Box<[u8]>] {
        self.by_slot.get(&slot).map(|t| &t[..]).unwrap_or(&[])
    }

    pub fn remove(&mut self, slot: u32) -> Option<Box<[Box<[u8]>]>> {
        self.by_slot.remove(&slot)
    }

    pub fn clear(&mut self) {
        *self = TagStore::default();
    }
}
