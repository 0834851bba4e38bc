//! memcached text protocol: `get key` and `set key 0 0 len`, replies parsed incrementally.

use bytes::BytesMut;

use super::{find_crlf, put_usize, Outcome, ParseError, Reply};

/// Largest value accepted in a `VALUE` line (memcached's item size limit is far lower).
const MAX_VALUE: usize = 1 << 30;

/// Appends `get key`.
pub fn encode_get(out: &mut BytesMut, key: &[u8]) {
    out.reserve(6 + key.len());
    out.extend_from_slice(b"get ");
    out.extend_from_slice(key);
    out.extend_from_slice(b"\r\n");
}

/// Appends `set key 0 0 len` and the value.
pub fn encode_set(out: &mut BytesMut, key: &[u8], value: &[u8]) {
    out.reserve(32 + key.len() + value.len());
    out.extend_from_slice(b"set ");
    out.extend_from_slice(key);
    out.extend_from_slice(b" 0 0 ");
    put_usize(out, value.len());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// The byte count of a `VALUE <key> <flags> <bytes> [<cas>]` line.
fn value_len(line: &[u8]) -> Result<usize, ParseError> {
    let mut parts = line.split(|&b| b == b' ').filter(|p| !p.is_empty());
    let bytes = parts.nth(3);
    bytes
        .and_then(|b| std::str::from_utf8(b).ok())
        .and_then(|s| s.parse::<usize>().ok())
        .filter(|&n| n <= MAX_VALUE)
        .ok_or_else(|| {
            ParseError(format!(
                "bad VALUE line {:?}",
                String::from_utf8_lossy(line)
            ))
        })
}

/// Parses one reply at the start of `buf`.
pub fn parse(buf: &[u8]) -> Result<Option<Reply>, ParseError> {
    let mut pos = 0;
    let mut values = 0usize;
    loop {
        let Some(eol) = find_crlf(buf, pos)? else {
            return Ok(None);
        };
        let line = &buf[pos..eol];
        let next = eol + 2;
        let done = |used: usize, outcome: Outcome| {
            Ok(Some(Reply {
                used,
                id: None,
                outcome,
            }))
        };
        if line.starts_with(b"VALUE ") {
            let n = value_len(line)?;
            let end = next + n + 2;
            if buf.len() < end {
                return Ok(None);
            }
            if &buf[end - 2..end] != b"\r\n" {
                return Err(ParseError("value not followed by CRLF".into()));
            }
            values += 1;
            pos = end;
            continue;
        }
        if line == b"END" {
            let o = if values > 0 {
                Outcome::Hit
            } else {
                Outcome::Miss
            };
            return done(next, o);
        }
        if values > 0 {
            return Err(ParseError(format!(
                "unexpected line after VALUE: {:?}",
                String::from_utf8_lossy(line)
            )));
        }
        return match line {
            b"STORED" => done(next, Outcome::Stored),
            b"NOT_STORED" | b"NOT_FOUND" => done(next, Outcome::Miss),
            b"EXISTS" | b"DELETED" | b"TOUCHED" | b"OK" => done(next, Outcome::Other),
            b"ERROR" => done(next, Outcome::ServerError("ERROR".into())),
            l if l.starts_with(b"CLIENT_ERROR") => {
                done(next, Outcome::ServerError("CLIENT_ERROR".into()))
            }
            l if l.starts_with(b"SERVER_ERROR") => {
                done(next, Outcome::ServerError("SERVER_ERROR".into()))
            }
            l if l.starts_with(b"VERSION ") => done(next, Outcome::Other),
            l => Err(ParseError(format!(
                "unknown memcached reply {:?}",
                String::from_utf8_lossy(&l[..l.len().min(64)])
            ))),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{check_split, parse_trickled};
    use super::super::Target;
    use super::*;

    const T: Target = Target::Memcached;

    #[test]
    fn encodes_commands() {
        let mut b = BytesMut::new();
        encode_get(&mut b, b"key:1");
        encode_set(&mut b, b"k", b"hello");
        assert_eq!(&b[..], b"get key:1\r\nset k 0 0 5\r\nhello\r\n");
    }

    #[test]
    fn every_reply_kind_on_split_input() {
        check_split(T, b"VALUE key:1 0 5\r\nhello\r\nEND\r\n", Outcome::Hit);
        check_split(T, b"VALUE k 0 4 99\r\n\r\nab\r\nEND\r\n", Outcome::Hit);
        check_split(T, b"VALUE k 0 0\r\n\r\nEND\r\n", Outcome::Hit);
        check_split(
            T,
            b"VALUE a 0 1\r\nx\r\nVALUE b 0 1\r\ny\r\nEND\r\n",
            Outcome::Hit,
        );
        check_split(T, b"END\r\n", Outcome::Miss);
        check_split(T, b"STORED\r\n", Outcome::Stored);
        check_split(T, b"NOT_STORED\r\n", Outcome::Miss);
        check_split(T, b"ERROR\r\n", Outcome::ServerError("ERROR".into()));
        check_split(
            T,
            b"SERVER_ERROR out of memory storing object\r\n",
            Outcome::ServerError("SERVER_ERROR".into()),
        );
        check_split(
            T,
            b"CLIENT_ERROR bad data chunk\r\n",
            Outcome::ServerError("CLIENT_ERROR".into()),
        );
    }

    #[test]
    fn pipelined_replies_trickled_byte_by_byte() {
        let stream = b"VALUE k 0 3\r\nabc\r\nEND\r\nEND\r\nSTORED\r\nVALUE k 0 2\r\nhi\r\nEND\r\n";
        let outs: Vec<Outcome> = parse_trickled(T, stream)
            .into_iter()
            .map(|r| r.outcome)
            .collect();
        assert_eq!(
            outs,
            vec![Outcome::Hit, Outcome::Miss, Outcome::Stored, Outcome::Hit]
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(parse(b"HELLO\r\n").is_err());
        assert!(parse(b"VALUE k 0\r\n").is_err());
        assert!(parse(b"VALUE k 0 x\r\n").is_err());
        assert!(parse(b"VALUE k 0 2\r\nabXY").is_err());
        assert!(parse(b"VALUE k 0 1\r\na\r\nSTORED\r\n").is_err());
        for len in 0..40 {
            let junk: Vec<u8> = (0..len).map(|i| (i * 37 % 251) as u8).collect();
            let _ = parse(&junk);
        }
    }
}
