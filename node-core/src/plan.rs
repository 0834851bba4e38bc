//! Where a request runs: on this core, on the key's owning core, split over several cores, on
//! every core, or in the connection itself. A plain function of the command and the core count.

use ringcache_cluster::core_for_key;
use ringcache_cluster::multi_key::multi_keys;
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
    /// It concerns every core (FLUSH, INVALIDATE, STATS, DIGEST).
    Broadcast,
    /// It concerns only the connection (PING, HELLO, AUTH, TOPOLOGY, ...).
    Session,
}

/// Decides where `cmd` runs on core `me` of `cores`.
pub fn plan(cmd: &Command<'_>, me: u32, cores: u32) -> Plan {
    let here_or = |c: u32| if c == me { Plan::Local } else { Plan::Owner(c) };
    if let Some(key) = cmd.key() {
        return here_or(core_for_key(key, cores));
    }
    if let Some(keys) = multi_keys(cmd) {
        let mut owners = keys.iter().map(|k| core_for_key(k, cores));
        return match owners.next() {
            None => Plan::Local,
            Some(first) if owners.all(|c| c == first) => here_or(first),
            Some(_) => Plan::Split,
        };
    }
    if let Command::MSetNx { pairs } = cmd {
        // All on one core: run there. Spread over cores: run here, where MSETNX answers
        // CROSSSLOT (it is atomic only on one core).
        let mut owners = pairs.iter().map(|(k, _)| core_for_key(k, cores));
        return match owners.next() {
            Some(first) if owners.all(|c| c == first) => here_or(first),
            _ => Plan::Local,
        };
    }
    if let Command::Scan { cursor, .. } = cmd {
        // The cursor names its core; one naming no core of this node is refused where it lands.
        let c = crate::keyspace::cursor_core(*cursor);
        return if c < cores { here_or(c) } else { Plan::Local };
    }
    match cmd {
        Command::Flush
        | Command::DbSize
        | Command::Keys { .. }
        | Command::InvalidatePrefix { .. }
        | Command::InvalidateTag { .. }
        | Command::Stats
        | Command::Digest => Plan::Broadcast,
        _ => Plan::Session,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn key_on(core: u32, cores: u32) -> Vec<u8> {
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
        assert_eq!(plan(&same, 1, 2), Plan::Local);
        let mixed = Command::Del {
            keys: vec![&a, &b, &a],
        };
        assert_eq!(plan(&mixed, 0, 2), Plan::Split);
        assert_eq!(plan(&Command::Flush, 0, 2), Plan::Broadcast);
        assert_eq!(plan(&Command::Digest, 0, 2), Plan::Broadcast);
        assert_eq!(plan(&Command::DbSize, 0, 2), Plan::Broadcast);
        let one = Command::MSetNx {
            pairs: vec![(&a, b"1"), (&a, b"2")],
        };
        assert_eq!(plan(&one, 0, 2), Plan::Owner(1));
        let spread = Command::MSetNx {
            pairs: vec![(&a, b"1"), (&b, b"2")],
        };
        assert_eq!(plan(&spread, 0, 2), Plan::Local, "answers CROSSSLOT here");
        assert_eq!(plan(&Command::Ping { msg: None }, 0, 2), Plan::Session);
    }
}
