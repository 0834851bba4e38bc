//! Key placement: the shared key hash, and the jump consistent hash that maps it to one of a
//! node's cores (so client, balancer and node agree on a key's core without talking).

/// The key hash used by clients, balancers and nodes alike (XXH3-64, stable across versions
/// and machines).
#[inline]
pub fn key_hash(key: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(key)
}

/// Jump consistent hash (Lamping & Veach): the bucket in `0..buckets` for `hash`. Growing
/// `buckets` by one moves only 1/(n+1) of the hashes. `buckets == 0` is treated as 1.
#[inline]
pub fn core_for_hash(hash: u64, buckets: u32) -> u32 {
    let n = i64::from(buckets.max(1));
    let mut key = hash;
    let mut b: i64 = -1;
    let mut j: i64 = 0;
    while j < n {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        j = (((b + 1) as f64) * ((1u64 << 31) as f64 / (((key >> 33) + 1) as f64))) as i64;
    }
    b as u32
}

/// The core in `0..cores` that owns `key`.
#[inline]
pub fn core_for_key(key: &[u8], cores: u32) -> u32 {
    if cores <= 1 {
        // One core owns everything: no need to hash the key.
        return 0;
    }
    core_for_hash(key_hash(key), cores)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn key_hash_is_stable() {
        // Pinned: changing the hash would move every key of a running cluster.
        assert_eq!(key_hash(b""), 0x2d06800538d394c2);
        assert_eq!(
            key_hash(b"ringcache"),
            xxhash_rust::xxh3::xxh3_64(b"ringcache")
        );
    }

    #[test]
    fn spreads_evenly() {
        let mut counts = [0u32; 4];
        for i in 0..40_000u32 {
            counts[core_for_key(&i.to_le_bytes(), 4) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (9_000..11_000).contains(&c)),
            "{counts:?}"
        );
    }

    proptest! {
        #[test]
        fn in_range_and_moves_only_to_the_new_bucket(h in any::<u64>(), n in 1u32..64) {
            let a = core_for_hash(h, n);
            let b = core_for_hash(h, n + 1);
            prop_assert!(a < n);
            prop_assert!(b == a || b == n);
        }

        #[test]
        fn key_placement_agrees_with_hash_placement(
            key in prop::collection::vec(any::<u8>(), 0..40),
            n in 0u32..64,
        ) {
            prop_assert_eq!(core_for_key(&key, n), core_for_hash(key_hash(&key), n));
        }
    }
}
