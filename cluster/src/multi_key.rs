//! Multi-key commands (MGET, MSET, DEL, EXISTS, TOUCH) split by owner and their parts' replies
//! put back together. The one home of this logic: a node splits by core, the balancer by node,
//! the client by (node, core); each passes its own owner function.

use ringcache_proto::Command;

/// The keys a multi-key command names, in order (`None` for any other command).
pub fn multi_keys<'a>(cmd: &Command<'a>) -> Option<Vec<&'a [u8]>> {
    match cmd {
        Command::Del { keys }
        | Command::Exists { keys }
        | Command::Touch { keys }
        | Command::MGet { keys } => Some(keys.clone()),
        Command::MSet { pairs } => Some(pairs.iter().map(|(k, _)| *k).collect()),
        _ => None,
    }
}

/// How the replies of a command's parts make its one reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Merge {
    /// One part; its reply as is.
    One,
    /// Integer replies added up (DEL, EXISTS, TOUCH).
    Sum,
    /// Each part answers its keys' values; `positions[i]` says where part i's go.
    MGet {
        /// Positions in the caller's key list, per part.
        positions: Vec<Vec<usize>>,
        /// Number of keys asked for.
        len: usize,
    },
    /// Every part must answer OK (MSET).
    AllOk,
}

/// A multi-key command split by owner: one part per owner, in order of first appearance.
#[derive(Debug)]
pub struct Split<'a, O> {
    /// (owner, the part of the command it gets).
    pub parts: Vec<(O, Command<'a>)>,
    /// How the parts' replies combine.
    pub merge: Merge,
}

/// Why parts' replies could not be put together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MergeError {
    /// A part answered a different number of values than it was asked keys.
    #[error("MGET of {asked} keys answered {got} values")]
    WrongCount {
        /// Keys asked of the part.
        asked: usize,
        /// Values it answered.
        got: usize,
    },
    /// Fewer parts answered than were sent.
    #[error("{missing} part(s) of a split command did not answer")]
    MissingParts {
        /// Parts without an answer.
        missing: usize,
    },
}

/// Groups key positions by owner: `(owner, positions)` in order of first appearance.
pub fn group_by_owner<'k, O: PartialEq, E>(
    keys: impl IntoIterator<Item = &'k [u8]>,
    mut owner: impl FnMut(&[u8]) -> Result<O, E>,
) -> Result<Vec<(O, Vec<usize>)>, E> {
    let mut groups: Vec<(O, Vec<usize>)> = Vec::new();
    for (i, k) in keys.into_iter().enumerate() {
        let o = owner(k)?;
        match groups.iter_mut().find(|(g, _)| *g == o) {
            Some((_, v)) => v.push(i),
            None => groups.push((o, vec![i])),
        }
    }
    Ok(groups)
}

/// Splits a multi-key command by the owner of each key; `Ok(None)` for any other command.
/// A command whose keys share one owner comes back as a single part with [`Merge::One`].
pub fn split<'a, O: PartialEq, E>(
    cmd: &Command<'a>,
    owner: impl FnMut(&[u8]) -> Result<O, E>,
) -> Result<Option<Split<'a, O>>, E> {
    let Some(keys) = multi_keys(cmd) else {
        return Ok(None);
    };
    let mut groups = group_by_owner(keys.iter().copied(), owner)?;
    if groups.len() == 1 {
        if let Some((o, _)) = groups.pop() {
            return Ok(Some(Split {
                parts: vec![(o, cmd.clone())],
                merge: Merge::One,
            }));
        }
    }
    let pick = |pos: &[usize]| -> Vec<&'a [u8]> { pos.iter().map(|&i| keys[i]).collect() };
    let mut parts = Vec::with_capacity(groups.len());
    let mut positions = Vec::with_capacity(groups.len());
    for (o, pos) in groups {
        let part = match cmd {
            Command::MGet { .. } => Command::MGet { keys: pick(&pos) },
            Command::MSet { pairs } => Command::MSet {
                pairs: pos.iter().map(|&i| pairs[i]).collect(),
            },
            Command::Del { .. } => Command::Del { keys: pick(&pos) },
            Command::Exists { .. } => Command::Exists { keys: pick(&pos) },
            _ => Command::Touch { keys: pick(&pos) },
        };
        parts.push((o, part));
        positions.push(pos);
    }
    let merge = match cmd {
        Command::MGet { .. } => Merge::MGet {
            positions,
            len: keys.len(),
        },
        Command::MSet { .. } => Merge::AllOk,
        _ => Merge::Sum,
    };
    Ok(Some(Split { parts, merge }))
}

impl Merge {
    /// Puts MGET parts' values (in part order) back in the caller's key order; for any other
    /// merge, the single part's values as they are.
    pub fn place<T>(
        &self,
        parts: impl IntoIterator<Item = Vec<Option<T>>>,
    ) -> Result<Vec<Option<T>>, MergeError> {
        let Merge::MGet { positions, len } = self else {
            return Ok(parts.into_iter().next().unwrap_or_default());
        };
        let mut out: Vec<Option<T>> = std::iter::repeat_with(|| None).take(*len).collect();
        let mut answered = 0;
        for (vals, pos) in parts.into_iter().zip(positions) {
            answered += 1;
            if vals.len() != pos.len() {
                return Err(MergeError::WrongCount {
                    asked: pos.len(),
                    got: vals.len(),
                });
            }
            for (v, &p) in vals.into_iter().zip(pos) {
                if let Some(slot) = out.get_mut(p) {
                    *slot = v;
                }
            }
        }
        if answered < positions.len() {
            return Err(MergeError::MissingParts {
                missing: positions.len() - answered,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;

    fn owner(k: &[u8]) -> Result<u8, Infallible> {
        Ok(k[0])
    }

    #[test]
    fn keys_split_by_owner_in_order_of_first_appearance() {
        let cmd = Command::MGet {
            keys: vec![b"b1", b"a1", b"b2", b"c1"],
        };
        let s = split(&cmd, owner).unwrap().unwrap();
        let owners: Vec<u8> = s.parts.iter().map(|(o, _)| *o).collect();
        assert_eq!(owners, b"bac");
        assert_eq!(
            s.parts[0].1,
            Command::MGet {
                keys: vec![b"b1", b"b2"]
            }
        );
        let placed = s
            .merge
            .place(vec![vec![Some(1), None], vec![Some(2)], vec![Some(4)]])
            .unwrap();
        assert_eq!(placed, vec![Some(1), Some(2), None, Some(4)]);
        assert_eq!(
            s.merge.place(vec![vec![Some(1)], vec![], vec![]]),
            Err(MergeError::WrongCount { asked: 2, got: 1 })
        );
        assert_eq!(
            s.merge.place(vec![vec![Some(1), None]]),
            Err(MergeError::MissingParts { missing: 2 })
        );
    }

    #[test]
    fn one_owner_is_one_part_and_other_commands_do_not_split() {
        let cmd = Command::Del {
            keys: vec![b"a1", b"a2"],
        };
        let s = split(&cmd, owner).unwrap().unwrap();
        assert_eq!(s.merge, Merge::One);
        assert_eq!(s.parts, vec![(b'a', cmd.clone())]);
        assert!(split(&Command::Get { key: b"a" }, owner).unwrap().is_none());
        let mset = Command::MSet {
            pairs: vec![(b"a1", b"1"), (b"b1", b"2")],
        };
        let s = split(&mset, owner).unwrap().unwrap();
        assert_eq!(s.merge, Merge::AllOk);
        assert_eq!(s.parts.len(), 2);
        let exists = Command::Exists {
            keys: vec![b"a1", b"b1"],
        };
        assert_eq!(split(&exists, owner).unwrap().unwrap().merge, Merge::Sum);
    }

    #[test]
    fn an_owner_error_stops_the_split() {
        let cmd = Command::Touch {
            keys: vec![b"a", b"x"],
        };
        let r = split(
            &cmd,
            |k: &[u8]| if k == b"x" { Err("no owner") } else { Ok(1) },
        );
        assert_eq!(r.err(), Some("no owner"));
    }
}
