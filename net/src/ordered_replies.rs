//! Keeps a connection's replies in request order while some requests are being answered by
//! other cores: once a handover is pending, later local replies wait behind it in a side buffer.

use std::collections::VecDeque;

use bytes::BytesMut;
use futures_channel::oneshot;
use ringcache_node_core::fan_out::failed;
use ringcache_node_core::RemoteReply;
use ringcache_proto::{ErrorKind, ReplyTo, Response};

use crate::core_cell::{wait_gate, Gate};

/// A reply whose place in the output is fixed but whose bytes may not be ready yet.
pub(crate) enum Slot {
    /// This many bytes at the front of `Ordered::side`.
    Local(usize),
    /// The answer of a request handed to another core.
    Remote {
        rx: oneshot::Receiver<RemoteReply>,
        to: ReplyTo,
    },
    /// A write's encoded reply (this many bytes at the front of `Ordered::side`), sent once its
    /// replica acks arrive (else an error in its place).
    Gated { gate: Gate, len: usize, to: ReplyTo },
}

/// Keeps replies in request order while handovers are in flight: once one is pending, later
/// local replies wait in `side` until it is answered.
#[derive(Default)]
pub(crate) struct Ordered {
    pub(crate) side: BytesMut,
    pub(crate) slots: VecDeque<Slot>,
}

impl Ordered {
    pub(crate) fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Appends every pending reply to `out`, in order, waiting for handovers as needed.
    pub(crate) async fn drain(&mut self, out: &mut BytesMut) {
        while let Some(slot) = self.slots.pop_front() {
            match slot {
                Slot::Local(len) => out.extend_from_slice(&self.side.split_to(len)),
                Slot::Gated { gate, len, to } => {
                    let reply = self.side.split_to(len);
                    match wait_gate(gate).await {
                        Ok(()) => out.extend_from_slice(&reply),
                        Err(msg) => to.encode(out, &Response::error(ErrorKind::Busy, msg)),
                    }
                }
                Slot::Remote { rx, to } => match rx.await {
                    Ok(RemoteReply::Encoded(bytes)) => out.extend_from_slice(&bytes),
                    Ok(other) => to.encode(out, &failed(other)),
                    Err(_) => to.encode(
                        out,
                        &Response::error(ErrorKind::Internal, "another core dropped the request"),
                    ),
                },
            }
        }
        self.side.clear();
    }
}
