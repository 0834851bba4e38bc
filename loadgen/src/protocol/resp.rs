//! RESP: `GET`/`SET` as arrays of bulk strings; replies of RESP2 (and the RESP3 types a server
//! might send) parsed incrementally.

use bytes::BytesMut;

use super::{find_crlf, put_usize, Outcome, ParseError, Reply};

/// Deepest nesting of aggregate replies followed.
const MAX_DEPTH: usize = 32;
/// Largest bulk string accepted (Redis's own limit).
const MAX_BULK: i64 = 512 << 20;

fn put_bulk(out: &mut BytesMut, b: &[u8]) {
    out.extend_from_slice(b"$");
    put_usize(out, b.len());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(b);
    out.extend_from_slice(b"\r\n");
}

/// Appends `GET key`.
pub fn encode_get(out: &mut BytesMut, key: &[u8]) {
    out.reserve(24 + key.len());
    out.extend_from_slice(b"*2\r\n$3\r\nGET\r\n");
    put_bulk(out, key);
}

/// Appends `SET key value`.
pub fn encode_set(out: &mut BytesMut, key: &[u8], value: &[u8]) {
    out.reserve(40 + key.len() + value.len());
    out.extend_from_slice(b"*3\r\n$3\r\nSET\r\n");
    put_bulk(out, key);
    put_bulk(out, value);
}

/// Appends an arbitrary command (used for the connection handshake and tests).
pub fn encode_args(out: &mut BytesMut, args: &[&[u8]]) {
    out.extend_from_slice(b"*");
    put_usize(out, args.len());
    out.extend_from_slice(b"\r\n");
    for a in args {
        put_bulk(out, a);
    }
}

fn parse_int(s: &[u8]) -> Result<i64, ParseError> {
    std::str::from_utf8(s)
        .ok()
        .and_then(|t| t.parse::<i64>().ok())
        .ok_or_else(|| ParseError(format!("bad length {:?}", String::from_utf8_lossy(s))))
}

/// The first word of an error line: `ERR`, `WRONGTYPE`, ...
fn error_kind(line: &[u8]) -> String {
    let word = line.split(|&b| b == b' ').next().unwrap_or_default();
    let word = if word.is_empty() { &b"ERR"[..] } else { word };
    String::from_utf8_lossy(&word[..word.len().min(32)]).into_owned()
}

/// Finds the end of the value starting at `at`: `Ok(None)` until all of it has arrived.
/// Returns the end offset and the outcome of a top-level value.
fn value_end(buf: &[u8], at: usize, depth: usize) -> Result<Option<(usize, Outcome)>, ParseError> {
    if depth > MAX_DEPTH {
        return Err(ParseError("replies nested too deep".into()));
    }
    let Some(&tag) = buf.get(at) else {
        return Ok(None);
    };
    let Some(eol) = find_crlf(buf, at + 1)? else {
        return Ok(None);
    };
    let line = &buf[at + 1..eol];
    let next = eol + 2;
    let aggregate = |n: i64, per: i64| -> Result<Option<(usize, Outcome)>, ParseError> {
        if n < 0 {
            return Ok(Some((next, Outcome::Miss)));
        }
        let mut pos = next;
        for _ in 0..n.saturating_mul(per) {
            match value_end(buf, pos, depth + 1)? {
                Some((end, _)) => pos = end,
                None => return Ok(None),
            }
        }
        Ok(Some((pos, Outcome::Other)))
    };
    match tag {
        b'+' => {
            let o = if line == b"OK" {
                Outcome::Stored
            } else {
                Outcome::Other
            };
            Ok(Some((next, o)))
        }
        b'-' => Ok(Some((next, Outcome::ServerError(error_kind(line))))),
        b':' | b',' | b'#' | b'(' => Ok(Some((next, Outcome::Other))),
        b'_' => Ok(Some((next, Outcome::Miss))),
        b'$' | b'=' | b'!' => {
            let n = parse_int(line)?;
            if n < 0 {
                return Ok(Some((next, Outcome::Miss)));
            }
            if n > MAX_BULK {
                return Err(ParseError(format!("bulk string of {n} bytes")));
            }
            let end = next + n as usize + 2;
            if buf.len() < end {
                return Ok(None);
            }
            if &buf[end - 2..end] != b"\r\n" {
                return Err(ParseError("bulk string not followed by CRLF".into()));
            }
            let o = if tag == b'!' {
                Outcome::ServerError(error_kind(&buf[next..end - 2]))
            } else {
                Outcome::Hit
            };
            Ok(Some((end, o)))
        }
        b'*' | b'~' | b'>' => aggregate(parse_int(line)?, 1),
        b'%' | b'|' => aggregate(parse_int(line)?, 2),
        other => Err(ParseError(format!("unknown RESP type byte {other:#04x}"))),
    }
}

/// Parses one reply at the start of `buf`.
pub fn parse(buf: &[u8]) -> Result<Option<Reply>, ParseError> {
    Ok(value_end(buf, 0, 0)?.map(|(used, outcome)| Reply {
        used,
        id: None,
        outcome,
    }))
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{check_split, parse_trickled};
    use super::super::Target;
    use super::*;

    const T: Target = Target::Resp;

    #[test]
    fn encodes_commands() {
        let mut b = BytesMut::new();
        encode_get(&mut b, b"key:1");
        encode_set(&mut b, b"k", b"hello");
        assert_eq!(
            &b[..],
            b"*2\r\n$3\r\nGET\r\n$5\r\nkey:1\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\n"
        );
        let mut b = BytesMut::new();
        encode_args(&mut b, &[b"PING"]);
        assert_eq!(&b[..], b"*1\r\n$4\r\nPING\r\n");
    }

    #[test]
    fn every_reply_kind_on_split_input() {
        check_split(T, b"$5\r\nhello\r\n", Outcome::Hit);
        check_split(T, b"$0\r\n\r\n", Outcome::Hit);
        check_split(T, b"$-1\r\n", Outcome::Miss);
        check_split(T, b"_\r\n", Outcome::Miss);
        check_split(T, b"+OK\r\n", Outcome::Stored);
        check_split(T, b"+PONG\r\n", Outcome::Other);
        check_split(T, b":42\r\n", Outcome::Other);
        check_split(
            T,
            b"-ERR unknown command\r\n",
            Outcome::ServerError("ERR".into()),
        );
        check_split(
            T,
            b"-WRONGTYPE Operation\r\n",
            Outcome::ServerError("WRONGTYPE".into()),
        );
        check_split(T, b"*-1\r\n", Outcome::Miss);
        check_split(T, b"*0\r\n", Outcome::Other);
        check_split(
            T,
            b"*3\r\n$4\r\nsave\r\n$-1\r\n*2\r\n:1\r\n+x\r\n",
            Outcome::Other,
        );
        check_split(T, b"%1\r\n+a\r\n:1\r\n", Outcome::Other);
        check_split(
            T,
            b"!8\r\nSYNTAX x\r\n",
            Outcome::ServerError("SYNTAX".into()),
        );
        // A value that contains CRLF is skipped by length.
        check_split(T, b"$4\r\n\r\n\r\n\r\n", Outcome::Hit);
    }

    #[test]
    fn pipelined_replies_trickled_byte_by_byte() {
        let stream = b"$3\r\nabc\r\n$-1\r\n+OK\r\n-ERR x\r\n$2\r\nhi\r\n";
        let outs: Vec<Outcome> = parse_trickled(T, stream)
            .into_iter()
            .map(|r| r.outcome)
            .collect();
        assert_eq!(
            outs,
            vec![
                Outcome::Hit,
                Outcome::Miss,
                Outcome::Stored,
                Outcome::ServerError("ERR".into()),
                Outcome::Hit
            ]
        );
        // Parsing from a buffer holding several replies takes only the first.
        let r = parse(stream).unwrap().unwrap();
        assert_eq!(r.used, 9);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(parse(b"?what\r\n").is_err());
        assert!(parse(b"$abc\r\n").is_err());
        assert!(parse(b"$3\r\nabcXY").is_err());
        assert!(parse(b"$999999999999\r\n").is_err());
        let deep = b"*1\r\n".repeat(100);
        assert!(parse(&deep).is_err());
        for len in 0..40 {
            let junk: Vec<u8> = (0..len).map(|i| (i * 37 % 251) as u8).collect();
            let _ = parse(&junk);
        }
    }
}
