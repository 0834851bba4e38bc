//! Issue 19: on a node started with `--password`, a connection that has not authenticated must
//! not get around the password by opening a replication or range-move stream. Without a
//! cluster secret such a node refuses every stream on its client ports; the stream's writes and
//! FLUSH never reach the store.

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

/// Sends `bytes`, then reads until the node closes the connection (or 10 s pass).
fn send_until_closed(port: u16, bytes: &[u8]) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_millis(200))).ok();
    let _ = s.write_all(bytes);
    let end = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 4096];
    while Instant::now() < end {
        match s.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

fn hello(moving: bool, core: u32) -> Vec<u8> {
    encode_body(&StreamHello {
        stream: 99,
        primary_core: core,
        primary_cores: 2,
        group: 1,
        moving,
        epoch: 1,
    })
}

#[test]
fn an_unauthenticated_replication_hello_cannot_write_or_flush() {
    let mut node = Node::start(2, &["--password", "s3cret"]);
    let mut c = node.connect();
    assert_eq!(
        node.roundtrip(&mut c, &resp_command(&[b"AUTH", b"s3cret"])),
        b"+OK\r\n"
    );
    assert_eq!(
        node.roundtrip(&mut c, &resp_command(&[b"SET", b"keep", b"me"])),
        b"+OK\r\n"
    );
    let put = encode_op(&ReplOp::Put {
        key: b"intruder",
        value: b"was here",
        version: 1 << 40,
        expires_at: None,
        tags: vec![],
    });
    let flush = encode_op(&ReplOp::Flush);
    let ports: Vec<u16> = std::iter::once(node.port)
        .chain(node.core_ports.clone())
        .collect();
    for (i, &port) in ports.iter().enumerate() {
        for moving in [true, false] {
            let core = i.saturating_sub(1) as u32;
            let bytes = [
                frame(ReplFrame::Hello, 0, &hello(moving, core)),
                frame(ReplFrame::Op, 0, &put),
                frame(ReplFrame::Op, 0, &flush),
                frame(ReplFrame::Synced, 1, b""),
            ]
            .concat();
            send_until_closed(port, &bytes);
        }
    }
    for key in [&b"keep"[..], b"intruder"] {
        let want: &[u8] = if key == b"keep" {
            b"$2\r\nme\r\n"
        } else {
            b"$-1\r\n"
        };
        assert_eq!(
            node.roundtrip(&mut c, &resp_command(&[b"GET", key])),
            want,
            "{} changed by an unauthenticated stream",
            String::from_utf8_lossy(key)
        );
    }
    assert!(node.is_running(), "node died: {}", node.log_text());
    assert!(
        node.log_text().contains("cluster secret"),
        "no log line says why the stream was refused: {}",
        node.log_text()
    );
}
