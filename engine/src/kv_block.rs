//! `KvBlock`: one heap allocation holding an entry's key and value behind a thin pointer.
//!
//! A boxed slice costs 16 bytes (pointer and length) in every slab entry; a thin pointer costs 8.
//! The two lengths live at the front of the allocation as LEB128 varints (2 bytes for short keys
//! and values), so an entry's bytes cost one allocation and one pointer.

use std::alloc::{alloc, dealloc, handle_alloc_error, Layout};
use std::ptr::NonNull;

/// Key and value bytes in one allocation: `[varint key_len][varint value_len][key][value]`.
///
/// Invariants: `ptr` points to a live allocation made by [`KvBlock::new`] with
/// `Layout::from_size_align(total, 1)`, where `total` is the header length plus both lengths the
/// header records; the header is well formed (written only by `new`). The block owns the
/// allocation exclusively and frees it exactly once, on drop.
pub struct KvBlock {
    ptr: NonNull<u8>,
}

// SAFETY: `KvBlock` owns its allocation exclusively (like `Box<[u8]>`), so moving it to another
// thread or sharing `&KvBlock` (read-only access) is sound.
unsafe impl Send for KvBlock {}
// SAFETY: as for `Send`: shared references only read the bytes, which never change after `new`.
unsafe impl Sync for KvBlock {}

fn varint_len(mut v: usize) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

fn write_varint(out: &mut [u8], mut v: usize) -> usize {
    let mut i = 0;
    while v >= 0x80 {
        out[i] = (v as u8) | 0x80;
        v >>= 7;
        i += 1;
    }
    out[i] = v as u8;
    i + 1
}

/// Compares two slices of equal length. Up to 16 bytes it compares two overlapping words from
/// each side, a handful of instructions where a `memcmp` call costs a few dozen.
#[inline]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    fn words<const N: usize>(s: &[u8]) -> Option<([u8; N], [u8; N])> {
        Some((*s.first_chunk::<N>()?, *s.last_chunk::<N>()?))
    }
    if (8..=16).contains(&a.len()) {
        if let (Some((a0, a1)), Some((b0, b1))) = (words::<8>(a), words::<8>(b)) {
            let x = u64::from_ne_bytes(a0) ^ u64::from_ne_bytes(b0);
            let y = u64::from_ne_bytes(a1) ^ u64::from_ne_bytes(b1);
            return x | y == 0;
        }
    }
    a == b
}

impl KvBlock {
    /// Copies `key` and `value` into a fresh allocation.
    pub fn new(key: &[u8], value: &[u8]) -> KvBlock {
        Self::with_value(key, value.len(), |dst| dst.copy_from_slice(value))
    }

    /// Allocates room for `key` and a value of `value_len` bytes, copies the key and lets
    /// `fill` write the value (so a value built in place, like an INCR result, is copied once).
    pub fn with_value(key: &[u8], value_len: usize, fill: impl FnOnce(&mut [u8])) -> KvBlock {
        let header = varint_len(key.len()) + varint_len(value_len);
        let total = header + key.len() + value_len;
        // A zero-sized allocation is not allowed; the header is always at least 2 bytes.
        let layout = match Layout::from_size_align(total, 1) {
            Ok(l) => l,
            Err(_) => handle_alloc_error(Layout::new::<u8>()),
        };
        // SAFETY: `layout` has non-zero size (header >= 2).
        let raw = unsafe { alloc(layout) };
        let Some(ptr) = NonNull::new(raw) else {
            handle_alloc_error(layout)
        };
        // SAFETY: the allocation is `total` bytes long and exclusively ours; we initialise every
        // byte below before any read (header, key, then `fill` writes the value slice).
        let bytes = unsafe {
            std::ptr::write_bytes(ptr.as_ptr(), 0, total);
            std::slice::from_raw_parts_mut(ptr.as_ptr(), total)
        };
        let mut at = write_varint(bytes, key.len());
        at += write_varint(&mut bytes[at..], value_len);
        bytes[at..at + key.len()].copy_from_slice(key);
        fill(&mut bytes[at + key.len()..]);
        KvBlock { ptr }
    }

    /// Bytes [`KvBlock::new`] allocates for a key and value of these lengths.
    pub fn alloc_size_for(key_len: usize, value_len: usize) -> usize {
        varint_len(key_len) + varint_len(value_len) + key_len + value_len
    }

    /// Reads the header: (header length, key length, value length).
    #[inline]
    fn header(&self) -> (usize, usize, usize) {
        let p = self.ptr.as_ptr();
        // SAFETY: the header was written by `new` and is at least two bytes long.
        let (b0, b1) = unsafe { (*p, *p.add(1)) };
        if (b0 | b1) & 0x80 == 0 {
            // Both lengths under 128: the common case of short keys and values.
            return (2, usize::from(b0), usize::from(b1));
        }
        self.header_slow()
    }

    #[cold]
    fn header_slow(&self) -> (usize, usize, usize) {
        let p = self.ptr.as_ptr();
        let mut at = 0usize;
        let mut read = || {
            let mut v = 0usize;
            let mut shift = 0;
            loop {
                // SAFETY: the header was written by `new` and is well formed, so every varint
                // ends inside the allocation before the key starts.
                let b = unsafe { *p.add(at) };
                at += 1;
                v |= ((b & 0x7f) as usize) << shift;
                if b & 0x80 == 0 {
                    return v;
                }
                shift += 7;
            }
        };
        let k = read();
        let v = read();
        (at, k, v)
    }

    /// The key and the value.
    #[inline]
    pub fn parts(&self) -> (&[u8], &[u8]) {
        let (h, k, v) = self.header();
        // SAFETY: the allocation holds `h + k + v` initialised bytes (invariant of `new`), and
        // the returned slices borrow `self`, so they cannot outlive the allocation.
        unsafe {
            let base = self.ptr.as_ptr().add(h);
            (
                std::slice::from_raw_parts(base, k),
                std::slice::from_raw_parts(base.add(k), v),
            )
        }
    }

    /// The key.
    #[inline]
    pub fn key(&self) -> &[u8] {
        self.parts().0
    }

    /// Hints the block's first cache line (length header and key) into the CPU cache.
    #[inline]
    pub fn prefetch(&self) {
        crate::cache_hint::prefetch(self.ptr.as_ptr());
    }

    /// The value, if the stored key is `key`: the lengths first, then the bytes compared inline
    /// for keys of up to 16 bytes (the common case) instead of through a `memcmp` call; one
    /// header decode for the comparison and the value.
    #[inline(always)]
    pub fn value_if_key(&self, key: &[u8]) -> Option<&[u8]> {
        let (stored, value) = self.parts();
        (stored.len() == key.len() && same_bytes(stored, key)).then_some(value)
    }

    /// The value.
    #[inline]
    pub fn value(&self) -> &[u8] {
        self.parts().1
    }

    /// Bytes this block asked the allocator for.
    #[inline]
    pub fn alloc_size(&self) -> usize {
        let (h, k, v) = self.header();
        h + k + v
    }
}

impl Drop for KvBlock {
    fn drop(&mut self) {
        let total = self.alloc_size();
        // SAFETY: same layout as in `new` (size `total`, align 1, valid there so valid here), and
        // the block is dropped exactly once.
        unsafe {
            dealloc(
                self.ptr.as_ptr(),
                Layout::from_size_align_unchecked(total, 1),
            )
        }
    }
}

impl std::fmt::Debug for KvBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (k, v) = self.parts();
        f.debug_struct("KvBlock")
            .field("key_len", &k.len())
            .field("value_len", &v.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_lengths_across_varint_boundaries() {
        for klen in [0usize, 1, 127, 128, 300, 65536] {
            for vlen in [0usize, 1, 127, 128, 16384, 70000] {
                let key: Vec<u8> = (0..klen).map(|i| i as u8).collect();
                let val: Vec<u8> = (0..vlen).map(|i| (i * 7) as u8).collect();
                let b = KvBlock::new(&key, &val);
                assert_eq!(b.key(), &key[..]);
                assert_eq!(b.value(), &val[..]);
                assert_eq!(
                    b.alloc_size(),
                    varint_len(klen) + varint_len(vlen) + klen + vlen
                );
            }
        }
    }

    #[test]
    fn short_entries_cost_two_header_bytes() {
        let b = KvBlock::new(&[1u8; 16], &[2u8; 32]);
        assert_eq!(b.alloc_size(), 50);
    }

    #[test]
    fn with_value_fills_in_place() {
        let b = KvBlock::with_value(b"k", 3, |d| d.copy_from_slice(b"abc"));
        assert_eq!(b.parts(), (&b"k"[..], &b"abc"[..]));
    }

    proptest::proptest! {
        /// `value_if_key` finds exactly the keys slice equality does, for every length and for
        /// keys that differ in one byte only (so each word of the inline compare is exercised),
        /// and gives the value (short and varint headers).
        #[test]
        fn value_if_key_matches_slice_equality(
            stored in proptest::collection::vec(0u8..4, 0..40),
            flip in proptest::option::of(0usize..40),
            other_len in proptest::option::of(0usize..40),
            value in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
        ) {
            let b = KvBlock::new(&stored, &value);
            let mut probe = stored.clone();
            if let Some(i) = flip.filter(|&i| i < probe.len()) {
                probe[i] ^= 0x10;
            }
            if let Some(n) = other_len {
                probe.resize(n, 1);
            }
            let want = (stored == probe).then_some(&value[..]);
            proptest::prop_assert_eq!(b.value_if_key(&probe), want);
        }
    }
}
