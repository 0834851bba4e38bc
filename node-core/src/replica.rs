//! The receiving side of a replication stream (a replica core, or the new owner of a range
//! move): which streams a core accepts, what each frame does to the shard, and what goes back
//! (the challenge and the position after the hello, one cumulative ack per batch, the
//! end-of-copy answer). A stream authenticates first: with a cluster secret, by answering a
//! challenge (`ringcache_cluster::stream_auth`); without one, only on a node whose clients need
//! no password.
//! Operations apply only when their version is newer, so arrival order does not matter.

use bytes::BytesMut;
use ringcache_cluster::replication::{
    decode_op, ReplOp, StreamChallenge, StreamHello, StreamPosition, StreamProof,
};
use ringcache_cluster::stream_auth::{proof_matches, NONCE_LEN};
use ringcache_cluster::{decode_body, encode_body, HybridClock, Role};
use ringcache_proto::control::encode_control;
use ringcache_proto::{Header, ReplFrame};
use tracing::{debug, info, warn};

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

/// Where an incoming stream stands.
#[derive(Debug)]
enum Phase {
    /// Nothing received yet.
    AwaitHello,
    /// Hello received, challenge sent: the proof comes next (the hello's bytes are kept, the
    /// proof covers them).
    AwaitProof { hello: StreamHello, body: Vec<u8> },
    /// Authenticated and admitted.
    Open(StreamHello),
}

/// One incoming stream on one connection. Before its hello is admitted, nothing but the hello
/// and (when this node has a cluster secret) the proof is taken; anything else closes it.
#[derive(Debug)]
pub struct StreamReceiver {
    phase: Phase,
    conn: u64,
    nonce: [u8; NONCE_LEN],
    password_required: bool,
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

/// Whether this core takes a range move stream from `hi.group`: only when its map names a move
/// to this node's group. That is, this node is a primary, and its group is joining the ring, or
/// the sender's group is leaving it and this group stays on the next ring.
pub fn accepts_move(core: &CoreState, hi: &StreamHello) -> bool {
    let Some(view) = core.cluster.as_deref() else {
        return false;
    };
    let (Some(m), Some(mine)) = (view.map.moving.as_ref(), view.group) else {
        return false;
    };
    core.role() == Some(Role::Primary)
        && hi.group != mine
        && view.map.ring.groups().contains(&hi.group)
        && (m.joining.contains(&mine)
            || (m.leaving.contains(&hi.group) && m.next_ring.groups().contains(&mine)))
}

/// Applies one replicated operation at `now` (newer versions win; the clock learns every
/// version so a promoted replica stamps above what it holds). An operation whose version or cut
/// lies beyond `MAX_AHEAD_MS` of this core's clock is refused: not applied, not learned by the
/// clock, counted (`repl_clock_refused`) and logged; the function then answers `false`.
pub fn apply(core: &mut CoreState, op: &ReplOp<'_>, now: u64) -> bool {
    let stamp = match *op {
        ReplOp::Put { version, .. } | ReplOp::Del { version, .. } => Some(version),
        ReplOp::InvalidatePrefix { cut, .. } | ReplOp::InvalidateTag { cut, .. } => Some(cut),
        ReplOp::Flush => None,
    };
    if let Some(stamp) = stamp {
        if let Err(e) = HybridClock::believable(stamp, now) {
            core.streams.clock_refused += 1;
            let total = core.streams.clock_refused;
            // Logged at 1, 2, 4, 8... refusals: a broken peer cannot flood the log.
            if total.is_power_of_two() {
                warn!(total, "replicated operation refused, not applied: {e}");
            }
            return false;
        }
    }
    let res = match *op {
        ReplOp::Put {
            key,
            value,
            version,
            expires_at,
            ref tags,
        } => {
            // Within the bound: checked above.
            let _ = core.clock.observe(version, now);
            let tags: Vec<&[u8]> = tags.iter().map(|t| t.0).collect();
            core.shard
                .apply_write(key, value, version, expires_at, &tags, now)
                .map(drop)
        }
        ReplOp::Del { key, version } => {
            let _ = core.clock.observe(version, now);
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
    true
}

impl StreamReceiver {
    /// A stream arriving on connection `conn` (an id unique on this core). `nonce` must be
    /// fresh from a CSPRNG for this connection (it is the challenge when the core has a cluster
    /// secret); `password_required`: clients of this node must AUTH, so without a cluster
    /// secret no stream is taken at all.
    pub fn new(conn: u64, nonce: [u8; NONCE_LEN], password_required: bool) -> StreamReceiver {
        StreamReceiver {
            phase: Phase::AwaitHello,
            conn,
            nonce,
            password_required,
            acked: 0,
            last: 0,
        }
    }

    /// The stream's hello, once admitted.
    pub fn hello(&self) -> Option<&StreamHello> {
        match &self.phase {
            Phase::Open(hi) => Some(hi),
            _ => None,
        }
    }

    /// Whether the stream was authenticated and admitted (until then the runtime keeps a short
    /// read timeout on it).
    pub fn is_open(&self) -> bool {
        matches!(self.phase, Phase::Open(_))
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
        let hello = match (&self.phase, frame) {
            (Phase::Open(hi), _) => (hi.stream, hi.moving),
            (Phase::AwaitHello, Some(ReplFrame::Hello)) => return self.on_hello(core, body, out),
            (Phase::AwaitProof { .. }, Some(ReplFrame::Proof)) => {
                return self.on_proof(core, body, out)
            }
            (Phase::AwaitHello, _) => {
                return Err(StreamRefused::loud(format!(
                    "frame 0x{:02x} before the stream hello",
                    header.opcode
                )))
            }
            (Phase::AwaitProof { .. }, _) => {
                return Err(StreamRefused::loud(format!(
                    "frame 0x{:02x} instead of the answer to the cluster secret's challenge",
                    header.opcode
                )))
            }
        };
        match (frame, hello) {
            (Some(ReplFrame::Reset), (_, true)) => Ok(()),
            (Some(ReplFrame::Reset), (stream, false)) => {
                // A full copy replaces the whole shard (see `accepts_stream`).
                let removed = core.shard.len();
                core.shard.flush();
                core.streams.reset(stream);
                info!(stream, removed, "full copy from the primary begins");
                Ok(())
            }
            (Some(ReplFrame::Op), (stream, moving)) => {
                let op = decode_op(body).map_err(StreamRefused::loud)?;
                // A refused operation (counted and logged) is not forwarded; its sequence still
                // counts as received, so the stream goes on.
                let applied = apply(core, &op, now);
                if moving {
                    // The new owner's replicas get the moved keys too.
                    if applied {
                        forward_applied(core, &op, now);
                    }
                } else if seq > 0 {
                    core.streams.applied(stream, seq);
                }
                self.last = self.last.max(seq);
                Ok(())
            }
            (Some(ReplFrame::Synced), (stream, true)) => {
                self.last = self.last.max(seq);
                self.ack(out);
                encode_control(out, ReplFrame::Synced, true, seq, 0, &[]);
                info!(stream, "range move copy received");
                Ok(())
            }
            (Some(ReplFrame::Synced), (stream, false)) => {
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

    /// The hello: with a cluster secret, challenge the sender; without one, admit it only on a
    /// node whose clients need no password.
    fn on_hello(
        &mut self,
        core: &mut CoreState,
        body: &[u8],
        out: &mut BytesMut,
    ) -> Result<(), StreamRefused> {
        let hi = decode_body::<StreamHello>(body).map_err(StreamRefused::loud)?;
        if core.secret.is_some() {
            let challenge = StreamChallenge { nonce: self.nonce };
            encode_control(
                out,
                ReplFrame::Challenge,
                true,
                0,
                0,
                &encode_body(&challenge),
            );
            self.phase = Phase::AwaitProof {
                hello: hi,
                body: body.to_vec(),
            };
            return Ok(());
        }
        if self.password_required {
            return Err(StreamRefused::loud(
                "refusing a replication stream: this node requires a client password \
                 (--password) and has no cluster secret (--cluster-secret) to authenticate \
                 streams with; give every node of the cluster the same --cluster-secret",
            ));
        }
        self.admit(core, hi, out)
    }

    /// The answer to the challenge: the stream is admitted only if it was made with this core's
    /// cluster secret over this connection's nonce and the hello received.
    fn on_proof(
        &mut self,
        core: &mut CoreState,
        body: &[u8],
        out: &mut BytesMut,
    ) -> Result<(), StreamRefused> {
        let Phase::AwaitProof {
            hello,
            body: hello_body,
        } = std::mem::replace(&mut self.phase, Phase::AwaitHello)
        else {
            return Err(StreamRefused::loud("a proof without a challenge"));
        };
        let proof = decode_body::<StreamProof>(body).map_err(StreamRefused::loud)?;
        let Some(secret) = core.secret.as_deref() else {
            return Err(StreamRefused::loud(
                "a proof without a cluster secret to check it",
            ));
        };
        if !proof_matches(secret, &self.nonce, &hello_body, &proof) {
            return Err(StreamRefused::loud(
                "refusing a replication stream: wrong cluster secret (the peer's proof does not \
                 match this node's --cluster-secret)",
            ));
        }
        self.admit(core, hello, out)
    }

    /// An authenticated hello: taken if this core's map names it the stream's receiver.
    fn admit(
        &mut self,
        core: &mut CoreState,
        hi: StreamHello,
        out: &mut BytesMut,
    ) -> Result<(), StreamRefused> {
        let admitted = if hi.moving {
            accepts_move(core, &hi)
        } else {
            accepts_stream(core, &hi)
        };
        if !admitted {
            let epoch = core.epoch();
            let what = if hi.moving {
                "a range move stream from shard group"
            } else {
                "a replication stream for shard group"
            };
            let why = if hi.moving {
                "its map names no range move to this member"
            } else {
                "this member is not a replica of it in its map"
            };
            return Err(StreamRefused {
                reason: format!("refusing {what} {} ({why}, epoch {epoch})", hi.group),
                // A sender with a newer map: this member's copy is on its way, and the sender
                // retries shortly.
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
        self.phase = Phase::Open(hi);
        Ok(())
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
        if let Phase::Open(hi) = &self.phase {
            core.streams.disconnected(hi.stream, self.conn);
        }
    }
}
