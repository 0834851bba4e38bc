//! Parsers for the commands that take options or a variable tail: SET (expiry, condition,
//! IF-VERSION, tags, GETVERSION), EXPIRE/PEXPIRE and HELLO. Each gets the `Args` cursor
//! built by `parse_command` and returns the finished `Command`.

use super::args::{upper, ArgList, Args};
use crate::command::{Command, Credentials, Expiry, SetCond};
use crate::error::CommandError;
use crate::key_op::KeyOp;
use crate::resp::{parse_i64, parse_u64};

/// `SET key value [EX s|PX ms|EXAT s|PXAT ms|KEEPTTL] [NX|XX] [IF-VERSION v] [TAG t]... [GETVERSION]`.
pub(super) fn parse_set<'a, A: ArgList<'a> + ?Sized>(
    a: &Args<'_, 'a, A>,
) -> Result<Command<'a>, CommandError> {
    a.at_least(3)?;
    let key = a.get(1)?;
    let value = a.get(2)?;
    let mut expiry = None;
    let mut cond = None;
    let mut if_version = None;
    let mut tags = Vec::new();
    let mut get_version = false;
    let mut get = false;
    let mut i = 3;
    while i < a.n {
        let (o, ol) = upper(a.get(i)?);
        let opt = o.get(..ol).unwrap_or_default();
        // Options that take a value read it from `i + 1`.
        let val = || a.args.arg(i + 1).ok_or(CommandError::Syntax);
        match opt {
            b"EX" | b"PX" | b"EXAT" | b"PXAT" => {
                if expiry.is_some() {
                    return Err(CommandError::Syntax);
                }
                expiry = Some(super::strings::expiry_option(opt, val()?, "set")?);
                i += 2;
            }
            b"KEEPTTL" => {
                if expiry.is_some() {
                    return Err(CommandError::Syntax);
                }
                expiry = Some(Expiry::KeepTtl);
                i += 1;
            }
            b"NX" | b"XX" => {
                if cond.is_some() {
                    return Err(CommandError::Syntax);
                }
                cond = Some(if opt == b"NX" {
                    SetCond::Nx
                } else {
                    SetCond::Xx
                });
                i += 1;
            }
            b"IF-VERSION" => {
                if if_version.is_some() {
                    return Err(CommandError::Syntax);
                }
                if_version = Some(parse_u64(val()?).ok_or(CommandError::NotInteger)?);
                i += 2;
            }
            b"TAG" => {
                tags.push(val()?);
                i += 2;
            }
            b"GETVERSION" => {
                get_version = true;
                i += 1;
            }
            b"GET" => {
                get = true;
                i += 1;
            }
            _ => return Err(CommandError::Syntax),
        }
    }
    if get {
        // SET ... GET answers the old value; ringcache's own options do not combine with it.
        if if_version.is_some() || !tags.is_empty() || get_version {
            return Err(CommandError::Syntax);
        }
        return Ok(Command::Key {
            key,
            op: KeyOp::SetGet {
                value,
                expiry: expiry.unwrap_or(Expiry::None),
                cond: cond.unwrap_or(SetCond::Always),
            },
        });
    }
    Ok(Command::Set {
        key,
        value,
        expiry: expiry.unwrap_or(Expiry::None),
        cond: cond.unwrap_or(SetCond::Always),
        if_version,
        tags,
        get_version,
    })
}

/// `EXPIRE key s` / `PEXPIRE key ms`; a non-positive time means "expire now" (0).
pub(super) fn parse_expire<'a, A: ArgList<'a> + ?Sized>(
    a: &Args<'_, 'a, A>,
    scale: u64,
) -> Result<Command<'a>, CommandError> {
    a.at_least(3)?;
    if a.n > 3 {
        return Err(CommandError::Syntax);
    }
    let key = a.get(1)?;
    let t = a.int(2)?;
    let ms = match u64::try_from(t) {
        Err(_) => 0,
        Ok(t) => t
            .checked_mul(scale)
            .filter(|&ms| ms <= i64::MAX as u64)
            .ok_or(CommandError::InvalidExpire(a.name))?,
    };
    Ok(Command::Expire { key, ms })
}

/// `HELLO [protover [AUTH user pass] [SETNAME name]]`.
pub(super) fn parse_hello<'a, A: ArgList<'a> + ?Sized>(
    a: &Args<'_, 'a, A>,
) -> Result<Command<'a>, CommandError> {
    let Some(v) = a.args.arg(1) else {
        return Ok(Command::Hello {
            version: None,
            auth: None,
        });
    };
    let version = parse_i64(v)
        .and_then(|v| u8::try_from(v).ok())
        .ok_or(CommandError::InvalidProtocolVersion)?;
    let mut auth = None;
    let mut i = 2;
    while i < a.n {
        let (o, ol) = upper(a.get(i)?);
        match o.get(..ol) {
            Some(b"AUTH") => {
                let username = a.args.arg(i + 1).ok_or(CommandError::Syntax)?;
                let password = a.args.arg(i + 2).ok_or(CommandError::Syntax)?;
                auth = Some(Credentials {
                    username: Some(username),
                    password,
                });
                i += 3;
            }
            Some(b"SETNAME") => {
                a.args.arg(i + 1).ok_or(CommandError::Syntax)?;
                i += 2;
            }
            _ => return Err(CommandError::Syntax),
        }
    }
    Ok(Command::Hello {
        version: Some(version),
        auth,
    })
}
