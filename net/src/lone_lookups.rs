//! Lookups of requests that arrive alone (pipeline 1), made together across a core's
//! connections. A connection that read a lone request files its key's hash and yields once, so
//! every connection woken in the same round reads its request too; the first to resume looks
//! all the filed keys up at once, their cache misses overlap, and each request then runs on
//! entries already in cache. Replies also leave in a burst, which the clients' side of the
//! kernel handles with less work (measured in tuning.md, W1).

use std::cell::RefCell;

use crate::core_cell::SharedCore;

/// One core's filed key hashes (a few dozen at most: one per connection woken in a round).
#[derive(Default)]
pub(crate) struct LoneLookups {
    hashes: RefCell<Vec<u64>>,
}

impl LoneLookups {
    /// Files `hash`, lets the other ready connections file theirs, then looks up whatever is
    /// filed (nothing, if another connection already did).
    pub async fn look_up_together(&self, hash: u64, core: &SharedCore) {
        self.hashes.borrow_mut().push(hash);
        futures_lite::future::yield_now().await;
        let mut hashes = self.hashes.borrow_mut();
        if hashes.is_empty() {
            return;
        }
        core.borrow().shard.prefetch_hashes(&hashes);
        hashes.clear();
    }
}
