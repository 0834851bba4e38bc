//! Unit tests for `parse_command`: every command's happy path, the SET options, the
//! Redis-compatible error texts and the size limits.

use super::*;
use crate::command::{Expiry, SetCond};
use crate::error::TooLarge;

fn parse(line: &str) -> Result<Command<'_>, CommandError> {
    let args: Vec<&[u8]> = line.split(' ').map(str::as_bytes).collect();
    parse_command(&args[..], &Limits::default())
}

fn err(line: &str) -> String {
    parse(line).unwrap_err().to_string()
}

#[test]
fn simple_commands() {
    assert_eq!(parse("get k"), Ok(Command::Get { key: b"k" }));
    assert_eq!(parse("GeT k"), Ok(Command::Get { key: b"k" }));
    assert_eq!(parse("GETV k"), Ok(Command::GetVersion { key: b"k" }));
    assert_eq!(
        parse("del a b"),
        Ok(Command::Del {
            keys: vec![b"a", b"b"]
        })
    );
    assert_eq!(
        parse("mset a 1 b 2"),
        Ok(Command::MSet {
            pairs: vec![(b"a", b"1"), (b"b", b"2")]
        })
    );
    assert_eq!(
        parse("decrby k 5"),
        Ok(Command::IncrBy {
            key: b"k",
            delta: -5
        })
    );
    assert_eq!(
        parse("incr k"),
        Ok(Command::IncrBy {
            key: b"k",
            delta: 1
        })
    );
    assert_eq!(parse("PING"), Ok(Command::Ping { msg: None }));
    assert_eq!(parse("ping hi"), Ok(Command::Ping { msg: Some(b"hi") }));
    assert_eq!(
        parse("expire k 10"),
        Ok(Command::Expire {
            key: b"k",
            ms: 10_000
        })
    );
    assert_eq!(
        parse("pexpire k 10"),
        Ok(Command::Expire { key: b"k", ms: 10 })
    );
    assert_eq!(
        parse("expire k -5"),
        Ok(Command::Expire { key: b"k", ms: 0 })
    );
    assert_eq!(
        parse("pttl k"),
        Ok(Command::Ttl {
            key: b"k",
            millis: true
        })
    );
    assert_eq!(parse("flushall async"), Ok(Command::Flush));
    assert_eq!(
        parse("invalidate prefix user:"),
        Ok(Command::InvalidatePrefix { prefix: b"user:" })
    );
    assert_eq!(
        parse("INVALIDATE TAG t"),
        Ok(Command::InvalidateTag { tag: b"t" })
    );
    assert_eq!(parse("info keyspace"), Ok(Command::Stats));
    assert_eq!(parse("command docs"), Ok(Command::CommandDocs));
    assert_eq!(
        parse("config get save"),
        Ok(Command::ConfigGet { pattern: b"save" })
    );
    assert_eq!(parse("select 0"), Ok(Command::Select { db: 0 }));
    assert_eq!(
        parse("client setinfo lib-name redis-rs"),
        Ok(Command::ClientSetInfo)
    );
    assert_eq!(
        parse("client setname me"),
        Ok(Command::ClientSetName { name: b"me" })
    );
    assert_eq!(
        parse("hello 3 auth default pw setname x"),
        Ok(Command::Hello {
            version: Some(3),
            auth: Some(Credentials {
                username: Some(b"default"),
                password: b"pw"
            })
        })
    );
    assert_eq!(
        parse("HELLO"),
        Ok(Command::Hello {
            version: None,
            auth: None
        })
    );
    assert_eq!(
        parse("auth pw"),
        Ok(Command::Auth {
            creds: Credentials {
                username: None,
                password: b"pw"
            }
        })
    );
}

#[test]
fn set_options() {
    assert_eq!(
        parse("set k v ex 2 nx if-version 7 tag a tag b getversion"),
        Ok(Command::Set {
            key: b"k",
            value: b"v",
            expiry: Expiry::RelativeMs(2000),
            cond: SetCond::Nx,
            if_version: Some(7),
            tags: vec![b"a", b"b"],
            get_version: true,
        })
    );
    let expiry = |l| match parse(l) {
        Ok(Command::Set { expiry, .. }) => expiry,
        other => panic!("{other:?}"),
    };
    assert_eq!(expiry("set k v"), Expiry::None);
    assert_eq!(expiry("set k v PX 5"), Expiry::RelativeMs(5));
    assert_eq!(expiry("set k v exat 5"), Expiry::AbsoluteUnixMs(5000));
    assert_eq!(expiry("set k v pxat 5"), Expiry::AbsoluteUnixMs(5));
    assert_eq!(expiry("set k v keepttl"), Expiry::KeepTtl);
    assert_eq!(err("set k v ex 1 px 1"), "ERR syntax error");
    assert_eq!(err("set k v nx xx"), "ERR syntax error");
    assert_eq!(err("set k v ex"), "ERR syntax error");
    assert_eq!(err("set k v bogus"), "ERR syntax error");
    assert_eq!(
        err("set k v ex x"),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(
        err("set k v ex 0"),
        "ERR invalid expire time in 'set' command"
    );
    assert_eq!(
        err("set k v px -1"),
        "ERR invalid expire time in 'set' command"
    );
    assert_eq!(
        err("set k v ex 9223372036854775807"),
        "ERR invalid expire time in 'set' command"
    );
    assert_eq!(
        err("set k v if-version -1"),
        "ERR value is not an integer or out of range"
    );
}

#[test]
fn redis_error_texts() {
    assert_eq!(
        err("get"),
        "ERR wrong number of arguments for 'get' command"
    );
    assert_eq!(
        err("get a b"),
        "ERR wrong number of arguments for 'get' command"
    );
    assert_eq!(
        err("set k"),
        "ERR wrong number of arguments for 'set' command"
    );
    assert_eq!(
        err("mset a 1 b"),
        "ERR wrong number of arguments for 'mset' command"
    );
    assert_eq!(
        err("incrby k x"),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(
        err("decrby k -9223372036854775808"),
        "ERR decrement would overflow"
    );
    assert_eq!(err("foo bar"), "ERR unknown command 'foo'");
    assert_eq!(
        err("invalidate bogus x"),
        "ERR unknown subcommand 'bogus'. Try INVALIDATE HELP."
    );
    assert_eq!(
        err("hello x"),
        "ERR Protocol version is not an integer or out of range"
    );
    assert_eq!(err("select -1"), "ERR DB index is out of range");
    assert_eq!(err("expire k 1 bogus"), "ERR Unsupported option bogus");
    assert_eq!(
        err("expire k 9223372036854775807"),
        "ERR invalid expire time in 'expire' command"
    );
    assert_eq!(
        parse_command(&[][..], &Limits::default()),
        Err(CommandError::Empty)
    );
    let weird: &[&[u8]] = &[b"x\r\ny"];
    assert_eq!(
        parse_command(weird, &Limits::default())
            .unwrap_err()
            .to_string(),
        "ERR unknown command 'x??y'"
    );
}

#[test]
fn limits() {
    let l = Limits {
        max_key: 2,
        max_value: 3,
        ..Limits::default()
    };
    let args: &[&[u8]] = &[b"SET", b"abc", b"v"];
    assert_eq!(
        parse_command(args, &l),
        Err(CommandError::TooLarge(TooLarge {
            what: "key",
            len: 3,
            max: 2
        }))
    );
    let args: &[&[u8]] = &[b"SET", b"ab", b"vvvv"];
    assert!(matches!(
        parse_command(args, &l),
        Err(CommandError::TooLarge(_))
    ));
    let args: &[&[u8]] = &[b"MGET", b"a", b"abc"];
    assert!(matches!(
        parse_command(args, &l),
        Err(CommandError::TooLarge(_))
    ));
}
