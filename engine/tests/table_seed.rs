//! The table seed (issue 19): a shard's key hash depends on `ShardConfig::hash_seed`, so a node
//! can give each core a random one; what the shard stores and finds does not.

use ringcache_engine::{SetOptions, Shard, ShardConfig, DEFAULT_HASH_SEED};

fn seeded(seed: u64) -> Shard {
    let config = ShardConfig {
        hash_seed: seed,
        ..ShardConfig::default()
    };
    let mut shard = Shard::new(config, 1_000);
    for i in 0..1000u32 {
        shard
            .set(
                &i.to_be_bytes(),
                b"v",
                &SetOptions::default(),
                1_000,
                u64::from(i) + 1,
            )
            .expect("fits");
    }
    shard
}

#[test]
fn the_table_seed_changes_the_table_hash_not_what_is_stored() {
    let (mut a, mut b) = (seeded(1), seeded(2));
    assert_ne!(a.key_hash(b"k"), b.key_hash(b"k"));
    assert_eq!(
        Shard::new(ShardConfig::default(), 1).key_hash(b"k"),
        seeded(DEFAULT_HASH_SEED).key_hash(b"k"),
        "the default config is reproducible"
    );
    for i in 0..1000u32 {
        let key = i.to_be_bytes();
        assert!(a.get(&key, 1_000).is_some(), "{i} lost with seed 1");
        assert!(b.get(&key, 1_000).is_some(), "{i} lost with seed 2");
    }
    assert_eq!(a.len(), b.len());
}
