//! The replica side's positions: per primary stream, how far this core has applied it and
//! whether its copy is whole, so a reconnecting primary knows what to send and the core knows
//! when it may serve reads.

use serde::{Deserialize, Serialize};

/// The replica's answer to a stream hello: the last sequence it holds of that stream, if it
/// holds the stream whole (else the primary sends a full copy).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamPosition {
    /// Last sequence applied, when the stream's copy is complete.
    pub applied: Option<u64>,
}

/// Where a replica core stands on one primary stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StreamState {
    /// A full copy is under way: the position means nothing until it ends.
    Copying,
    /// Whole up to `applied`.
    Synced,
}

#[derive(Clone, Copy, Debug)]
struct Stream {
    id: u64,
    applied: u64,
    state: StreamState,
}

/// A replica core's positions on the streams it has received (the latest few), and whether the
/// current one is caught up (then the core may serve reads).
#[derive(Debug, Default)]
pub struct StreamTable {
    streams: Vec<Stream>,
    /// The stream being received and the connection it arrives on.
    current: Option<(u64, u64)>,
    /// Operations applied since start (reported as the replication position).
    pub applied_total: u64,
    /// Replicated operations refused since start because their version (or cut) lay too far
    /// ahead of this core's clock (`HybridClock::believable`).
    pub clock_refused: u64,
}

/// Streams remembered per replica core.
const STREAMS_KEPT: usize = 8;

impl StreamTable {
    /// A primary core says hello on `stream` over connection `conn`: the position to answer.
    pub fn hello(&mut self, stream: u64, conn: u64) -> StreamPosition {
        self.current = Some((stream, conn));
        let applied = self
            .streams
            .iter()
            .find(|s| s.id == stream && s.state == StreamState::Synced)
            .map(|s| s.applied);
        StreamPosition { applied }
    }

    fn entry(&mut self, stream: u64) -> &mut Stream {
        if let Some(i) = self.streams.iter().position(|s| s.id == stream) {
            return &mut self.streams[i];
        }
        if self.streams.len() >= STREAMS_KEPT {
            self.streams.remove(0);
        }
        self.streams.push(Stream {
            id: stream,
            applied: 0,
            state: StreamState::Copying,
        });
        let last = self.streams.len() - 1;
        &mut self.streams[last]
    }

    /// A full copy of `stream` begins (the caller clears the keys it covers): every other
    /// stream's data is gone with it.
    pub fn reset(&mut self, stream: u64) {
        self.streams.retain(|s| s.id == stream);
        let s = self.entry(stream);
        s.state = StreamState::Copying;
        s.applied = 0;
    }

    /// Operation `seq` of `stream` was applied.
    pub fn applied(&mut self, stream: u64, seq: u64) {
        self.applied_total += 1;
        let s = self.entry(stream);
        s.applied = s.applied.max(seq);
    }

    /// `stream` is whole up to `seq` (its backlog replay or copy ended).
    pub fn synced(&mut self, stream: u64, seq: u64) {
        let s = self.entry(stream);
        s.state = StreamState::Synced;
        s.applied = s.applied.max(seq);
    }

    /// Connection `conn` of `stream` dropped: this core is no longer caught up, unless the
    /// stream already continues on a newer connection.
    pub fn disconnected(&mut self, stream: u64, conn: u64) {
        if self.current == Some((stream, conn)) {
            self.current = None;
        }
    }

    /// Whether the stream being received is whole (the core may serve reads).
    pub fn caught_up(&self) -> bool {
        self.current.is_some_and(|(c, _)| {
            self.streams
                .iter()
                .any(|s| s.id == c && s.state == StreamState::Synced)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_serves_reads_only_once_synced() {
        let mut s = StreamTable::default();
        assert_eq!(s.hello(1, 10), StreamPosition { applied: None });
        s.reset(1);
        s.applied(1, 5);
        assert!(!s.caught_up());
        s.disconnected(1, 10);
        // A copy that did not finish is no position at all.
        assert_eq!(s.hello(1, 11), StreamPosition { applied: None });
        s.reset(1);
        s.applied(1, 9);
        s.synced(1, 8);
        assert!(s.caught_up());
        // The end of an older connection seen late does not matter.
        s.disconnected(1, 10);
        assert!(s.caught_up());
        s.disconnected(1, 11);
        assert!(!s.caught_up());
        assert_eq!(s.hello(1, 12), StreamPosition { applied: Some(9) });
        assert_eq!(s.applied_total, 2);
    }
}
