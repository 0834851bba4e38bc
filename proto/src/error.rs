//! Typed errors of every decoder and encoder in this crate.
//!
//! `CommandError` displays the exact Redis text, `ERR` included (`write_body` gives it without);
//! `RespError` and the native errors (`FrameError`, `ProtoError`) are plain messages: answer them
//! as `Response::error(e.kind(), e.to_string())`, whose RESP rendering adds the `ERR` prefix.

use std::fmt;

use crate::response::{ErrorKind, Response};

/// A key, value or argument list longer than the configured `Limits` allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{what} is too large ({len} > {max})")]
pub struct TooLarge {
    /// What was too large: "key", "value", "frame", "argument count", ...
    pub what: &'static str,
    /// The length that was seen (bytes, or a count for argument lists).
    pub len: usize,
    /// The configured maximum.
    pub max: usize,
}

/// A native frame header that cannot start a valid frame; the connection must be closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The first bytes are not the magic "RC".
    #[error("bad frame magic {0:#06x}")]
    BadMagic(u16),
    /// The protocol version byte is not one this crate speaks.
    #[error("unsupported protocol version {0}")]
    UnsupportedVersion(u8),
    /// The header announces a body longer than `Limits::max_frame`.
    #[error("frame body is too large ({len} > {max})")]
    TooLarge {
        /// Announced body length.
        len: usize,
        /// Configured maximum.
        max: usize,
    },
}

impl FrameError {
    /// The wire error kind to answer with before closing.
    pub fn kind(&self) -> ErrorKind {
        match self {
            FrameError::BadMagic(_) => ErrorKind::Malformed,
            FrameError::UnsupportedVersion(_) => ErrorKind::Unsupported,
            FrameError::TooLarge { .. } => ErrorKind::TooLarge,
        }
    }
}

/// A complete native frame whose body cannot be decoded; the frame boundary is intact.
#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    /// The opcode is not a known request (or response) opcode.
    #[error("unknown opcode {0:#04x}")]
    UnknownOpcode(u8),
    /// The bincode body does not match the opcode's layout.
    #[error("malformed body: {0}")]
    Body(#[from] bincode::Error),
    /// A field is larger than the limits allow.
    #[error(transparent)]
    TooLarge(#[from] TooLarge),
    /// A field has a value the command does not accept.
    #[error("invalid field: {0}")]
    Invalid(&'static str),
}

impl ProtoError {
    /// The wire error kind to answer with.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ProtoError::UnknownOpcode(_) => ErrorKind::Unsupported,
            ProtoError::Body(_) | ProtoError::Invalid(_) => ErrorKind::Malformed,
            ProtoError::TooLarge(_) => ErrorKind::TooLarge,
        }
    }
}

/// A failure to encode a native frame.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// The body does not fit the header's u32 length field.
    #[error("frame body of {0} bytes does not fit a frame")]
    BodyTooLarge(usize),
    /// bincode refused the body (should not happen for this crate's types).
    #[error("cannot encode body: {0}")]
    Body(#[from] bincode::Error),
}

/// Malformed RESP input; the server answers `-ERR {err}` and closes the connection, as Redis
/// does. The message carries no `ERR ` prefix: the encoder adds it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RespError {
    /// `*` count that is not a number or is out of range.
    #[error("Protocol error: invalid multibulk length")]
    InvalidMultibulkLength,
    /// `$` length that is not a number, negative, or over the bulk limit.
    #[error("Protocol error: invalid bulk length")]
    InvalidBulkLength,
    /// An array element that is not a bulk string.
    #[error("Protocol error: expected '$', got '{}'", char::from(*.0).escape_default())]
    ExpectedBulk(u8),
    /// A bulk string not followed by CRLF, or a length line not ended by CRLF.
    #[error("Protocol error: expected CRLF")]
    MissingCrlf,
    /// An inline command line longer than the inline bound.
    #[error("Protocol error: too big inline request")]
    InlineTooLong,
    /// More arguments than `Limits::max_args`.
    #[error("Protocol error: too many arguments ({len} > {max})")]
    TooManyArgs {
        /// Announced or counted arguments.
        len: usize,
        /// Configured maximum.
        max: usize,
    },
    /// A bulk string longer than the largest key or value.
    #[error("Protocol error: bulk string too large ({len} > {max})")]
    BulkTooLarge {
        /// Announced length.
        len: usize,
        /// Configured maximum.
        max: usize,
    },
    /// A whole request larger than `Limits::max_frame`.
    #[error("Protocol error: request too large (over {max} bytes)")]
    RequestTooLarge {
        /// Configured maximum.
        max: usize,
    },
}

impl RespError {
    /// The wire error kind this maps to.
    pub fn kind(&self) -> ErrorKind {
        match self {
            RespError::TooManyArgs { .. }
            | RespError::BulkTooLarge { .. }
            | RespError::RequestTooLarge { .. } => ErrorKind::TooLarge,
            _ => ErrorKind::Malformed,
        }
    }
}

/// A well-formed RESP request that is not a valid command; the connection stays open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandError {
    /// The request has no arguments at all.
    Empty,
    /// The command name is not known (name kept printable and at most 128 bytes).
    UnknownCommand(String),
    /// A known command with an unknown subcommand.
    UnknownSubcommand {
        /// Command name, upper case.
        command: &'static str,
        /// The subcommand as sent (printable, bounded).
        sub: String,
    },
    /// Argument count outside the command's arity; holds the lower-case command name.
    WrongArity(&'static str),
    /// An option that is unknown, repeated or conflicting.
    Syntax,
    /// An integer argument that does not parse or is out of range.
    NotInteger,
    /// An expiry that is zero, negative or overflows; holds the lower-case command name.
    InvalidExpire(&'static str),
    /// DECRBY whose delta cannot be negated.
    Overflow,
    /// HELLO with a protocol version that is not an integer or out of range.
    InvalidProtocolVersion,
    /// SELECT with a negative or oversized index.
    InvalidDbIndex,
    /// A key, value or argument over the limits.
    TooLarge(TooLarge),
    /// A fixed Redis error text (without `ERR `), e.g. `value is not a valid float`.
    Text(&'static str),
    /// EXPIRE with an option it does not know (`Unsupported option X`).
    UnsupportedOption(String),
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ERR ")?;
        self.write_body(f)
    }
}

impl std::error::Error for CommandError {}

impl From<TooLarge> for CommandError {
    fn from(t: TooLarge) -> Self {
        CommandError::TooLarge(t)
    }
}

impl CommandError {
    /// The message without its leading `ERR ` (what `Response::Error` carries).
    pub fn write_body(&self, f: &mut dyn fmt::Write) -> fmt::Result {
        match self {
            CommandError::Empty => f.write_str("empty command"),
            CommandError::UnknownCommand(name) => write!(f, "unknown command '{name}'"),
            CommandError::UnknownSubcommand { command, sub } => {
                write!(f, "unknown subcommand '{sub}'. Try {command} HELP.")
            }
            CommandError::WrongArity(name) => {
                write!(f, "wrong number of arguments for '{name}' command")
            }
            CommandError::Syntax => f.write_str("syntax error"),
            CommandError::NotInteger => f.write_str("value is not an integer or out of range"),
            CommandError::InvalidExpire(name) => {
                write!(f, "invalid expire time in '{name}' command")
            }
            CommandError::Overflow => f.write_str("decrement would overflow"),
            CommandError::InvalidProtocolVersion => {
                f.write_str("Protocol version is not an integer or out of range")
            }
            CommandError::InvalidDbIndex => f.write_str("DB index is out of range"),
            CommandError::TooLarge(t) => write!(f, "{t}"),
            CommandError::Text(t) => f.write_str(t),
            CommandError::UnsupportedOption(o) => write!(f, "Unsupported option {o}"),
        }
    }

    /// The wire error kind this maps to.
    pub fn kind(&self) -> ErrorKind {
        match self {
            CommandError::UnknownCommand(_) | CommandError::UnknownSubcommand { .. } => {
                ErrorKind::Unsupported
            }
            CommandError::TooLarge(_) => ErrorKind::TooLarge,
            _ => ErrorKind::Malformed,
        }
    }
}

/// Makes user-supplied bytes safe to echo in an error line: printable ASCII, at most 128 bytes.
pub(crate) fn printable(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len().min(128));
    for &b in bytes.iter().take(128) {
        if b.is_ascii_graphic() || b == b' ' {
            s.push(char::from(b));
        } else {
            s.push('?');
        }
    }
    s
}

impl From<&CommandError> for Response<'static> {
    fn from(e: &CommandError) -> Self {
        let mut body = String::new();
        // Writing into a String cannot fail.
        let _ = e.write_body(&mut body);
        Response::Error {
            kind: e.kind(),
            message: std::borrow::Cow::Owned(body),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_texts() {
        assert_eq!(
            CommandError::WrongArity("get").to_string(),
            "ERR wrong number of arguments for 'get' command"
        );
        assert_eq!(CommandError::Syntax.to_string(), "ERR syntax error");
        assert_eq!(
            CommandError::NotInteger.to_string(),
            "ERR value is not an integer or out of range"
        );
        assert_eq!(
            CommandError::UnknownCommand("foo".into()).to_string(),
            "ERR unknown command 'foo'"
        );
        assert_eq!(
            RespError::ExpectedBulk(b'\n').to_string(),
            "Protocol error: expected '$', got '\\n'"
        );
    }

    #[test]
    fn printable_strips_control_bytes() {
        assert_eq!(printable(b"a\r\nb\xff"), "a??b?");
        assert_eq!(printable(&[b'x'; 500]).len(), 128);
    }
}
