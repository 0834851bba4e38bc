//! Raw-socket helpers for the bad-input tests (bad_input_frames, bad_input_resp, bad_clients):
//! connections with timeouts, reading until the server closes, hand-built native frames, and
//! checks that a node still serves the keys written before the abuse.
#![allow(dead_code)]

use std::io::{ErrorKind as IoKind, Read};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use ringcache_proto::{
    decode_response, encode_request, Command, ErrorKind, Header, Limits, Response, FLAG_RESPONSE,
    HEADER_LEN,
};

use super::{resp_command, Node};

pub const MIB: u64 = 1 << 20;

/// A connection to `port` with 5 s read and write timeouts.
pub fn connect_to(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connect to node");
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    s.set_write_timeout(Some(Duration::from_secs(5))).ok();
    s
}

/// The main port followed by every core port.
pub fn all_ports(node: &Node) -> Vec<u16> {
    std::iter::once(node.port)
        .chain(node.core_ports.iter().copied())
        .collect()
}

/// What reading a connection until the server closed it found.
pub struct Drained {
    /// The first bytes read (at most `KEEP`).
    pub bytes: Vec<u8>,
    /// Every byte read.
    pub total: u64,
    /// Whether the server closed the connection (EOF or reset) before the deadline.
    pub closed: bool,
}

const KEEP: usize = 1 << 20;

/// Reads until the server closes the connection, for at most `deadline`.
pub fn drain(conn: &mut TcpStream, deadline: Duration) -> Drained {
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

/// One native request frame.
pub fn native(cmd: &Command<'_>, request_id: u64) -> Vec<u8> {
    let mut out = Default::default();
    encode_request(&mut out, request_id, 0, cmd).expect("encode request");
    out.to_vec()
}

/// A native header with any opcode and announced body length.
pub fn raw_header(opcode: u8, request_id: u64, body_len: u32) -> [u8; HEADER_LEN] {
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
pub fn reply_limits() -> Limits {
    Limits {
        max_frame: 64 << 20,
        ..Limits::default()
    }
}

/// Splits `bytes` into native response frames (a trailing partial frame is ignored).
pub fn frames(bytes: &[u8]) -> Vec<(Header, Vec<u8>)> {
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
pub fn read_frame(conn: &mut TcpStream) -> (Header, Vec<u8>) {
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
pub fn error_kind(h: &Header, body: &[u8]) -> ErrorKind {
    assert!(h.flags & FLAG_RESPONSE != 0, "not a response frame: {h:?}");
    match decode_response(h, body, &reply_limits()) {
        Ok(Response::Error { kind, .. }) => kind,
        other => panic!("expected an error frame, got {other:?}"),
    }
}

/// Writes `n` keys through the main port and returns them with their values.
pub fn write_keys(node: &Node, n: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
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
pub fn assert_serving(node: &mut Node, port: u16, keys: &[(Vec<u8>, Vec<u8>)], after: &str) {
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
pub fn assert_serving_main(node: &mut Node, keys: &[(Vec<u8>, Vec<u8>)], after: &str) {
    let port = node.port;
    assert_serving(node, port, keys, after);
}
