//! Robustness of a real node against malformed frames: random bytes (raw, RESP-shaped and
//! native-shaped), truncated requests, oversized native frames and garbage after a valid command.
//! Every test ends by checking that the node still runs and serves the keys written before.

mod common;

use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use common::raw::{
    all_ports, assert_serving, assert_serving_main, connect_to, drain, error_kind, frames, native,
    raw_header, read_frame, write_keys, MIB,
};
use common::{resp_command, Node};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use ringcache_proto::{Command, ErrorKind, ReplyCode};

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
