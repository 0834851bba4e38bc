//! What a change owes the replicas: after a command ran on a primary core, the resulting state
//! of each key it touched is read back from the store and pushed to every link, so whatever the
//! command did (NX, KEEPTTL, INCR) replicas get the result with its version.

use ringcache_cluster::replication::{ReplOp, Tag};
use ringcache_proto::{Command, KeyOp};

use crate::core_state::CoreState;
use crate::replication::GateId;

/// Replicates the change `cmd` just made on this core (it ran already) and returns the gate
/// its reply waits behind, if any. The state of each touched key is read back from the store,
/// so whatever the command did (NX, KEEPTTL, INCR) replicas get the result, with its version.
pub fn replicate(core: &mut CoreState, cmd: &Command<'_>, now: u64) -> Option<GateId> {
    if !core.repl.is_active() {
        return None;
    }
    let mut last = None;
    match cmd {
        Command::Set { key, .. } | Command::IncrBy { key, .. } => last = put_state(core, key, now),
        Command::Expire { key, .. } | Command::Persist { key } => {
            // The expiry changed without a new version: stamp one so replicas take it.
            let version = core.clock.stamp(now);
            if core.shard.restamp(key, version, now) {
                last = put_state(core, key, now);
            }
        }
        Command::Key { key, op } => last = sync_key(core, key, op, now),
        Command::MSet { pairs } | Command::MSetNx { pairs } => {
            for (k, _) in pairs {
                last = put_state(core, k, now).or(last);
            }
        }
        Command::Del { keys } => {
            for key in keys {
                let version = core.clock.stamp(now);
                last = Some(core.repl.push(&ReplOp::Del { key, version }, Some(key)));
            }
        }
        Command::Flush => last = Some(core.repl.push(&ReplOp::Flush, None)),
        Command::InvalidatePrefix { prefix } => {
            let cut = core.shard.max_version();
            last = Some(
                core.repl
                    .push(&ReplOp::InvalidatePrefix { prefix, cut }, None),
            );
        }
        Command::InvalidateTag { tag } => {
            let cut = core.shard.max_version();
            last = Some(core.repl.push(&ReplOp::InvalidateTag { tag, cut }, None));
        }
        _ => {}
    }
    core.repl.gate(last?, now)
}

/// Passes on an operation this core applied from a range move (as the new owner) to its own
/// replicas.
pub fn forward_applied(core: &mut CoreState, op: &ReplOp<'_>, now: u64) {
    if !core.repl.is_active() {
        return;
    }
    match op {
        ReplOp::Put { key, .. } => {
            put_state(core, key, now);
        }
        ReplOp::Del { key, .. } => {
            core.repl.push(op, Some(key));
        }
        _ => {
            core.repl.push(op, None);
        }
    }
    core.repl.clear_gate_extra();
}

/// Replicates whatever state a single-key string/keyspace command left `key` in: its entry
/// (restamped first when only the expiry changed), or a delete when it holds none.
fn sync_key(core: &mut CoreState, key: &[u8], op: &KeyOp<'_>, now: u64) -> Option<u64> {
    if matches!(op, KeyOp::GetEx { .. } | KeyOp::ExpireWhen { .. }) {
        let version = core.clock.stamp(now);
        core.shard.restamp(key, version, now);
    }
    put_state(core, key, now).or_else(|| {
        let version = core.clock.stamp(now);
        Some(core.repl.push(&ReplOp::Del { key, version }, Some(key)))
    })
}

/// Replicates `key`'s current entry; `None` when it holds none (nothing was stored).
fn put_state(core: &mut CoreState, key: &[u8], now: u64) -> Option<u64> {
    let CoreState { shard, repl, .. } = core;
    let e = shard.entry(key, now)?;
    let op = ReplOp::Put {
        key: e.key,
        value: e.value,
        version: e.version,
        expires_at: e.expires_at,
        tags: e.tags.iter().map(|t| Tag(t)).collect(),
    };
    Some(repl.push(&op, Some(key)))
}
