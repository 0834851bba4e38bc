//! Who owns what in a ringcache cluster: the one key hash every party uses, the consistent-hash
//! ring that maps it to a shard group, the jump hash that picks a key's core inside a node, and
//! the hybrid logical clock that stamps versions.
//! Pure: no I/O, no threads, no clock of its own.

#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod ack_tracker;
mod backlog;
pub mod control;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
mod hlc;
mod map;
mod map_display;
mod membership;
mod moves;
pub mod multi_key;
mod placement;
mod rebuild;
mod replica_balance;
pub mod replication;
mod ring;
pub mod stream_auth;
mod stream_table;

pub use control::{
    decode_body, encode_body, secret_matches, ControlReply, Heartbeat, RemoveRequest,
};
pub use hlc::{ClockRefused, HybridClock, MAX_AHEAD_MS};
pub use map::{
    ClusterMap, Member, MemberId, MemberState, RangeMove, Role, Route, RouteError, ShardGroup,
};
pub use membership::{Action, Event, JoinRequest, Membership, MembershipConfig, Place};
pub use placement::{core_for_hash, core_for_key, key_hash};
pub use ring::{balance, GroupId, Ring, DEFAULT_VNODES};
