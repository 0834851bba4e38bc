//! The native frames as the clients use them, with no I/O: requests encoded within the
//! configured limits, reply frames found in a buffer and decoded to owned replies. Shared by
//! the blocking connection and the async one, so both speak the protocol the same way.

use std::fmt;

use bytes::BytesMut;
use ringcache_proto::{
    decode_frame, decode_response, encode_request, Command, Credentials, EncodeError, Header,
    Limits, TooLarge, HEADER_LEN,
};

use crate::config::ClientConfig;
use crate::error::ClientError;
use crate::reply::Reply;

/// The request id after `id`: ids wrap, and 0 (what a server uses for errors that belong to no
/// request) is never sent.
pub(crate) fn next_request_id(id: u64) -> u64 {
    id.wrapping_add(1).max(1)
}

/// Appends request `cmd` with `id` and `epoch` to `wbuf`, checked against `limits`; on error
/// nothing is appended.
pub(crate) fn encode_checked(
    wbuf: &mut BytesMut,
    id: u64,
    epoch: u32,
    cmd: &Command<'_>,
    limits: &Limits,
) -> Result<(), ClientError> {
    cmd.check_limits(limits)?;
    let start = wbuf.len();
    encode_request(wbuf, id, epoch, cmd).map_err(|e| match e {
        EncodeError::BodyTooLarge(len) => ClientError::TooLarge(TooLarge {
            what: "request",
            len,
            max: limits.max_frame,
        }),
        other => ClientError::Protocol(format!("cannot encode request: {other}")),
    })?;
    let body = wbuf.len() - start - HEADER_LEN;
    if body > limits.max_frame {
        wbuf.truncate(start);
        return Err(ClientError::TooLarge(TooLarge {
            what: "request",
            len: body,
            max: limits.max_frame,
        }));
    }
    Ok(())
}

/// What the front of a receive buffer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FrameStatus {
    /// A whole frame with this header (its length is `frame_len()`).
    Whole(Header),
    /// Not a whole frame yet: at least this many bytes are needed from the front.
    Need(usize),
}

/// Looks for a whole frame at the front of `avail`; a malformed or oversized frame is a
/// protocol error naming `peer`.
pub(crate) fn frame_status(
    avail: &[u8],
    limits: &Limits,
    peer: &dyn fmt::Display,
) -> Result<FrameStatus, ClientError> {
    match decode_frame(avail, limits) {
        Ok(Some(f)) => Ok(FrameStatus::Whole(f.header)),
        Ok(None) => Ok(FrameStatus::Need(match Header::decode(avail, limits) {
            Ok(Some(h)) => h.frame_len(),
            _ => HEADER_LEN,
        })),
        Err(e) => Err(ClientError::Protocol(format!(
            "bad reply frame from {peer}: {e}"
        ))),
    }
}

/// Decodes the reply frame `h` with `body`: its request id and the reply or the server's error
/// for it. The outer error means the connection is unusable (a request frame where a reply
/// belongs, an undecodable body, or an error for no request, which the server sends before it
/// closes the connection).
pub(crate) fn decode_reply(
    h: &Header,
    body: &[u8],
    limits: &Limits,
    peer: &dyn fmt::Display,
) -> Result<(u64, Result<Reply, ClientError>), ClientError> {
    if !h.is_response() {
        return Err(ClientError::Protocol(format!(
            "{peer} sent a request frame where a reply was expected"
        )));
    }
    let reply = decode_response(h, body, limits)
        .map_err(|e| ClientError::Protocol(format!("bad reply from {peer}: {e}")))
        .map(Reply::from_response)?;
    if h.request_id == 0 {
        let why = match reply {
            Err(e) => e.to_string(),
            Ok(r) => format!("{r:?}"),
        };
        return Err(ClientError::Protocol(format!(
            "{peer} closed the connection: {why}"
        )));
    }
    Ok((h.request_id, reply))
}

/// The AUTH request a new connection sends first, when a password is configured.
pub(crate) fn auth_command(cfg: &ClientConfig) -> Option<Command<'_>> {
    cfg.password.as_ref().map(|pw| Command::Auth {
        creds: Credentials {
            username: None,
            password: pw.as_bytes(),
        },
    })
}

/// The limits replies are read with: the configured limits with `max_reply` as frame bound.
pub(crate) fn reply_limits(cfg: &ClientConfig) -> Limits {
    Limits {
        max_frame: cfg.max_reply,
        max_args: usize::MAX,
        ..cfg.limits
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringcache_proto::{encode_response, Response};

    #[test]
    fn ids_skip_zero_when_they_wrap() {
        assert_eq!(next_request_id(1), 2);
        assert_eq!(next_request_id(u64::MAX), 1);
    }

    #[test]
    fn oversized_requests_are_refused_and_leave_the_buffer_alone() {
        let limits = Limits {
            max_frame: 8,
            ..Limits::default()
        };
        let mut buf = BytesMut::from(&b"xy"[..]);
        let big = vec![b'v'; 64];
        let err = encode_checked(&mut buf, 1, 0, &Command::set(b"k", &big), &limits);
        assert!(matches!(err, Err(ClientError::TooLarge(_))));
        assert_eq!(&buf[..], b"xy");
    }

    #[test]
    fn frames_are_found_whole_or_asked_for() {
        let limits = Limits::default();
        let mut buf = BytesMut::new();
        encode_response(&mut buf, 7, 0, &Response::Int(5)).unwrap();
        let peer = "p";
        let FrameStatus::Whole(h) = frame_status(&buf, &limits, &peer).unwrap() else {
            panic!("a whole frame");
        };
        let (id, r) = decode_reply(&h, &buf[HEADER_LEN..h.frame_len()], &limits, &peer).unwrap();
        assert_eq!((id, r.unwrap()), (7, Reply::Int(5)));
        assert_eq!(
            frame_status(&buf[..3], &limits, &peer).unwrap(),
            FrameStatus::Need(HEADER_LEN)
        );
        assert_eq!(
            frame_status(&buf[..HEADER_LEN], &limits, &peer).unwrap(),
            FrameStatus::Need(buf.len())
        );
        let mut bad = buf.clone();
        bad[0] = b'X';
        assert!(matches!(
            frame_status(&bad, &limits, &peer),
            Err(ClientError::Protocol(_))
        ));
        let mut zero = BytesMut::new();
        encode_response(&mut zero, 0, 0, &Response::Ok).unwrap();
        let FrameStatus::Whole(h) = frame_status(&zero, &limits, &peer).unwrap() else {
            panic!("a whole frame");
        };
        assert!(decode_reply(&h, &zero[HEADER_LEN..], &limits, &peer).is_err());
    }
}
