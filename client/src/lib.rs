//! The thin ringcache client: blocking std networking, routes each key straight to its core.
//!
//! A ringcache node runs one core per CPU, each owning a shard of the keys and listening on a
//! port of its own. [`Client::connect`] asks the node's main port for that layout
//! (`TOPOLOGY`) and then keeps one connection per core, opened on first use; each request is
//! sent, in the native binary protocol, to the core that owns its key (the same jump hash the
//! node uses), so nothing is handed between cores on the server. Multi-key requests are split
//! per core and their answers reassembled in the caller's order.
//!
//! - Typed calls for every command: [`Client::get`], [`Client::set_with`] (TTL, NX/XX,
//!   compare-and-set by version, tags), [`Client::mget`], [`Client::incr_by`], ...
//! - Batches: [`Client::pipeline`] collects commands and sends each connection's share in one
//!   write; replies are matched by request id and answered in order.
//! - Timeouts, an optional password, and one retry of idempotent requests on a fresh
//!   connection when a connection breaks: [`ClientConfig`].
//! - Clusters: [`Client::connect_cluster`] routes by the balancer's cluster map, follows
//!   redirects, rides out a failed primary ([`ClientConfig::failover_timeout`]) and can read
//!   from replicas ([`ReadFrom`]).
//! - Typed errors: [`ClientError`].
//! - For tokio services (feature `tokio`): `AsyncClient`, cloned into every task, all clones
//!   sharing one multiplexed connection per (node, core); requests of concurrent tasks leave
//!   in one write and are matched by request id, with a bounded in-flight window.
//!
//! Buffers are kept per connection and reused: a request allocates only what it returns.
//!
//! ```no_run
//! use ringcache_client::{Client, ClientConfig};
//! use std::time::Duration;
//!
//! let cfg = ClientConfig::default().timeout(Duration::from_secs(1));
//! let mut c = Client::connect_with("127.0.0.1:7379", cfg)?;
//! c.mset(&[("a", "1"), ("b", "2")])?;
//! assert_eq!(c.mget(&["a", "missing", "b"])?, vec![Some(b"1".to_vec()), None, Some(b"2".to_vec())]);
//! assert_eq!(c.incr_by("hits", 3)?, 3);
//! # Ok::<(), ringcache_client::ClientError>(())
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod client;
mod cluster;
mod codec;
mod config;
mod conn;
mod error;
mod failover;
mod pipeline;
mod reply;
mod route;

#[cfg(feature = "tokio")]
mod async_client;
#[cfg(feature = "tokio")]
pub use async_client::{AsyncClient, AsyncPipeline, WriteStats};

pub use client::Client;
pub use config::{
    ClientConfig, ReadFrom, DEFAULT_FAILOVER_TIMEOUT, DEFAULT_IDLE_CHECK, DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_MAX_REPLY, DEFAULT_TIMEOUT,
};
pub use error::ClientError;
pub use pipeline::Pipeline;
pub use reply::{Reply, SetOpts, SetOutcome, Ttl, Versioned};
pub use ringcache_proto::{CoreInfo, ErrorKind, Limits, Topology};

#[cfg(test)]
mod mock_cluster_tests;
#[cfg(test)]
mod mock_tests;
