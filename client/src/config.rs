//! Client settings: timeouts, password, retry policy and size limits.

use std::fmt;
use std::time::Duration;

use ringcache_proto::Limits;

/// Default connect, read and write timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default largest reply accepted (a big MGET can be much larger than one request).
pub const DEFAULT_MAX_REPLY: usize = 1 << 30;
/// Default idle time after which a pooled connection is checked before it is reused.
pub const DEFAULT_IDLE_CHECK: Duration = Duration::from_secs(1);

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
    /// are never resent: their error is reported.
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
    }
}
