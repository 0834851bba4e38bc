//! Replication frames from strangers: a node that is not a replica of the named group (here a
//! standalone node), a garbled hello, operations without a hello, or a frame claiming a huge
//! body get the connection closed, never a panic, a hang or a change to the data.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::{resp_command, Node};
use ringcache_cluster::encode_body;
use ringcache_cluster::replication::{encode_op, ReplOp, StreamHello};
use ringcache_proto::control::encode_control;
use ringcache_proto::ReplFrame;

fn frame(opcode: ReplFrame, seq: u64, body: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode_control(&mut out, opcode, false, seq, 0, body);
    out.to_vec()
}

/// Sends `bytes` and reads until the node closes the connection (or 10 s pass); answers
/// whether it closed.
fn closes_after(port: u16, bytes: &[u8]) -> bool {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_millis(500))).ok();
    s.set_write_timeout(Some(Duration::from_secs(5))).ok();
    let _ = s.write_all(bytes);
    let end = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 4096];
    while Instant::now() < end {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return true,
        }
    }
    false
}

#[test]
fn strangers_replication_frames_are_refused_and_change_nothing() {
    let mut node = Node::start(2, &[]);
    let mut c = node.connect();
    assert_eq!(
        node.roundtrip(&mut c, &resp_command(&[b"SET", b"keep", b"me"])),
        b"+OK\r\n"
    );
    let hello = encode_body(&StreamHello {
        stream: 7,
        primary_core: 0,
        primary_cores: 2,
        group: 1,
        moving: false,
        epoch: 0,
    });
    let put = encode_op(&ReplOp::Put {
        key: b"keep",
        value: b"overwritten",
        version: u64::MAX,
        expires_at: None,
        tags: vec![],
    });
    let mut huge = frame(ReplFrame::Op, 1, b"");
    // Body length field (bytes 20..24 of the header) claims 4 GiB - 1.
    huge[20..24].copy_from_slice(&u32::MAX.to_le_bytes());
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "a valid hello to a node that is no replica",
            [
                frame(ReplFrame::Hello, 0, &hello),
                frame(ReplFrame::Reset, 0, b""),
                frame(ReplFrame::Op, 1, &put),
            ]
            .concat(),
        ),
        ("a garbled hello", frame(ReplFrame::Hello, 0, &[0xff; 7])),
        (
            "a hello with a huge body",
            [
                &frame(ReplFrame::Hello, 0, b"")[..20],
                &u32::MAX.to_le_bytes()[..],
            ]
            .concat(),
        ),
    ];
    for port in std::iter::once(node.port).chain(node.core_ports.clone()) {
        for (what, bytes) in &cases {
            assert!(
                closes_after(port, bytes),
                "{what} on port {port}: not closed"
            );
        }
        // Operations without a hello are not commands either: an error, then the close.
        assert!(
            closes_after(port, &frame(ReplFrame::Op, 1, &put)),
            "bare op on {port}"
        );
        assert!(closes_after(port, &huge), "huge op on {port}");
    }
    let mut c = node.connect();
    assert_eq!(
        node.roundtrip(&mut c, &resp_command(&[b"GET", b"keep"])),
        b"$2\r\nme\r\n",
        "the data changed"
    );
    assert!(node.is_running(), "node died: {}", node.log_text());
}
