//! Routing: which connection each request goes to; multi-key requests are split per
//! connection and their parts' replies put back in the caller's order by `cluster::multi_key`.

use ringcache_cluster::core_for_key;
use ringcache_cluster::multi_key::split;
use ringcache_proto::{Command, SetCond};

use crate::error::ClientError;
use crate::reply::Reply;

/// Connection slot of the node's main port (non-keyed commands: PING, STATS, FLUSH, ...).
pub(crate) const MAIN: usize = 0;

/// Connection slot of core `core`.
pub(crate) fn core_slot(core: u32) -> usize {
    core as usize + 1
}

/// The connection slot for `key` on a node of `cores` cores.
pub(crate) fn key_slot(key: &[u8], cores: u32) -> usize {
    core_slot(core_for_key(key, cores))
}

pub(crate) use ringcache_cluster::multi_key::Merge;

/// One caller-visible operation, as requests to one or more connections.
#[derive(Debug)]
pub(crate) struct Op<'a> {
    /// (connection slot, request) per part.
    pub(crate) parts: Vec<(usize, Command<'a>)>,
    /// How the parts' replies combine.
    pub(crate) merge: Merge,
    /// Whether the parts may be sent again after a broken connection.
    pub(crate) retry: bool,
}

/// Whether sending `cmd` twice leaves the same state and gives the same answer as once.
pub(crate) fn idempotent(cmd: &Command<'_>) -> bool {
    match cmd {
        Command::Set {
            cond, if_version, ..
        } => *cond == SetCond::Always && if_version.is_none(),
        Command::Expire { ms, .. } => *ms > 0,
        Command::Del { .. } | Command::IncrBy { .. } | Command::Persist { .. } | Command::Quit => {
            false
        }
        _ => true,
    }
}

/// Plans `cmd` for a node of `cores` cores: single-key commands go to the key's core,
/// multi-key commands are split per core, the rest go to the main port.
#[cfg(test)]
pub(crate) fn plan(cmd: Command<'_>, cores: u32) -> Op<'_> {
    plan_with(cmd, &|k| key_slot(k, cores))
}

/// Plans `cmd` with `slot_of` naming the connection slot of each key (a node's cores, or the
/// (node, core) pairs of a cluster).
pub(crate) fn plan_with<'a>(cmd: Command<'a>, slot_of: &dyn Fn(&[u8]) -> usize) -> Op<'a> {
    let retry = idempotent(&cmd);
    let one = |slot, cmd| Op {
        parts: vec![(slot, cmd)],
        merge: Merge::One,
        retry,
    };
    if let Some(key) = cmd.key() {
        return one(slot_of(key), cmd);
    }
    match split(&cmd, |k| Ok::<usize, ()>(slot_of(k))) {
        Ok(Some(s)) => Op {
            parts: s.parts,
            merge: s.merge,
            retry,
        },
        _ => one(MAIN, cmd),
    }
}

/// Combines the parts' replies (in part order) into the operation's reply.
pub(crate) fn merge(
    merge: &Merge,
    replies: impl IntoIterator<Item = Result<Reply, ClientError>>,
) -> Result<Reply, ClientError> {
    let mut replies = replies.into_iter();
    match merge {
        Merge::One => replies
            .next()
            .unwrap_or_else(|| Err(ClientError::Protocol("no reply".into()))),
        Merge::Sum => {
            let mut total: i64 = 0;
            for r in replies {
                total = total.saturating_add(r?.into_int()?);
            }
            Ok(Reply::Int(total))
        }
        Merge::AllOk => {
            for r in replies {
                r?.into_ok()?;
            }
            Ok(Reply::Ok)
        }
        Merge::MGet { .. } => {
            let parts = replies
                .map(|r| r?.into_values())
                .collect::<Result<Vec<_>, ClientError>>()?;
            merge
                .place(parts)
                .map(Reply::Values)
                .map_err(|e| ClientError::Protocol(e.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reply::Versioned;

    /// A key owned by `core` of `cores`.
    fn key_on(core: u32, cores: u32, tag: &str) -> Vec<u8> {
        (0u32..)
            .map(|i| format!("{tag}{i}").into_bytes())
            .find(|k| core_for_key(k, cores) == core)
            .unwrap()
    }

    #[test]
    fn single_key_commands_go_to_their_core() {
        for cores in [1u32, 2, 3, 8] {
            for core in 0..cores {
                let k = key_on(core, cores, "k");
                let op = plan(Command::Get { key: &k }, cores);
                assert_eq!(op.parts.len(), 1);
                assert_eq!(op.parts[0].0, core_slot(core));
                assert_eq!(op.merge, Merge::One);
                assert!(op.retry);
            }
        }
        assert_eq!(plan(Command::Stats, 4).parts[0].0, MAIN);
        assert!(
            !plan(
                Command::IncrBy {
                    key: b"a",
                    delta: 1
                },
                4
            )
            .retry
        );
    }

    #[test]
    fn multi_key_commands_split_per_core() {
        let (a, b, c) = (key_on(0, 2, "a"), key_on(1, 2, "b"), key_on(0, 2, "c"));
        let op = plan(
            Command::MGet {
                keys: vec![&a, &b, &c],
            },
            2,
        );
        assert_eq!(
            op.parts,
            vec![
                (core_slot(0), Command::MGet { keys: vec![&a, &c] }),
                (core_slot(1), Command::MGet { keys: vec![&b] }),
            ]
        );
        assert_eq!(
            op.merge,
            Merge::MGet {
                positions: vec![vec![0, 2], vec![1]],
                len: 3
            }
        );
        let op = plan(
            Command::MSet {
                pairs: vec![(&a, b"1"), (&b, b"2")],
            },
            2,
        );
        assert_eq!(op.parts.len(), 2);
        assert_eq!(op.merge, Merge::AllOk);
        let op = plan(Command::Del { keys: vec![&b, &a] }, 2);
        assert_eq!(op.parts[0], (core_slot(1), Command::Del { keys: vec![&b] }));
        assert_eq!(op.merge, Merge::Sum);
        assert!(!op.retry);
        assert!(plan(Command::Del { keys: vec![] }, 2).parts.is_empty());
    }

    #[test]
    fn merged_replies_come_back_in_caller_order() {
        let v = |s: &str| {
            Some(Versioned {
                value: s.as_bytes().to_vec(),
                version: 1,
                ttl: None,
            })
        };
        let m = Merge::MGet {
            positions: vec![vec![0, 2], vec![1]],
            len: 3,
        };
        let got = merge(
            &m,
            [
                Ok(Reply::Values(vec![v("a"), None])),
                Ok(Reply::Values(vec![v("b")])),
            ],
        )
        .unwrap();
        assert_eq!(got, Reply::Values(vec![v("a"), v("b"), None]));
        assert!(merge(
            &m,
            [Ok(Reply::Values(vec![v("a")])), Ok(Reply::Values(vec![]))]
        )
        .is_err());
        assert_eq!(
            merge(&Merge::Sum, [Ok(Reply::Int(2)), Ok(Reply::Int(3))]).unwrap(),
            Reply::Int(5)
        );
        assert_eq!(merge(&Merge::Sum, []).unwrap(), Reply::Int(0));
        let err = ClientError::Protocol("x".into());
        assert!(merge(&Merge::AllOk, [Ok(Reply::Ok), Err(err)]).is_err());
        assert_eq!(merge(&Merge::AllOk, []).unwrap(), Reply::Ok);
        assert!(merge(&Merge::One, []).is_err());
    }

    #[test]
    fn idempotency() {
        let set = |cond, if_version| Command::Set {
            key: b"k",
            value: b"v",
            expiry: ringcache_proto::Expiry::None,
            cond,
            if_version,
            tags: vec![],
            get_version: false,
        };
        assert!(idempotent(&set(SetCond::Always, None)));
        assert!(!idempotent(&set(SetCond::Nx, None)));
        assert!(!idempotent(&set(SetCond::Always, Some(3))));
        assert!(idempotent(&Command::Expire { key: b"k", ms: 5 }));
        assert!(!idempotent(&Command::Expire { key: b"k", ms: 0 }));
        assert!(!idempotent(&Command::Persist { key: b"k" }));
        assert!(idempotent(&Command::MGet { keys: vec![b"k"] }));
    }
}
