//! Runs a keyed command against this core's shard and says what to answer. The answer borrows
//! values straight from the store, so a GET's value is copied only into the reply buffer.
//! Replicating the change is the caller's next step (`replication::replicate`).

use ringcache_engine::{
    EngineError, Expiry as EngineExpiry, SetCondition, SetOptions, SetOutcome, Ttl,
};
use ringcache_proto::{Command, ErrorKind, Expiry, Response, SetCond, ValueRef};

use crate::core_state::CoreState;

/// The error reply for an engine error.
pub(crate) fn engine_error(e: EngineError) -> Response<'static> {
    let kind = match e {
        EngineError::NotAnInteger | EngineError::Overflow => ErrorKind::NotInteger,
        _ => ErrorKind::TooLarge,
    };
    Response::error(kind, e.to_string())
}

/// The engine expiry for a wire expiry at time `now`.
pub fn engine_expiry(e: Expiry, now: u64) -> EngineExpiry {
    match e {
        Expiry::None => EngineExpiry::Never,
        Expiry::KeepTtl => EngineExpiry::Keep,
        Expiry::RelativeMs(ms) => EngineExpiry::At(now.saturating_add(ms)),
        Expiry::AbsoluteUnixMs(at) => EngineExpiry::At(at),
    }
}

/// Runs `cmd`, whose keys all belong to this core, and returns the answer.
/// Commands that are not keyed answer an internal error (the caller routes them elsewhere).
pub fn execute<'s>(core: &'s mut CoreState, cmd: &Command<'_>, now: u64) -> Response<'s> {
    core.commands += 1;
    match cmd {
        Command::Get { key } | Command::GetVersion { key } => match core.shard.get(key, now) {
            Some(hit) => Response::Value {
                value: hit.value,
                version: hit.version,
                ttl_ms: hit.expires_at.map(|t| t.saturating_sub(now)),
            },
            None => Response::Nil,
        },
        Command::Set {
            key,
            value,
            expiry,
            cond,
            if_version,
            tags,
            get_version,
        } => {
            let opts = SetOptions {
                expiry: engine_expiry(*expiry, now),
                condition: match cond {
                    SetCond::Always => SetCondition::Always,
                    SetCond::Nx => SetCondition::IfAbsent,
                    SetCond::Xx => SetCondition::IfPresent,
                },
                if_version: *if_version,
                tags,
            };
            let version = core.clock.stamp(now);
            match core.shard.set(key, value, &opts, now, version) {
                Ok(SetOutcome::Stored) if *get_version => Response::Int(version as i64),
                Ok(SetOutcome::Stored) => Response::Ok,
                Ok(SetOutcome::NotStored) => Response::Nil,
                Ok(SetOutcome::VersionMismatch { current }) => Response::error(
                    ErrorKind::VersionMismatch,
                    match current {
                        Some(v) => format!("version mismatch: current version is {v}"),
                        None => "version mismatch: no such key".to_string(),
                    },
                ),
                Err(e) => engine_error(e),
            }
        }
        Command::Del { keys } => {
            Response::Int(keys.iter().filter(|k| core.shard.delete(k, now)).count() as i64)
        }
        Command::Exists { keys } => {
            Response::Int(keys.iter().filter(|k| core.shard.exists(k, now)).count() as i64)
        }
        Command::Touch { keys } => {
            Response::Int(keys.iter().filter(|k| core.shard.touch(k, now)).count() as i64)
        }
        Command::Expire { key, ms } => {
            Response::Bool(core.shard.expire_at(key, now.saturating_add(*ms), now))
        }
        Command::Persist { key } => Response::Bool(core.shard.persist(key, now)),
        Command::Ttl { key, millis } => Response::Int(match core.shard.ttl(key, now) {
            Ttl::Missing => -2,
            Ttl::Persistent => -1,
            Ttl::Remaining(ms) if *millis => ms as i64,
            // Redis rounds to the nearest second.
            Ttl::Remaining(ms) => (ms.saturating_add(500) / 1000) as i64,
        }),
        Command::MGet { keys } => {
            core.shard.prefetch_keys(keys.iter().copied());
            for k in keys {
                core.shard.get(k, now);
            }
            let shard = &core.shard;
            Response::Values(
                keys.iter()
                    .map(|k| {
                        shard.peek(k, now).map(|h| ValueRef {
                            value: h.value,
                            version: h.version,
                            ttl_ms: h.expires_at.map(|t| t.saturating_sub(now)),
                        })
                    })
                    .collect(),
            )
        }
        Command::MSet { pairs } => {
            for (k, v) in pairs {
                let version = core.clock.stamp(now);
                if let Err(e) = core.shard.set(k, v, &SetOptions::default(), now, version) {
                    return engine_error(e);
                }
            }
            Response::Ok
        }
        Command::IncrBy { key, delta } => {
            let version = core.clock.stamp(now);
            match core.shard.incr_by(key, *delta, now, version) {
                Ok(n) => Response::Int(n),
                Err(e) => engine_error(e),
            }
        }
        Command::Flush => {
            core.shard.flush();
            Response::Ok
        }
        Command::InvalidatePrefix { prefix } => {
            core.shard.invalidate_prefix(prefix);
            Response::Ok
        }
        Command::InvalidateTag { tag } => {
            core.shard.invalidate_tag(tag);
            Response::Ok
        }
        Command::Key { key, op } => crate::key_ops::execute_key(core, key, op, now),
        Command::Type { key } => crate::key_ops::key_type(core, key, now),
        Command::MSetNx { pairs } => crate::key_ops::msetnx(core, pairs, now),
        Command::Scan {
            cursor,
            pattern,
            count,
            kind,
        } => crate::keyspace::scan(core, *cursor, *pattern, *count, *kind, now),
        other => Response::error(
            ErrorKind::Internal,
            format!("{:?} is not a keyed command", other.opcode()),
        ),
    }
}
