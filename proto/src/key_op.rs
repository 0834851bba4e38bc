//! Single-key commands beyond GET/SET: the rest of Redis's strings family (SETNX, GETSET,
//! SET ... GET, GETDEL, GETEX, STRLEN, APPEND, GETRANGE, SETRANGE, INCRBYFLOAT) and the keyspace
//! commands on one key (EXPIREAT, EXPIRE with NX/XX/GT/LT, EXPIRETIME, MEMORY USAGE).
//!
//! They travel as one `Command::Key { key, op }` (one native opcode), so the hot GET/SET
//! variants stay as they are.

use serde::{Deserialize, Serialize};

use crate::command::{Expiry, SetCond};

/// The condition of EXPIRE/PEXPIRE/EXPIREAT/PEXPIREAT (Redis 7 options).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ExpireCond {
    /// Always set the expiry.
    Always,
    /// Only when the key has no expiry (`NX`).
    Nx,
    /// Only when the key has an expiry (`XX`).
    Xx,
    /// Only when the new expiry is later than the current one; no expiry counts as infinite (`GT`).
    Gt,
    /// Only when the new expiry is earlier than the current one; no expiry counts as infinite,
    /// so a key without one always qualifies (`LT`).
    Lt,
    /// `XX LT` together: the key has an expiry and the new one is earlier. (`XX GT` is `GT`,
    /// which already requires an expiry.)
    XxLt,
}

/// One single-key operation of [`crate::Command::Key`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyOp<'a> {
    /// `SETNX key value`: answers 1 when stored, 0 when the key existed.
    SetNx {
        /// The value.
        #[serde(borrow, with = "serde_bytes")]
        value: &'a [u8],
    },
    /// `GETSET key value` and `SET key value [..] GET`: write, answer the old value (or nil).
    SetGet {
        /// The value.
        #[serde(borrow, with = "serde_bytes")]
        value: &'a [u8],
        /// When the new entry expires.
        expiry: Expiry,
        /// NX / XX.
        cond: SetCond,
    },
    /// `GETDEL key`: answer the value and delete the key.
    GetDel,
    /// `GETEX key [EX|PX|EXAT|PXAT|PERSIST]`: answer the value, changing its expiry
    /// (`None`: unchanged; `Some(Expiry::None)`: PERSIST).
    GetEx {
        /// The new expiry, if any.
        expiry: Option<Expiry>,
    },
    /// `STRLEN key`.
    Strlen,
    /// `APPEND key value`: answers the new length.
    Append {
        /// The bytes to append.
        #[serde(borrow, with = "serde_bytes")]
        value: &'a [u8],
    },
    /// `GETRANGE key start end` (and `SUBSTR`), Redis's index rules.
    GetRange {
        /// First index (negative counts from the end).
        start: i64,
        /// Last index, inclusive (negative counts from the end).
        end: i64,
    },
    /// `SETRANGE key offset value`: answers the new length.
    SetRange {
        /// Where to write.
        offset: u64,
        /// The bytes to write.
        #[serde(borrow, with = "serde_bytes")]
        value: &'a [u8],
    },
    /// `INCRBYFLOAT key delta`: the delta as sent (validated when parsed, again when run).
    IncrByFloat {
        /// The increment, a decimal float.
        #[serde(borrow, with = "serde_bytes")]
        delta: &'a [u8],
    },
    /// `EXPIRE`/`PEXPIRE` with a condition, `EXPIREAT`/`PEXPIREAT`: answers 1 when set.
    ExpireWhen {
        /// The new expiry (`RelativeMs(0)` for a time already past: delete).
        at: Expiry,
        /// The condition.
        cond: ExpireCond,
    },
    /// `EXPIRETIME` / `PEXPIRETIME`: absolute Unix expiry; -1 no expiry, -2 missing.
    ExpireTime {
        /// Answer in milliseconds (`PEXPIRETIME`).
        millis: bool,
    },
    /// `MEMORY USAGE key`: the bytes the entry is charged (key, value, overhead).
    MemoryUsage,
}

impl KeyOp<'_> {
    /// Whether the operation may change the key (and so goes to the primary and replicates).
    pub fn is_write(&self) -> bool {
        !matches!(
            self,
            KeyOp::GetEx { expiry: None }
                | KeyOp::Strlen
                | KeyOp::GetRange { .. }
                | KeyOp::ExpireTime { .. }
                | KeyOp::MemoryUsage
        )
    }

    /// The value bytes it carries, for limit checks.
    pub fn value(&self) -> Option<&[u8]> {
        match self {
            KeyOp::SetNx { value }
            | KeyOp::SetGet { value, .. }
            | KeyOp::Append { value }
            | KeyOp::SetRange { value, .. } => Some(value),
            KeyOp::IncrByFloat { delta } => Some(delta),
            _ => None,
        }
    }
}

/// Parses a Redis float argument (`strtold` rules as Redis applies them: no leading space, no
/// NaN; `inf` is accepted).
pub fn parse_float(s: &[u8]) -> Option<f64> {
    let s = std::str::from_utf8(s).ok()?;
    if s.is_empty() || s.starts_with(|c: char| c.is_ascii_whitespace()) {
        return None;
    }
    // `inf` parses (the sum is then refused as infinite), `nan` does not, as in Redis.
    s.parse::<f64>().ok().filter(|f| !f.is_nan())
}

/// Formats a float as INCRBYFLOAT answers it: plain decimal, no exponent, no trailing zeros
/// (the shortest text that reads back as the same `f64`).
pub fn format_float(f: f64) -> String {
    if f == 0.0 {
        return "0".to_string();
    }
    format!("{f}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_parse_and_format_as_redis() {
        assert_eq!(parse_float(b"10.5"), Some(10.5));
        assert_eq!(parse_float(b"5.0e3"), Some(5000.0));
        assert_eq!(parse_float(b" 1"), None);
        assert_eq!(parse_float(b"inf"), Some(f64::INFINITY));
        assert_eq!(parse_float(b"nan"), None);
        assert_eq!(parse_float(b"abc"), None);
        assert_eq!(format_float(10.6), "10.6");
        assert_eq!(format_float(5000.0), "5000");
        assert_eq!(format_float(-0.0), "0");
        assert_eq!(format_float(1e20), "100000000000000000000");
    }

    #[test]
    fn reads_are_not_writes() {
        assert!(!KeyOp::Strlen.is_write());
        assert!(!KeyOp::GetEx { expiry: None }.is_write());
        assert!(KeyOp::GetEx {
            expiry: Some(Expiry::None)
        }
        .is_write());
        assert!(KeyOp::GetDel.is_write());
    }
}
