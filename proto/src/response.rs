//! The reply model shared by both protocols: one `Response` renders as a native frame or as RESP.
//!
//! Replies borrow their bytes (from the store when encoding, from the frame when decoding).

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// Why a request failed; carried in error replies of both protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorKind {
    /// The key holds a value of another kind (e.g. INCR on a non-integer).
    WrongType,
    /// The key does not exist (for commands where that is an error).
    NotFound,
    /// A key, value or frame over the limits.
    TooLarge,
    /// A SET NX/XX condition did not hold.
    ConditionFailed,
    /// A SET IF-VERSION did not match the stored version.
    VersionMismatch,
    /// The request could not be decoded or its arguments are invalid.
    Malformed,
    /// The command, option or protocol version is not supported.
    Unsupported,
    /// The sender's cluster map is stale; fetch the map of this epoch and retry.
    Redirect {
        /// The epoch the node is at.
        epoch: u32,
    },
    /// A bug or an unexpected state on the server.
    Internal,
    /// The server is overloaded or moving data; retry later.
    Busy,
    /// The connection must authenticate first.
    NoAuth,
    /// Wrong password.
    WrongPass,
    /// HELLO asked for a protocol version that is not spoken.
    NoProto,
    /// The value is not a decimal 64-bit integer (INCR/DECR), or the result would overflow.
    NotInteger,
    /// The keys of one command are on different cores or shard groups (MSETNX), as Redis
    /// Cluster's `CROSSSLOT`.
    CrossSlot,
}

impl ErrorKind {
    /// The first word of the RESP error line for this kind (`ERR` for most).
    pub fn resp_prefix(&self) -> &'static str {
        match self {
            ErrorKind::WrongType => "WRONGTYPE",
            ErrorKind::VersionMismatch => "VERSIONMISMATCH",
            ErrorKind::Redirect { .. } => "REDIRECT",
            ErrorKind::Busy => "BUSY",
            ErrorKind::NoAuth => "NOAUTH",
            ErrorKind::WrongPass => "WRONGPASS",
            ErrorKind::NoProto => "NOPROTO",
            ErrorKind::CrossSlot => "CROSSSLOT",
            _ => "ERR",
        }
    }
}

/// One value with its version and remaining time to live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValueRef<'a> {
    /// The stored bytes.
    #[serde(borrow, with = "serde_bytes")]
    pub value: &'a [u8],
    /// The entry's version (hybrid logical clock stamp).
    pub version: u64,
    /// Remaining time to live in milliseconds, `None` when the entry does not expire.
    pub ttl_ms: Option<u64>,
}

/// One core of a node and the port that reaches it directly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoreInfo {
    /// Core index inside the node (the jump-hash bucket).
    pub core: u16,
    /// TCP port owned by that core.
    pub port: u16,
}

/// A node's own layout: its id, shared port and per-core ports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Topology {
    /// The node's cluster id.
    pub node_id: u64,
    /// The shared port (SO_REUSEPORT on every core).
    pub main_port: u16,
    /// Per-core ports, in core order.
    pub cores: Vec<CoreInfo>,
}

/// Every reply a node sends, for either protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response<'a> {
    /// Success without data (`+OK`).
    Ok,
    /// No value (missing key, failed SET NX/XX).
    Nil,
    /// A hit: value, version and remaining TTL in ms (`None` = no expiry).
    Value {
        /// The stored bytes.
        value: &'a [u8],
        /// The entry's version.
        version: u64,
        /// Remaining time to live in milliseconds.
        ttl_ms: Option<u64>,
    },
    /// An integer (counts, INCR results, TTL, a new version).
    Int(i64),
    /// A yes/no answer (EXPIRE, PERSIST); RESP renders it as `:1`/`:0`.
    Bool(bool),
    /// One slot per requested key (MGET).
    Values(Vec<Option<ValueRef<'a>>>),
    /// An opaque byte string (PING message, ECHO).
    Bulk(&'a [u8]),
    /// The answer to PING without message.
    Pong,
    /// Named counters (STATS / INFO).
    Stats(Vec<(Cow<'a, str>, u64)>),
    /// The node's layout (TOPOLOGY).
    Topology(Topology),
    /// Name/value pairs (CONFIG GET, COMMAND DOCS); a map in RESP3, a flat array in RESP2.
    Pairs(Vec<(&'a [u8], &'a [u8])>),
    /// The answer to HELLO: negotiated protocol and connection id.
    Hello {
        /// Negotiated protocol (1 for native, 2 or 3 for RESP).
        proto: u8,
        /// Connection id.
        id: u64,
    },
    /// A failed request.
    Error {
        /// Why it failed.
        kind: ErrorKind,
        /// Human-readable detail (RESP shows it after the kind's prefix).
        message: Cow<'a, str>,
    },
}

impl<'a> Response<'a> {
    /// Builds an error reply.
    pub fn error(kind: ErrorKind, message: impl Into<Cow<'a, str>>) -> Self {
        Response::Error {
            kind,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::CommandError;

    #[test]
    fn command_error_to_response_keeps_text() {
        let r = Response::from(&CommandError::WrongArity("get"));
        assert_eq!(
            r,
            Response::error(
                ErrorKind::Malformed,
                "wrong number of arguments for 'get' command"
            )
        );
        assert_eq!(ErrorKind::Malformed.resp_prefix(), "ERR");
        assert_eq!(ErrorKind::Redirect { epoch: 3 }.resp_prefix(), "REDIRECT");
    }
}
