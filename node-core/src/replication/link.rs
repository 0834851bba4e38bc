//! One replication link of a primary core, as the core sees it: the bytes queued for the peer
//! and where the link stands (handshake done, full copy running, closing). The runtime's link
//! task moves the bytes; everything it learns comes back as a call on the `Replicator`.

use std::net::SocketAddr;

use bytes::BytesMut;
use ringcache_cluster::replication::LinkId;
use ringcache_cluster::MemberId;

use super::move_filter::MoveFilter;

/// Where a link stands, between the core and the task that writes it.
#[derive(Debug, Default)]
pub struct LinkState {
    /// Frames waiting to be written.
    pub out: BytesMut,
    /// Handshake done: live operations are queued on `out`.
    pub streaming: bool,
    /// A full copy's next slab slot, while one runs.
    pub copy_from: Option<usize>,
    /// The member left the group: the link's task stops.
    pub closed: bool,
    /// The connection failed: the writer starts over.
    pub broken: bool,
    /// The move ended: the writer sends what is queued, then stops.
    pub drain: bool,
}

/// A primary core's connection to one replica core (the same core index on the replica), or
/// to a core of a group receiving a range move.
#[derive(Debug)]
pub struct ReplLink {
    /// Its id in the ack tracker.
    pub id: LinkId,
    /// The receiving member.
    pub member: MemberId,
    /// The receiving core's port.
    pub addr: SocketAddr,
    /// Bytes and flags shared with the link's task.
    pub state: LinkState,
    /// For a range-move link, the keys it carries (`None`: a replica link, every key).
    pub filter: Option<MoveFilter>,
    /// A range-move link's copy was received whole (the receiver answered its end marker).
    pub copied: bool,
    /// Already in the replicator's wake list.
    pub(super) woken: bool,
}

/// What a link's writer does next (see [`super::Replicator::next_write`]).
#[derive(Debug, PartialEq, Eq)]
pub enum WriteStep {
    /// Write the bytes swapped into the caller's buffer.
    Write,
    /// Nothing queued: wait to be woken.
    Idle,
    /// A full copy is running but its last slice carried nothing: let other tasks run, then
    /// ask again (the next slice is taken then).
    Copying,
    /// The link is closed (or gone): stop.
    Closed,
    /// A finished range move wrote all it held: stop.
    Drained,
    /// The peer stopped acknowledging: reconnect.
    Broken,
}
