//! Size bounds applied to every decoded frame and RESP request.
//!
//! One `Limits` value is shared by the native and the RESP decoders so both reject the same inputs.

/// Upper bounds that every decoder enforces before it trusts a length read from the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest whole request (native frame body, or all bytes of one RESP command).
    pub max_frame: usize,
    /// Largest key (also bounds prefixes, tags and other name-like arguments).
    pub max_key: usize,
    /// Largest value.
    pub max_value: usize,
    /// Most arguments in one request (RESP array length, keys of a multi-key command).
    pub max_args: usize,
}

/// Default largest key: 64 KiB.
pub const DEFAULT_MAX_KEY: usize = 64 * 1024;
/// Default largest value: 8 MiB.
pub const DEFAULT_MAX_VALUE: usize = 8 * 1024 * 1024;
/// Default largest request: one max value, one max key and 4 KiB of framing.
pub const DEFAULT_MAX_FRAME: usize = DEFAULT_MAX_VALUE + DEFAULT_MAX_KEY + 4 * 1024;
/// Default most arguments per request: 1 Mi, as Redis.
pub const DEFAULT_MAX_ARGS: usize = 1024 * 1024;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame: DEFAULT_MAX_FRAME,
            max_key: DEFAULT_MAX_KEY,
            max_value: DEFAULT_MAX_VALUE,
            max_args: DEFAULT_MAX_ARGS,
        }
    }
}

impl Limits {
    /// Largest single RESP bulk string: the bigger of a key and a value.
    pub fn max_bulk(&self) -> usize {
        self.max_key.max(self.max_value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let l = Limits::default();
        assert_eq!(l.max_key, 65536);
        assert_eq!(l.max_value, 8 << 20);
        assert_eq!(l.max_frame, (8 << 20) + 65536 + 4096);
        assert_eq!(l.max_args, 1 << 20);
        assert_eq!(l.max_bulk(), 8 << 20);
    }
}
