//! Replica-side operations: versioned apply in any order, digests that agree exactly when the
//! data does, chunked walks that see every entry, restamping and selective clearing.

use proptest::prelude::*;
use ringcache_engine::{Expiry, SetOptions, Shard, ShardConfig};

fn shard() -> Shard {
    Shard::new(ShardConfig::default(), 1_000)
}

#[derive(Clone, Debug)]
enum Op {
    Put(u8, u8, u64),
    Del(u8, u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..8, any::<u8>(), 1u64..50).prop_map(|(k, v, ver)| Op::Put(k, v, ver)),
        (0u8..8, 1u64..50).prop_map(|(k, ver)| Op::Del(k, ver)),
    ]
}

fn apply(s: &mut Shard, op: &Op) {
    match *op {
        Op::Put(k, v, ver) => {
            // Distinct versions per op keep "newest wins" well defined.
            let version = ver * 512 + u64::from(v);
            s.apply_write(&[k], &[v], version, None, &[], 1_000)
                .unwrap();
        }
        Op::Del(k, ver) => {
            s.apply_delete(&[k], ver * 512 + 300, 1_000).unwrap();
        }
    }
}

proptest! {
    /// Two replicas given the same operations in different orders hold the same data.
    #[test]
    fn copies_converge_whatever_the_order(ops in proptest::collection::vec(op(), 0..40), seed in any::<u64>()) {
        let mut a = shard();
        let mut b = shard();
        for o in &ops {
            apply(&mut a, o);
        }
        let mut shuffled = ops.clone();
        let n = shuffled.len();
        let mut x = seed | 1;
        for i in (1..n).rev() {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            shuffled.swap(i, (x % (i as u64 + 1)) as usize);
        }
        for o in &shuffled {
            apply(&mut b, o);
        }
        prop_assert_eq!(a.digest(1_000), b.digest(1_000));
    }
}

#[test]
fn digest_sees_values_versions_and_expiries() {
    let (mut a, mut b) = (shard(), shard());
    a.apply_write(b"k", b"v", 10, Some(50_000), &[], 1_000)
        .unwrap();
    b.apply_write(b"k", b"v", 10, Some(50_000), &[], 1_000)
        .unwrap();
    assert_eq!(a.digest(1_000), b.digest(1_000));
    assert_eq!(a.digest(1_000).0, 1);
    b.apply_write(b"k", b"v", 11, Some(50_000), &[], 1_000)
        .unwrap();
    assert_ne!(a.digest(1_000), b.digest(1_000));
    a.apply_write(b"k", b"v", 11, Some(60_000), &[], 1_000)
        .unwrap();
    assert_ne!(a.digest(1_000), b.digest(1_000));
    // Tombstones do not count.
    a.apply_delete(b"k", 12, 1_000).unwrap();
    assert_eq!(a.digest(1_000), (0, 0));
}

#[test]
fn a_chunked_walk_sees_every_entry_once() {
    let mut s = shard();
    for i in 0..1000u32 {
        let k = i.to_le_bytes();
        s.set(&k, b"v", &SetOptions::default(), 1_000, u64::from(i) + 1)
            .unwrap();
    }
    let mut seen = std::collections::HashSet::new();
    let mut at = Some(0);
    let mut steps = 0;
    while let Some(start) = at {
        at = s.for_each_entry_in(start, 64, |e| {
            assert!(seen.insert(e.key.to_vec()));
        });
        steps += 1;
        assert!(steps < 10_000);
    }
    assert_eq!(seen.len(), 1000);
}

#[test]
fn restamp_and_entry_carry_the_new_version_and_tags() {
    let mut s = shard();
    let tags: &[&[u8]] = &[b"t1"];
    let opts = SetOptions {
        expiry: Expiry::At(9_000),
        tags,
        ..SetOptions::default()
    };
    s.set(b"k", b"v", &opts, 1_000, 5).unwrap();
    assert!(s.restamp(b"k", 7, 1_000));
    assert!(!s.restamp(b"missing", 8, 1_000));
    let e = s.entry(b"k", 1_000).unwrap();
    assert_eq!(
        (e.value, e.version, e.expires_at),
        (&b"v"[..], 7, Some(9_000))
    );
    assert_eq!(e.tags.len(), 1);
    assert_eq!(&*e.tags[0], b"t1");
    assert!(s.entry(b"k", 9_001).is_none());
    assert!(s.max_version() >= 7);
}

#[test]
fn remove_where_clears_only_the_chosen_keys() {
    let mut s = shard();
    for k in [b"a1", b"a2", b"b1"] {
        s.set(k, b"v", &SetOptions::default(), 1_000, 1).unwrap();
    }
    s.apply_delete(b"a3", 5, 1_000).unwrap();
    assert_eq!(s.remove_where(|k| k.starts_with(b"a")), 3);
    assert_eq!(s.digest(1_000).0, 1);
    assert!(s.entry(b"b1", 1_000).is_some());
    s.check_invariants();
}

#[test]
fn a_replicated_invalidation_spares_newer_writes() {
    let mut s = shard();
    s.apply_write(b"p:old", b"v", 10, None, &[], 1_000).unwrap();
    s.apply_write(b"p:new", b"v", 30, None, &[], 1_000).unwrap();
    s.invalidate_prefix_at(b"p:", 20);
    assert!(s.entry(b"p:old", 1_000).is_none());
    assert!(s.entry(b"p:new", 1_000).is_some());
    // A copy made from a walk does not bring the invalidated entry back.
    let mut walked = Vec::new();
    s.for_each_entry(|e| walked.push(e.key.to_vec()));
    assert_eq!(walked, vec![b"p:new".to_vec()]);
}
