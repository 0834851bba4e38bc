//! Unit tests of `resp_encode`.

use super::*;
use crate::error::CommandError;
use crate::response::{CoreInfo, Topology};
use std::borrow::Cow;

fn render(f: impl FnOnce(&mut BytesMut)) -> String {
    let mut out = BytesMut::new();
    f(&mut out);
    String::from_utf8(out.to_vec()).unwrap()
}

#[test]
fn primitives() {
    assert_eq!(render(|o| write_simple(o, b"OK")), "+OK\r\n");
    assert_eq!(render(|o| write_simple(o, b"a\r\nb")), "+a  b\r\n");
    assert_eq!(render(|o| write_int(o, -42)), ":-42\r\n");
    assert_eq!(render(|o| write_bulk(o, b"hi")), "$2\r\nhi\r\n");
    assert_eq!(render(|o| write_bulk(o, b"")), "$0\r\n\r\n");
    assert_eq!(render(|o| write_null(o, RespVersion::V2)), "$-1\r\n");
    assert_eq!(render(|o| write_null(o, RespVersion::V3)), "_\r\n");
    assert_eq!(render(|o| write_null_array(o, RespVersion::V2)), "*-1\r\n");
    assert_eq!(render(|o| write_array_header(o, 3)), "*3\r\n");
    assert_eq!(
        render(|o| write_map_header(o, 2, RespVersion::V2)),
        "*4\r\n"
    );
    assert_eq!(
        render(|o| write_map_header(o, 2, RespVersion::V3)),
        "%2\r\n"
    );
    assert_eq!(render(|o| write_bool(o, true, RespVersion::V3)), "#t\r\n");
    assert_eq!(
        render(|o| write_error_display(o, &CommandError::Syntax)),
        "-ERR syntax error\r\n"
    );
    assert_eq!(
        render(|o| write_error(o, "ERR bad\r\nthing")),
        "-ERR bad  thing\r\n"
    );
}

#[test]
fn responses() {
    let v2 = RespVersion::V2;
    let get = Opcode::Get;
    let value = Response::Value {
        value: b"v",
        version: 9,
        ttl_ms: None,
    };
    assert_eq!(
        render(|o| write_response(o, v2, get, &value)),
        "$1\r\nv\r\n"
    );
    assert_eq!(
        render(|o| write_response(o, v2, Opcode::GetVersion, &value)),
        "*2\r\n$1\r\nv\r\n:9\r\n"
    );
    assert_eq!(
        render(|o| write_response(o, v2, get, &Response::Nil)),
        "$-1\r\n"
    );
    assert_eq!(
        render(|o| write_response(o, RespVersion::V3, get, &Response::Nil)),
        "_\r\n"
    );
    assert_eq!(
        render(|o| write_response(o, v2, Opcode::Expire, &Response::Bool(true))),
        ":1\r\n"
    );
    let vals = Response::Values(vec![
        Some(ValueRef {
            value: b"a",
            version: 1,
            ttl_ms: None,
        }),
        None,
    ]);
    assert_eq!(
        render(|o| write_response(o, v2, Opcode::MGet, &vals)),
        "*2\r\n$1\r\na\r\n$-1\r\n"
    );
    let stats = Response::Stats(vec![(Cow::Borrowed("hits"), 12), ("keys".into(), 0)]);
    assert_eq!(
        render(|o| write_response(o, v2, Opcode::Stats, &stats)),
        "$17\r\nhits:12\r\nkeys:0\r\n\r\n"
    );
    let err = Response::error(ErrorKind::Redirect { epoch: 4 }, "stale map");
    assert_eq!(
        render(|o| write_response(o, v2, get, &err)),
        "-REDIRECT 4 stale map\r\n"
    );
    let err = Response::from(&CommandError::WrongArity("get"));
    assert_eq!(
        render(|o| write_response(o, v2, get, &err)),
        "-ERR wrong number of arguments for 'get' command\r\n"
    );
    let topo = Response::Topology(Topology {
        node_id: 1,
        main_port: 7000,
        cores: vec![CoreInfo {
            core: 0,
            port: 7001,
        }],
    });
    assert_eq!(
        render(|o| write_response(o, RespVersion::V3, Opcode::Topology, &topo)),
        "%3\r\n$7\r\nnode_id\r\n:1\r\n$9\r\nmain_port\r\n:7000\r\n$5\r\ncores\r\n*1\r\n*2\r\n:0\r\n:7001\r\n"
    );
    assert_eq!(
        render(|o| write_response(o, v2, Opcode::CommandDocs, &Response::Pairs(vec![]))),
        "*0\r\n"
    );
}

#[test]
fn hello_reply() {
    let s = render(|o| write_hello(o, RespVersion::V3, 3, 17));
    assert!(s.starts_with("%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n"));
    assert!(s.contains("$5\r\nproto\r\n:3\r\n$2\r\nid\r\n:17\r\n"));
    assert!(s.ends_with("$7\r\nmodules\r\n*0\r\n"));
    let s = render(|o| write_hello(o, RespVersion::V2, 2, 1));
    assert!(s.starts_with("*14\r\n"));
}

#[test]
fn commands() {
    let cmd = Command::Set {
        key: b"k",
        value: b"v",
        expiry: Expiry::RelativeMs(100),
        cond: SetCond::Nx,
        if_version: Some(3),
        tags: vec![b"t"],
        get_version: true,
    };
    assert_eq!(
        render(|o| write_command(o, &cmd)),
        "*11\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$2\r\nPX\r\n$3\r\n100\r\n$2\r\nNX\r\n\
         $10\r\nIF-VERSION\r\n$1\r\n3\r\n$3\r\nTAG\r\n$1\r\nt\r\n$10\r\nGETVERSION\r\n"
    );
    assert_eq!(
        render(|o| write_args(o, &[b"GET", b"k"])),
        "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
    );
}
