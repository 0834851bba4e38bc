//! Which protocol a connection speaks (told from its first bytes) and how a reply is encoded
//! for it: the one place that turns a `Response` into bytes for either protocol.

use bytes::BytesMut;

use crate::frame::{Epoch, MAGIC};
use crate::native::encode_response;
use crate::opcode::Opcode;
use crate::resp_encode::{write_response, RespVersion};
use crate::response::{ErrorKind, Response};

/// The protocol a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// Native binary frames.
    Native,
    /// RESP2 or RESP3.
    Resp(RespVersion),
}

impl Wire {
    /// The protocol a connection's first bytes show: native frames start with the two magic
    /// bytes, anything else is RESP (which a later HELLO may raise to RESP3). `None` until
    /// enough bytes have arrived to tell.
    pub fn detect(buf: &[u8]) -> Option<Wire> {
        match buf {
            [] => None,
            [b] if *b == MAGIC[0] => None,
            [a, b, ..] if *a == MAGIC[0] && *b == MAGIC[1] => Some(Wire::Native),
            _ => Some(Wire::Resp(RespVersion::V2)),
        }
    }
}

/// Where a reply goes: the connection's protocol and the request it answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyTo {
    /// The connection's protocol.
    pub wire: Wire,
    /// The request's command (RESP renders some replies per command, e.g. GETV).
    pub op: Opcode,
    /// The native request id echoed in the reply frame.
    pub request_id: u64,
    /// The map epoch echoed in the reply frame.
    pub epoch: Epoch,
}

impl ReplyTo {
    /// Appends `resp` to `out` as the reply to this request.
    pub fn encode(self, out: &mut BytesMut, resp: &Response<'_>) {
        match self.wire {
            Wire::Resp(v) => write_response(out, v, self.op, resp),
            Wire::Native => {
                if let Err(e) = encode_response(out, self.request_id, self.epoch, resp) {
                    let fallback = Response::error(ErrorKind::Internal, e.to_string());
                    // An error frame is small and always encodable.
                    let _ = encode_response(out, self.request_id, self.epoch, &fallback);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_bytes_tell_the_protocol() {
        assert_eq!(Wire::detect(b""), None);
        assert_eq!(Wire::detect(b"R"), None);
        assert_eq!(Wire::detect(b"RC\x01"), Some(Wire::Native));
        assert_eq!(Wire::detect(b"*1\r\n"), Some(Wire::Resp(RespVersion::V2)));
    }

    #[test]
    fn replies_follow_the_wire() {
        let mut out = BytesMut::new();
        let to = ReplyTo {
            wire: Wire::Resp(RespVersion::V2),
            op: Opcode::Get,
            request_id: 0,
            epoch: 0,
        };
        to.encode(&mut out, &Response::Nil);
        assert_eq!(&out[..], b"$-1\r\n");
        out.clear();
        ReplyTo {
            wire: Wire::Native,
            request_id: 5,
            ..to
        }
        .encode(&mut out, &Response::Ok);
        let f = crate::decode_frame(&out, &crate::Limits::default())
            .unwrap()
            .unwrap();
        assert_eq!(f.header.request_id, 5);
        let mut bytes = out.to_vec();
        f.set_request_id(&mut bytes, 9);
        let g = crate::decode_frame(&bytes, &crate::Limits::default())
            .unwrap()
            .unwrap();
        assert_eq!(g.header.request_id, 9);
        assert_eq!(g.body(&bytes), f.body(&out));
    }
}
