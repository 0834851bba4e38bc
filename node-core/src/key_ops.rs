//! Execution of the single-key string and keyspace commands (`Command::Key`: SETNX, SET ... GET,
//! GETDEL, GETEX, STRLEN, APPEND, GETRANGE, SETRANGE, INCRBYFLOAT, EXPIREAT and EXPIRE options,
//! EXPIRETIME, MEMORY USAGE), TYPE and MSETNX, with Redis 7.2's replies and error texts.
//!
//! A reply that must outlive the change that produced it (the old value of GETSET, the value a
//! GETDEL removed, INCRBYFLOAT's result) is copied into the core's scratch buffer and borrowed
//! from there.

use ringcache_cluster::core_for_key;
use ringcache_engine::{Expiry as EngineExpiry, SetCondition, SetOptions, SetOutcome, Ttl};
use ringcache_proto::key_op::{format_float, parse_float};
use ringcache_proto::{ErrorKind, ExpireCond, Expiry, KeyOp, Response, SetCond};

use crate::core_state::CoreState;
use crate::execute::{engine_error, engine_expiry};

fn err(kind: ErrorKind, msg: &'static str) -> Response<'static> {
    Response::error(kind, msg)
}

fn not_float() -> Response<'static> {
    err(ErrorKind::Malformed, "value is not a valid float")
}

fn too_big() -> Response<'static> {
    err(
        ErrorKind::TooLarge,
        "string exceeds maximum allowed size (proto-max-bulk-len)",
    )
}

/// Redis's GETRANGE window of a `len`-byte string: `None` for an empty answer.
pub fn range_window(len: usize, start: i64, end: i64) -> Option<(usize, usize)> {
    let len = i64::try_from(len).ok()?;
    if (start < 0 && end < 0 && start > end) || len == 0 {
        return None;
    }
    let fix = |i: i64| if i < 0 { (len + i).max(0) } else { i };
    let (start, end) = (fix(start), fix(end).min(len - 1));
    if start > end {
        return None;
    }
    Some((usize::try_from(start).ok()?, usize::try_from(end).ok()?))
}

/// Runs `op` on `key`, which belongs to this core.
pub fn execute_key<'s>(
    core: &'s mut CoreState,
    key: &[u8],
    op: &KeyOp<'_>,
    now: u64,
) -> Response<'s> {
    match op {
        KeyOp::SetNx { value } => {
            let opts = SetOptions {
                condition: SetCondition::IfAbsent,
                ..SetOptions::default()
            };
            let version = core.clock.stamp(now);
            match core.shard.set(key, value, &opts, now, version) {
                Ok(SetOutcome::Stored) => Response::Bool(true),
                Ok(_) => Response::Bool(false),
                Err(e) => engine_error(e),
            }
        }
        KeyOp::SetGet {
            value,
            expiry,
            cond,
        } => {
            let had = keep_value(core, key, now);
            let opts = SetOptions {
                expiry: engine_expiry(*expiry, now),
                condition: match cond {
                    SetCond::Always => SetCondition::Always,
                    SetCond::Nx => SetCondition::IfAbsent,
                    SetCond::Xx => SetCondition::IfPresent,
                },
                ..SetOptions::default()
            };
            let version = core.clock.stamp(now);
            if let Err(e) = core.shard.set(key, value, &opts, now, version) {
                return engine_error(e);
            }
            kept(core, had)
        }
        KeyOp::GetDel => {
            let had = keep_value(core, key, now);
            if had {
                core.shard.delete(key, now);
            }
            kept(core, had)
        }
        KeyOp::GetEx { expiry: None } => match core.shard.get(key, now) {
            Some(hit) => Response::Bulk(hit.value),
            None => Response::Nil,
        },
        KeyOp::GetEx {
            expiry: Some(expiry),
        } => {
            let had = keep_value(core, key, now);
            if had {
                match (expiry, engine_expiry(*expiry, now)) {
                    (Expiry::None, _) => {
                        core.shard.persist(key, now);
                    }
                    (_, EngineExpiry::At(at)) => {
                        core.shard.expire_at(key, at, now);
                    }
                    _ => {}
                }
            }
            kept(core, had)
        }
        KeyOp::Strlen => {
            Response::Int(core.shard.get(key, now).map_or(0, |h| h.value.len()) as i64)
        }
        KeyOp::Append { value } => {
            let old_len = core.shard.peek(key, now).map_or(0, |h| h.value.len());
            if old_len.saturating_add(value.len()) > core.limits.max_value {
                return too_big();
            }
            fill_scratch(core, key, now);
            core.scratch.extend_from_slice(value);
            store_scratch(core, key, now)
        }
        KeyOp::GetRange { start, end } => match core.shard.get(key, now) {
            Some(hit) => match range_window(hit.value.len(), *start, *end) {
                Some((s, e)) => Response::Bulk(hit.value.get(s..=e).unwrap_or_default()),
                None => Response::Bulk(b""),
            },
            None => Response::Bulk(b""),
        },
        KeyOp::SetRange { offset, value } => {
            let old_len = core.shard.peek(key, now).map(|h| h.value.len());
            if value.is_empty() {
                return Response::Int(old_len.unwrap_or(0) as i64);
            }
            let end = usize::try_from(*offset)
                .ok()
                .and_then(|o| o.checked_add(value.len()))
                .filter(|&end| end <= core.limits.max_value);
            let Some(end) = end else {
                return too_big();
            };
            fill_scratch(core, key, now);
            if core.scratch.len() < end {
                core.scratch.resize(end, 0);
            }
            let start = end - value.len();
            if let Some(dst) = core.scratch.get_mut(start..end) {
                dst.copy_from_slice(value);
            }
            store_scratch(core, key, now)
        }
        KeyOp::IncrByFloat { delta } => {
            let Some(delta) = parse_float(delta) else {
                return not_float();
            };
            let current = match core.shard.peek(key, now) {
                None => 0.0,
                Some(hit) => match parse_float(hit.value) {
                    Some(f) => f,
                    None => return not_float(),
                },
            };
            let next = current + delta;
            if !next.is_finite() {
                return err(
                    ErrorKind::Malformed,
                    "increment would produce NaN or Infinity",
                );
            }
            core.scratch.clear();
            core.scratch
                .extend_from_slice(format_float(next).as_bytes());
            let version = core.clock.stamp(now);
            let CoreState { shard, scratch, .. } = core;
            match shard.replace_keeping(key, scratch, now, version) {
                Ok(()) => Response::Bulk(&core.scratch),
                Err(e) => engine_error(e),
            }
        }
        KeyOp::ExpireWhen { at, cond } => {
            let current = match core.shard.ttl(key, now) {
                Ttl::Missing => return Response::Bool(false),
                Ttl::Persistent => None,
                Ttl::Remaining(ms) => Some(now.saturating_add(ms)),
            };
            let target = match at {
                Expiry::AbsoluteUnixMs(ms) => *ms,
                Expiry::RelativeMs(ms) => now.saturating_add(*ms),
                Expiry::None | Expiry::KeepTtl => now,
            };
            let ok = match cond {
                ExpireCond::Always => true,
                ExpireCond::Nx => current.is_none(),
                ExpireCond::Xx => current.is_some(),
                ExpireCond::Gt => current.is_some_and(|c| target > c),
                ExpireCond::Lt => current.is_none_or(|c| target < c),
                ExpireCond::XxLt => current.is_some_and(|c| target < c),
            };
            Response::Bool(ok && core.shard.expire_at(key, target, now))
        }
        KeyOp::ExpireTime { millis } => Response::Int(match core.shard.ttl(key, now) {
            Ttl::Missing => -2,
            Ttl::Persistent => -1,
            Ttl::Remaining(ms) => {
                let at = now.saturating_add(ms);
                let at = if *millis {
                    at
                } else {
                    at.saturating_add(500) / 1000
                };
                i64::try_from(at).unwrap_or(i64::MAX)
            }
        }),
        KeyOp::MemoryUsage => match core.shard.memory_usage(key, now) {
            Some(n) => Response::Int(i64::try_from(n).unwrap_or(i64::MAX)),
            None => Response::Nil,
        },
    }
}

/// Copies `key`'s live value into the scratch buffer (counting the read); says whether it was
/// there.
fn keep_value(core: &mut CoreState, key: &[u8], now: u64) -> bool {
    core.scratch.clear();
    match core.shard.get(key, now) {
        Some(hit) => {
            core.scratch.extend_from_slice(hit.value);
            true
        }
        None => false,
    }
}

/// The kept value, or nil when there was none.
fn kept(core: &CoreState, had: bool) -> Response<'_> {
    if had {
        Response::Bulk(&core.scratch)
    } else {
        Response::Nil
    }
}

/// Copies `key`'s live value (or nothing) into the scratch buffer without counting a read.
fn fill_scratch(core: &mut CoreState, key: &[u8], now: u64) {
    core.scratch.clear();
    if let Some(hit) = core.shard.peek(key, now) {
        core.scratch.extend_from_slice(hit.value);
    }
}

/// Stores the scratch buffer at `key` (keeping its TTL and tags) and answers its length.
fn store_scratch<'s>(core: &'s mut CoreState, key: &[u8], now: u64) -> Response<'s> {
    let version = core.clock.stamp(now);
    let CoreState { shard, scratch, .. } = core;
    match shard.replace_keeping(key, scratch, now, version) {
        Ok(()) => Response::Int(scratch.len() as i64),
        Err(e) => engine_error(e),
    }
}

/// `TYPE key`: `string` or `none` (TYPE renders it as a status line).
pub fn key_type<'s>(core: &mut CoreState, key: &[u8], now: u64) -> Response<'s> {
    Response::Bulk(if core.shard.exists(key, now) {
        b"string"
    } else {
        b"none"
    })
}

/// `MSETNX`: every key must be on this core (else Redis Cluster's CROSSSLOT error); stores all
/// pairs when none of the keys exists (answers 1), nothing otherwise (answers 0).
pub fn msetnx<'s>(core: &mut CoreState, pairs: &[(&[u8], &[u8])], now: u64) -> Response<'s> {
    if pairs
        .iter()
        .any(|(k, _)| core_for_key(k, core.cores) != core.id)
    {
        return err(
            ErrorKind::CrossSlot,
            "Keys in request don't hash to the same slot",
        );
    }
    if pairs.iter().any(|(k, _)| core.shard.exists(k, now)) {
        return Response::Bool(false);
    }
    for (k, v) in pairs {
        let version = core.clock.stamp(now);
        if let Err(e) = core.shard.set(k, v, &SetOptions::default(), now, version) {
            return engine_error(e);
        }
    }
    Response::Bool(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core_state::test_support::core;
    use crate::execute::execute;
    use ringcache_cluster::replication::WriteAck;
    use ringcache_proto::{parse_command, Limits};

    const NOW: u64 = 1_000_000;

    /// Runs one RESP line on `c` and renders the reply as a short string.
    fn run(c: &mut CoreState, line: &str) -> String {
        let args: Vec<&[u8]> = line.split(' ').map(str::as_bytes).collect();
        let cmd = match parse_command(&args[..], &c.limits) {
            Ok(cmd) => cmd,
            Err(e) => return e.to_string(),
        };
        match execute(c, &cmd, NOW) {
            Response::Ok => "OK".into(),
            Response::Nil => "nil".into(),
            Response::Int(i) => i.to_string(),
            Response::Bool(b) => i64::from(b).to_string(),
            Response::Bulk(b) | Response::Value { value: b, .. } => {
                format!("\"{}\"", String::from_utf8_lossy(b))
            }
            Response::Error { kind, message } => format!("{} {message}", kind.resp_prefix()),
            other => format!("{other:?}"),
        }
    }

    fn check(c: &mut CoreState, script: &[(&str, &str)]) {
        for (line, want) in script {
            assert_eq!(run(c, line), *want, "{line}");
        }
    }

    #[test]
    fn window_follows_redis() {
        assert_eq!(range_window(11, 0, 4), Some((0, 4)));
        assert_eq!(range_window(11, -5, -1), Some((6, 10)));
        assert_eq!(range_window(11, 5, 2), None);
        assert_eq!(range_window(11, -1, -5), None);
        assert_eq!(range_window(11, 0, 100), Some((0, 10)));
        assert_eq!(range_window(11, 100, 200), None);
        assert_eq!(range_window(11, -100, -50), Some((0, 0)));
        assert_eq!(range_window(0, 0, -1), None);
    }

    /// Replies as redis-server 7.0 gives them for the same lines.
    #[test]
    fn strings_answer_as_redis() {
        let mut c = core(0, 1, WriteAck::All);
        check(
            &mut c,
            &[
                ("SETNX k1 v1", "1"),
                ("SETNX k1 v2", "0"),
                ("GETSET k1 new", "\"v1\""),
                ("GETSET missing x", "nil"),
                ("GETDEL k1", "\"new\""),
                ("GETDEL k1", "nil"),
                ("SET g hello EX 100", "OK"),
                ("GETEX g PERSIST", "\"hello\""),
                ("TTL g", "-1"),
                ("GETEX g EX 50", "\"hello\""),
                ("TTL g", "50"),
                ("GETEX g PXAT 1000", "\"hello\""),
                ("EXISTS g", "0"),
                ("GETEX nope EX 5", "nil"),
                ("SET s old", "OK"),
                ("SET s new GET", "\"old\""),
                ("SET s newer NX GET", "\"new\""),
                ("GET s", "\"new\""),
                ("SET s2 v XX GET", "nil"),
                ("EXISTS s2", "0"),
                ("SET s3 v NX GET", "nil"),
                ("GET s3", "\"v\""),
                ("STRLEN s", "3"),
                ("STRLEN nope", "0"),
                ("APPEND a hello", "5"),
                ("APPEND a _w", "7"),
                ("GETRANGE a 0 4", "\"hello\""),
                ("GETRANGE a -2 -1", "\"_w\""),
                ("GETRANGE nope 0 -1", "\"\""),
                ("SUBSTR a 1 2", "\"el\""),
                ("SETRANGE r 3 abc", "6"),
                ("GET r", "\"\0\0\0abc\""),
                ("SETRANGE r 0 XY", "6"),
                ("GET r", "\"XY\0abc\""),
                ("SET f 10.50", "OK"),
                ("INCRBYFLOAT f 0.1", "\"10.6\""),
                ("INCRBYFLOAT f -5", "\"5.6\""),
                ("SET f2 5.0e3", "OK"),
                ("INCRBYFLOAT f2 2.0e2", "\"5200\""),
                (
                    "INCRBYFLOAT f3 inf",
                    "ERR increment would produce NaN or Infinity",
                ),
                ("SET bad abc", "OK"),
                ("INCRBYFLOAT bad 1", "ERR value is not a valid float"),
                ("SET i 010", "OK"),
                ("INCR i", "ERR value is not an integer or out of range"),
                ("SET i 9223372036854775807", "OK"),
                ("INCR i", "ERR increment or decrement would overflow"),
                ("MSETNX m1 a m2 b", "1"),
                ("MSETNX m2 c m3 d", "0"),
                ("EXISTS m3", "0"),
                ("TYPE m1", "\"string\""),
                ("TYPE nope", "\"none\""),
            ],
        );
    }

    #[test]
    fn appends_and_ranges_are_bounded_by_max_value() {
        let mut c = core(0, 1, WriteAck::All);
        c.limits = Limits {
            max_value: 8,
            ..c.limits
        };
        let too_big = "ERR string exceeds maximum allowed size (proto-max-bulk-len)";
        check(
            &mut c,
            &[
                ("SETRANGE k 7 ab", too_big),
                ("SETRANGE k 6 ab", "8"),
                ("APPEND k x", too_big),
                ("SETRANGE e 100 ", "0"),
                ("EXISTS e", "0"),
            ],
        );
    }

    #[test]
    fn expiry_options_follow_redis() {
        let mut c = core(0, 1, WriteAck::All);
        check(
            &mut c,
            &[
                ("SET d 4", "OK"),
                ("EXPIRETIME d", "-1"),
                ("EXPIRETIME nope", "-2"),
                ("EXPIRE d 100 XX", "0"),
                ("EXPIRE d 100 GT", "0"),
                ("EXPIRE d 100 NX", "1"),
                ("EXPIRE d 100 NX", "0"),
                ("EXPIRE d 200 XX", "1"),
                ("EXPIRE d 50 GT", "0"),
                ("EXPIRE d 500 GT", "1"),
                ("EXPIRE d 600 LT", "0"),
                ("EXPIRE d 60 LT", "1"),
                ("TTL d", "60"),
                ("PEXPIRETIME d", "1060000"),
                ("EXPIRETIME d", "1060"),
                ("PEXPIREAT d 1060600", "1"),
                ("EXPIRETIME d", "1061"),
                ("SET p 1", "OK"),
                ("EXPIRE p 10 XX LT", "0"),
                ("EXPIRE p 10 LT", "1"),
                ("EXPIREAT p 2000 XX", "1"),
                ("PEXPIRETIME p", "2000000"),
                ("EXPIRE d -1 GT", "0"),
                ("EXISTS d", "1"),
                ("EXPIRE d -1 LT", "1"),
                ("EXISTS d", "0"),
                ("EXPIREAT nope 2000", "0"),
                ("MEMORY USAGE nope", "nil"),
            ],
        );
        assert!(run(&mut c, "MEMORY USAGE p")
            .parse::<i64>()
            .is_ok_and(|n| n > 0));
    }

    #[test]
    fn msetnx_across_cores_is_crossslot() {
        let mut c = core(0, 2, WriteAck::All);
        let (a, b) = (
            crate::plan::tests::key_on(0, 2),
            crate::plan::tests::key_on(1, 2),
        );
        let line = format!(
            "MSETNX {} 1 {} 2",
            String::from_utf8_lossy(&a),
            String::from_utf8_lossy(&b)
        );
        assert_eq!(
            run(&mut c, &line),
            "CROSSSLOT Keys in request don't hash to the same slot"
        );
        let line = format!("MSETNX {} 1", String::from_utf8_lossy(&a));
        assert_eq!(run(&mut c, &line), "1");
    }
}
