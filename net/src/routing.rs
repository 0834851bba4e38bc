//! Where a request runs: on this core, on the key's owning core, split over several cores, on
//! every core, or in the connection itself. A plain function of the command and the core count.

use ringcache_cluster::core_for_key;
use ringcache_proto::Command;

/// How a request is carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Every key it names belongs to this core: run it here.
    Local,
    /// All its keys belong to this other core: hand it over whole.
    Owner(u32),
    /// Its keys span cores: split per core and reassemble.
    Split,
    /// It concerns every core (FLUSH, INVALIDATE, STATS).
    Broadcast,
    /// It concerns only the connection (PING, HELLO, AUTH, TOPOLOGY, ...).
    Session,
}

/// The keys a multi-key command names, in order.
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

/// Decides where `cmd` runs on core `me` of `cores`.
pub fn plan(cmd: &Command<'_>, me: u32, cores: u32) -> Plan {
    let owner_of = |key: &[u8]| {
        let c = core_for_key(key, cores);
        if c == me {
            Plan::Local
        } else {
            Plan::Owner(c)
        }
    };
    if let Some(key) = cmd.key() {
        return owner_of(key);
    }
    match cmd {
        Command::Del { .. }
        | Command::Exists { .. }
        | Command::Touch { .. }
        | Command::MGet { .. }
        | Command::MSet { .. } => {
            let keys = multi_keys(cmd).unwrap_or_default();
            let mut owners = keys.iter().map(|k| core_for_key(k, cores));
            match owners.next() {
                None => Plan::Local,
                Some(first) if owners.all(|c| c == first) => {
                    if first == me {
                        Plan::Local
                    } else {
                        Plan::Owner(first)
                    }
                }
                Some(_) => Plan::Split,
            }
        }
        Command::Flush
        | Command::InvalidatePrefix { .. }
        | Command::InvalidateTag { .. }
        | Command::Stats
        | Command::Digest => Plan::Broadcast,
        _ => Plan::Session,
    }
}

/// Groups key positions by owning core: `(core, positions)` for each core that owns any.
pub fn split_by_core(keys: &[&[u8]], cores: u32) -> Vec<(u32, Vec<usize>)> {
    let mut groups: Vec<(u32, Vec<usize>)> = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        let c = core_for_key(k, cores);
        match groups.iter_mut().find(|(g, _)| *g == c) {
            Some((_, v)) => v.push(i),
            None => groups.push((c, vec![i])),
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_on(core: u32, cores: u32) -> Vec<u8> {
        (0u32..)
            .map(|i| format!("k{i}").into_bytes())
            .find(|k| core_for_key(k, cores) == core)
            .unwrap_or_default()
    }

    #[test]
    fn single_key_commands_go_to_the_owner() {
        let (a, b) = (key_on(0, 4), key_on(3, 4));
        assert_eq!(plan(&Command::Get { key: &a }, 0, 4), Plan::Local);
        assert_eq!(plan(&Command::Get { key: &b }, 0, 4), Plan::Owner(3));
        assert_eq!(plan(&Command::Get { key: &b }, 0, 1), Plan::Local);
    }

    #[test]
    fn multi_key_commands_split_only_across_cores() {
        let (a, b) = (key_on(1, 2), key_on(0, 2));
        let same = Command::MGet { keys: vec![&a, &a] };
        assert_eq!(plan(&same, 0, 2), Plan::Owner(1));
        let mixed = Command::Del {
            keys: vec![&a, &b, &a],
        };
        assert_eq!(plan(&mixed, 0, 2), Plan::Split);
        assert_eq!(
            split_by_core(&[&a, &b, &a], 2),
            vec![(1, vec![0, 2]), (0, vec![1])]
        );
        assert_eq!(plan(&Command::Flush, 0, 2), Plan::Broadcast);
        assert_eq!(plan(&Command::Ping { msg: None }, 0, 2), Plan::Session);
    }
}
