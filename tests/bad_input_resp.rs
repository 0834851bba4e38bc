//! Bad RESP (and native) commands against a real node: absurd and invalid RESP lengths, which
//! get one error and a close without memory growth, Redis-style protocol error text, and
//! wrong-type or malformed commands, which get an error while the connection goes on.

mod common;

use std::io::Write;
use std::net::Shutdown;
use std::time::Duration;

use common::raw::{
    all_ports, assert_serving_main, connect_to, drain, error_kind, native, read_frame,
    reply_limits, write_keys, MIB,
};
use common::{resp_command, Node};
use ringcache_proto::{decode_response, Command, ErrorKind, Response};

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
