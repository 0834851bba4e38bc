//! Control-plane frames: native frames whose opcode lies in `0x40..=0x4f`, outside the command
//! opcodes, with an opaque body (a bincode blob of cluster types that this crate does not know).
//! Cluster frames go between nodes, operators and the balancer; replication frames between a
//! primary core and a replica core. Servers check [`is_control`] on a decoded header before
//! `decode_request`.

use bytes::{BufMut, BytesMut};

use crate::frame::{Epoch, Header, FLAG_RESPONSE, HEADER_LEN, VERSION};
use crate::opcode::byte_enum;

byte_enum! {
    /// A cluster control frame's opcode (node or operator to balancer, and its reply).
    ClusterOp {
        /// A node asks to join (body: a join request).
        Join = 0x40,
        /// A member's heartbeat (body: member id, applied position, known epoch).
        Heartbeat = 0x41,
        /// Ask for the cluster map (empty body); answered with the serialised map.
        Map = 0x42,
        /// A member leaves on purpose (body: its member id).
        Leave = 0x43,
        /// Subscribe to map changes (empty body): the connection then receives a reply frame
        /// with the current map, and another after every change; nothing more is read from it.
        Subscribe = 0x44,
        /// Leave the cluster handing this primary's ranges on first (body: the member id);
        /// sent by `ringcache cli cluster remove` to the balancer.
        Remove = 0x45,
        /// A reply to any cluster request (body: the control reply).
        Reply = 0xc0,
    }
}

byte_enum! {
    /// A replication frame's opcode (primary core to replica core, and the replica's answers).
    ReplFrame {
        /// Opens a stream (body: the stream hello); the replica answers a response frame with
        /// the same opcode (body: its position on the stream).
        Hello = 0x48,
        /// One replicated operation (request id: its stream sequence, 0 for copied entries;
        /// body: the operation).
        Op = 0x49,
        /// A full copy begins: the replica clears what the stream covers (request id: the
        /// sequence the copy starts from).
        Reset = 0x4a,
        /// The replica now holds the stream whole up to the request id (catch-up finished);
        /// on a range move, the receiver answers it back once the copy is applied.
        Synced = 0x4b,
        /// Replica to primary, response flag set: everything up to the request id is applied.
        Ack = 0x4c,
        /// Receiver to sender, response flag set, in answer to a hello when the receiver has a
        /// cluster secret (body: the challenge, a fresh nonce).
        Challenge = 0x4d,
        /// Sender to receiver: the answer to the challenge (body: HMAC-SHA256 over the nonce
        /// and the hello with the cluster secret).
        Proof = 0x4e,
    }
}

/// Whether a request opcode is a control opcode.
pub fn is_control(opcode: u8) -> bool {
    (0x40..=0x4f).contains(&opcode)
}

/// Appends a control frame with `body` to `out` (`response` sets `FLAG_RESPONSE`).
pub fn encode_control(
    out: &mut BytesMut,
    opcode: impl Into<u8>,
    response: bool,
    request_id: u64,
    epoch: Epoch,
    body: &[u8],
) {
    let header = Header {
        version: VERSION,
        opcode: opcode.into(),
        flags: if response { FLAG_RESPONSE } else { 0 },
        request_id,
        epoch,
        body_len: u32::try_from(body.len()).unwrap_or(u32::MAX),
    };
    out.reserve(HEADER_LEN + body.len());
    out.put_slice(&header.to_bytes());
    out.put_slice(body);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{decode_frame, Limits};

    #[test]
    fn control_frames_round_trip() {
        let mut b = BytesMut::new();
        encode_control(&mut b, ClusterOp::Join, false, 9, 3, b"abc");
        let f = decode_frame(&b, &Limits::default()).unwrap().unwrap();
        assert!(is_control(f.header.opcode));
        assert_eq!(ClusterOp::from_u8(f.header.opcode), Some(ClusterOp::Join));
        assert_eq!(f.header.request_id, 9);
        assert_eq!(f.header.epoch, 3);
        assert_eq!(f.body(&b), b"abc");
        assert!(!is_control(0x01));
        for &op in ReplFrame::ALL {
            assert!(is_control(u8::from(op)));
            assert_eq!(ClusterOp::from_u8(u8::from(op)), None);
        }
    }
}
