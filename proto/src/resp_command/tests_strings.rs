//! Unit tests of the strings family and single-key keyspace commands: what each parses to,
//! Redis's error texts (checked against redis-server 7.0), and that every new command
//! survives the native codec and the RESP request writer unchanged.

use bytes::BytesMut;

use super::*;
use crate::command::{Expiry, SetCond};
use crate::frame::decode_frame;
use crate::key_op::{ExpireCond, KeyOp};
use crate::native::{decode_request, encode_request};
use crate::resp::RespParser;
use crate::resp_encode::write_command;

fn parse(line: &str) -> Result<Command<'_>, CommandError> {
    let args: Vec<&[u8]> = line.split(' ').map(str::as_bytes).collect();
    parse_command(&args[..], &Limits::default())
}

fn err(line: &str) -> String {
    parse(line).unwrap_err().to_string()
}

fn key<'a>(key: &'a str, op: KeyOp<'a>) -> Result<Command<'a>, CommandError> {
    Ok(Command::Key {
        key: key.as_bytes(),
        op,
    })
}

#[test]
fn strings_parse() {
    assert_eq!(parse("setnx k v"), key("k", KeyOp::SetNx { value: b"v" }));
    let mut setex = Command::set(b"k", b"v");
    if let Command::Set { expiry, .. } = &mut setex {
        *expiry = Expiry::RelativeMs(10_000);
    }
    assert_eq!(parse("setex k 10 v"), Ok(setex.clone()));
    if let Command::Set { expiry, .. } = &mut setex {
        *expiry = Expiry::RelativeMs(10);
    }
    assert_eq!(parse("psetex k 10 v"), Ok(setex));
    let set_get = |expiry, cond| KeyOp::SetGet {
        value: b"v",
        expiry,
        cond,
    };
    assert_eq!(
        parse("getset k v"),
        key("k", set_get(Expiry::None, SetCond::Always))
    );
    assert_eq!(
        parse("set k v nx get px 5"),
        key("k", set_get(Expiry::RelativeMs(5), SetCond::Nx))
    );
    assert_eq!(
        parse("set k v GET KEEPTTL"),
        key("k", set_get(Expiry::KeepTtl, SetCond::Always))
    );
    assert_eq!(parse("getdel k"), key("k", KeyOp::GetDel));
    assert_eq!(parse("getex k"), key("k", KeyOp::GetEx { expiry: None }));
    assert_eq!(
        parse("getex k persist"),
        key(
            "k",
            KeyOp::GetEx {
                expiry: Some(Expiry::None)
            }
        )
    );
    assert_eq!(
        parse("getex k exat 7"),
        key(
            "k",
            KeyOp::GetEx {
                expiry: Some(Expiry::AbsoluteUnixMs(7000))
            }
        )
    );
    assert_eq!(parse("strlen k"), key("k", KeyOp::Strlen));
    assert_eq!(parse("append k v"), key("k", KeyOp::Append { value: b"v" }));
    assert_eq!(
        parse("substr k -3 -1"),
        key("k", KeyOp::GetRange { start: -3, end: -1 })
    );
    assert_eq!(
        parse("setrange k 4 v"),
        key(
            "k",
            KeyOp::SetRange {
                offset: 4,
                value: b"v"
            }
        )
    );
    assert_eq!(
        parse("incrbyfloat k 1.5"),
        key("k", KeyOp::IncrByFloat { delta: b"1.5" })
    );
    assert_eq!(
        parse("msetnx a 1 b 2"),
        Ok(Command::MSetNx {
            pairs: vec![(b"a", b"1"), (b"b", b"2")]
        })
    );
}

#[test]
fn keyspace_parse() {
    assert_eq!(parse("type k"), Ok(Command::Type { key: b"k" }));
    assert_eq!(parse("dbsize"), Ok(Command::DbSize));
    assert_eq!(parse("unlink a"), Ok(Command::Del { keys: vec![b"a"] }));
    let when = |at, cond| KeyOp::ExpireWhen { at, cond };
    assert_eq!(
        parse("expire k 5 nx"),
        key("k", when(Expiry::RelativeMs(5000), ExpireCond::Nx))
    );
    assert_eq!(
        parse("expire k 5 xx gt"),
        key("k", when(Expiry::RelativeMs(5000), ExpireCond::Gt))
    );
    assert_eq!(
        parse("pexpire k 5 xx lt"),
        key("k", when(Expiry::RelativeMs(5), ExpireCond::XxLt))
    );
    assert_eq!(
        parse("expire k -5 LT"),
        key("k", when(Expiry::RelativeMs(0), ExpireCond::Lt))
    );
    assert_eq!(
        parse("expireat k 9"),
        key("k", when(Expiry::AbsoluteUnixMs(9000), ExpireCond::Always))
    );
    assert_eq!(
        parse("pexpireat k 9 xx"),
        key("k", when(Expiry::AbsoluteUnixMs(9), ExpireCond::Xx))
    );
    assert_eq!(
        parse("pexpiretime k"),
        key("k", KeyOp::ExpireTime { millis: true })
    );
    assert_eq!(parse("memory usage k"), key("k", KeyOp::MemoryUsage));
    assert_eq!(parse("keys a*"), Ok(Command::Keys { pattern: b"a*" }));
    assert_eq!(
        parse("scan 5 MATCH a* count 3 type string"),
        Ok(Command::Scan {
            cursor: 5,
            pattern: Some(b"a*"),
            count: 3,
            kind: Some(b"string")
        })
    );
    assert_eq!(
        parse("scan 0"),
        Ok(Command::Scan {
            cursor: 0,
            pattern: None,
            count: 10,
            kind: None
        })
    );
    assert_eq!(
        parse("memory usage k samples 5"),
        key("k", KeyOp::MemoryUsage)
    );
}

#[test]
fn redis_error_texts_of_new_commands() {
    let arity = |c: &str| format!("ERR wrong number of arguments for '{c}' command");
    assert_eq!(err("setnx k"), arity("setnx"));
    assert_eq!(err("setex k 100"), arity("setex"));
    assert_eq!(
        err("setex k 0 v"),
        "ERR invalid expire time in 'setex' command"
    );
    assert_eq!(
        err("psetex k -1 v"),
        "ERR invalid expire time in 'psetex' command"
    );
    assert_eq!(
        err("setex k abc v"),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(err("getset k"), arity("getset"));
    assert_eq!(err("getdel a b"), arity("getdel"));
    assert_eq!(
        err("getex k ex 0"),
        "ERR invalid expire time in 'getex' command"
    );
    assert_eq!(
        err("getex k ex -1"),
        "ERR invalid expire time in 'getex' command"
    );
    assert_eq!(
        err("getex k ex abc"),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(err("getex k ex 10 px 100"), "ERR syntax error");
    assert_eq!(err("getex k persist ex 10"), "ERR syntax error");
    assert_eq!(err("getex k foo"), "ERR syntax error");
    assert_eq!(err("getex k ex"), "ERR syntax error");
    // Redis accepts GET twice.
    assert!(parse("set k v get get").is_ok());
    assert_eq!(
        err("set k v get ex 0"),
        "ERR invalid expire time in 'set' command"
    );
    assert_eq!(err("set k v nx xx get"), "ERR syntax error");
    assert_eq!(err("set k v get tag t"), "ERR syntax error");
    assert_eq!(err("strlen a b"), arity("strlen"));
    assert_eq!(
        err("getrange k x 2"),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(err("getrange k 0"), arity("getrange"));
    assert_eq!(err("setrange k -1 x"), "ERR offset is out of range");
    assert_eq!(
        err("setrange k abc x"),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(err("incrbyfloat k abc"), "ERR value is not a valid float");
    assert_eq!(err("incrbyfloat k nan"), "ERR value is not a valid float");
    assert_eq!(err("msetnx a 1 b"), arity("msetnx"));
    assert_eq!(err("dbsize x"), arity("dbsize"));
    assert_eq!(err("type"), arity("type"));
    assert_eq!(
        err("expire k 60 nx xx"),
        "ERR NX and XX, GT or LT options at the same time are not compatible"
    );
    assert_eq!(
        err("expire k 60 gt lt"),
        "ERR GT and LT options at the same time are not compatible"
    );
    assert_eq!(err("expire k 60 FOO"), "ERR Unsupported option FOO");
    assert_eq!(
        err("expire k 9223372036854775807 nx"),
        "ERR invalid expire time in 'expire' command"
    );
    assert_eq!(
        err("expireat k abc"),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(err("expireat k"), arity("expireat"));
    assert_eq!(err("memory usage"), arity("memory|usage"));
    assert_eq!(err("keys"), arity("keys"));
    assert_eq!(err("scan"), arity("scan"));
    assert_eq!(err("scan abc"), "ERR invalid cursor");
    assert_eq!(err("scan 0 count 0"), "ERR syntax error");
    assert_eq!(
        err("scan 0 count x"),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(err("scan 0 foo"), "ERR syntax error");
    assert_eq!(err("scan 0 match"), "ERR syntax error");
    assert_eq!(
        err("memory foo"),
        "ERR unknown subcommand 'foo'. Try MEMORY HELP."
    );
    assert_eq!(err("memory usage k samples"), "ERR syntax error");
    assert_eq!(
        err("memory usage k samples x"),
        "ERR value is not an integer or out of range"
    );
}

/// Native encode → decode, and RESP request writer → parser, give back the same command.
#[test]
fn new_commands_survive_both_codecs() {
    let l = Limits::default();
    for line in [
        "setnx k v",
        "getset k v",
        "set k v xx get pxat 9",
        "set k v get keepttl",
        "getdel k",
        "getex k",
        "getex k persist",
        "getex k px 5",
        "strlen k",
        "append k v",
        "getrange k -2 5",
        "setrange k 3 abc",
        "incrbyfloat k -1.5e3",
        "pexpire k 5 xx lt",
        "expire k 5 gt",
        "pexpireat k 5 nx",
        "expiretime k",
        "pexpiretime k",
        "memory usage k",
        "msetnx a 1 b 2",
        "dbsize",
        "type k",
        "keys user:*",
        "scan 0 count 10",
        "scan 3072 count 5 match a* type string",
    ] {
        let cmd = parse(line).unwrap();
        let mut out = BytesMut::new();
        encode_request(&mut out, 1, 2, &cmd).unwrap();
        let f = decode_frame(&out, &l).unwrap().unwrap();
        assert_eq!(
            decode_request(&f.header, f.body(&out), &l).unwrap(),
            cmd,
            "{line}"
        );
        let mut resp = BytesMut::new();
        write_command(&mut resp, &cmd);
        let mut p = RespParser::new();
        assert_eq!(p.parse(&resp, &l), Ok(Some(resp.len())), "{line}");
        let args = p.args(&resp);
        assert_eq!(parse_command(&args, &l).unwrap(), cmd, "{line}");
    }
}
