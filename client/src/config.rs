//! Client settings: timeouts, password, retry and failover policy, read preference and size
//! limits.

use std::fmt;
use std::time::Duration;

use ringcache_proto::Limits;

/// Default connect, read and write timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default largest reply accepted (a big MGET can be much larger than one request).
pub const DEFAULT_MAX_REPLY: usize = 1 << 30;
/// Default idle time after which a pooled connection is checked before it is reused.
pub const DEFAULT_IDLE_CHECK: Duration = Duration::from_secs(1);
/// Default time a cluster-mode request keeps retrying after a node stopped answering.
pub const DEFAULT_FAILOVER_TIMEOUT: Duration = Duration::from_secs(3);
/// Default number of requests in flight on one connection of the async client.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 1024;

/// Which member of a key's shard group answers reads in cluster mode.
///
/// Writes always go to the group's primary, whatever this says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ReadFrom {
    /// Reads go to the group's primary: they see the latest write (the default).
    #[default]
    Primary,
    /// Reads (GET, GETV, TTL, EXISTS, MGET) go to a member of the group chosen round-robin
    /// among the primary and its replicas. A replica that is not caught up yet, or does not
    /// answer, is skipped for the primary. A replica may answer a value older than the
    /// primary's latest write.
    Any,
}

/// How a [`Client`](crate::Client) connects and behaves; build with the methods, starting
/// from [`ClientConfig::default`].
///
/// ```
/// use std::time::Duration;
/// use ringcache_client::ClientConfig;
///
/// let cfg = ClientConfig::default()
///     .connect_timeout(Duration::from_millis(500))
///     .timeout(Duration::from_secs(2))
///     .password("s3cret");
/// assert_eq!(cfg.read_timeout_value(), Duration::from_secs(2));
/// ```
#[derive(Clone)]
pub struct ClientConfig {
    pub(crate) connect_timeout: Duration,
    pub(crate) read_timeout: Duration,
    pub(crate) write_timeout: Duration,
    pub(crate) password: Option<String>,
    pub(crate) retry_idempotent: bool,
    pub(crate) limits: Limits,
    pub(crate) max_reply: usize,
    pub(crate) idle_check: Duration,
    pub(crate) failover_timeout: Duration,
    pub(crate) read_from: ReadFrom,
    pub(crate) max_in_flight: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            connect_timeout: DEFAULT_TIMEOUT,
            read_timeout: DEFAULT_TIMEOUT,
            write_timeout: DEFAULT_TIMEOUT,
            password: None,
            retry_idempotent: true,
            limits: Limits::default(),
            max_reply: DEFAULT_MAX_REPLY,
            idle_check: DEFAULT_IDLE_CHECK,
            failover_timeout: DEFAULT_FAILOVER_TIMEOUT,
            read_from: ReadFrom::Primary,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
        }
    }
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("connect_timeout", &self.connect_timeout)
            .field("read_timeout", &self.read_timeout)
            .field("write_timeout", &self.write_timeout)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .field("retry_idempotent", &self.retry_idempotent)
            .field("limits", &self.limits)
            .field("max_reply", &self.max_reply)
            .field("idle_check", &self.idle_check)
            .field("failover_timeout", &self.failover_timeout)
            .field("read_from", &self.read_from)
            .field("max_in_flight", &self.max_in_flight)
            .finish()
    }
}

/// A zero duration would mean "block forever" to some std calls and "fail at once" to others:
/// take it as one millisecond.
fn non_zero(d: Duration) -> Duration {
    d.max(Duration::from_millis(1))
}

impl ClientConfig {
    /// Time allowed to open a TCP connection (default 5 s).
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = non_zero(d);
        self
    }

    /// Time allowed to wait for a reply (default 5 s).
    pub fn read_timeout(mut self, d: Duration) -> Self {
        self.read_timeout = non_zero(d);
        self
    }

    /// Time allowed for the server to take a request (default 5 s).
    pub fn write_timeout(mut self, d: Duration) -> Self {
        self.write_timeout = non_zero(d);
        self
    }

    /// Sets the connect, read and write timeouts at once.
    pub fn timeout(self, d: Duration) -> Self {
        self.connect_timeout(d).read_timeout(d).write_timeout(d)
    }

    /// Authenticates every connection with this password (the node's `--password`).
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// Whether an idempotent request whose connection broke is sent once more on a fresh
    /// connection (default true). Non-idempotent requests (INCR, DEL, conditional SET, ...)
    /// are not resent on this account: their error is reported (but see
    /// [`ClientConfig::failover_timeout`] for cluster mode).
    pub fn retry_idempotent(mut self, retry: bool) -> Self {
        self.retry_idempotent = retry;
        self
    }

    /// Key, value and request limits checked before sending (default: the node's defaults,
    /// 64 KiB keys and 8 MiB values). Set them to the node's `--max-key`/`--max-value`.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Largest reply frame accepted (default 1 GiB).
    pub fn max_reply_bytes(mut self, max: usize) -> Self {
        self.max_reply = max;
        self
    }

    /// A pooled connection idle for longer than this is checked for a close by the server
    /// before reuse (default 1 s), so a request is not lost on a connection that is gone.
    pub fn idle_check(mut self, d: Duration) -> Self {
        self.idle_check = d;
        self
    }

    /// Cluster mode: how long a request keeps trying after a node failed to answer (connection
    /// refused, reset or closed, timeout) or the map names no live primary for its key
    /// (default 3 s). Between attempts the client sleeps (20 ms, doubling up to 200 ms, at
    /// most 16 attempts), refreshes the map from the balancer and sends the request again,
    /// so a promoted replica takes over without the caller seeing an error. No new attempt
    /// starts later than this after the first failure. Zero turns failover off.
    ///
    /// A request that may have reached the failed node is sent again too: SET, MSET and DEL
    /// leave the same data, but an INCR/DECR may be applied twice and a conditional SET may
    /// report that its condition failed because its first copy was applied.
    pub fn failover_timeout(mut self, d: Duration) -> Self {
        self.failover_timeout = d;
        self
    }

    /// Cluster mode: which member of a key's group answers reads (default
    /// [`ReadFrom::Primary`]).
    pub fn read_from(mut self, read_from: ReadFrom) -> Self {
        self.read_from = read_from;
        self
    }

    /// Async client: how many requests may be in flight on one connection (sent or queued,
    /// not answered yet) before a caller waits for one to finish (default 1024; at least 1).
    /// Waiting longer than the write timeout fails the request with a timeout.
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n.max(1);
        self
    }

    /// The configured in-flight window of the async client.
    pub fn max_in_flight_value(&self) -> usize {
        self.max_in_flight
    }

    /// The configured failover time budget.
    pub fn failover_timeout_value(&self) -> Duration {
        self.failover_timeout
    }

    /// The configured read preference.
    pub fn read_from_value(&self) -> ReadFrom {
        self.read_from
    }

    /// The configured connect timeout.
    pub fn connect_timeout_value(&self) -> Duration {
        self.connect_timeout
    }

    /// The configured read timeout.
    pub fn read_timeout_value(&self) -> Duration {
        self.read_timeout
    }

    /// The configured write timeout.
    pub fn write_timeout_value(&self) -> Duration {
        self.write_timeout
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_builders() {
        let c = ClientConfig::default();
        assert_eq!(c.connect_timeout_value(), DEFAULT_TIMEOUT);
        assert_eq!(c.write_timeout_value(), DEFAULT_TIMEOUT);
        let c = c.timeout(Duration::ZERO).password("pw");
        assert_eq!(c.read_timeout_value(), Duration::from_millis(1));
        assert!(!format!("{c:?}").contains("pw\""));
        assert!(format!("{c:?}").contains("<hidden>"));
        assert_eq!(c.failover_timeout_value(), DEFAULT_FAILOVER_TIMEOUT);
        assert_eq!(c.read_from_value(), ReadFrom::Primary);
        let c = c.failover_timeout(Duration::ZERO).read_from(ReadFrom::Any);
        assert_eq!(c.failover_timeout_value(), Duration::ZERO);
        assert_eq!(c.read_from_value(), ReadFrom::Any);
    }
}
