//! Hybrid logical clock: version stamps that follow wall time, never go backwards, and are
//! unique per origin, so "newer version wins" is a total order across the cluster.
//!
//! Layout of a stamp: `physical ms << 20 | logical << 10 | origin`, with 10 bits of logical
//! counter (1024 stamps per ms before borrowing from the next ms) and 10 bits of origin id.
//!
//! Stamps seen from elsewhere (replicated writes) move the clock forward only within
//! `MAX_AHEAD_MS` of the local wall clock: a peer's stamp from the far future (a broken clock,
//! or a hostile `u64::MAX`) is refused instead of dragging every later local stamp along.

const ORIGIN_BITS: u32 = 10;
const LOGICAL_BITS: u32 = 10;
const ORIGIN_MASK: u64 = (1 << ORIGIN_BITS) - 1;
const TICK: u64 = 1 << ORIGIN_BITS;

/// How far ahead of the local wall clock an observed stamp may be: one minute. Honest stamps
/// run ahead only by the clock skew between hosts (milliseconds under NTP, seconds for a host
/// that just lost sync) plus what a core borrows past 1024 stamps per ms (a millisecond per
/// further 1024 writes in that ms); a minute covers both by far, while a stamp beyond it would
/// make its key win over every honest write for longer than any cache entry is worth keeping
/// that way, and a stamp near `u64::MAX` would wrap the clock.
pub const MAX_AHEAD_MS: u64 = 60_000;

/// An observed stamp lies too far ahead of the local wall clock to be believed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("version {stamp:#x} is {ahead_ms} ms ahead of this clock (at most {MAX_AHEAD_MS} ms is believed)")]
pub struct ClockRefused {
    /// The stamp refused.
    pub stamp: u64,
    /// How far ahead of the local wall clock it was, in ms.
    pub ahead_ms: u64,
}

/// One origin's clock (one per core: no sharing between cores).
#[derive(Clone, Debug)]
pub struct HybridClock {
    origin: u64,
    last: u64,
}

impl HybridClock {
    /// A clock for `origin` (taken modulo 1024; give each core of the cluster its own).
    pub fn new(origin: u32) -> Self {
        HybridClock {
            origin: u64::from(origin) & ORIGIN_MASK,
            last: 0,
        }
    }

    /// A new stamp, greater than every stamp this clock issued or observed.
    pub fn stamp(&mut self, wall_ms: u64) -> u64 {
        let physical = wall_ms << (ORIGIN_BITS + LOGICAL_BITS);
        self.last = if physical > self.last {
            physical
        } else {
            self.last + TICK
        };
        self.last | self.origin
    }

    /// Takes a stamp seen from elsewhere into account so later stamps are greater, unless it
    /// lies more than `MAX_AHEAD_MS` ahead of `wall_ms`: then the clock is left alone and the
    /// caller must not use the stamp either.
    pub fn observe(&mut self, stamp: u64, wall_ms: u64) -> Result<(), ClockRefused> {
        Self::believable(stamp, wall_ms)?;
        self.last = self.last.max(stamp & !ORIGIN_MASK);
        Ok(())
    }

    /// Whether `stamp` (a version or an invalidation cut from elsewhere) is within
    /// `MAX_AHEAD_MS` of `wall_ms`.
    pub fn believable(stamp: u64, wall_ms: u64) -> Result<(), ClockRefused> {
        let physical = Self::physical_ms(stamp);
        if physical > wall_ms.saturating_add(MAX_AHEAD_MS) {
            return Err(ClockRefused {
                stamp,
                ahead_ms: physical - wall_ms,
            });
        }
        Ok(())
    }

    /// The wall-clock millisecond a stamp was issued at (or borrowed into).
    pub fn physical_ms(stamp: u64) -> u64 {
        stamp >> (ORIGIN_BITS + LOGICAL_BITS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_rise_even_when_the_wall_clock_stalls_or_steps_back() {
        let mut c = HybridClock::new(3);
        let a = c.stamp(1000);
        let b = c.stamp(1000);
        let d = c.stamp(900);
        assert!(a < b && b < d);
        assert_eq!(HybridClock::physical_ms(a), 1000);
        assert_eq!(a & ORIGIN_MASK, 3);
        assert!(c.stamp(2000) > d);
    }

    #[test]
    fn observing_a_later_stamp_moves_the_clock_forward() {
        let mut a = HybridClock::new(1);
        let mut b = HybridClock::new(2);
        let far = a.stamp(5000);
        b.observe(far, 10).unwrap();
        let next = b.stamp(10);
        assert!(next > far);
        assert_ne!(next, far);
    }

    #[test]
    fn a_stamp_far_ahead_of_the_wall_clock_does_not_poison_local_stamps() {
        let mut c = HybridClock::new(1);
        let before = c.stamp(1_000);
        let refused = c.observe(u64::MAX, 1_000).unwrap_err();
        assert_eq!(refused.stamp, u64::MAX);
        let next = c.stamp(1_000);
        assert!(next > before);
        assert!(
            HybridClock::physical_ms(next) <= 1_000 + 1,
            "stamp {next:#x} jumped ahead"
        );
    }

    #[test]
    fn stamps_within_the_bound_are_observed_and_beyond_it_refused() {
        let mut c = HybridClock::new(1);
        let wall = 1_000_000;
        let edge = (wall + MAX_AHEAD_MS) << (ORIGIN_BITS + LOGICAL_BITS) | 7;
        assert_eq!(c.observe(edge, wall), Ok(()));
        assert!(c.stamp(wall) > edge);
        let beyond = (wall + MAX_AHEAD_MS + 1) << (ORIGIN_BITS + LOGICAL_BITS);
        let before = c.stamp(wall);
        assert_eq!(
            c.observe(beyond, wall),
            Err(ClockRefused {
                stamp: beyond,
                ahead_ms: MAX_AHEAD_MS + 1
            })
        );
        let after = c.stamp(wall);
        assert!(after > before && after < beyond);
        // A wall clock near its end does not overflow the check.
        assert!(HybridClock::believable(u64::MAX, u64::MAX).is_ok());
    }
}
