//! The native frame header: fixed 24 bytes, then a bincode body of `body_len` bytes.
//!
//! Layout (little-endian): magic "RC" (2), version (1), opcode (1), flags (2), reserved (2, zero),
//! request id (8), cluster epoch (4, u32), body length (4).

use std::ops::Range;

use crate::error::FrameError;
use crate::limits::Limits;

/// The two bytes every frame starts with: "RC".
pub const MAGIC: [u8; 2] = *b"RC";
/// The protocol version this crate speaks.
pub const VERSION: u8 = 1;
/// Size of the fixed header.
pub const HEADER_LEN: usize = 24;
/// Flag bit set on every response frame.
pub const FLAG_RESPONSE: u16 = 1;

/// The cluster map epoch carried in every frame (u32 keeps the header at 24 bytes).
pub type Epoch = u32;

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header {
    /// Protocol version (always `VERSION` once decoded).
    pub version: u8,
    /// Raw opcode: an `Opcode` for requests, a `ReplyCode` for responses.
    pub opcode: u8,
    /// Flag bits (`FLAG_RESPONSE`).
    pub flags: u16,
    /// Request id chosen by the client, echoed in the response (pipelining, out-of-order).
    pub request_id: u64,
    /// Cluster map epoch the sender is at.
    pub epoch: Epoch,
    /// Length of the body that follows the header.
    pub body_len: u32,
}

impl Header {
    /// Serialises the header into its 24 wire bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        let parts: [&[u8]; 8] = [
            &MAGIC,
            &[self.version],
            &[self.opcode],
            &self.flags.to_le_bytes(),
            &[0, 0],
            &self.request_id.to_le_bytes(),
            &self.epoch.to_le_bytes(),
            &self.body_len.to_le_bytes(),
        ];
        let mut at = 0;
        for p in parts {
            if let Some(dst) = b.get_mut(at..at + p.len()) {
                dst.copy_from_slice(p);
            }
            at += p.len();
        }
        b
    }

    /// Decodes a header from the start of `buf`: `Ok(None)` while fewer than 24 bytes are there.
    ///
    /// Bad magic, an unknown version and a body over `limits.max_frame` are reported as soon as
    /// the bytes that show them have arrived, without waiting for the rest.
    pub fn decode(buf: &[u8], limits: &Limits) -> Result<Option<Header>, FrameError> {
        for (i, &m) in MAGIC.iter().enumerate() {
            match buf.get(i) {
                None => return Ok(None),
                Some(&b) if b == m => {}
                Some(_) => {
                    let first = [byte(buf, 0), byte(buf, 1)];
                    return Err(FrameError::BadMagic(u16::from_be_bytes(first)));
                }
            }
        }
        match buf.get(2) {
            None => return Ok(None),
            Some(&v) if v != VERSION => return Err(FrameError::UnsupportedVersion(v)),
            Some(_) => {}
        }
        let Some(h) = buf.get(..HEADER_LEN) else {
            return Ok(None);
        };
        let header = Header {
            version: VERSION,
            opcode: byte(h, 3),
            flags: u16::from_le_bytes(arr(h, 4)),
            request_id: u64::from_le_bytes(arr(h, 8)),
            epoch: u32::from_le_bytes(arr(h, 16)),
            body_len: u32::from_le_bytes(arr(h, 20)),
        };
        let len = header.body_len as usize;
        if len > limits.max_frame {
            return Err(FrameError::TooLarge {
                len,
                max: limits.max_frame,
            });
        }
        Ok(Some(header))
    }

    /// Whether this is a response frame.
    pub fn is_response(&self) -> bool {
        self.flags & FLAG_RESPONSE != 0
    }

    /// Header plus body length.
    pub fn frame_len(&self) -> usize {
        HEADER_LEN + self.body_len as usize
    }
}

fn byte(h: &[u8], at: usize) -> u8 {
    h.get(at).copied().unwrap_or(0)
}

fn arr<const N: usize>(h: &[u8], at: usize) -> [u8; N] {
    let mut a = [0u8; N];
    if let Some(s) = h.get(at..at + N) {
        a.copy_from_slice(s);
    }
    a
}

/// A complete frame found at the start of a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The decoded header.
    pub header: Header,
    /// Where the body lies in the buffer; `body.end` is the frame's total length.
    pub body: Range<usize>,
}

impl Frame {
    /// Bytes the frame occupies (advance the read buffer by this much once done with it).
    pub fn len(&self) -> usize {
        self.body.end
    }

    /// Always false: a frame has at least a header (present for clippy's `len_without_is_empty`).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The body inside `buf`, which must be the buffer the frame was decoded from.
    pub fn body<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        buf.get(self.body.clone()).unwrap_or_default()
    }

    /// Gives the frame at the start of `buf` (this frame's bytes) another request id, by
    /// writing its re-encoded header (a relay answering under its client's id).
    pub fn set_request_id(&self, buf: &mut [u8], request_id: u64) {
        let header = Header {
            request_id,
            ..self.header
        };
        if let Some(dst) = buf.get_mut(..HEADER_LEN) {
            dst.copy_from_slice(&header.to_bytes());
        }
    }
}

/// Finds one frame at the start of `buf`: `Ok(None)` means more bytes are needed.
///
/// An error means the stream is corrupt: answer an error frame and close the connection.
pub fn decode_frame(buf: &[u8], limits: &Limits) -> Result<Option<Frame>, FrameError> {
    let Some(header) = Header::decode(buf, limits)? else {
        return Ok(None);
    };
    let end = header.frame_len();
    if buf.len() < end {
        return Ok(None);
    }
    Ok(Some(Frame {
        header,
        body: HEADER_LEN..end,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            version: VERSION,
            opcode: 0x01,
            flags: FLAG_RESPONSE,
            request_id: 0x0102_0304_0506_0708,
            epoch: 7,
            body_len: 3,
        }
    }

    #[test]
    fn header_round_trip_and_layout() {
        let h = header();
        let b = h.to_bytes();
        assert_eq!(&b[..4], b"RC\x01\x01");
        assert_eq!(&b[4..8], &[1, 0, 0, 0]);
        assert_eq!(&b[8..16], &[8, 7, 6, 5, 4, 3, 2, 1]);
        assert_eq!(&b[16..20], &[7, 0, 0, 0]);
        assert_eq!(&b[20..24], &[3, 0, 0, 0]);
        assert_eq!(Header::decode(&b, &Limits::default()), Ok(Some(h)));
        assert!(h.is_response());
        assert_eq!(h.frame_len(), 27);
    }

    #[test]
    fn needs_more_then_frame() {
        let l = Limits::default();
        let mut buf = header().to_bytes().to_vec();
        buf.extend_from_slice(b"abcXYZ");
        for cut in 0..27 {
            assert_eq!(decode_frame(&buf[..cut], &l), Ok(None), "cut {cut}");
        }
        let f = decode_frame(&buf, &l).unwrap().unwrap();
        assert_eq!(f.len(), 27);
        assert_eq!(f.body(&buf), b"abc");
    }

    #[test]
    fn early_errors() {
        let l = Limits::default();
        assert!(matches!(
            decode_frame(b"X", &l),
            Err(FrameError::BadMagic(_))
        ));
        assert!(matches!(
            decode_frame(b"RX", &l),
            Err(FrameError::BadMagic(_))
        ));
        assert_eq!(
            decode_frame(b"RC\x02", &l),
            Err(FrameError::UnsupportedVersion(2))
        );
        let mut h = header();
        h.body_len = u32::MAX;
        assert_eq!(
            decode_frame(&h.to_bytes(), &l),
            Err(FrameError::TooLarge {
                len: u32::MAX as usize,
                max: l.max_frame
            })
        );
    }
}
