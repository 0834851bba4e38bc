//! One slab slot: the entry's bytes, its list links, version and packed expiry/policy bits.
//!
//! Kept at 32 bytes so two entries share a cache line and the per-entry overhead stays small;
//! `Meta` packs the expiry and every policy's per-entry state into one `u64`.

use crate::kv_block::KvBlock;

/// Marks the end of an intrusive list or an empty link.
pub(crate) const NIL: u32 = u32::MAX;

/// A slab slot. `block` is `None` for a free slot, whose `next` then links the free list.
///
/// Not aligned to 32 bytes, although a large `Vec` of 8-aligned slots starts 16 bytes into its
/// pages (glibc's mmap header), so every other slot straddles two cache lines. Aligned, the
/// engine-report get-hit gained 2-4%, but the system allocator then grows and shrinks the array
/// by copying it instead of `mremap`: a 32 MB copy in one `set` when the slab doubles, and 13 ms
/// `advance` calls while an emptied slab is released piecemeal.
#[derive(Debug)]
pub(crate) struct Entry {
    pub block: Option<KvBlock>,
    pub prev: u32,
    pub next: u32,
    pub version: u64,
    pub meta: Meta,
}

const EXPIRY_BITS: u32 = 40;
/// Largest storable expiry, in milliseconds after the shard's time base (about 34 years).
pub(crate) const MAX_EXPIRY_REL: u64 = (1 << EXPIRY_BITS) - 1;
const TOMBSTONE: u64 = 1 << 40;
const HAS_TAGS: u64 = 1 << 41;
const IN_MAIN: u64 = 1 << 42;
const S3_FREQ_SHIFT: u32 = 43;
const S3_FREQ_MASK: u64 = 0b11;
const LFU_TIME_SHIFT: u32 = 45;
/// LFU decay clock width: minutes modulo 2^11 (about 34 hours).
pub(crate) const LFU_TIME_MASK: u64 = (1 << 11) - 1;
const LFU_COUNT_SHIFT: u32 = 56;

/// Packed per-entry state. Bit layout (low to high):
/// `0..40` expiry in ms after the shard's base (0 = no expiry), `40` tombstone, `41` has tags,
/// `42` in S3-FIFO's main queue, `43..45` S3-FIFO frequency, `45..56` LFU last-decay minute,
/// `56..64` LFU logarithmic counter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Meta(u64);

impl Meta {
    #[inline]
    pub fn expiry_rel(self) -> u64 {
        self.0 & MAX_EXPIRY_REL
    }
    #[inline]
    pub fn set_expiry_rel(&mut self, rel: u64) {
        self.0 = (self.0 & !MAX_EXPIRY_REL) | rel.min(MAX_EXPIRY_REL);
    }
    #[inline]
    fn flag(self, bit: u64) -> bool {
        self.0 & bit != 0
    }
    #[inline]
    fn set_flag(&mut self, bit: u64, on: bool) {
        if on {
            self.0 |= bit
        } else {
            self.0 &= !bit
        }
    }
    #[inline]
    pub fn tombstone(self) -> bool {
        self.flag(TOMBSTONE)
    }
    #[inline]
    pub fn set_tombstone(&mut self, on: bool) {
        self.set_flag(TOMBSTONE, on)
    }
    #[inline]
    pub fn has_tags(self) -> bool {
        self.flag(HAS_TAGS)
    }
    #[inline]
    pub fn set_has_tags(&mut self, on: bool) {
        self.set_flag(HAS_TAGS, on)
    }
    #[inline]
    pub fn in_main(self) -> bool {
        self.flag(IN_MAIN)
    }
    #[inline]
    pub fn set_in_main(&mut self, on: bool) {
        self.set_flag(IN_MAIN, on)
    }
    #[inline]
    pub fn s3_freq(self) -> u8 {
        ((self.0 >> S3_FREQ_SHIFT) & S3_FREQ_MASK) as u8
    }
    #[inline]
    pub fn set_s3_freq(&mut self, f: u8) {
        self.0 = (self.0 & !(S3_FREQ_MASK << S3_FREQ_SHIFT))
            | ((u64::from(f) & S3_FREQ_MASK) << S3_FREQ_SHIFT);
    }
    #[inline]
    pub fn lfu_time(self) -> u64 {
        (self.0 >> LFU_TIME_SHIFT) & LFU_TIME_MASK
    }
    #[inline]
    pub fn lfu_count(self) -> u8 {
        (self.0 >> LFU_COUNT_SHIFT) as u8
    }
    #[inline]
    pub fn set_lfu(&mut self, count: u8, time: u64) {
        let mask = (LFU_TIME_MASK << LFU_TIME_SHIFT) | (0xff << LFU_COUNT_SHIFT);
        self.0 = (self.0 & !mask)
            | ((time & LFU_TIME_MASK) << LFU_TIME_SHIFT)
            | (u64::from(count) << LFU_COUNT_SHIFT);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_is_32_bytes() {
        assert_eq!(std::mem::size_of::<Entry>(), 32);
    }

    #[test]
    fn fields_do_not_overlap() {
        let mut m = Meta::default();
        m.set_expiry_rel(MAX_EXPIRY_REL);
        m.set_lfu(255, LFU_TIME_MASK);
        m.set_s3_freq(3);
        m.set_in_main(true);
        assert!(!m.tombstone() && !m.has_tags());
        m.set_tombstone(true);
        m.set_has_tags(true);
        assert_eq!(m.expiry_rel(), MAX_EXPIRY_REL);
        assert_eq!((m.lfu_count(), m.lfu_time()), (255, LFU_TIME_MASK));
        assert_eq!(m.s3_freq(), 3);
        m.set_expiry_rel(5);
        m.set_lfu(1, 2);
        m.set_s3_freq(0);
        m.set_in_main(false);
        assert!(m.tombstone() && m.has_tags());
        assert_eq!(
            (m.expiry_rel(), m.lfu_count(), m.lfu_time(), m.s3_freq()),
            (5, 1, 2, 0)
        );
        m.set_expiry_rel(u64::MAX);
        assert_eq!(m.expiry_rel(), MAX_EXPIRY_REL);
    }
}
