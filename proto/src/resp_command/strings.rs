//! Parsers of the strings family beyond GET/SET (SETNX, SETEX, PSETEX, GETSET, GETDEL, GETEX,
//! STRLEN, APPEND, GETRANGE/SUBSTR, SETRANGE, INCRBYFLOAT, MSETNX) and of the single-key
//! keyspace commands (EXPIRE options, EXPIREAT, EXPIRETIME, TYPE, MEMORY USAGE), with Redis's
//! error texts.

use super::args::{upper, ArgList, Args};
use crate::command::{Command, Expiry, SetCond};
use crate::error::{printable, CommandError};
use crate::key_op::{parse_float, ExpireCond, KeyOp};
use crate::resp::parse_i64;

const NOT_FLOAT: CommandError = CommandError::Text("value is not a valid float");

fn key_op<'a>(key: &'a [u8], op: KeyOp<'a>) -> Command<'a> {
    Command::Key { key, op }
}

/// `SETEX key seconds value` / `PSETEX key ms value` (`scale` 1000 or 1).
pub(super) fn parse_setex<'a, A: ArgList<'a> + ?Sized>(
    a: &Args<'_, 'a, A>,
    scale: u64,
) -> Result<Command<'a>, CommandError> {
    a.exact(4)?;
    let t = a.int(2)?;
    let ms = u64::try_from(t)
        .ok()
        .filter(|&t| t > 0)
        .and_then(|t| t.checked_mul(scale))
        .filter(|&ms| ms <= i64::MAX as u64)
        .ok_or(CommandError::InvalidExpire(a.name))?;
    let mut cmd = Command::set(a.get(1)?, a.get(3)?);
    if let Command::Set { expiry, .. } = &mut cmd {
        *expiry = Expiry::RelativeMs(ms);
    }
    Ok(cmd)
}

/// A positive expiry option value (`EX s`, `PX ms`, `EXAT s`, `PXAT ms`) of command `name`.
pub(super) fn expiry_option(
    opt: &[u8],
    v: &[u8],
    name: &'static str,
) -> Result<Expiry, CommandError> {
    let v = parse_i64(v).ok_or(CommandError::NotInteger)?;
    let scale = if matches!(opt, b"EX" | b"EXAT") {
        1000
    } else {
        1
    };
    let ms = u64::try_from(v)
        .ok()
        .filter(|&v| v > 0)
        .and_then(|v| v.checked_mul(scale))
        .filter(|&ms| ms <= i64::MAX as u64)
        .ok_or(CommandError::InvalidExpire(name))?;
    Ok(if matches!(opt, b"EX" | b"PX") {
        Expiry::RelativeMs(ms)
    } else {
        Expiry::AbsoluteUnixMs(ms)
    })
}

/// `GETEX key [EX s|PX ms|EXAT s|PXAT ms|PERSIST]`.
pub(super) fn parse_getex<'a, A: ArgList<'a> + ?Sized>(
    a: &Args<'_, 'a, A>,
) -> Result<Command<'a>, CommandError> {
    a.at_least(2)?;
    let key = a.get(1)?;
    let mut expiry = None;
    let mut i = 2;
    while i < a.n {
        let (o, ol) = upper(a.get(i)?);
        let opt = o.get(..ol).unwrap_or_default();
        match opt {
            b"EX" | b"PX" | b"EXAT" | b"PXAT" if expiry.is_none() => {
                let v = a.args.arg(i + 1).ok_or(CommandError::Syntax)?;
                expiry = Some(expiry_option(opt, v, "getex")?);
                i += 2;
            }
            b"PERSIST" if expiry.is_none() => {
                expiry = Some(Expiry::None);
                i += 1;
            }
            _ => return Err(CommandError::Syntax),
        }
    }
    Ok(key_op(key, KeyOp::GetEx { expiry }))
}

/// `EXPIRE`/`PEXPIRE key t [NX|XX|GT|LT]` with an option, or `EXPIREAT`/`PEXPIREAT key t [..]`
/// (`absolute`); `scale` is 1000 for seconds, 1 for milliseconds. A time already past
/// (non-positive) becomes `RelativeMs(0)`: the key is deleted if the condition holds.
pub(super) fn parse_expire_when<'a, A: ArgList<'a> + ?Sized>(
    a: &Args<'_, 'a, A>,
    scale: u64,
    absolute: bool,
) -> Result<Command<'a>, CommandError> {
    a.at_least(3)?;
    let key = a.get(1)?;
    let t = a.int(2)?;
    let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
    for i in 3..a.n {
        let arg = a.get(i)?;
        let (o, ol) = upper(arg);
        match o.get(..ol).unwrap_or_default() {
            b"NX" => nx = true,
            b"XX" => xx = true,
            b"GT" => gt = true,
            b"LT" => lt = true,
            _ => return Err(CommandError::UnsupportedOption(printable(arg))),
        }
    }
    if nx && (xx || gt || lt) {
        return Err(CommandError::Text(
            "NX and XX, GT or LT options at the same time are not compatible",
        ));
    }
    if gt && lt {
        return Err(CommandError::Text(
            "GT and LT options at the same time are not compatible",
        ));
    }
    let cond = match (nx, xx, gt, lt) {
        (true, ..) => ExpireCond::Nx,
        (_, _, true, _) => ExpireCond::Gt,
        (_, true, _, true) => ExpireCond::XxLt,
        (_, _, _, true) => ExpireCond::Lt,
        (_, true, ..) => ExpireCond::Xx,
        _ => ExpireCond::Always,
    };
    let ms = match u64::try_from(t) {
        Err(_) => 0,
        Ok(t) => t
            .checked_mul(scale)
            .filter(|&ms| ms <= i64::MAX as u64)
            .ok_or(CommandError::InvalidExpire(a.name))?,
    };
    let at = if absolute {
        Expiry::AbsoluteUnixMs(ms)
    } else {
        Expiry::RelativeMs(ms)
    };
    Ok(key_op(key, KeyOp::ExpireWhen { at, cond }))
}

/// `SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]`.
fn parse_scan<'a, A: ArgList<'a> + ?Sized>(
    a: &Args<'_, 'a, A>,
) -> Result<Command<'a>, CommandError> {
    a.at_least(2)?;
    let cursor = crate::resp::parse_u64(a.get(1)?).ok_or(CommandError::Text("invalid cursor"))?;
    let (mut pattern, mut count, mut kind) = (None, 10u64, None);
    let mut i = 2;
    while i < a.n {
        let (o, ol) = upper(a.get(i)?);
        let val = a.args.arg(i + 1).ok_or(CommandError::Syntax)?;
        match o.get(..ol).unwrap_or_default() {
            b"MATCH" => pattern = Some(val),
            b"COUNT" => {
                let n = parse_i64(val).ok_or(CommandError::NotInteger)?;
                count = u64::try_from(n)
                    .ok()
                    .filter(|&n| n >= 1)
                    .ok_or(CommandError::Syntax)?;
            }
            b"TYPE" => kind = Some(val),
            _ => return Err(CommandError::Syntax),
        }
        i += 2;
    }
    Ok(Command::Scan {
        cursor,
        pattern,
        count,
        kind,
    })
}

/// The strings and single-key keyspace commands this module parses; `None` for other names.
pub(super) fn parse_string_command<'a, A: ArgList<'a> + ?Sized>(
    uname: &[u8],
    args: &A,
) -> Option<Result<Command<'a>, CommandError>> {
    let n = args.arg_count();
    let a = |name: &'static str| Args {
        args,
        n,
        name,
        _a: std::marker::PhantomData,
    };
    let one_key = |name: &'static str, op: KeyOp<'a>| {
        let a = a(name);
        a.exact(2)?;
        Ok(key_op(a.get(1)?, op))
    };
    Some(match uname {
        b"SETNX" => (|| {
            let a = a("setnx");
            a.exact(3)?;
            Ok(key_op(a.get(1)?, KeyOp::SetNx { value: a.get(2)? }))
        })(),
        b"SETEX" => parse_setex(&a("setex"), 1000),
        b"PSETEX" => parse_setex(&a("psetex"), 1),
        b"GETSET" => (|| {
            let a = a("getset");
            a.exact(3)?;
            let op = KeyOp::SetGet {
                value: a.get(2)?,
                expiry: Expiry::None,
                cond: SetCond::Always,
            };
            Ok(key_op(a.get(1)?, op))
        })(),
        b"GETDEL" => one_key("getdel", KeyOp::GetDel),
        b"GETEX" => parse_getex(&a("getex")),
        b"STRLEN" => one_key("strlen", KeyOp::Strlen),
        b"APPEND" => (|| {
            let a = a("append");
            a.exact(3)?;
            Ok(key_op(a.get(1)?, KeyOp::Append { value: a.get(2)? }))
        })(),
        b"GETRANGE" | b"SUBSTR" => (|| {
            let a = a(if uname == b"SUBSTR" {
                "substr"
            } else {
                "getrange"
            });
            a.exact(4)?;
            let (start, end) = (a.int(2)?, a.int(3)?);
            Ok(key_op(a.get(1)?, KeyOp::GetRange { start, end }))
        })(),
        b"SETRANGE" => (|| {
            let a = a("setrange");
            a.exact(4)?;
            let offset = u64::try_from(a.int(2)?)
                .map_err(|_| CommandError::Text("offset is out of range"))?;
            let op = KeyOp::SetRange {
                offset,
                value: a.get(3)?,
            };
            Ok(key_op(a.get(1)?, op))
        })(),
        b"INCRBYFLOAT" => (|| {
            let a = a("incrbyfloat");
            a.exact(3)?;
            let delta = a.get(2)?;
            parse_float(delta).ok_or(NOT_FLOAT)?;
            Ok(key_op(a.get(1)?, KeyOp::IncrByFloat { delta }))
        })(),
        b"MSETNX" => (|| {
            let a = a("msetnx");
            a.arity(n >= 3 && n % 2 == 1)?;
            let mut pairs = Vec::with_capacity(n / 2);
            let mut i = 1;
            while i + 1 < n {
                pairs.push((a.get(i)?, a.get(i + 1)?));
                i += 2;
            }
            Ok(Command::MSetNx { pairs })
        })(),
        b"EXPIREAT" => parse_expire_when(&a("expireat"), 1000, true),
        b"PEXPIREAT" => parse_expire_when(&a("pexpireat"), 1, true),
        b"EXPIRETIME" => one_key("expiretime", KeyOp::ExpireTime { millis: false }),
        b"PEXPIRETIME" => one_key("pexpiretime", KeyOp::ExpireTime { millis: true }),
        b"TYPE" => (|| {
            let a = a("type");
            a.exact(2)?;
            Ok(Command::Type { key: a.get(1)? })
        })(),
        b"DBSIZE" => a("dbsize").exact(1).map(|()| Command::DbSize),
        b"KEYS" => (|| {
            let a = a("keys");
            a.exact(2)?;
            Ok(Command::Keys { pattern: a.get(1)? })
        })(),
        b"SCAN" => parse_scan(&a("scan")),
        b"MEMORY" => (|| {
            let a = a("memory");
            a.at_least(2)?;
            let sub = a.get(1)?;
            let (s, sl) = upper(sub);
            if s.get(..sl) != Some(&b"USAGE"[..]) {
                return Err(CommandError::UnknownSubcommand {
                    command: "MEMORY",
                    sub: printable(sub),
                });
            }
            let a = Args {
                name: "memory|usage",
                ..a
            };
            a.at_least(3)?;
            // `SAMPLES n` is accepted and has no effect (values are flat strings).
            match a.n {
                3 => {}
                5 => {
                    let (o, ol) = upper(a.get(3)?);
                    if o.get(..ol) != Some(&b"SAMPLES"[..]) {
                        return Err(CommandError::Syntax);
                    }
                    a.int(4)?;
                }
                _ => return Err(CommandError::Syntax),
            }
            Ok(key_op(a.get(2)?, KeyOp::MemoryUsage))
        })(),
        _ => return None,
    })
}
