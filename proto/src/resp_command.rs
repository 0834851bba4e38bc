//! Turns parsed RESP arguments into a `Command`, with Redis-compatible error replies.
//!
//! Command names and options are matched case-insensitively without allocating; only the
//! multi-key commands (and SET with tags) collect their keys into a `Vec`.

mod args;
mod options;
mod strings;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_strings;

pub use args::ArgList;

use crate::command::{Command, Credentials};
use crate::error::{printable, CommandError};
use crate::limits::Limits;
use args::{upper, Args};
use options::{parse_expire, parse_hello, parse_set};
use strings::{parse_expire_when, parse_string_command};

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
        b"EXPIRE" if n > 3 => parse_expire_when(&a("expire"), 1000, false)?,
        b"PEXPIRE" if n > 3 => parse_expire_when(&a("pexpire"), 1, false)?,
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
        _ => match parse_string_command(uname, args) {
            Some(cmd) => cmd?,
            None => return Err(CommandError::UnknownCommand(printable(name))),
        },
    };
    cmd.check_limits(limits)?;
    Ok(cmd)
}
