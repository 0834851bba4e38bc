//! The receiving side of a replication stream (a replica core, or the new owner of a range
//! move): which streams a core accepts, what each frame does to the shard, and what goes back
//! (the position after the hello, one cumulative ack per batch, the end-of-copy answer).
//! Operations apply only when their version is newer, so arrival order does not matter.

use bytes::BytesMut;
use ringcache_cluster::replication::{decode_op, ReplOp, StreamHello, StreamPosition};
use ringcache_cluster::{decode_body, encode_body, secret_matches, Role};
use ringcache_proto::control::encode_control;
use ringcache_proto::{Header, ReplFrame};
use tracing::{debug, info};

use crate::core_state::CoreState;
use crate::write_path::forward_applied;

/// Why a stream is closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct StreamRefused {
    /// What was wrong.
    pub reason: String,
    /// Expected in normal operation (the stream came before this member's map named it a
    /// replica; the primary retries shortly): not worth a warning.
    pub quiet: bool,
}

impl StreamRefused {
    fn loud(reason: impl Into<String>) -> Self {
        StreamRefused {
            reason: reason.into(),
            quiet: false,
        }
    }
}

/// One incoming stream on one connection.
#[derive(Debug)]
pub struct StreamReceiver {
    hello: Option<StreamHello>,
    conn: u64,
    acked: u64,
    last: u64,
}

/// Whether this core takes a replication stream for `hi.group`: only as a replica of that
/// group (a primary, or a member of another group, must not let a stale primary overwrite it;
/// the primary retries once this member's map caught up). Primary core i streams to replica
/// core i only: a replica has as many cores as its primary (the balancer places no other), so
/// a full copy replaces this core's whole shard.
pub fn accepts_stream(core: &CoreState, hi: &StreamHello) -> bool {
    core.role() == Some(Role::Replica)
        && core.cluster.as_ref().and_then(|v| v.group) == Some(hi.group)
        && hi.primary_cores == core.cores
        && hi.primary_core == core.id
}

/// Applies one replicated operation at `now` (newer versions win; the clock learns every
/// version so a promoted replica stamps above what it holds).
pub fn apply(core: &mut CoreState, op: &ReplOp<'_>, now: u64) {
    let res = match *op {
        ReplOp::Put {
            key,
            value,
            version,
            expires_at,
            ref tags,
        } => {
            core.clock.observe(version);
            let tags: Vec<&[u8]> = tags.iter().map(|t| t.0).collect();
            core.shard
                .apply_write(key, value, version, expires_at, &tags, now)
                .map(drop)
        }
        ReplOp::Del { key, version } => {
            core.clock.observe(version);
            core.shard.apply_delete(key, version, now).map(drop)
        }
        ReplOp::InvalidatePrefix { prefix, cut } => {
            core.shard.invalidate_prefix_at(prefix, cut);
            Ok(())
        }
        ReplOp::InvalidateTag { tag, cut } => {
            core.shard.invalidate_tag_at(tag, cut);
            Ok(())
        }
        ReplOp::Flush => {
            core.shard.flush();
            Ok(())
        }
    };
    if let Err(e) = res {
        debug!("replicated write not applied here: {e}");
    }
}

impl StreamReceiver {
    /// A stream arriving on connection `conn` (an id unique on this core).
    pub fn new(conn: u64) -> StreamReceiver {
        StreamReceiver {
            hello: None,
            conn,
            acked: 0,
            last: 0,
        }
    }

    /// The stream's hello, once received.
    pub fn hello(&self) -> Option<&StreamHello> {
        self.hello.as_ref()
    }

    /// Takes one frame at `now`, appending what goes back to `out`; an error closes the stream.
    pub fn on_frame(
        &mut self,
        core: &mut CoreState,
        header: &Header,
        body: &[u8],
        now: u64,
        out: &mut BytesMut,
    ) -> Result<(), StreamRefused> {
        let frame = ReplFrame::from_u8(header.opcode);
        let seq = header.request_id;
        // The stream's id and whether it is a range move, once the hello arrived.
        let stream = self.hello.as_ref().map(|h| (h.stream, h.moving));
        match (frame, stream) {
            (Some(ReplFrame::Hello), _) => {
                let hi = decode_body::<StreamHello>(body).map_err(StreamRefused::loud)?;
                if !secret_matches(core.secret.as_deref(), hi.secret.as_deref()) {
                    return Err(StreamRefused::loud(
                        "a replication stream with a wrong or missing cluster secret",
                    ));
                }
                if !hi.moving && !accepts_stream(core, &hi) {
                    let epoch = core.epoch();
                    return Err(StreamRefused {
                        reason: format!(
                            "refusing a replication stream for shard group {} (this member is \
                             not a replica of it in its map, epoch {epoch})",
                            hi.group
                        ),
                        // A primary with a newer map: this member's copy, naming it a replica,
                        // is on its way, and the primary retries shortly.
                        quiet: epoch < hi.epoch,
                    });
                }
                let pos = if hi.moving {
                    info!(stream = hi.stream, "range move stream opened");
                    StreamPosition { applied: None }
                } else {
                    core.streams.hello(hi.stream, self.conn)
                };
                debug!(stream = hi.stream, ?pos, "replication stream hello");
                encode_control(out, ReplFrame::Hello, true, 0, 0, &encode_body(&pos));
                self.hello = Some(hi);
                Ok(())
            }
            (Some(ReplFrame::Reset), Some((_, true))) => Ok(()),
            (Some(ReplFrame::Reset), Some((stream, false))) => {
                // A full copy replaces the whole shard (see `accepts_stream`).
                let removed = core.shard.len();
                core.shard.flush();
                core.streams.reset(stream);
                info!(stream, removed, "full copy from the primary begins");
                Ok(())
            }
            (Some(ReplFrame::Op), Some((stream, moving))) => {
                let op = decode_op(body).map_err(StreamRefused::loud)?;
                apply(core, &op, now);
                if moving {
                    // The new owner's replicas get the moved keys too.
                    forward_applied(core, &op, now);
                } else if seq > 0 {
                    core.streams.applied(stream, seq);
                }
                self.last = self.last.max(seq);
                Ok(())
            }
            (Some(ReplFrame::Synced), Some((stream, true))) => {
                self.last = self.last.max(seq);
                self.ack(out);
                encode_control(out, ReplFrame::Synced, true, seq, 0, &[]);
                info!(stream, "range move copy received");
                Ok(())
            }
            (Some(ReplFrame::Synced), Some((stream, false))) => {
                core.streams.synced(stream, seq);
                self.last = self.last.max(seq);
                info!(stream, upto = seq, "caught up with the primary");
                Ok(())
            }
            _ => Err(StreamRefused::loud(format!(
                "unexpected frame 0x{:02x} on a replication stream",
                header.opcode
            ))),
        }
    }

    /// The end of a read batch: one cumulative ack for everything applied so far.
    pub fn end_of_batch(&mut self, out: &mut BytesMut) {
        self.ack(out);
    }

    fn ack(&mut self, out: &mut BytesMut) {
        if self.last > self.acked {
            encode_control(out, ReplFrame::Ack, true, self.last, 0, &[]);
            self.acked = self.last;
        }
    }

    /// The connection ended: the core is no longer caught up on this stream (unless it
    /// continues on a newer connection).
    pub fn finish(&self, core: &mut CoreState) {
        if let Some(hi) = &self.hello {
            core.streams.disconnected(hi.stream, self.conn);
        }
    }
}
