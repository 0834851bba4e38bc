//! CPU cache hints: ask for a line to be loaded without waiting for it. Used to start the
//! misses of several lookups at once (a pipelined batch, or lone requests of many connections).

/// Hints the cache line holding `p` into the CPU cache; a no-op off x86_64.
#[inline]
pub(crate) fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: `_mm_prefetch` needs SSE, which is in the x86_64 baseline; a prefetch is a
        // hint that never faults or writes, whatever the address.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p.cast()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}
