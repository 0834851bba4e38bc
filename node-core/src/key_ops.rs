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
