//! The client's typed errors.

use std::fmt;
use std::io;
use std::time::Duration;

use ringcache_cluster::GroupId;
use ringcache_proto::{ErrorKind, TooLarge};

/// Everything a client call can fail with.
///
/// Connection-level failures (`Connect`, `Io`, `Timeout`, `Protocol`) close the connection
/// they happened on; the next call opens a fresh one. `Server` is an answer: the connection
/// stays open.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// A connection could not be opened (refused, unreachable, timed out, name not resolved).
    #[error("cannot reach ringcache at {addr}: {}", describe_io(source))]
    Connect {
        /// The address that was tried.
        addr: String,
        /// Why it failed.
        #[source]
        source: io::Error,
    },
    /// An open connection broke (reset, closed by the server, write failed).
    #[error("connection to {addr} failed: {}", describe_io(source))]
    Io {
        /// The peer of the connection.
        addr: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The server did not answer (or take the request) within the configured time.
    #[error("no answer from {addr} within {after:?}")]
    Timeout {
        /// The peer of the connection.
        addr: String,
        /// The read or write timeout that elapsed.
        after: Duration,
    },
    /// The server sent bytes that are not a valid reply to what was asked.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The server answered with an error (wrong type, version mismatch, wrong password, ...).
    #[error("{} {message}", kind.resp_prefix())]
    Server {
        /// Why the server refused the request.
        kind: ErrorKind,
        /// The server's message.
        message: String,
    },
    /// A key, value or request exceeds the configured limits; nothing was sent.
    #[error(transparent)]
    TooLarge(#[from] TooLarge),
    /// The arguments of a call are contradictory or out of range; nothing was sent.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// Cluster mode: the key's shard group had no live primary in the cluster map, and none
    /// appeared within [`ClientConfig::failover_timeout`](crate::ClientConfig::failover_timeout).
    #[error("shard group {group} has no live primary")]
    NoPrimary {
        /// The shard group that owns the key.
        group: GroupId,
    },
}

impl ClientError {
    /// Whether the connection broke under the request, so that an idempotent request may be
    /// sent again on a fresh connection.
    pub fn is_connection_broken(&self) -> bool {
        matches!(self, ClientError::Io { .. })
    }

    /// Whether the connection the error happened on can no longer be used.
    pub(crate) fn closes_connection(&self) -> bool {
        matches!(
            self,
            ClientError::Io { .. }
                | ClientError::Timeout { .. }
                | ClientError::Protocol(_)
                | ClientError::Connect { .. }
        )
    }

    /// The server error kind, when the server answered with an error.
    pub fn server_kind(&self) -> Option<ErrorKind> {
        match self {
            ClientError::Server { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    /// Maps an I/O error on an open connection: timeouts to `Timeout`, the rest to `Io`.
    pub(crate) fn from_io(addr: impl fmt::Display, e: io::Error, after: Duration) -> Self {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ClientError::Timeout {
                addr: addr.to_string(),
                after,
            },
            _ => ClientError::Io {
                addr: addr.to_string(),
                source: e,
            },
        }
    }
}

/// A short description of an I/O error: "connection refused" rather than
/// "Connection refused (os error 111)".
fn describe_io(e: &io::Error) -> String {
    use io::ErrorKind as K;
    match e.kind() {
        k @ (K::ConnectionRefused
        | K::ConnectionReset
        | K::ConnectionAborted
        | K::NotConnected
        | K::BrokenPipe
        | K::TimedOut
        | K::AddrNotAvailable
        | K::UnexpectedEof
        | K::HostUnreachable
        | K::NetworkUnreachable
        | K::NetworkDown) => k.to_string(),
        _ => e.to_string(),
    }
}

impl Clone for ClientError {
    /// Clones the error; an I/O source keeps its kind and message (not its OS error chain).
    fn clone(&self) -> Self {
        let io = |e: &io::Error| io::Error::new(e.kind(), e.to_string());
        match self {
            ClientError::Connect { addr, source } => ClientError::Connect {
                addr: addr.clone(),
                source: io(source),
            },
            ClientError::Io { addr, source } => ClientError::Io {
                addr: addr.clone(),
                source: io(source),
            },
            ClientError::Timeout { addr, after } => ClientError::Timeout {
                addr: addr.clone(),
                after: *after,
            },
            ClientError::Protocol(m) => ClientError::Protocol(m.clone()),
            ClientError::Server { kind, message } => ClientError::Server {
                kind: *kind,
                message: message.clone(),
            },
            ClientError::TooLarge(t) => ClientError::TooLarge(*t),
            ClientError::InvalidArgument(m) => ClientError::InvalidArgument(m.clone()),
            ClientError::NoPrimary { group } => ClientError::NoPrimary { group: *group },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_short_and_clear() {
        let e = ClientError::Connect {
            addr: "127.0.0.1:7379".into(),
            source: io::Error::from(io::ErrorKind::ConnectionRefused),
        };
        assert_eq!(
            e.to_string(),
            "cannot reach ringcache at 127.0.0.1:7379: connection refused"
        );
        let e = ClientError::Server {
            kind: ErrorKind::VersionMismatch,
            message: "version mismatch: current version is 7".into(),
        };
        assert_eq!(
            e.to_string(),
            "VERSIONMISMATCH version mismatch: current version is 7"
        );
        assert_eq!(e.server_kind(), Some(ErrorKind::VersionMismatch));
        assert!(!e.closes_connection());
        let e = ClientError::NoPrimary { group: 3 };
        assert_eq!(e.to_string(), "shard group 3 has no live primary");
        assert!(!e.closes_connection());
    }

    #[test]
    fn timeouts_are_told_apart_from_broken_connections() {
        let d = Duration::from_secs(1);
        let t = ClientError::from_io("a", io::Error::from(io::ErrorKind::WouldBlock), d);
        assert!(matches!(t, ClientError::Timeout { .. }));
        assert!(!t.is_connection_broken() && t.closes_connection());
        let b = ClientError::from_io("a", io::Error::from(io::ErrorKind::BrokenPipe), d);
        assert!(b.is_connection_broken());
        assert_eq!(b.clone().to_string(), b.to_string());
    }
}
