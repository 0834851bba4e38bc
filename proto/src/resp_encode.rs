//! RESP2/RESP3 encoder: reply primitives, `Response` rendering, HELLO, and requests for clients.
//!
//! Everything appends to a caller-owned `BytesMut`; numbers are formatted with `itoa` on the
//! stack, so nothing here allocates except the buffer's own growth.

use std::fmt;

use bytes::{BufMut, BytesMut};

use crate::command::{Command, Expiry, SetCond};
use crate::key_op::{ExpireCond, KeyOp};
use crate::opcode::Opcode;
use crate::response::{ErrorKind, Response, ValueRef};

/// The RESP dialect of a connection: 2 until the client sends `HELLO 3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RespVersion {
    /// RESP2: nulls are `$-1` / `*-1`, maps are flat arrays.
    #[default]
    V2,
    /// RESP3: nulls are `_`, maps are `%`.
    V3,
}

impl RespVersion {
    /// The protocol number HELLO reports (2 or 3).
    pub fn number(self) -> u8 {
        match self {
            RespVersion::V2 => 2,
            RespVersion::V3 => 3,
        }
    }
}

/// The server name HELLO reports (clients expect "redis").
pub const HELLO_SERVER: &str = "redis";
/// The Redis version HELLO reports, for clients that gate features on it.
pub const HELLO_VERSION: &str = "7.2.0";

fn put_num_line(out: &mut BytesMut, tag: u8, n: impl itoa::Integer) {
    let mut b = itoa::Buffer::new();
    let s = b.format(n).as_bytes();
    out.reserve(s.len() + 3);
    out.put_u8(tag);
    out.put_slice(s);
    out.put_slice(b"\r\n");
}

/// Appends bytes with CR and LF replaced by spaces (for one-line replies).
fn put_line_safe(out: &mut BytesMut, mut s: &[u8]) {
    while let Some(i) = memchr::memchr2(b'\r', b'\n', s) {
        let (head, tail) = s.split_at(i);
        out.put_slice(head);
        out.put_u8(b' ');
        s = tail.get(1..).unwrap_or_default();
    }
    out.put_slice(s);
}

/// `fmt::Write` adaptor that keeps a reply on one line.
struct OneLine<'o>(&'o mut BytesMut);

impl fmt::Write for OneLine<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        put_line_safe(self.0, s.as_bytes());
        Ok(())
    }
}

/// `+OK`.
pub fn write_ok(out: &mut BytesMut) {
    out.put_slice(b"+OK\r\n");
}

/// Simple string `+s` (CR/LF in `s` become spaces).
pub fn write_simple(out: &mut BytesMut, s: &[u8]) {
    out.reserve(s.len() + 3);
    out.put_u8(b'+');
    put_line_safe(out, s);
    out.put_slice(b"\r\n");
}

/// Error `-msg`; `msg` starts with its code, e.g. `ERR syntax error` (CR/LF become spaces).
pub fn write_error(out: &mut BytesMut, msg: &str) {
    write_error_display(out, &msg);
}

/// Error `-{err}` from any `Display` that starts with its code (e.g. `CommandError`), no allocation.
pub fn write_error_display(out: &mut BytesMut, err: &dyn fmt::Display) {
    out.put_u8(b'-');
    // OneLine never fails.
    let _ = fmt::write(&mut OneLine(out), format_args!("{err}"));
    out.put_slice(b"\r\n");
}

/// Integer `:n`.
pub fn write_int(out: &mut BytesMut, n: i64) {
    put_num_line(out, b':', n);
}

/// Integer `:n` from an unsigned value (versions).
pub fn write_uint(out: &mut BytesMut, n: u64) {
    put_num_line(out, b':', n);
}

/// Bulk string `$len\r\n...\r\n`.
pub fn write_bulk(out: &mut BytesMut, b: &[u8]) {
    put_num_line(out, b'$', b.len());
    out.reserve(b.len() + 2);
    out.put_slice(b);
    out.put_slice(b"\r\n");
}

/// Integer rendered as a bulk string (how Redis sends numbers inside requests).
pub fn write_bulk_int(out: &mut BytesMut, n: impl itoa::Integer) {
    let mut b = itoa::Buffer::new();
    write_bulk(out, b.format(n).as_bytes());
}

/// Null bulk: `$-1` in RESP2, `_` in RESP3.
pub fn write_null(out: &mut BytesMut, ver: RespVersion) {
    out.put_slice(match ver {
        RespVersion::V2 => b"$-1\r\n",
        RespVersion::V3 => b"_\r\n",
    });
}

/// Null array: `*-1` in RESP2, `_` in RESP3.
pub fn write_null_array(out: &mut BytesMut, ver: RespVersion) {
    out.put_slice(match ver {
        RespVersion::V2 => b"*-1\r\n",
        RespVersion::V3 => b"_\r\n",
    });
}

/// Array header `*n`; follow it with `n` elements.
pub fn write_array_header(out: &mut BytesMut, n: usize) {
    put_num_line(out, b'*', n);
}

/// Map header: `%n` in RESP3, `*2n` in RESP2; follow it with `n` key/value pairs.
pub fn write_map_header(out: &mut BytesMut, n: usize, ver: RespVersion) {
    match ver {
        RespVersion::V2 => put_num_line(out, b'*', n.saturating_mul(2)),
        RespVersion::V3 => put_num_line(out, b'%', n),
    }
}

/// Boolean: `#t`/`#f` in RESP3, `:1`/`:0` in RESP2.
pub fn write_bool(out: &mut BytesMut, b: bool, ver: RespVersion) {
    out.put_slice(match (ver, b) {
        (RespVersion::V2, true) => b":1\r\n",
        (RespVersion::V2, false) => b":0\r\n",
        (RespVersion::V3, true) => b"#t\r\n",
        (RespVersion::V3, false) => b"#f\r\n",
    });
}

/// The HELLO reply map: server, version, proto, id, mode, role, modules (as Redis sends it).
pub fn write_hello(out: &mut BytesMut, ver: RespVersion, proto: u8, id: u64) {
    write_map_header(out, 7, ver);
    write_bulk(out, b"server");
    write_bulk(out, HELLO_SERVER.as_bytes());
    write_bulk(out, b"version");
    write_bulk(out, HELLO_VERSION.as_bytes());
    write_bulk(out, b"proto");
    write_int(out, i64::from(proto));
    write_bulk(out, b"id");
    write_uint(out, id);
    write_bulk(out, b"mode");
    write_bulk(out, b"standalone");
    write_bulk(out, b"role");
    write_bulk(out, b"master");
    write_bulk(out, b"modules");
    write_array_header(out, 0);
}

/// Renders `resp` as the reply to a command of opcode `op` (`op` picks GETV's `[value, version]`).
pub fn write_response(out: &mut BytesMut, ver: RespVersion, op: Opcode, resp: &Response<'_>) {
    match resp {
        Response::Ok => write_ok(out),
        Response::Nil if op == Opcode::GetVersion => write_null_array(out, ver),
        Response::Nil => write_null(out, ver),
        Response::Value { value, version, .. } if op == Opcode::GetVersion => {
            write_array_header(out, 2);
            write_bulk(out, value);
            write_uint(out, *version);
        }
        // TYPE answers a status line (`+string`, `+none`).
        Response::Bulk(value) if op == Opcode::Type => write_simple(out, value),
        Response::Value { value, .. } | Response::Bulk(value) => write_bulk(out, value),
        Response::Int(i) => write_int(out, *i),
        Response::Bool(b) => write_int(out, i64::from(*b)),
        // SCAN: the first slot is the next cursor, the rest the keys: `[cursor, [keys]]`.
        Response::Values(vals) if op == Opcode::Scan => {
            write_array_header(out, 2);
            let mut it = vals.iter();
            match it.next() {
                Some(Some(c)) => write_bulk(out, c.value),
                _ => write_bulk(out, b"0"),
            }
            write_array_header(out, it.len());
            for v in it {
                write_bulk(out, v.map_or(&[][..], |v| v.value));
            }
        }
        Response::Values(vals) => {
            write_array_header(out, vals.len());
            for v in vals {
                match v {
                    Some(ValueRef { value, .. }) => write_bulk(out, value),
                    None => write_null(out, ver),
                }
            }
        }
        Response::Pong => out.put_slice(b"+PONG\r\n"),
        Response::Stats(stats) => {
            // INFO-style text: one `name:value` line per counter.
            let mut len = 0usize;
            for (name, v) in stats {
                len += name.len() + 1 + itoa::Buffer::new().format(*v).len() + 2;
            }
            put_num_line(out, b'$', len);
            out.reserve(len + 2);
            for (name, v) in stats {
                out.put_slice(name.as_bytes());
                out.put_u8(b':');
                out.put_slice(itoa::Buffer::new().format(*v).as_bytes());
                out.put_slice(b"\r\n");
            }
            out.put_slice(b"\r\n");
        }
        Response::Topology(t) => {
            write_map_header(out, 3, ver);
            write_bulk(out, b"node_id");
            write_uint(out, t.node_id);
            write_bulk(out, b"main_port");
            write_int(out, i64::from(t.main_port));
            write_bulk(out, b"cores");
            write_array_header(out, t.cores.len());
            for c in &t.cores {
                write_array_header(out, 2);
                write_int(out, i64::from(c.core));
                write_int(out, i64::from(c.port));
            }
        }
        Response::Pairs(pairs) => {
            write_map_header(out, pairs.len(), ver);
            for (k, v) in pairs {
                write_bulk(out, k);
                write_bulk(out, v);
            }
        }
        Response::Hello { proto, id } => write_hello(out, ver, *proto, *id),
        Response::Error { kind, message } => write_error_kind(out, *kind, message),
    }
}

/// Error line for a kind: `-{PREFIX} {message}` (`-REDIRECT {epoch} {message}` for redirects).
pub fn write_error_kind(out: &mut BytesMut, kind: ErrorKind, message: &str) {
    out.put_u8(b'-');
    out.put_slice(kind.resp_prefix().as_bytes());
    out.put_u8(b' ');
    if let ErrorKind::Redirect { epoch } = kind {
        out.put_slice(itoa::Buffer::new().format(epoch).as_bytes());
        out.put_u8(b' ');
    }
    put_line_safe(out, message.as_bytes());
    out.put_slice(b"\r\n");
}

/// One argument of a request being written.
#[derive(Clone, Copy)]
enum Arg<'a> {
    Bytes(&'a [u8]),
    Int(i64),
    UInt(u64),
}

/// Calls `f` with each argument of `cmd` as a RESP client would send it.
fn for_each_arg<'c>(cmd: &Command<'c>, f: &mut dyn FnMut(Arg<'c>)) {
    use Arg::{Bytes as B, Int as I, UInt as U};
    let keys = |name: &'static [u8], keys: &[&'c [u8]], f: &mut dyn FnMut(Arg<'c>)| {
        f(B(name));
        keys.iter().for_each(|k| f(B(k)));
    };
    match cmd {
        Command::Get { key } => [B(b"GET"), B(key)].into_iter().for_each(f),
        Command::GetVersion { key } => [B(b"GETV"), B(key)].into_iter().for_each(f),
        Command::Set {
            key,
            value,
            expiry,
            cond,
            if_version,
            tags,
            get_version,
        } => {
            [B(b"SET"), B(key), B(value)].into_iter().for_each(&mut *f);
            match expiry {
                Expiry::None => {}
                Expiry::KeepTtl => f(B(b"KEEPTTL")),
                Expiry::RelativeMs(ms) => [B(b"PX"), U(*ms)].into_iter().for_each(&mut *f),
                Expiry::AbsoluteUnixMs(ms) => [B(b"PXAT"), U(*ms)].into_iter().for_each(&mut *f),
            }
            match cond {
                SetCond::Always => {}
                SetCond::Nx => f(B(b"NX")),
                SetCond::Xx => f(B(b"XX")),
            }
            if let Some(v) = if_version {
                [B(b"IF-VERSION"), U(*v)].into_iter().for_each(&mut *f);
            }
            for t in tags {
                [B(b"TAG"), B(t)].into_iter().for_each(&mut *f);
            }
            if *get_version {
                f(B(b"GETVERSION"));
            }
        }
        Command::Del { keys: k } => keys(b"DEL", k, f),
        Command::Exists { keys: k } => keys(b"EXISTS", k, f),
        Command::Touch { keys: k } => keys(b"TOUCH", k, f),
        Command::MGet { keys: k } => keys(b"MGET", k, f),
        Command::Expire { key, ms } => [B(b"PEXPIRE"), B(key), U(*ms)].into_iter().for_each(f),
        Command::Ttl { key, millis } => {
            let name: &'static [u8] = if *millis { b"PTTL" } else { b"TTL" };
            [B(name), B(key)].into_iter().for_each(f)
        }
        Command::Persist { key } => [B(b"PERSIST"), B(key)].into_iter().for_each(f),
        Command::MSet { pairs } => {
            f(B(b"MSET"));
            for (k, v) in pairs {
                f(B(k));
                f(B(v));
            }
        }
        Command::IncrBy { key, delta } => [B(b"INCRBY"), B(key), I(*delta)].into_iter().for_each(f),
        Command::Ping { msg } => {
            f(B(b"PING"));
            if let Some(m) = msg {
                f(B(m));
            }
        }
        Command::Flush => f(B(b"FLUSHALL")),
        Command::InvalidatePrefix { prefix } => [B(b"INVALIDATE"), B(b"PREFIX"), B(prefix)]
            .into_iter()
            .for_each(f),
        Command::InvalidateTag { tag } => [B(b"INVALIDATE"), B(b"TAG"), B(tag)]
            .into_iter()
            .for_each(f),
        Command::Stats => f(B(b"INFO")),
        Command::Topology => f(B(b"TOPOLOGY")),
        Command::Hello { version, auth } => {
            f(B(b"HELLO"));
            if let Some(v) = version {
                f(I(i64::from(*v)));
            }
            if let Some(c) = auth {
                [
                    B(b"AUTH"),
                    B(c.username.unwrap_or(b"default")),
                    B(c.password),
                ]
                .into_iter()
                .for_each(f);
            }
        }
        Command::Auth { creds } => {
            f(B(b"AUTH"));
            if let Some(u) = creds.username {
                f(B(u));
            }
            f(B(creds.password));
        }
        Command::ConfigGet { pattern } => [B(b"CONFIG"), B(b"GET"), B(pattern)]
            .into_iter()
            .for_each(f),
        Command::CommandDocs => [B(b"COMMAND"), B(b"DOCS")].into_iter().for_each(f),
        Command::Quit => f(B(b"QUIT")),
        Command::Digest => f(B(b"DIGEST")),
        Command::Select { db } => [B(b"SELECT"), U(u64::from(*db))].into_iter().for_each(f),
        Command::ClientSetInfo => [B(b"CLIENT"), B(b"SETINFO"), B(b"LIB-NAME"), B(b"ringcache")]
            .into_iter()
            .for_each(f),
        Command::ClientSetName { name } => [B(b"CLIENT"), B(b"SETNAME"), B(name)]
            .into_iter()
            .for_each(f),
        Command::Key { key, op } => key_op_args(key, op, f),
        Command::MSetNx { pairs } => {
            f(B(b"MSETNX"));
            for (k, v) in pairs {
                f(B(k));
                f(B(v));
            }
        }
        Command::DbSize => f(B(b"DBSIZE")),
        Command::Type { key } => [B(b"TYPE"), B(key)].into_iter().for_each(f),
        Command::Keys { pattern } => [B(b"KEYS"), B(pattern)].into_iter().for_each(f),
        Command::Scan {
            cursor,
            pattern,
            count,
            kind,
        } => {
            [B(b"SCAN"), U(*cursor), B(b"COUNT"), U(*count)]
                .into_iter()
                .for_each(&mut *f);
            if let Some(p) = pattern {
                [B(b"MATCH"), B(p)].into_iter().for_each(&mut *f);
            }
            if let Some(t) = kind {
                [B(b"TYPE"), B(t)].into_iter().for_each(&mut *f);
            }
        }
    }
}

/// The expiry option words of SET/GETEX for `e` (nothing for no expiry).
fn expiry_args<'c>(e: &Expiry, f: &mut dyn FnMut(Arg<'c>)) {
    match e {
        Expiry::None => {}
        Expiry::KeepTtl => f(Arg::Bytes(b"KEEPTTL")),
        Expiry::RelativeMs(ms) => [Arg::Bytes(b"PX"), Arg::UInt(*ms)].into_iter().for_each(f),
        Expiry::AbsoluteUnixMs(ms) => [Arg::Bytes(b"PXAT"), Arg::UInt(*ms)]
            .into_iter()
            .for_each(f),
    }
}

/// Arguments of a `Command::Key` as a RESP client sends them.
fn key_op_args<'c>(key: &'c [u8], op: &KeyOp<'c>, f: &mut dyn FnMut(Arg<'c>)) {
    use Arg::{Bytes as B, Int as I, UInt as U};
    match op {
        KeyOp::SetNx { value } => [B(b"SETNX"), B(key), B(value)].into_iter().for_each(f),
        KeyOp::SetGet {
            value,
            expiry,
            cond,
        } => {
            [B(b"SET"), B(key), B(value)].into_iter().for_each(&mut *f);
            expiry_args(expiry, f);
            match cond {
                SetCond::Always => {}
                SetCond::Nx => f(B(b"NX")),
                SetCond::Xx => f(B(b"XX")),
            }
            f(B(b"GET"));
        }
        KeyOp::GetDel => [B(b"GETDEL"), B(key)].into_iter().for_each(f),
        KeyOp::GetEx { expiry } => {
            [B(b"GETEX"), B(key)].into_iter().for_each(&mut *f);
            match expiry {
                None => {}
                Some(Expiry::None) => f(B(b"PERSIST")),
                Some(e) => expiry_args(e, f),
            }
        }
        KeyOp::Strlen => [B(b"STRLEN"), B(key)].into_iter().for_each(f),
        KeyOp::Append { value } => [B(b"APPEND"), B(key), B(value)].into_iter().for_each(f),
        KeyOp::GetRange { start, end } => [B(b"GETRANGE"), B(key), I(*start), I(*end)]
            .into_iter()
            .for_each(f),
        KeyOp::SetRange { offset, value } => [B(b"SETRANGE"), B(key), U(*offset), B(value)]
            .into_iter()
            .for_each(f),
        KeyOp::IncrByFloat { delta } => [B(b"INCRBYFLOAT"), B(key), B(delta)]
            .into_iter()
            .for_each(f),
        KeyOp::ExpireWhen { at, cond } => {
            let (name, t): (&'static [u8], u64) = match at {
                Expiry::AbsoluteUnixMs(ms) => (b"PEXPIREAT", *ms),
                Expiry::RelativeMs(ms) => (b"PEXPIRE", *ms),
                Expiry::None | Expiry::KeepTtl => (b"PEXPIRE", 0),
            };
            [B(name), B(key), U(t)].into_iter().for_each(&mut *f);
            match cond {
                ExpireCond::Always => {}
                ExpireCond::Nx => f(B(b"NX")),
                ExpireCond::Xx => f(B(b"XX")),
                ExpireCond::Gt => f(B(b"GT")),
                ExpireCond::Lt => f(B(b"LT")),
                ExpireCond::XxLt => [B(b"XX"), B(b"LT")].into_iter().for_each(&mut *f),
            }
        }
        KeyOp::ExpireTime { millis } => {
            let name: &'static [u8] = if *millis {
                b"PEXPIRETIME"
            } else {
                b"EXPIRETIME"
            };
            [B(name), B(key)].into_iter().for_each(f)
        }
        KeyOp::MemoryUsage => [B(b"MEMORY"), B(b"USAGE"), B(key)].into_iter().for_each(f),
    }
}

/// Writes `cmd` as a RESP request (array of bulk strings), as a client sends it.
///
/// `Hello` without a version but with credentials is native-only: it is written as
/// `HELLO AUTH ...`, which Redis rejects.
pub fn write_command(out: &mut BytesMut, cmd: &Command<'_>) {
    let mut n = 0usize;
    for_each_arg(cmd, &mut |_| n += 1);
    write_array_header(out, n);
    for_each_arg(cmd, &mut |a| match a {
        Arg::Bytes(b) => write_bulk(out, b),
        Arg::Int(i) => write_bulk_int(out, i),
        Arg::UInt(u) => write_bulk_int(out, u),
    });
}

/// Writes raw arguments as a RESP request (array of bulk strings).
pub fn write_args(out: &mut BytesMut, args: &[&[u8]]) {
    write_array_header(out, args.len());
    for a in args {
        write_bulk(out, a);
    }
}

#[cfg(test)]
mod tests;
