//! The request model shared by the native and RESP protocols.
//!
//! A `Command` borrows its keys and values from the input buffer: decoding copies no payload.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::TooLarge;
use crate::key_op::KeyOp;
use crate::limits::Limits;
use crate::opcode::Opcode;

/// When a SET's entry expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Expiry {
    /// No expiry: the entry lives until evicted (an existing TTL is cleared).
    None,
    /// Keep the TTL the key already has (`KEEPTTL`).
    KeepTtl,
    /// Expire this many milliseconds from now (`EX s` as `s * 1000`, `PX ms`).
    RelativeMs(u64),
    /// Expire at this Unix time in milliseconds (`EXAT s` as `s * 1000`, `PXAT ms`).
    AbsoluteUnixMs(u64),
}

/// The existence condition of a SET.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SetCond {
    /// Always write.
    Always,
    /// Write only if the key does not exist (`NX`).
    Nx,
    /// Write only if the key exists (`XX`).
    Xx,
}

/// Credentials of AUTH or HELLO ... AUTH; `Debug` hides the password.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Credentials<'a> {
    /// User name; `None` means the default user.
    pub username: Option<&'a [u8]>,
    /// The password.
    pub password: &'a [u8],
}

impl fmt::Debug for Credentials<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username.map(String::from_utf8_lossy))
            .field("password", &"<hidden>")
            .finish()
    }
}

/// One request, borrowing keys and values from the buffer it was decoded from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command<'a> {
    /// Read a key; natively answers value, version and remaining TTL.
    Get {
        /// The key.
        key: &'a [u8],
    },
    /// Read a key with its version (RESP `GETV key` answers `[value, version]`).
    GetVersion {
        /// The key.
        key: &'a [u8],
    },
    /// Write a key.
    Set {
        /// The key.
        key: &'a [u8],
        /// The value.
        value: &'a [u8],
        /// When the entry expires.
        expiry: Expiry,
        /// Existence condition.
        cond: SetCond,
        /// Compare-and-set: write only if the stored version equals this.
        if_version: Option<u64>,
        /// Invalidation tags of the entry (empty, and unallocated, for most writes).
        tags: Vec<&'a [u8]>,
        /// Answer the new version instead of OK.
        get_version: bool,
    },
    /// Delete keys; answers how many existed.
    Del {
        /// The keys.
        keys: Vec<&'a [u8]>,
    },
    /// Count how many of the keys exist.
    Exists {
        /// The keys.
        keys: Vec<&'a [u8]>,
    },
    /// Mark keys as used; answers how many exist.
    Touch {
        /// The keys.
        keys: Vec<&'a [u8]>,
    },
    /// Set a key's TTL (`EXPIRE s` as `s * 1000`, `PEXPIRE ms`; a non-positive time is 0: delete).
    Expire {
        /// The key.
        key: &'a [u8],
        /// Time to live in milliseconds.
        ms: u64,
    },
    /// Remaining TTL (`TTL` in seconds, `PTTL` in milliseconds); -2 missing, -1 no expiry.
    Ttl {
        /// The key.
        key: &'a [u8],
        /// Answer in milliseconds (`PTTL`).
        millis: bool,
    },
    /// Remove a key's TTL.
    Persist {
        /// The key.
        key: &'a [u8],
    },
    /// Read many keys.
    MGet {
        /// The keys.
        keys: Vec<&'a [u8]>,
    },
    /// Write many keys without expiry.
    MSet {
        /// Key/value pairs.
        pairs: Vec<(&'a [u8], &'a [u8])>,
    },
    /// Add to an integer value (`INCR`, `DECR`, `INCRBY`, `DECRBY`).
    IncrBy {
        /// The key.
        key: &'a [u8],
        /// Amount to add (negative for DECR).
        delta: i64,
    },
    /// Liveness check; with a message it is echoed back (`PING msg`, `ECHO msg`).
    Ping {
        /// Optional message to echo.
        msg: Option<&'a [u8]>,
    },
    /// Drop every key (`FLUSH`, `FLUSHALL`, `FLUSHDB`).
    Flush,
    /// Drop every key starting with a prefix (`INVALIDATE PREFIX p`).
    InvalidatePrefix {
        /// The prefix.
        prefix: &'a [u8],
    },
    /// Drop every key carrying a tag (`INVALIDATE TAG t`).
    InvalidateTag {
        /// The tag.
        tag: &'a [u8],
    },
    /// Counters (`STATS`, `INFO [section]`).
    Stats,
    /// Per-core entry count and digest of the live data (`DIGEST`): equal on two members
    /// exactly when they hold the same data.
    Digest,
    /// The node's core/port layout (`TOPOLOGY`).
    Topology,
    /// Protocol negotiation (`HELLO [version [AUTH user pass] [SETNAME name]]`).
    Hello {
        /// Requested protocol version, `None` to keep the current one.
        version: Option<u8>,
        /// Credentials given with `AUTH`.
        auth: Option<Credentials<'a>>,
    },
    /// Authenticate (`AUTH [user] pass`).
    Auth {
        /// The credentials.
        creds: Credentials<'a>,
    },
    /// Configuration lookup (`CONFIG GET pattern`), for redis-benchmark and friends.
    ConfigGet {
        /// The pattern.
        pattern: &'a [u8],
    },
    /// `COMMAND`, `COMMAND DOCS`, ... : answered empty so redis-cli starts.
    CommandDocs,
    /// Close the connection after answering OK.
    Quit,
    /// Select a database (only 0 exists).
    Select {
        /// Database index.
        db: u32,
    },
    /// `CLIENT SETINFO ...`: accepted and ignored.
    ClientSetInfo,
    /// `CLIENT SETNAME name`: accepted and ignored.
    ClientSetName {
        /// The connection name.
        name: &'a [u8],
    },
    /// A single-key string or keyspace operation (SETNX, GETDEL, APPEND, EXPIREAT, ...).
    Key {
        /// The key.
        key: &'a [u8],
        /// What to do with it.
        op: KeyOp<'a>,
    },
    /// Write many keys only if none exists (`MSETNX`); all keys must be on one core.
    MSetNx {
        /// Key/value pairs.
        pairs: Vec<(&'a [u8], &'a [u8])>,
    },
    /// The number of keys (`DBSIZE`), summed over the node's cores.
    DbSize,
    /// The kind of value at a key (`TYPE`): `string` or `none`.
    Type {
        /// The key.
        key: &'a [u8],
    },
    /// One step of a keyspace walk (`SCAN cursor [MATCH p] [COUNT n] [TYPE t]`); the cursor
    /// names a core (low 10 bits) and a slot position on it (the rest).
    Scan {
        /// Where to continue; 0 starts a walk.
        cursor: u64,
        /// Only keys matching this glob.
        pattern: Option<&'a [u8]>,
        /// Slots to visit in this step.
        count: u64,
        /// Only keys of this type (`string` is the only one).
        kind: Option<&'a [u8]>,
    },
    /// Every key matching a glob (`KEYS pattern`), from every core of the node.
    Keys {
        /// The glob.
        pattern: &'a [u8],
    },
}

fn check(what: &'static str, len: usize, max: usize) -> Result<(), TooLarge> {
    if len > max {
        Err(TooLarge { what, len, max })
    } else {
        Ok(())
    }
}

fn check_keys(keys: &[&[u8]], limits: &Limits) -> Result<(), TooLarge> {
    check("argument count", keys.len(), limits.max_args)?;
    keys.iter()
        .try_for_each(|k| check("key", k.len(), limits.max_key))
}

impl<'a> Command<'a> {
    /// A plain `SET key value`: no expiry, no condition, no tags.
    pub fn set(key: &'a [u8], value: &'a [u8]) -> Command<'a> {
        Command::Set {
            key,
            value,
            expiry: Expiry::None,
            cond: SetCond::Always,
            if_version: None,
            tags: Vec::new(),
            get_version: false,
        }
    }

    /// The native opcode naming this command.
    pub fn opcode(&self) -> Opcode {
        match self {
            Command::Get { .. } => Opcode::Get,
            Command::GetVersion { .. } => Opcode::GetVersion,
            Command::Set { .. } => Opcode::Set,
            Command::Del { .. } => Opcode::Del,
            Command::Exists { .. } => Opcode::Exists,
            Command::Touch { .. } => Opcode::Touch,
            Command::Expire { .. } => Opcode::Expire,
            Command::Ttl { .. } => Opcode::Ttl,
            Command::Persist { .. } => Opcode::Persist,
            Command::MGet { .. } => Opcode::MGet,
            Command::MSet { .. } => Opcode::MSet,
            Command::IncrBy { .. } => Opcode::IncrBy,
            Command::Ping { .. } => Opcode::Ping,
            Command::Flush => Opcode::Flush,
            Command::InvalidatePrefix { .. } => Opcode::InvalidatePrefix,
            Command::InvalidateTag { .. } => Opcode::InvalidateTag,
            Command::Stats => Opcode::Stats,
            Command::Digest => Opcode::Digest,
            Command::Topology => Opcode::Topology,
            Command::Hello { .. } => Opcode::Hello,
            Command::Auth { .. } => Opcode::Auth,
            Command::ConfigGet { .. } => Opcode::ConfigGet,
            Command::CommandDocs => Opcode::CommandDocs,
            Command::Quit => Opcode::Quit,
            Command::Select { .. } => Opcode::Select,
            Command::ClientSetInfo => Opcode::ClientSetInfo,
            Command::ClientSetName { .. } => Opcode::ClientSetName,
            Command::Key { .. } => Opcode::Key,
            Command::MSetNx { .. } => Opcode::MSetNx,
            Command::DbSize => Opcode::DbSize,
            Command::Type { .. } => Opcode::Type,
            Command::Scan { .. } => Opcode::Scan,
            Command::Keys { .. } => Opcode::Keys,
        }
    }

    /// The single key this command reads or writes, for routing; `None` for multi-key commands.
    pub fn key(&self) -> Option<&'a [u8]> {
        match self {
            Command::Get { key }
            | Command::GetVersion { key }
            | Command::Set { key, .. }
            | Command::Expire { key, .. }
            | Command::Ttl { key, .. }
            | Command::Persist { key }
            | Command::IncrBy { key, .. }
            | Command::Key { key, .. }
            | Command::Type { key } => Some(key),
            _ => None,
        }
    }

    /// Whether the command changes stored data (and so goes to the primary and is replicated).
    pub fn is_write(&self) -> bool {
        if let Command::Key { op, .. } = self {
            return op.is_write();
        }
        matches!(
            self,
            Command::Set { .. }
                | Command::Del { .. }
                | Command::Expire { .. }
                | Command::Persist { .. }
                | Command::MSet { .. }
                | Command::MSetNx { .. }
                | Command::IncrBy { .. }
                | Command::Flush
                | Command::InvalidatePrefix { .. }
                | Command::InvalidateTag { .. }
        )
    }

    /// Checks every key, value and list length against `limits`.
    pub fn check_limits(&self, limits: &Limits) -> Result<(), TooLarge> {
        let key = |k: &[u8]| check("key", k.len(), limits.max_key);
        match self {
            Command::Get { key: k }
            | Command::GetVersion { key: k }
            | Command::Expire { key: k, .. }
            | Command::Ttl { key: k, .. }
            | Command::Persist { key: k }
            | Command::Type { key: k }
            | Command::IncrBy { key: k, .. } => key(k),
            Command::Key { key: k, op } => {
                key(k)?;
                check("value", op.value().map_or(0, <[u8]>::len), limits.max_value)
            }
            Command::Set {
                key: k,
                value,
                tags,
                ..
            } => {
                key(k)?;
                check("value", value.len(), limits.max_value)?;
                check("argument count", tags.len(), limits.max_args)?;
                tags.iter()
                    .try_for_each(|t| check("tag", t.len(), limits.max_key))
            }
            Command::Del { keys }
            | Command::Exists { keys }
            | Command::Touch { keys }
            | Command::MGet { keys } => check_keys(keys, limits),
            Command::MSet { pairs } | Command::MSetNx { pairs } => {
                check("argument count", pairs.len(), limits.max_args)?;
                pairs.iter().try_for_each(|(k, v)| {
                    key(k)?;
                    check("value", v.len(), limits.max_value)
                })
            }
            Command::Ping { msg } => check("message", msg.map_or(0, <[u8]>::len), limits.max_value),
            Command::InvalidatePrefix { prefix } => check("prefix", prefix.len(), limits.max_key),
            Command::InvalidateTag { tag } => check("tag", tag.len(), limits.max_key),
            Command::Hello { auth, .. } => match auth {
                Some(c) => check_creds(c, limits),
                None => Ok(()),
            },
            Command::Auth { creds } => check_creds(creds, limits),
            Command::ConfigGet { pattern } | Command::Keys { pattern } => {
                check("pattern", pattern.len(), limits.max_key)
            }
            Command::Scan { pattern, kind, .. } => {
                check("pattern", pattern.map_or(0, <[u8]>::len), limits.max_key)?;
                check("type", kind.map_or(0, <[u8]>::len), limits.max_key)
            }
            Command::ClientSetName { name } => check("name", name.len(), limits.max_key),
            Command::Flush
            | Command::Stats
            | Command::Digest
            | Command::Topology
            | Command::CommandDocs
            | Command::Quit
            | Command::Select { .. }
            | Command::DbSize
            | Command::ClientSetInfo => Ok(()),
        }
    }
}

fn check_creds(c: &Credentials<'_>, limits: &Limits) -> Result<(), TooLarge> {
    check(
        "username",
        c.username.map_or(0, <[u8]>::len),
        limits.max_key,
    )?;
    check("password", c.password.len(), limits.max_key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_checked() {
        let l = Limits {
            max_frame: 100,
            max_key: 3,
            max_value: 5,
            max_args: 2,
        };
        assert!(Command::Get { key: b"abc" }.check_limits(&l).is_ok());
        assert_eq!(
            Command::Get { key: b"abcd" }.check_limits(&l),
            Err(TooLarge {
                what: "key",
                len: 4,
                max: 3
            })
        );
        let set = |value: &'static [u8]| Command::set(b"k", value);
        assert!(set(b"12345").check_limits(&l).is_ok());
        assert!(set(b"123456").check_limits(&l).is_err());
        assert!(Command::Del {
            keys: vec![b"a", b"b", b"c"]
        }
        .check_limits(&l)
        .is_err());
    }

    #[test]
    fn routing_helpers() {
        assert_eq!(Command::Get { key: b"k" }.key(), Some(&b"k"[..]));
        assert_eq!(Command::Del { keys: vec![b"k"] }.key(), None);
        assert!(Command::Flush.is_write());
        assert!(!Command::Get { key: b"k" }.is_write());
        assert_eq!(Command::Stats.opcode(), Opcode::Stats);
    }

    #[test]
    fn credentials_debug_hides_password() {
        let c = Credentials {
            username: Some(b"u"),
            password: b"secret",
        };
        assert!(!format!("{c:?}").contains("secret"));
    }
}
