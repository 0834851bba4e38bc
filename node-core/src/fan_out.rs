//! Requests that span cores: multi-key commands split by owning core (MGET, MSET, DEL, EXISTS,
//! TOUCH) and node-wide ones broadcast to every core (STATS, DIGEST, FLUSH, INVALIDATE): the
//! operation each core gets, and how their answers merge into one reply. The runtime sends the
//! parts to their cores at once and hands the answers back here in part order.

use std::borrow::Cow;

use ringcache_cluster::core_for_key;
use ringcache_cluster::multi_key::{split, Merge};
use ringcache_proto::{Command, ErrorKind, Response, ValueRef};

use crate::remote::{CountKind, OwnedValue, RemoteOp, RemoteReply};
use crate::stats::node_stats;

/// What the parts of a spread request answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// Values, placed back in key order (MGET).
    Values,
    /// Counts, added up (DEL, EXISTS, TOUCH).
    Count,
    /// Done everywhere (MSET, FLUSH, INVALIDATE).
    Done,
    /// Every core's counters (STATS).
    Stats,
    /// Every core's entry count and digest (DIGEST).
    Digest,
    /// Every core's key count, added up (DBSIZE).
    DbSize,
    /// Every core's matching keys, one after the other (KEYS).
    Keys,
}

/// A request spread over the node's cores: one operation per core and how to merge.
#[derive(Debug)]
pub struct CoreSplit {
    /// (core, its operation), in part order.
    pub parts: Vec<(u32, RemoteOp)>,
    merge: Merge,
    answer: Answer,
    cores: u32,
}

/// The merged answer of a spread request (owned: its parts' values came from other cores).
#[derive(Debug)]
pub enum Merged {
    /// MGET values in key order.
    Values(Vec<Option<OwnedValue>>),
    /// The summed count.
    Count(i64),
    /// Done on every core.
    Done,
    /// The node's STATS.
    Stats(Vec<(Cow<'static, str>, u64)>),
    /// Per core: entry count and digest, as decimal strings.
    Digest(Vec<Vec<u8>>),
    /// KEYS: every core's matching keys.
    Keys(Vec<Vec<u8>>),
    /// A part failed: the error to answer.
    Failed(Response<'static>),
}

/// The error reply for a part that failed or answered something unexpected.
pub fn failed(r: RemoteReply) -> Response<'static> {
    match r {
        RemoteReply::Failed(msg) => Response::error(ErrorKind::Internal, msg),
        other => Response::error(
            ErrorKind::Internal,
            format!("unexpected answer from another core: {other:?}"),
        ),
    }
}

fn owned_keys(keys: &[&[u8]]) -> Vec<Vec<u8>> {
    keys.iter().map(|k| k.to_vec()).collect()
}

/// Splits a multi-key `cmd` by owning core of `cores`; `None` for any other command.
pub fn split_over_cores(cmd: &Command<'_>, cores: u32) -> Option<CoreSplit> {
    let s = split(cmd, |k| Ok::<u32, ()>(core_for_key(k, cores))).ok()??;
    let answer = match cmd {
        Command::MGet { .. } => Answer::Values,
        Command::MSet { .. } => Answer::Done,
        _ => Answer::Count,
    };
    let parts = s
        .parts
        .into_iter()
        .map(|(core, part)| {
            let op = match part {
                Command::MGet { keys } => RemoteOp::Get {
                    keys: owned_keys(&keys),
                },
                Command::MSet { pairs } => RemoteOp::MSet {
                    pairs: pairs
                        .iter()
                        .map(|(k, v)| (k.to_vec(), v.to_vec()))
                        .collect(),
                },
                Command::Del { keys } => RemoteOp::Count {
                    kind: CountKind::Del,
                    keys: owned_keys(&keys),
                },
                Command::Exists { keys } => RemoteOp::Count {
                    kind: CountKind::Exists,
                    keys: owned_keys(&keys),
                },
                Command::Touch { keys } => RemoteOp::Count {
                    kind: CountKind::Touch,
                    keys: owned_keys(&keys),
                },
                _ => RemoteOp::Stats,
            };
            (core, op)
        })
        .collect();
    Some(CoreSplit {
        parts,
        merge: s.merge,
        answer,
        cores,
    })
}

/// The parts of a node-wide `cmd` (one per core); `None` for any other command.
pub fn broadcast(cmd: &Command<'_>, cores: u32) -> Option<CoreSplit> {
    let (op, answer) = match cmd {
        Command::Flush => (RemoteOp::Flush, Answer::Done),
        Command::InvalidatePrefix { prefix } => {
            (RemoteOp::InvalidatePrefix(prefix.to_vec()), Answer::Done)
        }
        Command::InvalidateTag { tag } => (RemoteOp::InvalidateTag(tag.to_vec()), Answer::Done),
        Command::Stats => (RemoteOp::Stats, Answer::Stats),
        Command::DbSize => (RemoteOp::Stats, Answer::DbSize),
        Command::Keys { pattern } => (RemoteOp::Keys(pattern.to_vec()), Answer::Keys),
        Command::Digest => (RemoteOp::Digest, Answer::Digest),
        _ => return None,
    };
    let parts = (0..cores)
        .map(|c| {
            let op = match &op {
                RemoteOp::Flush => RemoteOp::Flush,
                RemoteOp::InvalidatePrefix(p) => RemoteOp::InvalidatePrefix(p.clone()),
                RemoteOp::InvalidateTag(t) => RemoteOp::InvalidateTag(t.clone()),
                RemoteOp::Digest => RemoteOp::Digest,
                RemoteOp::Keys(p) => RemoteOp::Keys(p.clone()),
                _ => RemoteOp::Stats,
            };
            (c, op)
        })
        .collect();
    Some(CoreSplit {
        parts,
        merge: Merge::AllOk,
        answer,
        cores,
    })
}

impl CoreSplit {
    /// Merges the parts' answers, given in part order.
    pub fn merge(self, replies: Vec<RemoteReply>) -> Merged {
        let mut values = Vec::new();
        let mut count = 0i64;
        let mut stats = Vec::new();
        let mut digests = Vec::new();
        for r in replies {
            match (self.answer, r) {
                (Answer::Values, RemoteReply::Values(vs)) => values.push(vs),
                (Answer::Count, RemoteReply::Count(n)) => count = count.saturating_add(n),
                (Answer::Done, RemoteReply::Done) => {}
                (Answer::Stats, RemoteReply::Stats(f, s)) => stats.push((f, s)),
                (Answer::Keys, RemoteReply::Keys(k)) => digests.extend(k),
                (Answer::DbSize, RemoteReply::Stats(_, s)) => {
                    count = count.saturating_add(i64::try_from(s.keys).unwrap_or(i64::MAX))
                }
                (Answer::Digest, RemoteReply::Digest(n, d)) => {
                    digests.push(n.to_string().into_bytes());
                    digests.push(d.to_string().into_bytes());
                }
                (_, other) => return Merged::Failed(failed(other)),
            }
        }
        match self.answer {
            Answer::Values => match self.merge.place(values) {
                Ok(vs) => Merged::Values(vs),
                Err(e) => Merged::Failed(Response::error(ErrorKind::Internal, e.to_string())),
            },
            Answer::Count | Answer::DbSize => Merged::Count(count),
            Answer::Done => Merged::Done,
            Answer::Stats => Merged::Stats(node_stats(self.cores, stats)),
            Answer::Digest => Merged::Digest(digests),
            Answer::Keys => Merged::Keys(digests),
        }
    }
}

impl Merged {
    /// The reply to send (borrowing the merged values).
    pub fn response(&self) -> Response<'_> {
        fn value(v: &OwnedValue) -> ValueRef<'_> {
            ValueRef {
                value: &v.value,
                version: v.version,
                ttl_ms: v.ttl_ms,
            }
        }
        match self {
            Merged::Values(vs) => {
                Response::Values(vs.iter().map(|v| v.as_ref().map(value)).collect())
            }
            Merged::Count(n) => Response::Int(*n),
            Merged::Done => Response::Ok,
            Merged::Stats(fields) => Response::Stats(fields.clone()),
            Merged::Digest(d) | Merged::Keys(d) => Response::Values(
                d.iter()
                    .map(|d| {
                        Some(ValueRef {
                            value: d,
                            version: 0,
                            ttl_ms: None,
                        })
                    })
                    .collect(),
            ),
            Merged::Failed(resp) => resp.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core_state::test_support::core;
    use crate::remote::run_remote;
    use ringcache_cluster::replication::WriteAck;

    fn key_on(core: u32, cores: u32, n: u32) -> Vec<u8> {
        (0u32..)
            .map(|i| format!("k{i}").into_bytes())
            .filter(|k| core_for_key(k, cores) == core)
            .nth(n as usize)
            .unwrap_or_default()
    }

    /// Runs every part on its own core, as the runtime does, and merges.
    fn run(cores: &mut [crate::CoreState], mut s: CoreSplit) -> Merged {
        let parts = std::mem::take(&mut s.parts);
        let replies = parts
            .into_iter()
            .map(|(c, op)| run_remote(&mut cores[c as usize], op, 1_000).0)
            .collect();
        s.merge(replies)
    }

    #[test]
    fn mset_then_mget_across_cores_comes_back_in_key_order() {
        let mut cores = [core(0, 2, WriteAck::All), core(1, 2, WriteAck::All)];
        let (a, b, c) = (key_on(0, 2, 0), key_on(1, 2, 0), key_on(0, 2, 1));
        let mset = Command::MSet {
            pairs: vec![(&a, b"1"), (&b, b"2"), (&c, b"3")],
        };
        let s = split_over_cores(&mset, 2).unwrap();
        assert_eq!(s.parts.len(), 2);
        assert!(matches!(run(&mut cores, s), Merged::Done));
        let missing = key_on(1, 2, 5);
        let mget = Command::MGet {
            keys: vec![&b, &missing, &a, &c],
        };
        let merged = run(&mut cores, split_over_cores(&mget, 2).unwrap());
        let Merged::Values(vs) = merged else {
            panic!("expected values, got {merged:?}");
        };
        let got: Vec<Option<&[u8]>> = vs
            .iter()
            .map(|v| v.as_ref().map(|v| &v.value[..]))
            .collect();
        assert_eq!(got, vec![Some(&b"2"[..]), None, Some(b"1"), Some(b"3")]);
        let del = Command::Del {
            keys: vec![&a, &b, &missing],
        };
        assert!(matches!(
            run(&mut cores, split_over_cores(&del, 2).unwrap()),
            Merged::Count(2)
        ));
        assert!(split_over_cores(&Command::Get { key: &a }, 2).is_none());
    }

    #[test]
    fn broadcasts_reach_every_core_and_merge() {
        let mut cores = [core(0, 2, WriteAck::All), core(1, 2, WriteAck::All)];
        let (a, b) = (key_on(0, 2, 0), key_on(1, 2, 0));
        run_remote(
            &mut cores[0],
            RemoteOp::MSet {
                pairs: vec![(a.clone(), b"x".to_vec())],
            },
            1_000,
        );
        run_remote(
            &mut cores[1],
            RemoteOp::MSet {
                pairs: vec![(b.clone(), b"y".to_vec())],
            },
            1_000,
        );
        assert!(matches!(
            run(&mut cores, broadcast(&Command::DbSize, 2).unwrap()),
            Merged::Count(2)
        ));
        let Merged::Digest(d) = run(&mut cores, broadcast(&Command::Digest, 2).unwrap()) else {
            panic!("expected digests");
        };
        assert_eq!(d.len(), 4);
        assert_eq!((&d[0][..], &d[2][..]), (&b"1"[..], &b"1"[..]));
        let Merged::Stats(fields) = run(&mut cores, broadcast(&Command::Stats, 2).unwrap()) else {
            panic!("expected stats");
        };
        assert!(fields.iter().any(|(n, v)| n == "keys" && *v == 2));
        assert!(matches!(
            run(&mut cores, broadcast(&Command::Flush, 2).unwrap()),
            Merged::Done
        ));
        assert!(
            matches!(run(&mut cores, broadcast(&Command::Digest, 2).unwrap()), Merged::Digest(d) if d[0] == b"0")
        );
    }

    #[test]
    fn a_failed_part_fails_the_whole_reply() {
        let s = broadcast(&Command::Flush, 2).unwrap();
        let merged = CoreSplit {
            parts: Vec::new(),
            ..s
        }
        .merge(vec![
            RemoteReply::Done,
            RemoteReply::Failed("core 1 gone".into()),
        ]);
        assert!(matches!(merged, Merged::Failed(Response::Error { .. })));
    }
}
