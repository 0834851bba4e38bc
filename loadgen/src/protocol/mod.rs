//! Request encoders and incremental reply parsers for each target protocol.
//!
//! Parsers look at the unread bytes of a connection and either find one complete reply at their
//! start (`Ok(Some(reply))`, `reply.used` bytes long), ask for more bytes (`Ok(None)`), or
//! report a stream they cannot follow (`Err`, after which the connection is closed).

pub mod memcache;
pub mod native;
pub mod resp;

use std::fmt;

use bytes::BytesMut;

/// Which protocol the loadgen speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// ringcache's native binary frames, each request sent straight to its key's core port.
    Ringcache,
    /// RESP2 to any Redis-compatible server (Redis, a ringcache node's main port, a balancer).
    Resp,
    /// memcached's text protocol (`get` / `set`).
    Memcached,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Target::Ringcache => "ringcache",
            Target::Resp => "resp",
            Target::Memcached => "memcached",
        })
    }
}

/// What a reply said, as far as the loadgen's figures are concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A value came back.
    Hit,
    /// No value (missing key).
    Miss,
    /// A write succeeded.
    Stored,
    /// The server answered with an error; the string names its kind (`ERR`, `SERVER_ERROR`...).
    ServerError(String),
    /// A ringcache node answered REDIRECT: the key is not its own, or the request carried a
    /// stale cluster map epoch.
    Redirect,
    /// Any other well-formed reply.
    Other,
}

/// One complete reply found at the start of a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Bytes it occupies.
    pub used: usize,
    /// The request id it answers (native protocol); `None` for in-order protocols.
    pub id: Option<u64>,
    /// What it said.
    pub outcome: Outcome,
}

/// A reply stream the parser cannot follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(pub String);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unparseable reply: {}", self.0)
    }
}

impl std::error::Error for ParseError {}

/// Longest line (RESP status or length line, memcached line) the parsers accept.
pub const MAX_LINE: usize = 64 * 1024;

/// Appends a GET of `key` (request id `id` and map epoch `epoch`: native protocol only).
#[inline]
pub fn encode_get(target: Target, out: &mut BytesMut, id: u64, epoch: u32, key: &[u8]) {
    match target {
        Target::Ringcache => native::encode_get(out, id, epoch, key),
        Target::Resp => resp::encode_get(out, key),
        Target::Memcached => memcache::encode_get(out, key),
    }
}

/// Appends a SET of `key` to `value` without expiry.
#[inline]
pub fn encode_set(
    target: Target,
    out: &mut BytesMut,
    id: u64,
    epoch: u32,
    key: &[u8],
    value: &[u8],
) {
    match target {
        Target::Ringcache => native::encode_set(out, id, epoch, key, value),
        Target::Resp => resp::encode_set(out, key, value),
        Target::Memcached => memcache::encode_set(out, key, value),
    }
}

/// Parses one reply at the start of `buf`.
#[inline]
pub fn parse_reply(target: Target, buf: &[u8]) -> Result<Option<Reply>, ParseError> {
    match target {
        Target::Ringcache => native::parse(buf),
        Target::Resp => resp::parse(buf),
        Target::Memcached => memcache::parse(buf),
    }
}

/// Position of the first CRLF at or after `from`, `Ok(None)` when it has not arrived yet.
pub(crate) fn find_crlf(buf: &[u8], from: usize) -> Result<Option<usize>, ParseError> {
    let window = &buf[from.min(buf.len())..];
    let limit = window.len().min(MAX_LINE + 1);
    match window[..limit].windows(2).position(|w| w == b"\r\n") {
        Some(i) => Ok(Some(from + i)),
        None if window.len() > MAX_LINE => {
            Err(ParseError(format!("no line end within {MAX_LINE} bytes")))
        }
        None => Ok(None),
    }
}

/// Appends the decimal digits of `n`.
#[inline]
pub(crate) fn put_usize(out: &mut BytesMut, n: usize) {
    let mut buf = [0u8; 20];
    let mut at = buf.len();
    let mut n = n;
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[at..]);
}

#[cfg(test)]
pub(crate) mod test_util {
    use super::*;

    /// Checks that every strict prefix of `bytes` asks for more and the whole gives `expect`.
    pub fn check_split(target: Target, bytes: &[u8], expect: Outcome) {
        for cut in 0..bytes.len() {
            assert_eq!(
                parse_reply(target, &bytes[..cut]),
                Ok(None),
                "{target}: prefix of {cut} bytes of {:?}",
                String::from_utf8_lossy(bytes)
            );
        }
        let r = parse_reply(target, bytes).unwrap().unwrap();
        assert_eq!(r.used, bytes.len(), "{:?}", String::from_utf8_lossy(bytes));
        assert_eq!(r.outcome, expect);
    }

    /// Parses `stream` fed one byte at a time, as a connection would see it.
    pub fn parse_trickled(target: Target, stream: &[u8]) -> Vec<Reply> {
        let mut buf = Vec::new();
        let mut out = Vec::new();
        for &b in stream {
            buf.push(b);
            while let Some(r) = parse_reply(target, &buf).unwrap() {
                buf.drain(..r.used);
                out.push(r);
            }
        }
        assert!(buf.is_empty(), "left over: {buf:?}");
        out
    }

    #[test]
    fn put_usize_digits() {
        for n in [0usize, 7, 10, 12345, usize::MAX] {
            let mut b = BytesMut::new();
            put_usize(&mut b, n);
            assert_eq!(&b[..], n.to_string().as_bytes());
        }
    }

    #[test]
    fn find_crlf_bounds() {
        assert_eq!(find_crlf(b"ab\r\n", 0), Ok(Some(2)));
        assert_eq!(find_crlf(b"ab\r", 0), Ok(None));
        assert_eq!(find_crlf(b"\r\nab\r\n", 1), Ok(Some(4)));
        let long = vec![b'a'; MAX_LINE + 10];
        assert!(find_crlf(&long, 0).is_err());
    }
}
