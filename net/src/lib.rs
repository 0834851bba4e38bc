//! The node's I/O runtime: one pinned glommio executor per core, its listeners and connection
//! loop, the cross-core mesh, the replication links and the link to the balancer. It decides
//! nothing: what a request does, when to redirect, what a write owes its replicas and what a
//! new map changes are `ringcache-node-core`'s decisions, carried out here.

#![warn(missing_docs)]

mod cluster_link;
mod connection;
mod context;
mod core_cell;
mod fan_out;
mod idle_conns;
mod lone_lookups;
mod mesh;
mod node;
mod node_config;
mod ordered_replies;
mod readiness;
mod repl_link;
mod repl_receiver;

pub use cluster_link::LinkConfig;
pub use node::run_node;
pub use node_config::NodeConfig;
