//! Owned replies and the typed values the client returns.

use std::time::Duration;

use ringcache_proto::{ErrorKind, Response, Topology, ValueRef};

use crate::error::ClientError;

/// A stored value with its version and remaining time to live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    /// The stored bytes.
    pub value: Vec<u8>,
    /// The entry's version (a hybrid logical clock stamp, unique per write); pass it to
    /// [`SetOpts::if_version`] for compare-and-set.
    pub version: u64,
    /// Remaining time to live, `None` when the entry does not expire.
    pub ttl: Option<Duration>,
}

impl Versioned {
    fn from_ref(v: &ValueRef<'_>) -> Versioned {
        Versioned {
            value: v.value.to_vec(),
            version: v.version,
            ttl: v.ttl_ms.map(Duration::from_millis),
        }
    }
}

/// A key's remaining time to live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ttl {
    /// The key does not exist.
    Missing,
    /// The key exists and does not expire.
    Persistent,
    /// The key expires after this long.
    Expires(Duration),
}

impl Ttl {
    /// From a PTTL answer: -2 missing, -1 no expiry, else milliseconds.
    pub(crate) fn from_millis(ms: i64) -> Ttl {
        match ms {
            -1 => Ttl::Persistent,
            ms if ms < 0 => Ttl::Missing,
            ms => Ttl::Expires(Duration::from_millis(ms as u64)),
        }
    }
}

/// Options of [`Client::set_with`](crate::Client::set_with): expiry, conditions, tags.
///
/// ```
/// use std::time::Duration;
/// use ringcache_client::SetOpts;
///
/// let opts = SetOpts::new().ttl(Duration::from_secs(60)).nx().tag("user:42").get_version();
/// assert!(opts.nx && opts.get_version);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetOpts {
    /// Expire after this long (rounded up to whole milliseconds; must not be zero).
    pub ttl: Option<Duration>,
    /// Write only if the key does not exist.
    pub nx: bool,
    /// Write only if the key exists.
    pub xx: bool,
    /// Write only if the stored version equals this (compare-and-set).
    pub if_version: Option<u64>,
    /// Invalidation tags of the entry (see [`Client::invalidate_tag`](crate::Client::invalidate_tag)).
    pub tags: Vec<Vec<u8>>,
    /// Keep the TTL the key already has instead of clearing it.
    pub keep_ttl: bool,
    /// Answer the new version ([`SetOutcome::Stored`] carries it).
    pub get_version: bool,
}

impl SetOpts {
    /// No options: an unconditional write without expiry.
    pub fn new() -> Self {
        SetOpts::default()
    }

    /// Expire after `d`.
    pub fn ttl(mut self, d: Duration) -> Self {
        self.ttl = Some(d);
        self
    }

    /// Write only if the key does not exist.
    pub fn nx(mut self) -> Self {
        self.nx = true;
        self
    }

    /// Write only if the key exists.
    pub fn xx(mut self) -> Self {
        self.xx = true;
        self
    }

    /// Write only if the stored version is `v`.
    pub fn if_version(mut self, v: u64) -> Self {
        self.if_version = Some(v);
        self
    }

    /// Adds an invalidation tag.
    pub fn tag(mut self, t: impl AsRef<[u8]>) -> Self {
        self.tags.push(t.as_ref().to_vec());
        self
    }

    /// Keep the existing TTL.
    pub fn keep_ttl(mut self) -> Self {
        self.keep_ttl = true;
        self
    }

    /// Ask for the new version.
    pub fn get_version(mut self) -> Self {
        self.get_version = true;
        self
    }
}

/// What a conditional SET did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetOutcome {
    /// The value was written; `version` is the new version when it was asked for
    /// ([`SetOpts::get_version`]).
    Stored {
        /// The new version, if asked for.
        version: Option<u64>,
    },
    /// An NX/XX condition did not hold; nothing was written.
    NotStored,
    /// The IF-VERSION did not match; nothing was written.
    VersionMismatch {
        /// The stored version, `None` when the key does not exist (as far as the server said).
        current: Option<u64>,
    },
}

impl SetOutcome {
    /// Whether the value was written.
    pub fn is_stored(&self) -> bool {
        matches!(self, SetOutcome::Stored { .. })
    }

    /// Reads a SET reply (or its error) as an outcome; other errors pass through.
    pub fn from_reply(r: Result<Reply, ClientError>) -> Result<SetOutcome, ClientError> {
        match r {
            Ok(Reply::Ok) => Ok(SetOutcome::Stored { version: None }),
            Ok(Reply::Int(v)) => Ok(SetOutcome::Stored {
                version: Some(v as u64),
            }),
            Ok(Reply::Nil) => Ok(SetOutcome::NotStored),
            Ok(other) => Err(unexpected("SET", &other)),
            Err(ClientError::Server {
                kind: ErrorKind::VersionMismatch,
                message,
            }) => Ok(SetOutcome::VersionMismatch {
                current: current_version(&message),
            }),
            Err(e) => Err(e),
        }
    }
}

/// The version named in "version mismatch: current version is N".
fn current_version(message: &str) -> Option<u64> {
    message
        .rsplit_once("current version is ")
        .and_then(|(_, n)| n.trim().parse().ok())
}

/// One reply, owned: what a [`Pipeline`](crate::Pipeline) returns per command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Success without data.
    Ok,
    /// No value (missing key, SET condition not met).
    Nil,
    /// A value with its version and TTL (GET).
    Value(Versioned),
    /// An integer (counts, INCR results, TTL, a new version).
    Int(i64),
    /// A yes/no answer (EXPIRE, PERSIST).
    Bool(bool),
    /// One slot per requested key (MGET), in request order.
    Values(Vec<Option<Versioned>>),
    /// An opaque byte string (PING with a message).
    Bulk(Vec<u8>),
    /// The answer to PING.
    Pong,
    /// Named counters (STATS).
    Stats(Vec<(String, u64)>),
    /// A node's layout (TOPOLOGY).
    Topology(Topology),
    /// Name/value pairs.
    Pairs(Vec<(Vec<u8>, Vec<u8>)>),
    /// The answer to HELLO.
    Hello {
        /// Negotiated protocol.
        proto: u8,
        /// Connection id.
        id: u64,
    },
}

/// A protocol error for a reply of the wrong kind.
pub(crate) fn unexpected(what: &str, r: &Reply) -> ClientError {
    let kind = match r {
        Reply::Ok => "OK",
        Reply::Nil => "nil",
        Reply::Value(_) => "a value",
        Reply::Int(_) => "an integer",
        Reply::Bool(_) => "a boolean",
        Reply::Values(_) => "a value list",
        Reply::Bulk(_) => "a byte string",
        Reply::Pong => "PONG",
        Reply::Stats(_) => "stats",
        Reply::Topology(_) => "a topology",
        Reply::Pairs(_) => "pairs",
        Reply::Hello { .. } => "a HELLO answer",
    };
    ClientError::Protocol(format!("unexpected reply to {what}: {kind}"))
}

impl Reply {
    /// Copies a decoded response; an error response becomes [`ClientError::Server`].
    pub(crate) fn from_response(r: Response<'_>) -> Result<Reply, ClientError> {
        Ok(match r {
            Response::Ok => Reply::Ok,
            Response::Nil => Reply::Nil,
            Response::Value {
                value,
                version,
                ttl_ms,
            } => Reply::Value(Versioned {
                value: value.to_vec(),
                version,
                ttl: ttl_ms.map(Duration::from_millis),
            }),
            Response::Int(i) => Reply::Int(i),
            Response::Bool(b) => Reply::Bool(b),
            Response::Values(vs) => Reply::Values(
                vs.iter()
                    .map(|v| v.as_ref().map(Versioned::from_ref))
                    .collect(),
            ),
            Response::Bulk(b) => Reply::Bulk(b.to_vec()),
            Response::Pong => Reply::Pong,
            Response::Stats(s) => {
                Reply::Stats(s.into_iter().map(|(k, v)| (k.into_owned(), v)).collect())
            }
            Response::Topology(t) => Reply::Topology(t),
            Response::Pairs(p) => Reply::Pairs(
                p.into_iter()
                    .map(|(k, v)| (k.to_vec(), v.to_vec()))
                    .collect(),
            ),
            Response::Hello { proto, id } => Reply::Hello { proto, id },
            Response::Error { kind, message } => {
                return Err(ClientError::Server {
                    kind,
                    message: message.into_owned(),
                })
            }
        })
    }

    /// A GET answer: the value, or `None` for a missing key.
    pub fn into_value(self) -> Result<Option<Vec<u8>>, ClientError> {
        Ok(self.into_versioned()?.map(|v| v.value))
    }

    /// A GET answer with version and TTL, or `None` for a missing key.
    pub fn into_versioned(self) -> Result<Option<Versioned>, ClientError> {
        match self {
            Reply::Value(v) => Ok(Some(v)),
            Reply::Nil => Ok(None),
            other => Err(unexpected("GET", &other)),
        }
    }

    /// An integer answer (counts, INCR, TTL).
    pub fn into_int(self) -> Result<i64, ClientError> {
        match self {
            Reply::Int(i) => Ok(i),
            other => Err(unexpected("a counting command", &other)),
        }
    }

    /// A yes/no answer (EXPIRE, PERSIST).
    pub fn into_bool(self) -> Result<bool, ClientError> {
        match self {
            Reply::Bool(b) => Ok(b),
            Reply::Int(i) => Ok(i != 0),
            other => Err(unexpected("EXPIRE/PERSIST", &other)),
        }
    }

    /// An MGET answer, one slot per key in request order.
    pub fn into_values(self) -> Result<Vec<Option<Versioned>>, ClientError> {
        match self {
            Reply::Values(v) => Ok(v),
            other => Err(unexpected("MGET", &other)),
        }
    }

    /// A plain success (MSET, FLUSH, INVALIDATE).
    pub fn into_ok(self) -> Result<(), ClientError> {
        match self {
            Reply::Ok => Ok(()),
            other => Err(unexpected("a write", &other)),
        }
    }

    /// A STATS answer.
    pub fn into_stats(self) -> Result<Vec<(String, u64)>, ClientError> {
        match self {
            Reply::Stats(s) => Ok(s),
            other => Err(unexpected("STATS", &other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;

    #[test]
    fn responses_become_owned_replies() {
        let r = Reply::from_response(Response::Value {
            value: b"v",
            version: 9,
            ttl_ms: Some(1500),
        })
        .unwrap();
        assert_eq!(
            r.clone().into_versioned().unwrap(),
            Some(Versioned {
                value: b"v".to_vec(),
                version: 9,
                ttl: Some(Duration::from_millis(1500)),
            })
        );
        assert_eq!(r.into_value().unwrap(), Some(b"v".to_vec()));
        assert_eq!(Reply::Nil.into_value().unwrap(), None);
        assert!(Reply::Int(1).into_value().is_err());
        assert!(Reply::Bool(true).into_bool().unwrap());
        let e = Reply::from_response(Response::error(ErrorKind::WrongType, "bad")).unwrap_err();
        assert_eq!(e.server_kind(), Some(ErrorKind::WrongType));
        let s = Reply::from_response(Response::Stats(vec![(Cow::Borrowed("keys"), 3)])).unwrap();
        assert_eq!(s.into_stats().unwrap(), vec![("keys".to_string(), 3)]);
    }

    #[test]
    fn set_outcomes() {
        assert_eq!(
            SetOutcome::from_reply(Ok(Reply::Ok)).unwrap(),
            SetOutcome::Stored { version: None }
        );
        assert_eq!(
            SetOutcome::from_reply(Ok(Reply::Int(77))).unwrap(),
            SetOutcome::Stored { version: Some(77) }
        );
        assert_eq!(
            SetOutcome::from_reply(Ok(Reply::Nil)).unwrap(),
            SetOutcome::NotStored
        );
        let mismatch = |m: &str| {
            SetOutcome::from_reply(Err(ClientError::Server {
                kind: ErrorKind::VersionMismatch,
                message: m.into(),
            }))
            .unwrap()
        };
        assert_eq!(
            mismatch("version mismatch: current version is 42"),
            SetOutcome::VersionMismatch { current: Some(42) }
        );
        assert_eq!(
            mismatch("version mismatch: no such key"),
            SetOutcome::VersionMismatch { current: None }
        );
        assert!(SetOutcome::from_reply(Err(ClientError::Protocol("x".into()))).is_err());
    }

    #[test]
    fn ttl_from_millis() {
        assert_eq!(Ttl::from_millis(-2), Ttl::Missing);
        assert_eq!(Ttl::from_millis(-1), Ttl::Persistent);
        assert_eq!(
            Ttl::from_millis(250),
            Ttl::Expires(Duration::from_millis(250))
        );
    }
}
