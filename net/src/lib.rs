//! Everything that moves bytes in ringcache: the glommio executors (one pinned per core), the
//! listeners, the connection loop, the cross-core mesh. Decisions are made by the pure crates
//! (`ringcache-engine`, `ringcache-proto`, `ringcache-cluster`); this crate carries them out.

pub mod balancer;
pub mod cluster_link;
pub mod connection;
pub mod core_state;
pub mod execute;
mod fan_out;
pub mod handover;
mod idle_conns;
mod lone_lookups;
pub mod mesh;
pub mod node;
pub mod node_config;
mod ordered_replies;
pub mod read_buf;
mod readiness;
pub mod repl_link;
pub mod repl_receiver;
pub mod replication;
pub mod routing;
mod session;

pub use balancer::{run_balancer, BalancerArgs};
pub use node::{allowed_cpus, run_node, wait_port_free, StopFlag};
pub use node_config::{NodeArgs, NodeConfig};
