//! Hybrid logical clock: version stamps that follow wall time, never go backwards, and are
//! unique per origin, so "newer version wins" is a total order across the cluster.
//!
//! Layout of a stamp: `physical ms << 20 | logical << 10 | origin`, with 10 bits of logical
//! counter (1024 stamps per ms before borrowing from the next ms) and 10 bits of origin id.

const ORIGIN_BITS: u32 = 10;
const LOGICAL_BITS: u32 = 10;
const ORIGIN_MASK: u64 = (1 << ORIGIN_BITS) - 1;
const TICK: u64 = 1 << ORIGIN_BITS;

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

    /// Takes a stamp seen from elsewhere into account so later stamps are greater.
    pub fn observe(&mut self, stamp: u64) {
        self.last = self.last.max(stamp & !ORIGIN_MASK);
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
        b.observe(far);
        let next = b.stamp(10);
        assert!(next > far);
        assert_ne!(next, far);
    }
}
