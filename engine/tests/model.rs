//! Model-based property tests: random operation sequences with a moving clock, checked against
//! a plain `BTreeMap` model after every step.

use std::collections::BTreeMap;

use proptest::prelude::*;
use ringcache_engine::{
    EvictionPolicy, Expiry, SetCondition, SetOptions, SetOutcome, Shard, ShardConfig, Ttl,
};

const KEYS: &[&[u8]] = &[b"a", b"ab", b"abc", b"b:1", b"b:2", b"c", b"7", b"-3"];
const TAGS: &[&[u8]] = &[b"t1", b"t2"];
const TOMBSTONE_TTL: u64 = 500;

#[derive(Clone, Debug)]
enum Op {
    Set {
        key: usize,
        value: Vec<u8>,
        ttl: Option<u64>,
        cond: u8,
        cas: Option<bool>,
        tags: Vec<usize>,
    },
    Get(usize),
    Del(usize),
    Exists(usize),
    Touch(usize),
    Expire(usize, u64),
    Persist(usize),
    Ttl(usize),
    Incr(usize, i64),
    /// `replace_keeping` (APPEND, SETRANGE, INCRBYFLOAT): new value, same expiry and tags.
    Replace(usize, Vec<u8>),
    /// `memory_usage` (MEMORY USAGE): present exactly when the key is live.
    MemoryUsage(usize),
    InvalidatePrefix(usize),
    InvalidateTag(usize),
    ApplyWrite {
        key: usize,
        value: Vec<u8>,
        ttl: Option<u64>,
        old: bool,
    },
    ApplyDelete {
        key: usize,
        old: bool,
    },
    Advance(usize),
    Flush,
}

fn op() -> impl Strategy<Value = Op> {
    let key = 0..KEYS.len();
    let value = prop::collection::vec(any::<u8>(), 0..24);
    let ttl = prop::option::of(1u64..1500);
    prop_oneof![
        6 => (key.clone(), value.clone(), ttl.clone(), 0u8..3, prop::option::of(any::<bool>()),
              prop::collection::vec(0..TAGS.len(), 0..2))
            .prop_map(|(key, value, ttl, cond, cas, tags)| Op::Set { key, value, ttl, cond, cas, tags }),
        6 => key.clone().prop_map(Op::Get),
        2 => key.clone().prop_map(Op::Del),
        1 => key.clone().prop_map(Op::Exists),
        1 => key.clone().prop_map(Op::Touch),
        2 => (key.clone(), 0u64..1500).prop_map(|(k, ms)| Op::Expire(k, ms)),
        1 => key.clone().prop_map(Op::Persist),
        1 => key.clone().prop_map(Op::Ttl),
        2 => (key.clone(), -5i64..5).prop_map(|(k, d)| Op::Incr(k, d)),
        2 => (key.clone(), proptest::collection::vec(any::<u8>(), 0..40))
            .prop_map(|(k, v)| Op::Replace(k, v)),
        1 => key.clone().prop_map(Op::MemoryUsage),
        1 => key.clone().prop_map(Op::InvalidatePrefix),
        1 => (0..TAGS.len()).prop_map(Op::InvalidateTag),
        2 => (key.clone(), value, ttl, any::<bool>())
            .prop_map(|(key, value, ttl, old)| Op::ApplyWrite { key, value, ttl, old }),
        1 => (key.clone(), any::<bool>()).prop_map(|(key, old)| Op::ApplyDelete { key, old }),
        2 => (1usize..50).prop_map(Op::Advance),
        1 => Just(Op::Flush),
    ]
}

#[derive(Clone, Debug)]
struct MEntry {
    value: Vec<u8>,
    version: u64,
    expires_at: Option<u64>,
    tags: Vec<usize>,
    tombstone: bool,
}

#[derive(Default)]
struct Model {
    map: BTreeMap<Vec<u8>, MEntry>,
}

impl Model {
    /// The live (non-tombstone, unexpired) entry.
    fn live(&mut self, key: &[u8], now: u64) -> Option<&mut MEntry> {
        self.prune(key, now);
        self.map.get_mut(key).filter(|e| !e.tombstone)
    }
    fn prune(&mut self, key: &[u8], now: u64) {
        if self
            .map
            .get(key)
            .is_some_and(|e| e.expires_at.is_some_and(|t| t <= now))
        {
            self.map.remove(key);
        }
    }
    /// Version held (live or tombstone), for replicated writes.
    fn held(&mut self, key: &[u8], now: u64) -> Option<u64> {
        self.prune(key, now);
        self.map.get(key).map(|e| e.version)
    }
}

fn strict_i64(v: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(v).ok()?;
    if s.is_empty()
        || s.starts_with('+')
        || (s.len() > 1 && (s.starts_with('0') || s.starts_with("-0")))
    {
        return None;
    }
    s.parse().ok()
}

fn run(ops: Vec<(u64, Op)>, policy: EvictionPolicy) -> Result<(), TestCaseError> {
    let mut now = 1_000_000u64;
    let config = ShardConfig {
        budget_bytes: 1 << 20,
        policy,
        tombstone_ttl_ms: TOMBSTONE_TTL,
        ..ShardConfig::default()
    };
    let mut shard = Shard::new(config, now);
    let mut model = Model::default();
    let mut version = 10u64;
    for (dt, op) in ops {
        now += dt;
        match op {
            Op::Set {
                key,
                value,
                ttl,
                cond,
                cas,
                tags,
            } => {
                let k = KEYS[key];
                let tag_refs: Vec<&[u8]> = tags.iter().map(|&t| TAGS[t]).collect();
                let live = model.live(k, now).cloned();
                let if_version = cas.map(|exact| match (&live, exact) {
                    (Some(e), true) => e.version,
                    _ => 3,
                });
                let condition = [
                    SetCondition::Always,
                    SetCondition::IfAbsent,
                    SetCondition::IfPresent,
                ][cond as usize];
                let expiry = ttl.map_or(Expiry::Never, |t| Expiry::At(now + t));
                version += 1;
                let opts = SetOptions {
                    expiry,
                    condition,
                    if_version,
                    tags: &tag_refs,
                };
                let got = shard.set(k, &value, &opts, now, version).unwrap();
                let expect = if (condition == SetCondition::IfAbsent && live.is_some())
                    || (condition == SetCondition::IfPresent && live.is_none())
                {
                    SetOutcome::NotStored
                } else if if_version.is_some() && live.as_ref().map(|e| e.version) != if_version {
                    SetOutcome::VersionMismatch {
                        current: live.as_ref().map(|e| e.version),
                    }
                } else {
                    model.map.insert(
                        k.to_vec(),
                        MEntry {
                            value,
                            version,
                            expires_at: ttl.map(|t| now + t),
                            tags,
                            tombstone: false,
                        },
                    );
                    SetOutcome::Stored
                };
                prop_assert_eq!(got, expect);
            }
            Op::Get(key) => {
                let k = KEYS[key];
                let got = shard
                    .get(k, now)
                    .map(|h| (h.value.to_vec(), h.version, h.expires_at));
                let want = model
                    .live(k, now)
                    .map(|e| (e.value.clone(), e.version, e.expires_at));
                prop_assert_eq!(got, want);
            }
            Op::Del(key) => {
                let k = KEYS[key];
                let want = model.live(k, now).is_some();
                if want {
                    model.map.remove(k);
                }
                prop_assert_eq!(shard.delete(k, now), want);
            }
            Op::Exists(key) => {
                let k = KEYS[key];
                prop_assert_eq!(shard.exists(k, now), model.live(k, now).is_some());
            }
            Op::Touch(key) => {
                let k = KEYS[key];
                prop_assert_eq!(shard.touch(k, now), model.live(k, now).is_some());
            }
            Op::Expire(key, ms) => {
                let k = KEYS[key];
                let want = model.live(k, now).is_some();
                if want {
                    if ms == 0 {
                        model.map.remove(k);
                    } else if let Some(e) = model.live(k, now) {
                        e.expires_at = Some(now + ms);
                    }
                }
                prop_assert_eq!(shard.expire_at(k, now + ms, now), want);
            }
            Op::Persist(key) => {
                let k = KEYS[key];
                let want = model
                    .live(k, now)
                    .map(|e| e.expires_at.take().is_some())
                    .unwrap_or(false);
                prop_assert_eq!(shard.persist(k, now), want);
            }
            Op::Ttl(key) => {
                let k = KEYS[key];
                let want = match model.live(k, now) {
                    None => Ttl::Missing,
                    Some(e) => e
                        .expires_at
                        .map_or(Ttl::Persistent, |t| Ttl::Remaining(t - now)),
                };
                prop_assert_eq!(shard.ttl(k, now), want);
            }
            Op::Incr(key, delta) => {
                let k = KEYS[key];
                version += 1;
                let got = shard.incr_by(k, delta, now, version);
                let live = model.live(k, now).cloned();
                let current = match &live {
                    Some(e) => strict_i64(&e.value),
                    None => Some(0),
                };
                match current.and_then(|c| c.checked_add(delta)) {
                    Some(n) => {
                        prop_assert_eq!(got, Ok(n));
                        let (expires_at, tags) =
                            live.map_or((None, vec![]), |e| (e.expires_at, e.tags));
                        model.map.insert(
                            k.to_vec(),
                            MEntry {
                                value: n.to_string().into_bytes(),
                                version,
                                expires_at,
                                tags,
                                tombstone: false,
                            },
                        );
                    }
                    None => prop_assert!(got.is_err()),
                }
            }
            Op::Replace(key, value) => {
                let k = KEYS[key];
                version += 1;
                prop_assert_eq!(shard.replace_keeping(k, &value, now, version), Ok(()));
                let (expires_at, tags) = model
                    .live(k, now)
                    .cloned()
                    .map_or((None, vec![]), |e| (e.expires_at, e.tags));
                model.map.insert(
                    k.to_vec(),
                    MEntry {
                        value,
                        version,
                        expires_at,
                        tags,
                        tombstone: false,
                    },
                );
            }
            Op::MemoryUsage(key) => {
                let k = KEYS[key];
                let live = model.live(k, now).is_some();
                prop_assert_eq!(shard.memory_usage(k, now).is_some(), live);
            }
            Op::InvalidatePrefix(key) => {
                let p = KEYS[key];
                shard.invalidate_prefix(p);
                model.map.retain(|k, e| e.tombstone || !k.starts_with(p));
            }
            Op::InvalidateTag(t) => {
                shard.invalidate_tag(TAGS[t]);
                model.map.retain(|_, e| e.tombstone || !e.tags.contains(&t));
            }
            Op::ApplyWrite {
                key,
                value,
                ttl,
                old,
            } => {
                let k = KEYS[key];
                let v = if old {
                    5
                } else {
                    version += 1;
                    version
                };
                let expires_at = ttl.map(|t| now + t);
                let got = shard
                    .apply_write(k, &value, v, expires_at, &[], now)
                    .unwrap();
                let held = model.held(k, now);
                if held.is_some_and(|h| h >= v) {
                    prop_assert!(!got, "stale write applied");
                } else if !old {
                    prop_assert!(got, "fresh write refused");
                }
                if got {
                    model.map.insert(
                        k.to_vec(),
                        MEntry {
                            value,
                            version: v,
                            expires_at,
                            tags: vec![],
                            tombstone: false,
                        },
                    );
                }
            }
            Op::ApplyDelete { key, old } => {
                let k = KEYS[key];
                let v = if old {
                    5
                } else {
                    version += 1;
                    version
                };
                let got = shard.apply_delete(k, v, now).unwrap();
                let held = model.held(k, now);
                if held.is_some_and(|h| h >= v) {
                    prop_assert!(!got, "stale delete applied");
                } else if !old {
                    prop_assert!(got, "fresh delete refused");
                }
                if got {
                    model.map.insert(
                        k.to_vec(),
                        MEntry {
                            value: vec![],
                            version: v,
                            expires_at: Some(now + TOMBSTONE_TTL),
                            tags: vec![],
                            tombstone: true,
                        },
                    );
                }
            }
            Op::Advance(budget) => {
                shard.advance(now, budget);
            }
            Op::Flush => {
                shard.flush();
                model.map.clear();
            }
        }
        shard.check_invariants();
    }
    // Everything still agrees after the clock runs far ahead and the wheel drains.
    now += 10_000;
    for _ in 0..1000 {
        shard.advance(now, 64);
    }
    for k in KEYS {
        let got = shard.get(k, now).map(|h| h.value.to_vec());
        prop_assert_eq!(got, model.live(k, now).map(|e| e.value.clone()));
    }
    prop_assert_eq!(
        shard.stats().keys,
        model
            .map
            .values()
            .filter(|e| !e.tombstone && e.expires_at.is_none_or(|t| t > now))
            .count() as u64
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::default())]

    #[test]
    fn lru_shard_matches_model(ops in prop::collection::vec((0u64..300, op()), 1..120)) {
        run(ops, EvictionPolicy::Lru)?;
    }

    #[test]
    fn lfu_shard_matches_model(ops in prop::collection::vec((0u64..300, op()), 1..120)) {
        run(ops, EvictionPolicy::Lfu)?;
    }

    #[test]
    fn s3fifo_shard_matches_model(ops in prop::collection::vec((0u64..300, op()), 1..120)) {
        run(ops, EvictionPolicy::S3Fifo)?;
    }
}

#[derive(Clone, Debug)]
enum SmallOp {
    Set(u8, usize),
    Get(u8),
    Touch(u8),
    Del(u8),
}

fn small_op() -> impl Strategy<Value = SmallOp> {
    prop_oneof![
        4 => (0u8..30, 0usize..120).prop_map(|(k, l)| SmallOp::Set(k, l)),
        3 => (0u8..30).prop_map(SmallOp::Get),
        1 => (0u8..30).prop_map(SmallOp::Touch),
        1 => (0u8..30).prop_map(SmallOp::Del),
    ]
}

fn small_shard(policy: EvictionPolicy) -> Shard {
    let config = ShardConfig {
        budget_bytes: 1500,
        policy,
        ..ShardConfig::default()
    };
    Shard::new(config, 0)
}

proptest! {
    #![proptest_config(ProptestConfig::default())]

    /// With a small budget the shard never exceeds it, and under LRU every key that disappears
    /// is among the least recently used ones present.
    #[test]
    fn lru_evicts_least_recently_used(ops in prop::collection::vec(small_op(), 1..300)) {
        let mut shard = small_shard(EvictionPolicy::Lru);
        // Recency order, most recent last.
        let mut order: Vec<u8> = Vec::new();
        let mut version = 0;
        for op in ops {
            match op {
                SmallOp::Set(k, len) => {
                    version += 1;
                    shard.set(&[k], &vec![7u8; len], &SetOptions::default(), 1, version).unwrap();
                    order.retain(|&x| x != k);
                    order.push(k);
                }
                SmallOp::Get(k) | SmallOp::Touch(k) => {
                    let hit = if matches!(op, SmallOp::Get(_)) { shard.get(&[k], 1).is_some() } else { shard.touch(&[k], 1) };
                    prop_assert_eq!(hit, order.contains(&k));
                    if hit {
                        order.retain(|&x| x != k);
                        order.push(k);
                    }
                }
                SmallOp::Del(k) => {
                    prop_assert_eq!(shard.delete(&[k], 1), order.contains(&k));
                    order.retain(|&x| x != k);
                }
            }
            shard.check_invariants();
            // Keys the shard dropped must be exactly the oldest of the model's order.
            let present: Vec<bool> = order.iter().map(|&k| shard.exists(&[k], 1)).collect();
            let evicted = present.iter().take_while(|p| !**p).count();
            prop_assert!(present[evicted..].iter().all(|p| *p), "evicted a key that was not least recently used: {:?} {:?}", order, present);
            order.drain(..evicted);
        }
    }

    /// LFU and S3-FIFO keep the budget too and never lose the key just written.
    #[test]
    fn every_policy_keeps_the_budget(ops in prop::collection::vec(small_op(), 1..300), policy in 0..3usize) {
        let policy = [EvictionPolicy::Lru, EvictionPolicy::Lfu, EvictionPolicy::S3Fifo][policy];
        let mut shard = small_shard(policy);
        for (version, op) in ops.into_iter().enumerate() {
            match op {
                SmallOp::Set(k, len) => {
                    shard.set(&[k], &vec![1u8; len], &SetOptions::default(), 1, version as u64).unwrap();
                    prop_assert!(shard.exists(&[k], 1));
                }
                SmallOp::Get(k) => { shard.get(&[k], 1); }
                SmallOp::Touch(k) => { shard.touch(&[k], 1); }
                SmallOp::Del(k) => { shard.delete(&[k], 1); }
            }
            shard.check_invariants();
        }
    }
}
