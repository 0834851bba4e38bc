//! The consistent-hash ring: each shard group owns many points (virtual nodes) on a 64-bit
//! circle, and a key belongs to the group owning the first point at or after the key's hash.
//! Adding or removing a group moves only the arcs next to its points, about 1/n of the keys.

use serde::{Deserialize, Serialize};

/// Identifies a shard group (a primary and its replicas).
pub type GroupId = u32;

/// Default virtual nodes per group: enough that 10 groups own within ~10% of an equal share.
pub const DEFAULT_VNODES: u32 = 1024;

/// A point's position: a hash of the group id and the point's index (stable everywhere).
fn point(group: GroupId, index: u32) -> u64 {
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&group.to_le_bytes());
    b[4..].copy_from_slice(&index.to_le_bytes());
    xxhash_rust::xxh3::xxh3_64_with_seed(&b, 0x7269_6e67)
}

/// The ring. Invariant: `points` is sorted by position, and holds `vnodes` points for every
/// group in `groups`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ring {
    vnodes: u32,
    groups: Vec<GroupId>,
    points: Vec<(u64, GroupId)>,
}

impl Ring {
    /// A ring over `groups` with `vnodes` points each.
    pub fn new(groups: &[GroupId], vnodes: u32) -> Ring {
        let vnodes = vnodes.max(1);
        let mut gs = groups.to_vec();
        gs.sort_unstable();
        gs.dedup();
        let mut points: Vec<(u64, GroupId)> = gs
            .iter()
            .flat_map(|&g| (0..vnodes).map(move |i| (point(g, i), g)))
            .collect();
        // Ties (vanishingly rare) break by group id so every party builds the same ring.
        points.sort_unstable();
        Ring {
            vnodes,
            groups: gs,
            points,
        }
    }

    /// The groups on the ring, sorted.
    pub fn groups(&self) -> &[GroupId] {
        &self.groups
    }

    /// Virtual nodes per group.
    pub fn vnodes(&self) -> u32 {
        self.vnodes
    }

    /// The group owning `hash`, or `None` for an empty ring.
    pub fn owner(&self, hash: u64) -> Option<GroupId> {
        if self.points.is_empty() {
            return None;
        }
        let i = self.points.partition_point(|&(p, _)| p < hash);
        Some(self.points[i % self.points.len()].1)
    }

    /// The same ring with `group` added.
    pub fn with_group(&self, group: GroupId) -> Ring {
        let mut gs = self.groups.clone();
        gs.push(group);
        Ring::new(&gs, self.vnodes)
    }

    /// The same ring with `group` removed.
    pub fn without_group(&self, group: GroupId) -> Ring {
        let gs: Vec<GroupId> = self
            .groups
            .iter()
            .copied()
            .filter(|&g| g != group)
            .collect();
        Ring::new(&gs, self.vnodes)
    }

    /// Each group's share of the hash space (fractions summing to 1), in `groups()` order.
    pub fn shares(&self) -> Vec<(GroupId, f64)> {
        let mut owned: Vec<(GroupId, u128)> = self.groups.iter().map(|&g| (g, 0)).collect();
        let n = self.points.len();
        for i in 0..n {
            // The arc (previous point, this point] belongs to this point's group.
            let (p, g) = self.points[i];
            let prev = self.points[(i + n - 1) % n].0;
            let arc = if n == 1 {
                1u128 << 64
            } else {
                u128::from(p.wrapping_sub(prev))
            };
            if let Some(slot) = owned.iter_mut().find(|(x, _)| *x == g) {
                slot.1 += arc;
            }
        }
        let total = 2f64.powi(64);
        owned
            .into_iter()
            .map(|(g, a)| (g, a as f64 / total))
            .collect()
    }

    /// Fraction of the hash space whose owner differs between `self` and `other`.
    pub fn moved_fraction(&self, other: &Ring) -> f64 {
        let mut bounds: Vec<u64> = self
            .points
            .iter()
            .chain(other.points.iter())
            .map(|&(p, _)| p)
            .collect();
        bounds.sort_unstable();
        bounds.dedup();
        let n = bounds.len();
        let mut moved = 0u128;
        for i in 0..n {
            // Every hash in (bounds[i-1], bounds[i]] has one owner in each ring.
            let hi = bounds[i];
            let lo = bounds[(i + n - 1) % n];
            let arc = if n == 1 {
                1u128 << 64
            } else {
                u128::from(hi.wrapping_sub(lo))
            };
            if self.owner(hi) != other.owner(hi) {
                moved += arc;
            }
        }
        moved as f64 / 2f64.powi(64)
    }
}

/// Balance of a ring: the largest share over the mean, and the standard deviation of shares
/// relative to the mean.
pub fn balance(ring: &Ring) -> (f64, f64) {
    let shares = ring.shares();
    let n = shares.len().max(1) as f64;
    let mean = 1.0 / n;
    let max = shares.iter().map(|s| s.1).fold(0.0, f64::max);
    let var = shares.iter().map(|s| (s.1 - mean).powi(2)).sum::<f64>() / n;
    (max / mean, var.sqrt() / mean)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn empty_and_single_group_rings() {
        assert_eq!(Ring::new(&[], 8).owner(5), None);
        let r = Ring::new(&[7], 8);
        assert_eq!(r.owner(0), Some(7));
        assert_eq!(r.owner(u64::MAX), Some(7));
        let shares = r.shares();
        assert!((shares[0].1 - 1.0).abs() < 1e-9);
    }

    #[test]
    fn ten_groups_are_balanced_at_the_default_vnode_count() {
        let groups: Vec<GroupId> = (1..=10).collect();
        let (max_over_mean, _) = balance(&Ring::new(&groups, DEFAULT_VNODES));
        assert!(max_over_mean <= 1.10, "max/mean {max_over_mean}");
    }

    #[test]
    fn a_join_moves_about_one_nth_of_the_keys_all_to_the_newcomer() {
        let groups: Vec<GroupId> = (1..=9).collect();
        let before = Ring::new(&groups, DEFAULT_VNODES);
        let after = before.with_group(10);
        let moved = before.moved_fraction(&after);
        let ideal = 1.0 / 10.0;
        assert!(
            (moved - ideal).abs() <= ideal * 0.10,
            "moved {moved}, ideal {ideal}"
        );
        for h in (0..10_000u64).map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15)) {
            if before.owner(h) != after.owner(h) {
                assert_eq!(after.owner(h), Some(10));
            }
        }
    }

    proptest! {
        #[test]
        fn shares_sum_to_one_and_owners_are_members(groups in prop::collection::btree_set(0u32..1000, 1..12), h in any::<u64>()) {
            let gs: Vec<GroupId> = groups.into_iter().collect();
            let r = Ring::new(&gs, 16);
            let total: f64 = r.shares().iter().map(|s| s.1).sum();
            prop_assert!((total - 1.0).abs() < 1e-9);
            prop_assert!(r.owner(h).is_some_and(|g| gs.contains(&g)));
            prop_assert_eq!(Ring::new(&gs, 16), r);
        }
    }
}
