//! Turns parsed RESP arguments into a `Command`, with Redis-compatible error replies.
//!
//! Command names and options are matched case-insensitively without allocating; only the
//! multi-key commands (and SET with tags) collect their keys into a `Vec`.

use crate::command::{Command, Credentials, Expiry, SetCond};
use crate::error::{printable, CommandError};
use crate::limits::Limits;
use crate::resp::{parse_i64, parse_u64, RespArgs};

/// Read access to a request's arguments (index 0 is the command name).
pub trait ArgList<'a> {
    /// Number of arguments, the name included.
    fn arg_count(&self) -> usize;
    /// Argument `i`, or `None` past the end.
    fn arg(&self, i: usize) -> Option<&'a [u8]>;
}

impl<'a> ArgList<'a> for [&'a [u8]] {
    fn arg_count(&self) -> usize {
        self.len()
    }
    fn arg(&self, i: usize) -> Option<&'a [u8]> {
        self.get(i).copied()
    }
}

impl<'a> ArgList<'a> for Vec<&'a [u8]> {
    fn arg_count(&self) -> usize {
        self.len()
    }
    fn arg(&self, i: usize) -> Option<&'a [u8]> {
        self.get(i).copied()
    }
}

impl<'a> ArgList<'a> for RespArgs<'a, '_> {
    fn arg_count(&self) -> usize {
        self.len()
    }
    fn arg(&self, i: usize) -> Option<&'a [u8]> {
        self.get(i)
    }
}

/// Longest command or option name we recognise.
const MAX_NAME: usize = 16;

/// Upper-cases a short name onto the stack; empty for names too long to be known.
fn upper(name: &[u8]) -> ([u8; MAX_NAME], usize) {
    let mut buf = [0u8; MAX_NAME];
    if name.len() > MAX_NAME {
        return (buf, 0);
    }
    for (d, s) in buf.iter_mut().zip(name) {
        *d = s.to_ascii_uppercase();
    }
    (buf, name.len())
}

/// Wraps argument access with the command's arity error.
struct Args<'x, 'a, A: ArgList<'a> + ?Sized> {
    args: &'x A,
    n: usize,
    name: &'static str,
    _a: std::marker::PhantomData<&'a ()>,
}

impl<'a, A: ArgList<'a> + ?Sized> Args<'_, 'a, A> {
    fn get(&self, i: usize) -> Result<&'a [u8], CommandError> {
        self.args.arg(i).ok_or(CommandError::WrongArity(self.name))
    }
    fn arity(&self, ok: bool) -> Result<(), CommandError> {
        if ok {
            Ok(())
        } else {
            Err(CommandError::WrongArity(self.name))
        }
    }
    fn exact(&self, n: usize) -> Result<(), CommandError> {
        self.arity(self.n == n)
    }
    fn at_least(&self, n: usize) -> Result<(), CommandError> {
        self.arity(self.n >= n)
    }
    /// Arguments `from..` collected (multi-key commands).
    fn rest(&self, from: usize) -> Vec<&'a [u8]> {
        let mut v = Vec::with_capacity(self.n.saturating_sub(from));
        v.extend((from..self.n).filter_map(|i| self.args.arg(i)));
        v
    }
    fn int(&self, i: usize) -> Result<i64, CommandError> {
        parse_i64(self.get(i)?).ok_or(CommandError::NotInteger)
    }
}

/// Builds a `Command` from RESP arguments (name first), checking arity, options and limits.
pub fn parse_command<'a, A>(args: &A, limits: &Limits) -> Result<Command<'a>, CommandError>
where
    A: ArgList<'a> + ?Sized,
{
    let n = args.arg_count();
    let name = args.arg(0).ok_or(CommandError::Empty)?;
    let (ubuf, ulen) = upper(name);
    let uname = ubuf.get(..ulen).unwrap_or_default();
    let a = |name: &'static str| Args {
        args,
        n,
        name,
        _a: std::marker::PhantomData,
    };
    let cmd = match uname {
        b"GET" => {
            let a = a("get");
            a.exact(2)?;
            Command::Get { key: a.get(1)? }
        }
        b"GETV" => {
            let a = a("getv");
            a.exact(2)?;
            Command::GetVersion { key: a.get(1)? }
        }
        b"SET" => parse_set(&a("set"))?,
        b"DEL" | b"UNLINK" => {
            let a = a("del");
            a.at_least(2)?;
            Command::Del { keys: a.rest(1) }
        }
        b"EXISTS" => {
            let a = a("exists");
            a.at_least(2)?;
            Command::Exists { keys: a.rest(1) }
        }
        b"TOUCH" => {
            let a = a("touch");
            a.at_least(2)?;
            Command::Touch { keys: a.rest(1) }
        }
        b"MGET" => {
            let a = a("mget");
            a.at_least(2)?;
            Command::MGet { keys: a.rest(1) }
        }
        b"EXPIRE" => parse_expire(&a("expire"), 1000)?,
        b"PEXPIRE" => parse_expire(&a("pexpire"), 1)?,
        b"TTL" | b"PTTL" => {
            let millis = uname == b"PTTL";
            let a = a(if millis { "pttl" } else { "ttl" });
            a.exact(2)?;
            Command::Ttl {
                key: a.get(1)?,
                millis,
            }
        }
        b"PERSIST" => {
            let a = a("persist");
            a.exact(2)?;
            Command::Persist { key: a.get(1)? }
        }
        b"MSET" => {
            let a = a("mset");
            a.arity(n >= 3 && n % 2 == 1)?;
            let mut pairs = Vec::with_capacity(n / 2);
            let mut i = 1;
            while i + 1 < n {
                pairs.push((a.get(i)?, a.get(i + 1)?));
                i += 2;
            }
            Command::MSet { pairs }
        }
        b"INCR" | b"DECR" => {
            let decr = uname == b"DECR";
            let a = a(if decr { "decr" } else { "incr" });
            a.exact(2)?;
            Command::IncrBy {
                key: a.get(1)?,
                delta: if decr { -1 } else { 1 },
            }
        }
        b"INCRBY" | b"DECRBY" => {
            let decr = uname == b"DECRBY";
            let a = a(if decr { "decrby" } else { "incrby" });
            a.exact(3)?;
            let d = a.int(2)?;
            let delta = if decr {
                d.checked_neg().ok_or(CommandError::Overflow)?
            } else {
                d
            };
            Command::IncrBy {
                key: a.get(1)?,
                delta,
            }
        }
        b"PING" => {
            let a = a("ping");
            a.arity(n <= 2)?;
            Command::Ping { msg: args.arg(1) }
        }
        b"ECHO" => {
            let a = a("echo");
            a.exact(2)?;
            Command::Ping {
                msg: Some(a.get(1)?),
            }
        }
        b"FLUSH" | b"FLUSHALL" | b"FLUSHDB" => {
            let a = a("flushall");
            a.arity(n <= 2)?;
            if let Some(mode) = args.arg(1) {
                let (m, ml) = upper(mode);
                if !matches!(m.get(..ml), Some(b"ASYNC" | b"SYNC")) {
                    return Err(CommandError::Syntax);
                }
            }
            Command::Flush
        }
        b"INVALIDATE" => {
            let a = a("invalidate");
            a.exact(3)?;
            let sub = a.get(1)?;
            let (s, sl) = upper(sub);
            match s.get(..sl) {
                Some(b"PREFIX") => Command::InvalidatePrefix { prefix: a.get(2)? },
                Some(b"TAG") => Command::InvalidateTag { tag: a.get(2)? },
                _ => {
                    return Err(CommandError::UnknownSubcommand {
                        command: "INVALIDATE",
                        sub: printable(sub),
                    })
                }
            }
        }
        b"STATS" | b"INFO" => Command::Stats,
        b"TOPOLOGY" => {
            a("topology").exact(1)?;
            Command::Topology
        }
        b"HELLO" => parse_hello(&a("hello"))?,
        b"AUTH" => {
            let a = a("auth");
            a.arity(n == 2 || n == 3)?;
            let creds = if n == 3 {
                Credentials {
                    username: Some(a.get(1)?),
                    password: a.get(2)?,
                }
            } else {
                Credentials {
                    username: None,
                    password: a.get(1)?,
                }
            };
            Command::Auth { creds }
        }
        b"CONFIG" => {
            let a = a("config");
            a.at_least(2)?;
            let sub = a.get(1)?;
            let (s, sl) = upper(sub);
            match s.get(..sl) {
                Some(b"GET") => {
                    let a = Args {
                        name: "config|get",
                        ..a
                    };
                    a.exact(3)?;
                    Command::ConfigGet { pattern: a.get(2)? }
                }
                _ => {
                    return Err(CommandError::UnknownSubcommand {
                        command: "CONFIG",
                        sub: printable(sub),
                    })
                }
            }
        }
        b"COMMAND" => Command::CommandDocs,
        b"QUIT" => Command::Quit,
        b"DIGEST" => {
            a("digest").exact(1)?;
            Command::Digest
        }
        b"SELECT" => {
            let a = a("select");
            a.exact(2)?;
            let db = a.int(1)?;
            Command::Select {
                db: u32::try_from(db).map_err(|_| CommandError::InvalidDbIndex)?,
            }
        }
        b"CLIENT" => {
            let a = a("client");
            a.at_least(2)?;
            let sub = a.get(1)?;
            let (s, sl) = upper(sub);
            match s.get(..sl) {
                Some(b"SETINFO") => {
                    let a = Args {
                        name: "client|setinfo",
                        ..a
                    };
                    a.exact(4)?;
                    Command::ClientSetInfo
                }
                Some(b"SETNAME") => {
                    let a = Args {
                        name: "client|setname",
                        ..a
                    };
                    a.exact(3)?;
                    Command::ClientSetName { name: a.get(2)? }
                }
                _ => {
                    return Err(CommandError::UnknownSubcommand {
                        command: "CLIENT",
                        sub: printable(sub),
                    })
                }
            }
        }
        _ => return Err(CommandError::UnknownCommand(printable(name))),
    };
    cmd.check_limits(limits)?;
    Ok(cmd)
}

/// `SET key value [EX s|PX ms|EXAT s|PXAT ms|KEEPTTL] [NX|XX] [IF-VERSION v] [TAG t]... [GETVERSION]`.
fn parse_set<'a, A: ArgList<'a> + ?Sized>(
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
                let v = parse_i64(val()?).ok_or(CommandError::NotInteger)?;
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
                    .ok_or(CommandError::InvalidExpire("set"))?;
                expiry = Some(if matches!(opt, b"EX" | b"PX") {
                    Expiry::RelativeMs(ms)
                } else {
                    Expiry::AbsoluteUnixMs(ms)
                });
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
            _ => return Err(CommandError::Syntax),
        }
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
fn parse_expire<'a, A: ArgList<'a> + ?Sized>(
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
fn parse_hello<'a, A: ArgList<'a> + ?Sized>(
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

#[cfg(test)]
mod tests {
    use super::*;
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
        assert_eq!(err("expire k 1 nx"), "ERR syntax error");
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
}
