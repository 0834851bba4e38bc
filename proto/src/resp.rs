//! Incremental, zero-copy RESP request parser (arrays of bulk strings and inline commands).
//!
//! Arguments are recorded as byte ranges into the caller's buffer in a reusable `Vec`; progress
//! is remembered between calls, so a large request arriving in small pieces costs O(n) in total.

use std::ops::Range;

use crate::error::RespError;
use crate::limits::Limits;

/// Longest inline command line (and longest run of blank lines skipped before a command).
pub const MAX_INLINE: usize = 64 * 1024;

/// Longest `*N` / `$N` length line, digits and sign, before the CRLF.
const MAX_LEN_LINE: usize = 20;

/// Where the parser stopped, so the next call resumes instead of rescanning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between commands; `start` skips empty lines and empty arrays already seen.
    Idle { start: usize },
    /// Inside `*N`: `remaining` bulks still to read, the next one at `pos`.
    Array {
        start: usize,
        remaining: usize,
        pos: usize,
    },
    /// Inside an inline line that starts at `start`; no newline before `scanned`.
    Inline { start: usize, scanned: usize },
}

/// Incremental RESP request parser; keep one per connection and reuse it.
///
/// Call [`RespParser::parse`] with the connection's unconsumed bytes. `Ok(Some(n))`: a command
/// fills the first `n` bytes; read it with [`RespParser::args`], then drop those `n` bytes.
/// `Ok(None)`: append more bytes to the *same* buffer (do not drop or change its first bytes)
/// and call again. `Err`: answer `-{err}` and close the connection, as Redis does.
#[derive(Debug, Clone)]
pub struct RespParser {
    args: Vec<Range<usize>>,
    state: State,
}

impl Default for RespParser {
    fn default() -> Self {
        Self::new()
    }
}

impl RespParser {
    /// A parser with no progress and an empty argument list.
    pub fn new() -> Self {
        RespParser {
            args: Vec::new(),
            state: State::Idle { start: 0 },
        }
    }

    /// Forgets any partial progress (use when the buffer was replaced rather than extended).
    pub fn reset(&mut self) {
        self.args.clear();
        self.state = State::Idle { start: 0 };
    }

    /// The arguments of the last complete command, as slices of `buf` (the parsed buffer).
    pub fn args<'a>(&self, buf: &'a [u8]) -> RespArgs<'a, '_> {
        RespArgs {
            buf,
            ranges: &self.args,
        }
    }

    /// Parses one command at the start of `buf`; see the type's docs for the three outcomes.
    pub fn parse(&mut self, buf: &[u8], limits: &Limits) -> Result<Option<usize>, RespError> {
        let res = self.step(buf, limits);
        match res {
            Ok(None) => {}
            Ok(Some(_)) => self.state = State::Idle { start: 0 },
            Err(_) => self.reset(),
        }
        res
    }

    fn step(&mut self, buf: &[u8], limits: &Limits) -> Result<Option<usize>, RespError> {
        loop {
            match self.state {
                State::Idle { start } => {
                    self.args.clear();
                    if start > MAX_INLINE {
                        return Err(RespError::InlineTooLong);
                    }
                    match buf.get(start) {
                        None => return Ok(None),
                        Some(b'*') => {
                            let Some((count, next)) = read_len_line(buf, start + 1)
                                .map_err(|()| RespError::InvalidMultibulkLength)?
                            else {
                                return Ok(None);
                            };
                            if count <= 0 {
                                // Redis skips `*0` and `*-1` requests.
                                self.state = State::Idle { start: next };
                                continue;
                            }
                            let count = usize::try_from(count)
                                .map_err(|_| RespError::InvalidMultibulkLength)?;
                            if count > limits.max_args {
                                return Err(RespError::TooManyArgs {
                                    len: count,
                                    max: limits.max_args,
                                });
                            }
                            self.args.reserve(count.min(64));
                            self.state = State::Array {
                                start,
                                remaining: count,
                                pos: next,
                            };
                        }
                        Some(_) => {
                            self.state = State::Inline {
                                start,
                                scanned: start,
                            }
                        }
                    }
                }
                State::Array {
                    start,
                    mut remaining,
                    mut pos,
                } => {
                    while remaining > 0 {
                        match buf.get(pos) {
                            None => return Ok(None),
                            Some(b'$') => {}
                            Some(&other) => return Err(RespError::ExpectedBulk(other)),
                        }
                        let Some((len, data)) = read_len_line(buf, pos + 1)
                            .map_err(|()| RespError::InvalidBulkLength)?
                        else {
                            return Ok(None);
                        };
                        let len = usize::try_from(len).map_err(|_| RespError::InvalidBulkLength)?;
                        if len > limits.max_bulk() {
                            return Err(RespError::BulkTooLarge {
                                len,
                                max: limits.max_bulk(),
                            });
                        }
                        let end = data.saturating_add(len);
                        let next = end.saturating_add(2);
                        if next.saturating_sub(start) > limits.max_frame {
                            return Err(RespError::RequestTooLarge {
                                max: limits.max_frame,
                            });
                        }
                        match buf.get(end..next) {
                            None => return Ok(None),
                            Some(b"\r\n") => {}
                            Some(_) => return Err(RespError::MissingCrlf),
                        }
                        self.args.push(data..end);
                        remaining -= 1;
                        pos = next;
                        self.state = State::Array {
                            start,
                            remaining,
                            pos,
                        };
                    }
                    return Ok(Some(pos));
                }
                State::Inline { start, scanned } => {
                    let from = scanned.max(start);
                    let found = buf
                        .get(from..)
                        .and_then(|rest| memchr::memchr(b'\n', rest))
                        .map(|i| from + i);
                    let Some(nl) = found else {
                        if buf.len().saturating_sub(start) > MAX_INLINE {
                            return Err(RespError::InlineTooLong);
                        }
                        self.state = State::Inline {
                            start,
                            scanned: buf.len().max(start),
                        };
                        return Ok(None);
                    };
                    if nl.saturating_sub(start) > MAX_INLINE {
                        return Err(RespError::InlineTooLong);
                    }
                    let line = buf.get(start..nl).unwrap_or_default();
                    let line = line.strip_suffix(b"\r").unwrap_or(line);
                    self.split_inline(line, start, limits)?;
                    if self.args.is_empty() {
                        self.state = State::Idle { start: nl + 1 };
                        continue;
                    }
                    return Ok(Some(nl + 1));
                }
            }
        }
    }

    /// Splits an inline line on ASCII whitespace into ranges offset by `base`.
    fn split_inline(&mut self, line: &[u8], base: usize, limits: &Limits) -> Result<(), RespError> {
        self.args.clear();
        let mut word_start = None;
        for (i, &b) in line.iter().enumerate() {
            let space = matches!(b, b' ' | b'\t' | b'\r' | b'\x0b' | b'\x0c');
            match (space, word_start) {
                (false, None) => word_start = Some(i),
                (true, Some(s)) => {
                    self.push_inline(base + s..base + i, limits)?;
                    word_start = None;
                }
                _ => {}
            }
        }
        if let Some(s) = word_start {
            self.push_inline(base + s..base + line.len(), limits)?;
        }
        Ok(())
    }

    fn push_inline(&mut self, r: Range<usize>, limits: &Limits) -> Result<(), RespError> {
        if self.args.len() >= limits.max_args {
            return Err(RespError::TooManyArgs {
                len: self.args.len() + 1,
                max: limits.max_args,
            });
        }
        self.args.push(r);
        Ok(())
    }
}

/// Reads a `<int>\r\n` line at `at`: `Ok(None)` if incomplete, `Err(())` if not a valid length.
fn read_len_line(buf: &[u8], at: usize) -> Result<Option<(i64, usize)>, ()> {
    let rest = buf.get(at..).unwrap_or_default();
    // The CR must come within MAX_LEN_LINE bytes; look no further so garbage fails fast.
    let window = rest.get(..=MAX_LEN_LINE).unwrap_or(rest);
    let Some(cr) = window.iter().position(|&b| b == b'\r') else {
        return if window.len() > MAX_LEN_LINE {
            Err(())
        } else {
            Ok(None)
        };
    };
    match rest.get(cr + 1) {
        None => return Ok(None),
        Some(b'\n') => {}
        Some(_) => return Err(()),
    }
    let digits = window.get(..cr).unwrap_or_default();
    let n = parse_i64(digits).ok_or(())?;
    Ok(Some((n, at + cr + 2)))
}

/// Parses a decimal i64 the way Redis does: optional '-', no '+', no spaces, no leading zeros.
pub fn parse_i64(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    match digits.first() {
        None => return None,
        Some(b'0') if digits.len() > 1 || neg => return None,
        _ => {}
    }
    let mut v: i64 = 0;
    for &b in digits {
        if !b.is_ascii_digit() {
            return None;
        }
        let d = i64::from(b - b'0');
        v = v.checked_mul(10)?;
        v = if neg {
            v.checked_sub(d)?
        } else {
            v.checked_add(d)?
        };
    }
    Some(v)
}

/// Parses a decimal u64 with the same strictness as [`parse_i64`] (no sign at all).
pub fn parse_u64(s: &[u8]) -> Option<u64> {
    match s.first() {
        None => return None,
        Some(b'0') if s.len() > 1 => return None,
        _ => {}
    }
    let mut v: u64 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(v)
}

/// The arguments of one parsed command: slices of the parsed buffer, no copies.
#[derive(Debug, Clone, Copy)]
pub struct RespArgs<'a, 'p> {
    buf: &'a [u8],
    ranges: &'p [Range<usize>],
}

impl<'a> RespArgs<'a, '_> {
    /// Number of arguments, the command name included.
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    /// Whether there are no arguments.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Argument `i` (0 is the command name).
    pub fn get(&self, i: usize) -> Option<&'a [u8]> {
        self.ranges
            .get(i)
            .and_then(|r| self.buf.get(r.start..r.end))
    }

    /// All arguments in order.
    pub fn iter(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
        let buf = self.buf;
        self.ranges
            .iter()
            .map(move |r| buf.get(r.start..r.end).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(input: &[u8]) -> Result<Vec<Vec<Vec<u8>>>, RespError> {
        let l = Limits::default();
        let mut p = RespParser::new();
        let mut buf = input;
        let mut cmds = Vec::new();
        while let Some(n) = p.parse(buf, &l)? {
            cmds.push(p.args(buf).iter().map(<[u8]>::to_vec).collect());
            buf = &buf[n..];
        }
        Ok(cmds)
    }

    fn strs(v: &[&str]) -> Vec<Vec<u8>> {
        v.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    #[test]
    fn multibulk_and_inline() {
        let cmds =
            parse_all(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\nPING\r\n  set  a   b \r\n*0\r\n\r\nQUIT\n")
                .unwrap();
        assert_eq!(
            cmds,
            vec![
                strs(&["GET", "k"]),
                strs(&["PING"]),
                strs(&["set", "a", "b"]),
                strs(&["QUIT"])
            ]
        );
    }

    #[test]
    fn binary_bulk_with_crlf_inside() {
        let cmds = parse_all(b"*2\r\n$3\r\nGET\r\n$4\r\na\r\nb\r\n").unwrap();
        assert_eq!(cmds, vec![vec![b"GET".to_vec(), b"a\r\nb".to_vec()]]);
        let cmds = parse_all(b"*1\r\n$0\r\n\r\n").unwrap();
        assert_eq!(cmds, vec![vec![Vec::new()]]);
    }

    #[test]
    fn needs_more_at_every_cut() {
        let l = Limits::default();
        let input = b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n";
        for cut in 0..input.len() {
            let mut p = RespParser::new();
            assert_eq!(p.parse(&input[..cut], &l), Ok(None), "cut {cut}");
            assert_eq!(p.parse(input, &l), Ok(Some(input.len())));
            let args: Vec<_> = p.args(input).iter().collect();
            assert_eq!(args, vec![&b"SET"[..], b"key", b"value"]);
        }
    }

    #[test]
    fn byte_at_a_time_resumes() {
        let l = Limits::default();
        let input = b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n";
        let mut p = RespParser::new();
        for cut in 0..input.len() {
            assert_eq!(p.parse(&input[..cut], &l), Ok(None));
        }
        assert_eq!(p.parse(input, &l), Ok(Some(input.len())));
        assert_eq!(p.args(input).len(), 3);
    }

    #[test]
    fn malformed_inputs() {
        let l = Limits::default();
        let err = |b: &[u8]| RespParser::new().parse(b, &l).unwrap_err();
        assert_eq!(err(b"*x\r\n"), RespError::InvalidMultibulkLength);
        assert_eq!(err(b"*1\r\n$x\r\n"), RespError::InvalidBulkLength);
        assert_eq!(err(b"*1\r\n$-1\r\n"), RespError::InvalidBulkLength);
        assert_eq!(err(b"*1\r\n:1\r\n"), RespError::ExpectedBulk(b':'));
        assert_eq!(err(b"*1\r\n$1\r\nab\r\n"), RespError::MissingCrlf);
        assert_eq!(err(b"*1\rX"), RespError::InvalidMultibulkLength);
        assert_eq!(
            err(b"*9999999999\r\n"),
            RespError::TooManyArgs {
                len: 9_999_999_999,
                max: l.max_args
            }
        );
        assert_eq!(
            err(b"*1\r\n$99999999999\r\n"),
            RespError::BulkTooLarge {
                len: 99_999_999_999,
                max: l.max_bulk()
            }
        );
        assert_eq!(
            err(b"*1\r\n$99999999999999999999999\r\n"),
            RespError::InvalidBulkLength
        );
        assert_eq!(err(&[b'a'; MAX_INLINE + 2]), RespError::InlineTooLong);
        assert_eq!(err(&[b'\n'; MAX_INLINE + 2]), RespError::InlineTooLong);
        let mut long = vec![b'a'; MAX_INLINE + 1];
        long.push(b'\n');
        assert_eq!(err(&long), RespError::InlineTooLong);
    }

    #[test]
    fn length_line_bound_is_the_same_whatever_the_chunking() {
        // Found by fuzzing: a CR at the very edge of the length-line window.
        let l = Limits::default();
        for digits in 18..24 {
            let mut input = b"*".to_vec();
            input.extend(vec![b'1'; digits]);
            input.extend_from_slice(b"\r\n$3\r\nGET\r\n");
            let whole = RespParser::new().parse(&input, &l);
            assert!(whole.is_err(), "{digits} digits: {whole:?}");
            for cut in 0..input.len() {
                let mut p = RespParser::new();
                match p.parse(&input[..cut], &l) {
                    Ok(None) => assert_eq!(p.parse(&input, &l), whole),
                    other => assert_eq!(other, whole),
                }
            }
        }
    }

    #[test]
    fn request_over_max_frame_is_rejected_early() {
        let l = Limits {
            max_frame: 20,
            ..Limits::default()
        };
        let mut p = RespParser::new();
        assert_eq!(
            p.parse(b"*2\r\n$3\r\nSET\r\n$10\r\n", &l),
            Err(RespError::RequestTooLarge { max: 20 })
        );
    }

    #[test]
    fn huge_count_does_not_preallocate() {
        let l = Limits::default();
        let mut p = RespParser::new();
        assert_eq!(p.parse(b"*1048576\r\n", &l), Ok(None));
        assert!(p.args.capacity() <= 64);
    }

    #[test]
    fn integers_are_strict() {
        assert_eq!(parse_i64(b"0"), Some(0));
        assert_eq!(parse_i64(b"-12"), Some(-12));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [
            &b""[..],
            b"-",
            b"+1",
            b"01",
            b"-0",
            b" 1",
            b"1 ",
            b"9223372036854775808",
        ] {
            assert_eq!(parse_i64(bad), None, "{bad:?}");
        }
        assert_eq!(parse_u64(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_u64(b"-1"), None);
        assert_eq!(parse_u64(b"18446744073709551616"), None);
    }
}
