//! Robustness of a real node against bad input and bad clients: random bytes, truncated and
//! oversized frames, absurd RESP lengths, clients that never read their replies, garbage after
//! valid commands, wrong-type commands, too many connections and idle connections.
//!
//! Every test ends by checking that the node process is still running, and every read has a
//! timeout and every wait a deadline, so a server hang fails a test instead of stalling it.

// `common::read_line` (shared, not ours to change) trips this lint.
mod common;

use std::io::{ErrorKind as IoKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use common::{parse_stats, resp_command, wait_until, Node};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use ringcache_proto::{
    decode_response, encode_request, Command, ErrorKind, Header, Limits, ReplyCode, Response,
    FLAG_RESPONSE, HEADER_LEN,
};

const MIB: u64 = 1 << 20;

/// A connection to `port` with 5 s read and write timeouts.
fn connect_to(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connect to node");
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    s.set_write_timeout(Some(Duration::from_secs(5))).ok();
    s
}

/// The main port followed by every core port.
fn all_ports(node: &Node) -> Vec<u16> {
    std::iter::once(node.port)
        .chain(node.core_ports.iter().copied())
        .collect()
}

/// What reading a connection until the server closed it found.
struct Drained {
    /// The first bytes read (at most `KEEP`).
    bytes: Vec<u8>,
    /// Every byte read.
    total: u64,
    /// Whether the server closed the connection (EOF or reset) before the deadline.
    closed: bool,
}

const KEEP: usize = 1 << 20;

/// Reads until the server closes the connection, for at most `deadline`.
fn drain(conn: &mut TcpStream, deadline: Duration) -> Drained {
    let end = Instant::now() + deadline;
    let mut d = Drained {
        bytes: Vec::new(),
        total: 0,
        closed: false,
    };
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return d;
        }
        conn.set_read_timeout(Some(left.min(Duration::from_millis(500))))
            .ok();
        match conn.read(&mut buf) {
            Ok(0) => {
                d.closed = true;
                return d;
            }
            Ok(n) => {
                d.total += n as u64;
                let room = KEEP.saturating_sub(d.bytes.len()).min(n);
                d.bytes.extend_from_slice(&buf[..room]);
            }
            Err(e) if matches!(e.kind(), IoKind::WouldBlock | IoKind::TimedOut) => {}
            Err(e) if e.kind() == IoKind::Interrupted => {}
            Err(_) => {
                // Reset or aborted: the server closed without reading everything we sent.
                d.closed = true;
                return d;
            }
        }
    }
}

/// Writes `data` in chunks of random size (to vary how it is split into reads), stopping at
/// the first error: the server may close the connection part way.
fn write_chunked(conn: &mut TcpStream, data: &[u8], rng: &mut StdRng) {
    let mut at = 0;
    while at < data.len() {
        let n = rng.gen_range(1..=2048).min(data.len() - at);
        if conn.write_all(&data[at..at + n]).is_err() {
            return;
        }
        at += n;
    }
}

/// One native request frame.
fn native(cmd: &Command<'_>, request_id: u64) -> Vec<u8> {
    let mut out = Default::default();
    encode_request(&mut out, request_id, 0, cmd).expect("encode request");
    out.to_vec()
}

/// A native header with any opcode and announced body length.
fn raw_header(opcode: u8, request_id: u64, body_len: u32) -> [u8; HEADER_LEN] {
    Header {
        version: ringcache_proto::VERSION,
        opcode,
        flags: 0,
        request_id,
        epoch: 0,
        body_len,
    }
    .to_bytes()
}

/// Limits wide enough to decode any reply a node sends.
fn reply_limits() -> Limits {
    Limits {
        max_frame: 64 << 20,
        ..Limits::default()
    }
}

/// Splits `bytes` into native response frames (a trailing partial frame is ignored).
fn frames(bytes: &[u8]) -> Vec<(Header, Vec<u8>)> {
    let limits = reply_limits();
    let mut out = Vec::new();
    let mut at = 0;
    while let Ok(Some(h)) = Header::decode(&bytes[at..], &limits) {
        let end = at + h.frame_len();
        let Some(body) = bytes.get(at + HEADER_LEN..end) else {
            break;
        };
        out.push((h, body.to_vec()));
        at = end;
    }
    out
}

/// Reads one native response frame (5 s timeout).
fn read_frame(conn: &mut TcpStream) -> (Header, Vec<u8>) {
    conn.set_read_timeout(Some(Duration::from_secs(5))).ok();
    let mut head = [0u8; HEADER_LEN];
    conn.read_exact(&mut head)
        .expect("a native reply header within 5 s");
    let h = Header::decode(&head, &reply_limits())
        .expect("a valid reply header")
        .expect("a whole header");
    let mut body = vec![0u8; h.body_len as usize];
    conn.read_exact(&mut body).expect("a native reply body");
    (h, body)
}

/// The error kind of an error reply frame; fails the test for any other frame.
fn error_kind(h: &Header, body: &[u8]) -> ErrorKind {
    assert!(h.flags & FLAG_RESPONSE != 0, "not a response frame: {h:?}");
    match decode_response(h, body, &reply_limits()) {
        Ok(Response::Error { kind, .. }) => kind,
        other => panic!("expected an error frame, got {other:?}"),
    }
}

/// Writes `n` keys through the main port and returns them with their values.
fn write_keys(node: &Node, n: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut c = node.connect();
    let keys: Vec<(Vec<u8>, Vec<u8>)> = (0..n)
        .map(|i| {
            (
                format!("intact:{i:04}").into_bytes(),
                format!("value-{i}-{}", "x".repeat(i % 37)).into_bytes(),
            )
        })
        .collect();
    for (k, v) in &keys {
        let reply = node.roundtrip(&mut c, &resp_command(&[b"SET", k, v]));
        assert_eq!(reply, b"+OK\r\n");
    }
    keys
}

/// A fresh connection to `port` answers PING and reads back every key as written.
fn assert_serving(node: &mut Node, port: u16, keys: &[(Vec<u8>, Vec<u8>)], after: &str) {
    assert!(
        node.is_running(),
        "node exited after {after}; log:\n{}",
        node.log_text()
    );
    let mut c = connect_to(port);
    let pong = node.roundtrip(&mut c, b"*1\r\n$4\r\nPING\r\n");
    assert_eq!(
        String::from_utf8_lossy(&pong),
        "+PONG\r\n",
        "PING on port {port} after {after}"
    );
    let mut mget: Vec<&[u8]> = vec![b"MGET"];
    mget.extend(keys.iter().map(|(k, _)| k.as_slice()));
    let mut want = format!("*{}\r\n", keys.len()).into_bytes();
    for (_, v) in keys {
        want.extend_from_slice(format!("${}\r\n", v.len()).as_bytes());
        want.extend_from_slice(v);
        want.extend_from_slice(b"\r\n");
    }
    let got = node.roundtrip(&mut c, &resp_command(&mget));
    assert!(
        got == want,
        "keys changed after {after} (port {port}): got {:?}",
        String::from_utf8_lossy(&got[..got.len().min(300)])
    );
}

/// [`assert_serving`] on the main port.
fn assert_serving_main(node: &mut Node, keys: &[(Vec<u8>, Vec<u8>)], after: &str) {
    let port = node.port;
    assert_serving(node, port, keys, after);
}

#[derive(Debug, Clone, Copy)]
enum Noise {
    /// Uniformly random bytes.
    Raw,
    /// RESP-shaped: array and bulk headers with odd lengths, command names, CRLFs, junk.
    RespLike,
    /// Native-shaped: valid frames and headers with random opcodes, lengths and bodies.
    NativeLike,
}

/// Native opcodes the noise may use: everything but FLUSH and INVALIDATE (0x0e..=0x10), which
/// could legitimately drop the keys whose survival the test checks.
fn noise_opcode(rng: &mut StdRng) -> u8 {
    loop {
        let op = rng.gen_range(0u8..=0x20);
        if !(0x0e..=0x10).contains(&op) {
            return op;
        }
    }
}

fn noise(rng: &mut StdRng, kind: Noise, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 512);
    match kind {
        Noise::Raw => {
            out.resize(len, 0);
            rng.fill(&mut out[..]);
        }
        Noise::RespLike => {
            const WORDS: &[&[u8]] = &[
                b"PING", b"GET", b"SET", b"INCR", b"MGET", b"MSET", b"EXISTS", b"TTL", b"EX",
                b"PX", b"NX", b"HELLO", b"fuzz:k", b"\r\n", b"\r\n", b" ", b"\n", b"\r",
            ];
            out.extend_from_slice(b"*");
            while out.len() < len {
                match rng.gen_range(0..6) {
                    0 | 1 => {
                        out.extend_from_slice(if rng.gen() { b"*" } else { b"$" });
                        let n: String = match rng.gen_range(0..8) {
                            0 => "-1".into(),
                            1 => format!("-{}", rng.gen_range(2..100)),
                            2 => rng.gen::<u64>().to_string(),
                            3 => "abc".into(),
                            4 => String::new(),
                            _ => rng.gen_range(0..64).to_string(),
                        };
                        out.extend_from_slice(n.as_bytes());
                        out.extend_from_slice(b"\r\n");
                    }
                    2 | 3 => out.extend_from_slice(WORDS[rng.gen_range(0..WORDS.len())]),
                    4 => {
                        let n = rng.gen_range(1..32);
                        out.extend((0..n).map(|_| rng.gen::<u8>()));
                    }
                    _ => {
                        let n = rng.gen_range(0..20);
                        out.extend((0..n).map(|_| rng.gen_range(b'a'..=b'z')));
                    }
                }
            }
        }
        Noise::NativeLike => {
            while out.len() < len {
                match rng.gen_range(0..5) {
                    0 => {
                        let key = format!("fuzz:{}", rng.gen_range(0..1000));
                        let cmd = match rng.gen_range(0..3) {
                            0 => Command::Ping { msg: None },
                            1 => Command::Get {
                                key: key.as_bytes(),
                            },
                            _ => Command::Exists {
                                keys: vec![key.as_bytes()],
                            },
                        };
                        out.extend_from_slice(&native(&cmd, rng.gen()));
                    }
                    1..=3 => {
                        let body_len = rng.gen_range(0..200usize);
                        let announced = if rng.gen_range(0..8) == 0 {
                            rng.gen::<u32>()
                        } else {
                            body_len as u32
                        };
                        let mut h = raw_header(noise_opcode(rng), rng.gen(), announced);
                        if rng.gen_range(0..10) == 0 {
                            h[2] = rng.gen();
                        }
                        if rng.gen_range(0..10) == 0 {
                            h[4..8].copy_from_slice(&rng.gen::<[u8; 4]>());
                        }
                        out.extend_from_slice(&h);
                        out.extend((0..body_len).map(|_| rng.gen::<u8>()));
                    }
                    _ => {
                        let n = rng.gen_range(1..24);
                        out.extend((0..n).map(|_| rng.gen::<u8>()));
                    }
                }
            }
            // The stream must be recognised as native: start it with a valid frame.
            let mut framed = native(&Command::Ping { msg: None }, 1);
            framed.extend_from_slice(&out);
            out = framed;
        }
    }
    out
}

#[test]
fn random_bytes_on_main_and_core_ports_leave_the_node_serving() {
    let mut node = Node::start(2, &[]);
    let keys = write_keys(&node, 100);
    let base_rss = node.rss_bytes();
    let ports = all_ports(&node);
    for seed in 0..8u64 {
        for (pi, &port) in ports.iter().enumerate() {
            for (ki, kind) in [Noise::Raw, Noise::RespLike, Noise::NativeLike]
                .into_iter()
                .enumerate()
            {
                let what = format!("{kind:?} noise, seed {seed}, port {port}");
                let mut rng = StdRng::seed_from_u64(seed * 100 + pi as u64 * 10 + ki as u64);
                let data = noise(&mut rng, kind, 8 * 1024);
                let mut c = connect_to(port);
                write_chunked(&mut c, &data, &mut rng);
                // Hang up our side: whatever the server was waiting for will never come.
                let _ = c.shutdown(Shutdown::Write);
                let d = drain(&mut c, Duration::from_secs(10));
                assert!(
                    d.closed,
                    "{what}: the server did not close the connection within 10 s of our EOF \
                     ({} reply bytes)",
                    d.total
                );
                assert_serving(&mut node, port, &keys, &what);
                if port != node.port {
                    assert_serving_main(&mut node, &keys, &what);
                }
            }
        }
    }
    let rss = node.rss_bytes();
    assert!(
        rss < base_rss + 64 * MIB,
        "RSS grew from {base_rss} to {rss} bytes on 8 KiB inputs"
    );
    assert!(node.is_running());
}

#[test]
fn truncated_frames_then_close_leave_the_node_serving() {
    let mut node = Node::start(2, &[]);
    let keys = write_keys(&node, 50);
    let set = native(
        &Command::Set {
            key: b"intact:0000",
            value: b"overwritten",
            expiry: ringcache_proto::Expiry::None,
            cond: ringcache_proto::SetCond::Always,
            if_version: None,
            tags: Vec::new(),
            get_version: false,
        },
        7,
    );
    let mut half_body = raw_header(0x03, 9, 100).to_vec();
    half_body.extend_from_slice(&[0u8; 10]);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "half a native header",
            raw_header(0x0d, 1, 0)[..12].to_vec(),
        ),
        ("magic only", b"RC".to_vec()),
        ("one magic byte", b"R".to_vec()),
        (
            "native header promising a body, then EOF",
            raw_header(0x03, 2, 1000).to_vec(),
        ),
        ("native header and part of its body", half_body),
        (
            "native SET missing its last byte",
            set[..set.len() - 1].to_vec(),
        ),
        (
            "RESP SET cut inside the value",
            b"*3\r\n$3\r\nSET\r\n$11\r\nintact:0000\r\n$10\r\nabc".to_vec(),
        ),
        (
            "RESP cut inside a length line",
            b"*3\r\n$3\r\nSET\r\n$1".to_vec(),
        ),
        ("RESP cut after the array header", b"*2\r\n".to_vec()),
        (
            "RESP value without its CRLF",
            b"*2\r\n$4\r\nPING\r\n$2\r\nhi".to_vec(),
        ),
        (
            "inline command without newline",
            b"SET intact:0000 gone".to_vec(),
        ),
    ];
    for (what, data) in &cases {
        for &port in &all_ports(&node) {
            let mut c = connect_to(port);
            c.write_all(data).expect("write");
            let _ = c.shutdown(Shutdown::Write);
            let d = drain(&mut c, Duration::from_secs(10));
            assert!(d.closed, "{what} on port {port}: not closed after EOF");
            assert!(
                d.bytes.is_empty(),
                "{what} on port {port}: a partial request was answered: {:?}",
                String::from_utf8_lossy(&d.bytes)
            );
            assert_serving(&mut node, port, &keys, what);
        }
    }
    // A truncated request left open only stalls its own connection.
    let mut stuck = connect_to(node.port);
    stuck
        .write_all(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$100\r\nabc")
        .expect("write");
    let mut stuck_native = connect_to(node.core_ports[0]);
    stuck_native
        .write_all(&raw_header(0x03, 3, 1000))
        .expect("write");
    assert_serving_main(&mut node, &keys, "truncated requests left open");
    let core1 = node.core_ports[1];
    assert_serving(&mut node, core1, &keys, "truncated requests left open");
    drop(stuck);
    drop(stuck_native);
    assert_serving_main(&mut node, &keys, "closing the truncated requests");
    assert!(node.is_running());
}

#[test]
fn oversized_native_frames_get_an_error_frame_and_close() {
    let mut node = Node::start(1, &["--max-value", "1m"]);
    let keys = write_keys(&node, 20);
    let max_frame = (1u32 << 20) + (64 << 10) + 4096;
    let mut ping_then_big = native(&Command::Ping { msg: None }, 5);
    ping_then_big.extend_from_slice(&raw_header(0x03, 6, 3 << 20));
    let cases: Vec<(&str, Vec<u8>, usize)> = vec![
        ("body of 2 MiB", raw_header(0x03, 1, 2 << 20).to_vec(), 0),
        (
            "body one byte over the frame limit",
            raw_header(0x03, 2, max_frame + 1).to_vec(),
            0,
        ),
        (
            "body of u32::MAX",
            raw_header(0x01, 3, u32::MAX).to_vec(),
            0,
        ),
        (
            "unknown opcode and huge body",
            raw_header(0x7f, 4, u32::MAX).to_vec(),
            0,
        ),
        ("PING, then a 3 MiB body", ping_then_big, 1),
    ];
    for (what, data, pongs) in &cases {
        for &port in &all_ports(&node) {
            let mut c = connect_to(port);
            c.write_all(data).expect("write");
            // Our side stays open: the server itself must answer and close, not wait for a
            // body that it will refuse anyway.
            let d = drain(&mut c, Duration::from_secs(5));
            assert!(
                d.closed,
                "{what} on port {port}: connection not closed within 5 s (got {} bytes)",
                d.total
            );
            let got = frames(&d.bytes);
            assert_eq!(
                got.len(),
                pongs + 1,
                "{what} on port {port}: expected {pongs} PONG(s) and one error frame, got {got:?}"
            );
            for (h, _) in &got[..*pongs] {
                assert_eq!(h.opcode, u8::from(ReplyCode::Pong), "{what}: {h:?}");
            }
            let (h, body) = &got[*pongs];
            assert_eq!(
                error_kind(h, body),
                ErrorKind::TooLarge,
                "{what} on port {port}"
            );
            assert_serving(&mut node, port, &keys, what);
        }
    }
    // A frame under the frame limit whose value is over --max-value is refused too.
    let big = vec![b'v'; (1 << 20) + 1024];
    let set = native(
        &Command::Set {
            key: b"too-big",
            value: &big,
            expiry: ringcache_proto::Expiry::None,
            cond: ringcache_proto::SetCond::Always,
            if_version: None,
            tags: Vec::new(),
            get_version: false,
        },
        8,
    );
    assert!(set.len() < max_frame as usize);
    let mut c = connect_to(node.port);
    c.write_all(&set).expect("write");
    let (h, body) = read_frame(&mut c);
    assert_eq!(error_kind(&h, &body), ErrorKind::TooLarge);
    let mut c = node.connect();
    assert_eq!(
        node.roundtrip(&mut c, &resp_command(&[b"EXISTS", b"too-big"])),
        b":0\r\n"
    );
    assert_serving_main(&mut node, &keys, "an over-limit value");
    assert!(node.is_running());
}

/// What a bad RESP input must get.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// One `-ERR` line, then the server closes the connection.
    ErrorThenClose,
    /// Either that, or the input is skipped as Redis does and the PING after it answered.
    ErrorThenCloseOrPong,
    /// An error line for this request (e.g. an unknown inline command); the connection may
    /// go on (then the PING after it is answered) or be closed.
    Error,
}

#[test]
fn huge_and_invalid_resp_lengths_get_an_error_and_close_without_memory_growth() {
    let mut node = Node::start(2, &["--max-value", "1m"]);
    let keys = write_keys(&node, 20);
    let mut over_value = b"*3\r\n$3\r\nSET\r\n$8\r\ntoo-big!\r\n$1049000\r\n".to_vec();
    over_value.extend(std::iter::repeat_n(b'v', 1_049_000));
    over_value.extend_from_slice(b"\r\n");
    let cases: Vec<(&str, Vec<u8>, Expect)> = vec![
        (
            "*99999999999",
            b"*99999999999\r\n".to_vec(),
            Expect::ErrorThenClose,
        ),
        (
            "*<max args + 1>",
            b"*1048577\r\n".to_vec(),
            Expect::ErrorThenClose,
        ),
        (
            "*<i64 overflow>",
            b"*99999999999999999999999\r\n".to_vec(),
            Expect::ErrorThenClose,
        ),
        (
            "$9999999999 in an array",
            b"*1\r\n$9999999999\r\n".to_vec(),
            Expect::ErrorThenClose,
        ),
        (
            "$<u64 max> in an array",
            b"*2\r\n$3\r\nGET\r\n$18446744073709551615\r\n".to_vec(),
            Expect::ErrorThenClose,
        ),
        (
            "$-5 in an array",
            b"*2\r\n$3\r\nGET\r\n$-5\r\n".to_vec(),
            Expect::ErrorThenClose,
        ),
        ("*abc", b"*abc\r\n".to_vec(), Expect::ErrorThenClose),
        (
            "* with no digits",
            b"*\r\n".to_vec(),
            Expect::ErrorThenClose,
        ),
        (
            "*1x",
            b"*1x\r\n$4\r\nPING\r\n".to_vec(),
            Expect::ErrorThenClose,
        ),
        ("$xyz", b"*1\r\n$xyz\r\n".to_vec(), Expect::ErrorThenClose),
        (
            "$ with no digits",
            b"*1\r\n$\r\n".to_vec(),
            Expect::ErrorThenClose,
        ),
        (
            "length line that never ends",
            [b"*".as_slice(), &[b'9'; 200]].concat(),
            Expect::ErrorThenClose,
        ),
        (
            "bulk without CRLF",
            b"*1\r\n$2\r\nabcd\r\n".to_vec(),
            Expect::ErrorThenClose,
        ),
        (
            "integer inside a request",
            b"*2\r\n:1\r\n".to_vec(),
            Expect::ErrorThenClose,
        ),
        (
            "bulk longer than --max-value (header only)",
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2000000\r\n".to_vec(),
            Expect::ErrorThenClose,
        ),
        (
            "bulk longer than --max-value (whole)",
            over_value,
            Expect::ErrorThenClose,
        ),
        (
            "*-5",
            b"*-5\r\n*1\r\n$4\r\nPING\r\n".to_vec(),
            Expect::ErrorThenCloseOrPong,
        ),
        (
            "$9999999999 as an inline command",
            b"$9999999999\r\n*1\r\n$4\r\nPING\r\n".to_vec(),
            Expect::Error,
        ),
    ];
    let base_rss = node.rss_bytes();
    let mut max_rss = base_rss;
    for round in 0..5 {
        for (what, data, expect) in &cases {
            for &port in &all_ports(&node) {
                let what = format!("{what} (port {port}, round {round})");
                let mut c = connect_to(port);
                // The server may close before taking everything: a failed write is fine.
                let _ = c.write_all(data);
                if *expect != Expect::ErrorThenClose {
                    // The connection may go on: end it from our side once all is answered.
                    let _ = c.shutdown(Shutdown::Write);
                }
                let d = drain(&mut c, Duration::from_secs(5));
                let text = String::from_utf8_lossy(&d.bytes).into_owned();
                let lines: Vec<&str> = text.split_terminator("\r\n").collect();
                let is_err = lines.first().is_some_and(|l| l.starts_with("-ERR"));
                match expect {
                    Expect::ErrorThenClose => {
                        assert!(d.closed, "{what}: not closed within 5 s; got {text:?}");
                        assert!(is_err && lines.len() == 1, "{what}: got {text:?}");
                    }
                    Expect::ErrorThenCloseOrPong => {
                        let skipped = lines == ["+PONG"];
                        assert!(
                            (is_err && lines.len() == 1 && d.closed) || skipped,
                            "{what}: got {text:?} (closed: {})",
                            d.closed
                        );
                    }
                    Expect::Error => {
                        assert!(
                            is_err && (lines.len() == 1 || lines[1..] == ["+PONG"]),
                            "{what}: got {text:?}"
                        );
                    }
                }
                max_rss = max_rss.max(node.rss_bytes());
                assert!(
                    node.is_running(),
                    "node exited after {what}; log:\n{}",
                    node.log_text()
                );
            }
        }
    }
    assert!(
        max_rss < base_rss + 64 * MIB,
        "RSS grew from {base_rss} to {max_rss} bytes on absurd lengths"
    );
    let mut c = node.connect();
    assert_eq!(
        node.roundtrip(&mut c, &resp_command(&[b"EXISTS", b"too-big!", b"k"])),
        b":0\r\n"
    );
    assert_serving_main(&mut node, &keys, "absurd RESP lengths");
    assert!(node.is_running());
}

/// Redis answers `-ERR Protocol error: ...`; a doubled prefix shows in every client as
/// "ERR ERR Protocol error".
#[test]
fn resp_protocol_errors_have_a_single_err_prefix() {
    let mut node = Node::start(1, &[]);
    for (input, want) in [
        (
            &b"*abc\r\n"[..],
            "-ERR Protocol error: invalid multibulk length\r\n",
        ),
        (
            b"*1\r\n$xyz\r\n",
            "-ERR Protocol error: invalid bulk length\r\n",
        ),
    ] {
        let mut c = node.connect();
        c.write_all(input).expect("write");
        let d = drain(&mut c, Duration::from_secs(5));
        assert_eq!(String::from_utf8_lossy(&d.bytes), want);
    }
    assert!(node.is_running());
}

/// A socket whose receive buffer is `bytes` (set before connecting, so the advertised window
/// is small from the start).
fn connect_small_rcvbuf(port: u16, bytes: i32) -> TcpStream {
    use std::os::fd::FromRawFd;
    // SAFETY: plain socket calls on a descriptor we own; the structs outlive the calls, and
    // the descriptor is handed to TcpStream, which closes it.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let rc = libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&bytes as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        );
        assert_eq!(rc, 0, "SO_RCVBUF: {}", std::io::Error::last_os_error());
        let addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes([127, 0, 0, 1]),
            },
            sin_zero: [0; 8],
        };
        let rc = libc::connect(
            fd,
            (&addr as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            libc::close(fd);
            panic!("connect: {e}");
        }
        TcpStream::from_raw_fd(fd)
    }
}

#[test]
fn a_client_that_never_reads_stalls_only_itself_and_is_dropped() {
    let mut node = Node::start(1, &["--write-timeout", "2"]);
    let keys = write_keys(&node, 20);
    let value = vec![b'x'; 512 * 1024];
    let mut c = node.connect();
    assert_eq!(
        node.roundtrip(&mut c, &resp_command(&[b"SET", b"big", &value])),
        b"+OK\r\n"
    );
    drop(c);
    let base_rss = node.rss_bytes();

    // 2000 GETs of 512 KiB each (1000 MiB of replies), never read.
    let mut stuck = connect_small_rcvbuf(node.port, 4096);
    stuck.set_write_timeout(Some(Duration::from_secs(5))).ok();
    let get = resp_command(&[b"GET", b"big"]);
    let pipeline: Vec<u8> = get.repeat(2000);
    // 44 KB: fits in the socket buffers even once the server stops reading.
    stuck
        .write_all(&pipeline)
        .expect("send the pipeline of GETs");
    let stuck_at = Instant::now();

    // Meanwhile, another client on the same (only) core is served promptly.
    let mut other = node.connect();
    other.set_read_timeout(Some(Duration::from_secs(2))).ok();
    let mut max_rss = base_rss;
    let mut slowest = Duration::ZERO;
    for i in 0..50 {
        let t = Instant::now();
        let k = format!("other:{i}");
        let v = format!("v{i}");
        assert_eq!(
            node.roundtrip(
                &mut other,
                &resp_command(&[b"SET", k.as_bytes(), v.as_bytes()])
            ),
            b"+OK\r\n",
            "SET {i} while a client is stuck"
        );
        let want = format!("${}\r\n{v}\r\n", v.len());
        assert_eq!(
            node.roundtrip(&mut other, &resp_command(&[b"GET", k.as_bytes()])),
            want.as_bytes(),
            "GET {i} while a client is stuck"
        );
        slowest = slowest.max(t.elapsed());
        max_rss = max_rss.max(node.rss_bytes());
    }
    assert!(
        slowest < Duration::from_secs(1),
        "a round trip took {slowest:?} while another client was stuck"
    );

    // The write timeout drops the stuck connection: only `other` is left.
    let mut conns = u64::MAX;
    let dropped = wait_until(Duration::from_secs(20), || {
        let stats = parse_stats(&node.roundtrip(&mut other, b"*1\r\n$5\r\nSTATS\r\n"));
        conns = stats.get("core0.connections").copied().unwrap_or(u64::MAX);
        max_rss = max_rss.max(node.rss_bytes());
        conns == 1
    });
    let dropped_after = stuck_at.elapsed();
    assert!(
        dropped,
        "stuck connection still open {dropped_after:?} after it stopped reading \
         ({conns} connections)"
    );
    assert!(
        max_rss < base_rss + 200 * MIB,
        "RSS grew from {base_rss} to {max_rss} bytes while replies were pending"
    );
    // The stuck client sees its connection end after a bounded part of the replies.
    let d = drain(&mut stuck, Duration::from_secs(30));
    eprintln!(
        "stuck client dropped after {dropped_after:?}; it then read {} bytes; RSS {base_rss} -> \
         max {max_rss}; slowest round trip of the other client {slowest:?}",
        d.total
    );
    assert!(d.closed, "stuck client: no EOF after {} bytes", d.total);
    assert!(
        d.total < 200 * MIB,
        "stuck client received {} bytes after it was dropped",
        d.total
    );
    assert_serving_main(&mut node, &keys, "a stuck client");
    assert!(node.is_running());
}

#[test]
fn garbage_after_a_valid_command() {
    let mut node = Node::start(2, &[]);
    let keys = write_keys(&node, 20);

    // Framing garbage after a valid RESP command: the command is answered, then an error,
    // then the server closes.
    let mut c = node.connect();
    c.write_all(b"*1\r\n$4\r\nPING\r\n*1\r\n$xyz\r\nPING\r\n")
        .expect("write");
    let d = drain(&mut c, Duration::from_secs(5));
    let text = String::from_utf8_lossy(&d.bytes);
    assert!(d.closed, "not closed after framing garbage: {text:?}");
    assert!(
        text.starts_with("+PONG\r\n-ERR") && text.matches("\r\n").count() == 2,
        "got {text:?}"
    );

    // Garbage that frames as an inline command: an unknown-command error, and the
    // connection goes on, as with Redis.
    let mut c = node.connect();
    let set = resp_command(&[b"SET", b"g", b"kept"]);
    let mut input = set.clone();
    input.extend_from_slice(b"\x01\x02\xffgarbage here\r\n");
    c.write_all(&input).expect("write");
    assert_eq!(common::read_reply(&mut c), b"+OK\r\n");
    let err = common::read_reply(&mut c);
    assert!(err.starts_with(b"-ERR unknown command"), "{err:?}");
    assert_eq!(
        node.roundtrip(&mut c, &resp_command(&[b"GET", b"g"])),
        b"$4\r\nkept\r\n"
    );

    // Native: a valid PING, then bytes without the magic, then a header of an unknown
    // protocol version.
    for (tail, kind) in [
        (&b"XXgarbage-garbage-garbage"[..], ErrorKind::Malformed),
        (b"RC\x07\x0d\0\0\0\0\0\0\0\0", ErrorKind::Unsupported),
    ] {
        let mut c = connect_to(node.core_ports[1]);
        let mut input = native(&Command::Ping { msg: None }, 11);
        input.extend_from_slice(tail);
        c.write_all(&input).expect("write");
        let d = drain(&mut c, Duration::from_secs(5));
        assert!(d.closed, "not closed after native garbage {tail:?}");
        let got = frames(&d.bytes);
        assert_eq!(got.len(), 2, "expected PONG and an error frame: {got:?}");
        assert_eq!(got[0].0.opcode, u8::from(ReplyCode::Pong));
        assert_eq!(got[0].0.request_id, 11);
        assert_eq!(error_kind(&got[1].0, &got[1].1), kind, "after {tail:?}");
    }

    // Native: a well-framed request whose body does not decode gets an error frame.
    let mut c = connect_to(node.port);
    let mut input = native(&Command::Ping { msg: None }, 12);
    input.extend_from_slice(&raw_header(0x01, 13, 3));
    input.extend_from_slice(b"abc");
    c.write_all(&input).expect("write");
    let (h, _) = read_frame(&mut c);
    assert_eq!(h.opcode, u8::from(ReplyCode::Pong));
    let (h, body) = read_frame(&mut c);
    assert_eq!(error_kind(&h, &body), ErrorKind::Malformed);

    assert_serving_main(&mut node, &keys, "garbage after valid commands");
    assert!(node.is_running());
}

#[test]
fn wrong_type_gets_an_error_and_the_connection_continues() {
    let mut node = Node::start(2, &[]);
    let mut c = node.connect();
    let mut rt = |cmd: &[&[u8]]| {
        String::from_utf8_lossy(&node.roundtrip(&mut c, &resp_command(cmd))).into_owned()
    };
    assert_eq!(rt(&[b"SET", b"s", b"hello"]), "+OK\r\n");
    let e = rt(&[b"INCR", b"s"]);
    assert!(e.starts_with("-ERR") && e.contains("not an integer"), "{e}");
    let e = rt(&[b"DECR", b"s"]);
    assert!(e.starts_with("-ERR"), "{e}");
    assert_eq!(rt(&[b"GET", b"s"]), "$5\r\nhello\r\n");
    assert_eq!(rt(&[b"SET", b"max", b"9223372036854775807"]), "+OK\r\n");
    let e = rt(&[b"INCR", b"max"]);
    assert!(e.starts_with("-ERR"), "overflow: {e}");
    assert_eq!(rt(&[b"GET", b"max"]), "$19\r\n9223372036854775807\r\n");
    assert_eq!(rt(&[b"INCR", b"n"]), ":1\r\n");
    assert_eq!(rt(&[b"INCR", b"n"]), ":2\r\n");
    let e = rt(&[b"EXPIRE", b"n", b"soon"]);
    assert!(e.starts_with("-ERR"), "{e}");
    let e = rt(&[b"SET", b"n", b"1", b"EX", b"-1"]);
    assert!(e.starts_with("-ERR"), "{e}");
    let e = rt(&[b"GET"]);
    assert!(e.starts_with("-ERR wrong number of arguments"), "{e}");
    let e = rt(&[b"NOSUCHCOMMAND", b"x"]);
    assert!(e.starts_with("-ERR unknown command"), "{e}");
    assert_eq!(rt(&[b"PING"]), "+PONG\r\n");
    assert_eq!(rt(&[b"GET", b"n"]), "$1\r\n2\r\n");

    // The same over the native protocol: an error frame, and the connection goes on.
    let mut c = connect_to(node.core_ports[0]);
    c.write_all(&native(
        &Command::IncrBy {
            key: b"s",
            delta: 1,
        },
        21,
    ))
    .expect("write");
    let (h, body) = read_frame(&mut c);
    assert_eq!(h.request_id, 21);
    assert_eq!(error_kind(&h, &body), ErrorKind::NotInteger);
    c.write_all(&native(&Command::Get { key: b"s" }, 22))
        .expect("write");
    let (h, body) = read_frame(&mut c);
    assert_eq!(h.request_id, 22);
    match decode_response(&h, &body, &reply_limits()) {
        Ok(Response::Value { value, .. }) => assert_eq!(value, b"hello"),
        other => panic!("GET after a wrong-type INCR: {other:?}"),
    }
    assert!(node.is_running());
}

#[test]
fn max_connections_refuses_the_extra_client_and_keeps_the_others() {
    let mut node = Node::start(1, &["--max-connections", "4"]);
    let stats_cmd = b"*1\r\n$5\r\nSTATS\r\n";
    // The harness's readiness probes may still be counted: wait until only we are.
    let mut first = node.connect();
    let alone = wait_until(Duration::from_secs(10), || {
        let s = parse_stats(&node.roundtrip(&mut first, stats_cmd));
        s.get("core0.connections") == Some(&1)
    });
    assert!(alone, "readiness probes still counted after 10 s");
    let mut conns = vec![first];
    for _ in 1..4 {
        let mut c = node.connect();
        assert_eq!(node.roundtrip(&mut c, b"PING\r\n"), b"+PONG\r\n");
        conns.push(c);
    }
    // The fifth is refused: an error line and close, or just close.
    let mut fifth = node.connect();
    let _ = fifth.write_all(b"PING\r\n");
    let d = drain(&mut fifth, Duration::from_secs(5));
    let text = String::from_utf8_lossy(&d.bytes);
    assert!(d.closed, "fifth connection not closed: {text:?}");
    assert!(
        text.is_empty() || text == "-ERR max number of clients reached\r\n",
        "fifth connection got {text:?}"
    );
    // The four keep working.
    for (i, c) in conns.iter_mut().enumerate() {
        let k = format!("mc{i}");
        assert_eq!(
            node.roundtrip(c, &resp_command(&[b"SET", k.as_bytes(), b"v"])),
            b"+OK\r\n",
            "connection {i}"
        );
    }
    let s = parse_stats(&node.roundtrip(&mut conns[0], stats_cmd));
    assert!(
        s.get("core0.connections_rejected").copied().unwrap_or(0) >= 1,
        "{s:?}"
    );
    assert_eq!(s.get("core0.connections"), Some(&4), "{s:?}");
    // Once one leaves, a new client gets in.
    drop(conns.pop());
    let admitted = wait_until(Duration::from_secs(10), || {
        let mut c = node.connect();
        c.set_read_timeout(Some(Duration::from_secs(2))).ok();
        node.roundtrip(&mut c, b"PING\r\n") == b"+PONG\r\n"
    });
    assert!(admitted, "no new connection admitted after one closed");
    assert!(node.is_running());
}

#[test]
fn idle_connections_are_closed_by_the_server() {
    let mut node = Node::start(2, &["--idle-timeout", "1"]);
    let mut idle_main = node.connect();
    let mut idle_core = connect_to(node.core_ports[1]);
    let mut idle_native = connect_to(node.core_ports[0]);
    let mut never_used = node.connect();
    assert_eq!(node.roundtrip(&mut idle_main, b"PING\r\n"), b"+PONG\r\n");
    assert_eq!(node.roundtrip(&mut idle_core, b"PING\r\n"), b"+PONG\r\n");
    idle_native
        .write_all(&native(&Command::Ping { msg: None }, 1))
        .expect("write");
    assert_eq!(
        read_frame(&mut idle_native).0.opcode,
        u8::from(ReplyCode::Pong)
    );
    let started = Instant::now();
    // Meanwhile a connection that keeps talking (every 200 ms) stays open.
    let port = node.port;
    let busy = std::thread::spawn(move || {
        let mut c = connect_to(port);
        for i in 0..15 {
            c.write_all(b"PING\r\n").expect("busy write");
            let mut got = [0u8; 7];
            if c.read_exact(&mut got).is_err() || &got != b"+PONG\r\n" {
                return Err(format!("busy connection lost at ping {i}"));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(())
    });
    for (name, c) in [
        ("idle main", &mut idle_main),
        ("idle core", &mut idle_core),
        ("idle native", &mut idle_native),
        ("never used", &mut never_used),
    ] {
        // Bounded: the server must close every idle connection within 5 s.
        let left = Duration::from_secs(5).saturating_sub(started.elapsed());
        let d = drain(c, left + Duration::from_millis(100));
        assert!(
            d.closed,
            "{name}: not closed by the server after {:?} with --idle-timeout 1",
            started.elapsed()
        );
        assert_eq!(d.total, 0, "{name}: unexpected bytes");
    }
    busy.join().expect("busy thread").expect("busy connection");
    assert!(node.is_running());
}
