//! The sending side of a stream's opening, without sockets: the hello a link opens with, the
//! answer to the receiver's challenge when it asks for the cluster secret, and the receiver's
//! position that ends the exchange. The runtime writes what this appends and feeds it the
//! frames it reads.

use std::net::SocketAddr;

use bytes::BytesMut;
use ringcache_cluster::replication::{StreamChallenge, StreamHello, StreamPosition};
use ringcache_cluster::stream_auth::stream_proof;
use ringcache_cluster::{decode_body, encode_body};
use ringcache_proto::control::encode_control;
use ringcache_proto::{Header, ReplFrame, FLAG_RESPONSE};

use crate::core_state::CoreState;
use crate::replication::LinkId;

/// Why the opening of a stream failed (the runtime logs it, closes the connection and retries
/// later).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// The receiver asks for the cluster secret and this node has none.
    #[error(
        "the peer requires the cluster secret and this node has none (start every node with the \
         same --cluster-secret)"
    )]
    NoSecret,
    /// A second challenge, or one after the position.
    #[error("the peer sent a second challenge")]
    SecondChallenge,
    /// Not a frame of the opening.
    #[error("the peer answered the hello with frame 0x{0:02x}")]
    Unexpected(u8),
    /// A body that does not decode.
    #[error("bad handshake body: {0}")]
    BadBody(String),
}

/// The hello link `id` of `core` opens its stream with, and the address it goes to.
pub fn stream_hello(core: &CoreState, id: LinkId) -> Option<(StreamHello, SocketAddr)> {
    let link = core.repl.link(id)?;
    let hello = StreamHello {
        stream: core.repl.stream,
        primary_core: core.id,
        primary_cores: core.cores,
        group: core.cluster.as_ref().and_then(|v| v.group).unwrap_or(0),
        moving: link.filter.is_some(),
        epoch: core.epoch(),
    };
    Some((hello, link.addr))
}

/// One stream's opening, seen from the sender.
#[derive(Debug)]
pub struct Opening {
    body: Vec<u8>,
    secret: Option<String>,
    challenged: bool,
}

impl Opening {
    /// Opens with `hello`; `secret`: this node's cluster secret, if it has one.
    pub fn new(hello: &StreamHello, secret: Option<String>) -> Opening {
        Opening {
            body: encode_body(hello),
            secret,
            challenged: false,
        }
    }

    /// Appends the hello frame to `out`.
    pub fn hello_frame(&self, out: &mut BytesMut) {
        encode_control(out, ReplFrame::Hello, false, 0, 0, &self.body);
    }

    /// Takes one frame from the receiver: `Ok(None)` after answering a challenge (the proof is
    /// appended to `out`), `Ok(Some(position))` once the receiver admitted the stream.
    pub fn on_frame(
        &mut self,
        header: &Header,
        body: &[u8],
        out: &mut BytesMut,
    ) -> Result<Option<StreamPosition>, HandshakeError> {
        let response = header.flags & FLAG_RESPONSE != 0;
        match ReplFrame::from_u8(header.opcode) {
            Some(ReplFrame::Challenge) if response => {
                if self.challenged {
                    return Err(HandshakeError::SecondChallenge);
                }
                self.challenged = true;
                let c: StreamChallenge = decode_body(body).map_err(HandshakeError::BadBody)?;
                let secret = self.secret.as_deref().ok_or(HandshakeError::NoSecret)?;
                let proof = stream_proof(secret, &c.nonce, &self.body);
                encode_control(out, ReplFrame::Proof, false, 0, 0, &encode_body(&proof));
                Ok(None)
            }
            Some(ReplFrame::Hello) if response => {
                decode_body(body).map(Some).map_err(HandshakeError::BadBody)
            }
            _ => Err(HandshakeError::Unexpected(header.opcode)),
        }
    }
}
