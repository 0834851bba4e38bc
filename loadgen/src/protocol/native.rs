//! ringcache native frames: requests encoded by `ringcache-proto`, replies classified from the
//! frame header (bodies are decoded only for errors and the topology).

use bytes::BytesMut;
use ringcache_proto::{
    decode_frame, decode_response, encode_request, Command, Limits, ReplyCode, Response, Topology,
};

use super::{Outcome, ParseError, Reply};

/// Frame limits used to parse replies.
fn limits() -> Limits {
    Limits::default()
}

/// Appends a GET frame carrying cluster map epoch `epoch` (0 outside a cluster).
pub fn encode_get(out: &mut BytesMut, id: u64, epoch: u32, key: &[u8]) {
    // Only a body over 4 GiB fails to encode; keys are bounded far below that.
    let _ = encode_request(out, id, epoch, &Command::Get { key });
}

/// Appends a SET frame (no expiry, unconditional) carrying cluster map epoch `epoch`.
pub fn encode_set(out: &mut BytesMut, id: u64, epoch: u32, key: &[u8], value: &[u8]) {
    let _ = encode_request(out, id, epoch, &Command::set(key, value));
}

/// Appends a TOPOLOGY request.
pub fn encode_topology(out: &mut BytesMut, id: u64) {
    let _ = encode_request(out, id, 0, &Command::Topology);
}

/// The name of an error kind without its fields (`Redirect`, `Busy`, ...).
fn kind_name(kind: &ringcache_proto::ErrorKind) -> String {
    let s = format!("{kind:?}");
    let end = s.find([' ', '{', '(']).unwrap_or(s.len());
    s[..end].to_string()
}

/// Parses one reply frame at the start of `buf`.
pub fn parse(buf: &[u8]) -> Result<Option<Reply>, ParseError> {
    let l = limits();
    let frame = match decode_frame(buf, &l) {
        Ok(Some(f)) => f,
        Ok(None) => return Ok(None),
        Err(e) => return Err(ParseError(e.to_string())),
    };
    let h = frame.header;
    if !h.is_response() {
        return Err(ParseError(format!(
            "request frame (opcode {:#04x}) where a reply was expected",
            h.opcode
        )));
    }
    let outcome = match ReplyCode::from_u8(h.opcode) {
        Some(ReplyCode::Value) => Outcome::Hit,
        Some(ReplyCode::Nil) => Outcome::Miss,
        Some(ReplyCode::Ok) => Outcome::Stored,
        Some(ReplyCode::Error) => match decode_response(&h, frame.body(buf), &l) {
            Ok(Response::Error {
                kind: ringcache_proto::ErrorKind::Redirect { .. },
                ..
            }) => Outcome::Redirect,
            Ok(Response::Error { kind, .. }) => Outcome::ServerError(kind_name(&kind)),
            _ => return Err(ParseError("undecodable error frame".into())),
        },
        Some(_) => Outcome::Other,
        None => return Err(ParseError(format!("unknown reply code {:#04x}", h.opcode))),
    };
    Ok(Some(Reply {
        used: frame.len(),
        id: Some(h.request_id),
        outcome,
    }))
}

/// Decodes a TOPOLOGY reply frame at the start of `buf` (`Ok(None)`: need more bytes).
pub fn parse_topology(buf: &[u8]) -> Result<Option<(usize, Topology)>, ParseError> {
    let l = limits();
    let frame = match decode_frame(buf, &l) {
        Ok(Some(f)) => f,
        Ok(None) => return Ok(None),
        Err(e) => return Err(ParseError(e.to_string())),
    };
    match decode_response(&frame.header, frame.body(buf), &l) {
        Ok(Response::Topology(t)) => Ok(Some((frame.len(), t))),
        Ok(Response::Error { kind, message }) => Err(ParseError(format!(
            "TOPOLOGY refused: {} {message}",
            kind_name(&kind)
        ))),
        Ok(other) => Err(ParseError(format!(
            "unexpected answer to TOPOLOGY: {other:?}"
        ))),
        Err(e) => Err(ParseError(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{check_split, parse_trickled};
    use super::super::Target;
    use super::*;
    use ringcache_proto::{
        decode_request, encode_response, encode_value_reply, CoreInfo, ErrorKind,
    };

    const T: Target = Target::Ringcache;

    fn reply(id: u64, r: &Response<'_>) -> Vec<u8> {
        let mut b = BytesMut::new();
        encode_response(&mut b, id, 3, r).unwrap();
        b.to_vec()
    }

    #[test]
    fn encodes_decodable_requests() {
        let mut b = BytesMut::new();
        encode_get(&mut b, 7, 5, b"key:1");
        let l = Limits::default();
        let f = decode_frame(&b, &l).unwrap().unwrap();
        assert_eq!(f.header.request_id, 7);
        assert_eq!(f.header.epoch, 5);
        assert_eq!(
            decode_request(&f.header, f.body(&b), &l).unwrap(),
            Command::Get { key: b"key:1" }
        );
        let mut b = BytesMut::new();
        encode_set(&mut b, 8, 9, b"k", b"v");
        let f = decode_frame(&b, &l).unwrap().unwrap();
        assert_eq!(f.header.epoch, 9);
        assert!(matches!(
            decode_request(&f.header, f.body(&b), &l).unwrap(),
            Command::Set {
                key: b"k",
                value: b"v",
                expiry: ringcache_proto::Expiry::None,
                ..
            }
        ));
    }

    #[test]
    fn every_reply_kind_on_split_input() {
        let mut hit = BytesMut::new();
        encode_value_reply(&mut hit, 1, 0, b"hello", 9, None).unwrap();
        check_split(T, &hit, Outcome::Hit);
        check_split(T, &reply(2, &Response::Nil), Outcome::Miss);
        check_split(T, &reply(3, &Response::Ok), Outcome::Stored);
        check_split(T, &reply(4, &Response::Pong), Outcome::Other);
        check_split(
            T,
            &reply(5, &Response::error(ErrorKind::Busy, "later")),
            Outcome::ServerError("Busy".into()),
        );
        check_split(
            T,
            &reply(
                6,
                &Response::error(ErrorKind::Redirect { epoch: 4 }, "moved"),
            ),
            Outcome::Redirect,
        );
    }

    #[test]
    fn pipelined_replies_keep_their_ids() {
        let mut stream = Vec::new();
        stream.extend(reply(10, &Response::Nil));
        let mut hit = BytesMut::new();
        encode_value_reply(&mut hit, 11, 0, b"abc", 1, Some(5)).unwrap();
        stream.extend_from_slice(&hit);
        stream.extend(reply(12, &Response::Ok));
        let got: Vec<(Option<u64>, Outcome)> = parse_trickled(T, &stream)
            .into_iter()
            .map(|r| (r.id, r.outcome))
            .collect();
        assert_eq!(
            got,
            vec![
                (Some(10), Outcome::Miss),
                (Some(11), Outcome::Hit),
                (Some(12), Outcome::Stored)
            ]
        );
    }

    #[test]
    fn topology_and_bad_frames() {
        let t = Topology {
            node_id: 1,
            main_port: 7000,
            cores: vec![
                CoreInfo {
                    core: 0,
                    port: 7001,
                },
                CoreInfo {
                    core: 1,
                    port: 7002,
                },
            ],
        };
        let bytes = reply(1, &Response::Topology(t.clone()));
        assert_eq!(parse_topology(&bytes[..10]), Ok(None));
        assert_eq!(parse_topology(&bytes), Ok(Some((bytes.len(), t))));
        assert!(parse_topology(&reply(1, &Response::Ok)).is_err());
        assert!(parse(b"XXXXXXXXXXXXXXXXXXXXXXXXXXXX").is_err());
        // A request frame is not a reply.
        let mut req = BytesMut::new();
        encode_get(&mut req, 1, 0, b"k");
        assert!(parse(&req).is_err());
        let mut topo = BytesMut::new();
        encode_topology(&mut topo, 1);
        assert!(!topo.is_empty());
    }
}
