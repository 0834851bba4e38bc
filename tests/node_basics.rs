//! Smoke tests of a real node over raw RESP: it starts, answers, routes across cores, and stops
//! cleanly on SIGTERM.

mod common;

use std::time::Duration;

use common::Node;

#[test]
fn answers_resp_on_main_and_core_ports_across_cores() {
    let node = Node::start(2, &[]);
    let mut c = node.connect();
    assert_eq!(node.roundtrip(&mut c, b"PING\r\n"), b"+PONG\r\n");
    for i in 0..50 {
        let cmd = format!("*3\r\n$3\r\nSET\r\n$4\r\nk{i:03}\r\n$3\r\nv{i:02}\r\n");
        assert_eq!(node.roundtrip(&mut c, cmd.as_bytes()), b"+OK\r\n");
    }
    // Every key reads back from every port: the main port and each core's own port.
    for port in std::iter::once(node.port).chain(node.core_ports.clone()) {
        let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        c.set_read_timeout(Some(Duration::from_secs(5))).ok();
        for i in 0..50 {
            let cmd = format!("*2\r\n$3\r\nGET\r\n$4\r\nk{i:03}\r\n");
            let want = format!("$3\r\nv{i:02}\r\n");
            assert_eq!(node.roundtrip(&mut c, cmd.as_bytes()), want.as_bytes());
        }
    }
}

#[test]
fn stops_cleanly_on_sigterm() {
    let mut node = Node::start(2, &[]);
    let status = node
        .terminate(Duration::from_secs(10))
        .expect("node did not stop within 10 s");
    assert!(
        status.success(),
        "exit status {status:?}; log:\n{}",
        node.log_text()
    );
}

#[test]
fn refuses_a_port_in_use_with_a_clear_error() {
    let node = Node::start(1, &[]);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ringcache"))
        .args(["node", "--port", &node.port.to_string(), "--cores", "1"])
        .output()
        .expect("run ringcache");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already in use"), "stderr: {err}");
}

#[test]
fn pipelined_requests_for_different_cores_are_answered_in_order() {
    use std::io::Write;
    let node = Node::start(2, &[]);
    let mut c = node.connect();
    let mut batch = Vec::new();
    let mut want = Vec::new();
    for i in 0..300 {
        batch.extend_from_slice(
            format!("*3\r\n$3\r\nSET\r\n$5\r\nk{i:04}\r\n$5\r\nv{i:04}\r\n").as_bytes(),
        );
        want.extend_from_slice(b"+OK\r\n");
        batch.extend_from_slice(format!("*2\r\n$3\r\nGET\r\n$5\r\nk{i:04}\r\n").as_bytes());
        want.extend_from_slice(format!("$5\r\nv{i:04}\r\n").as_bytes());
        batch.extend_from_slice(b"*1\r\n$4\r\nPING\r\n");
        want.extend_from_slice(b"+PONG\r\n");
    }
    c.write_all(&batch).expect("write pipeline");
    let mut got = vec![0u8; want.len()];
    std::io::Read::read_exact(&mut c, &mut got).expect("read replies");
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&want)
    );
}
