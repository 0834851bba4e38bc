//! Reading requests off a connection's buffer, in either protocol: the one place that turns
//! bytes into a command (native frame or RESP array), a control frame, or the error that
//! answers bad input. Used by the node's connections, by a core re-reading a request handed
//! over from another core, and by the balancer.

use std::ops::Range;

use crate::control::is_control;
use crate::frame::{decode_frame, Epoch, Header};
use crate::limits::Limits;
use crate::native::decode_request;
use crate::resp::{RespArgs, RespParser};
use crate::resp_command::parse_command;
use crate::response::Response;
use crate::wire::Wire;
use crate::Command;

/// What a request is.
#[derive(Debug)]
pub enum RequestKind<'a> {
    /// A command, or the error reply for a well-framed but invalid one (the connection goes on,
    /// as with Redis).
    Command(Result<Command<'a>, Response<'static>>),
    /// A native control frame (cluster or replication): its header and where its body lies.
    Control(Header, Range<usize>),
}

/// One request read from the start of a buffer.
#[derive(Debug)]
pub struct Request<'a> {
    /// What it is.
    pub kind: RequestKind<'a>,
    /// Bytes it occupies (advance the buffer by this much once done with it).
    pub len: usize,
    /// The native request id echoed in the reply (0 for RESP).
    pub request_id: u64,
    /// The map epoch the sender is at (0 for RESP, or a sender that does not track the map).
    pub epoch: Epoch,
}

/// Reads requests in a connection's protocol; keeps the RESP parser's progress across reads.
#[derive(Debug, Default)]
pub struct RequestReader {
    resp: RespParser,
}

impl RequestReader {
    /// A reader at the start of a stream.
    pub fn new() -> Self {
        RequestReader::default()
    }

    /// Reads the request at the start of `buf`: `Ok(None)` while more bytes are needed,
    /// `Err` with the reply for input that breaks the stream (the connection then closes).
    pub fn next<'a>(
        &mut self,
        wire: Wire,
        buf: &'a [u8],
        limits: &Limits,
    ) -> Result<Option<Request<'a>>, Response<'static>> {
        match wire {
            Wire::Native => {
                let frame = match decode_frame(buf, limits) {
                    Ok(Some(f)) => f,
                    Ok(None) => return Ok(None),
                    Err(e) => return Err(Response::error(e.kind(), e.to_string())),
                };
                let h = frame.header;
                let len = frame.len();
                let kind = if is_control(h.opcode) {
                    RequestKind::Control(h, len - h.body_len as usize..len)
                } else {
                    match decode_request(&h, frame.body(buf), limits) {
                        Ok(cmd) => RequestKind::Command(Ok(cmd)),
                        Err(e) => return Err(Response::error(e.kind(), e.to_string())),
                    }
                };
                Ok(Some(Request {
                    kind,
                    len,
                    request_id: h.request_id,
                    epoch: h.epoch,
                }))
            }
            Wire::Resp(_) => match self.resp.parse(buf, limits) {
                Ok(None) => Ok(None),
                Err(e) => Err(Response::error(e.kind(), e.to_string())),
                Ok(Some(len)) => {
                    let args = self.resp.args(buf);
                    let cmd = parse_command(&args, limits).map_err(|e| Response::from(&e));
                    Ok(Some(Request {
                        kind: RequestKind::Command(cmd),
                        len,
                        request_id: 0,
                        epoch: 0,
                    }))
                }
            },
        }
    }

    /// Forgets a partly parsed RESP request (to read the same bytes again from their start).
    pub fn reset(&mut self) {
        self.resp.reset();
    }

    /// The arguments of the RESP request [`RequestReader::next`] just read from `buf`.
    pub fn resp_args<'a>(&self, buf: &'a [u8]) -> RespArgs<'a, '_> {
        self.resp.args(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::{encode_control, ClusterOp};
    use crate::resp_encode::RespVersion;
    use crate::{encode_request, ErrorKind};
    use bytes::BytesMut;

    const RESP: Wire = Wire::Resp(RespVersion::V2);

    #[test]
    fn native_commands_and_control_frames_are_told_apart() {
        let limits = Limits::default();
        let mut b = BytesMut::new();
        encode_request(&mut b, 7, 3, &Command::Get { key: b"k" }).unwrap();
        let first = b.len();
        encode_control(&mut b, ClusterOp::Map, false, 8, 0, b"xy");
        let mut r = RequestReader::new();
        let req = r.next(Wire::Native, &b, &limits).unwrap().unwrap();
        assert!(matches!(
            req.kind,
            RequestKind::Command(Ok(Command::Get { key: b"k" }))
        ));
        assert_eq!((req.len, req.request_id, req.epoch), (first, 7, 3));
        let rest = &b[first..];
        let req = r.next(Wire::Native, rest, &limits).unwrap().unwrap();
        let RequestKind::Control(h, body) = req.kind else {
            panic!("a control frame");
        };
        assert_eq!(
            (h.opcode, &rest[body]),
            (u8::from(ClusterOp::Map), &b"xy"[..])
        );
        assert!(r.next(Wire::Native, &rest[..3], &limits).unwrap().is_none());
        assert!(r.next(Wire::Native, b"RX garbage", &limits).is_err());
    }

    #[test]
    fn resp_errors_keep_or_close_the_connection_as_redis_does() {
        let limits = Limits::default();
        let mut r = RequestReader::new();
        let buf = b"*1\r\n$4\r\nNOPE\r\n";
        let req = r.next(RESP, buf, &limits).unwrap().unwrap();
        assert_eq!(req.len, buf.len());
        match req.kind {
            RequestKind::Command(Err(Response::Error { kind, .. })) => {
                assert_eq!(kind, ErrorKind::Unsupported)
            }
            other => panic!("expected an unknown-command reply, got {other:?}"),
        }
        assert_eq!(r.resp_args(buf).get(0), Some(&b"NOPE"[..]));
        let mut r = RequestReader::new();
        assert!(r.next(RESP, b"*x\r\n", &limits).is_err());
        assert!(r.next(RESP, b"*1\r\n$3\r\nGE", &limits).unwrap().is_none());
    }
}
