//! One core's store for ringcache: a hash map over a slab of entries with an intrusive LRU list,
//! a hierarchical timing wheel for expiry, a hard memory budget with LRU, LFU or S3-FIFO
//! eviction, versions for compare-and-set and replication, and prefix/tag invalidation.
//!
//! Pure: no I/O, no threads, no clock of its own. The caller passes `now` (milliseconds) and the
//! version of every write, and calls [`Shard::advance`] regularly to reclaim expired entries.
//!
//! ```
//! use ringcache_engine::{Shard, ShardConfig, SetOptions, Expiry};
//! let mut shard = Shard::new(ShardConfig::default(), 1_000);
//! let opts = SetOptions { expiry: Expiry::At(2_000), ..SetOptions::default() };
//! shard.set(b"k", b"v", &opts, 1_000, 1).unwrap();
//! assert_eq!(shard.get(b"k", 1_500).map(|h| h.value), Some(&b"v"[..]));
//! assert!(shard.get(b"k", 2_000).is_none());
//! ```

#![warn(missing_docs)]

mod cache_hint;
mod commands;
mod entry;
mod error;
mod ghost;
mod index;
mod invalidation;
mod kv_block;
mod policy;
mod replica;
mod shard;
mod slab;
mod stats;
mod strings;
mod tags;
pub mod timing_wheel;

pub use commands::{Expiry, Hit, SetCondition, SetOptions, SetOutcome, Ttl};
pub use error::EngineError;
pub use kv_block::KvBlock;
pub use policy::EvictionPolicy;
pub use replica::EntryView;
pub use shard::{Shard, ShardConfig, DEFAULT_HASH_SEED, ENTRY_OVERHEAD};
pub use stats::Stats;
