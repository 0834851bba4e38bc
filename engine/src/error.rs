//! Errors a shard operation can return.

/// Why a shard refused an operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// The key is longer than the configured maximum.
    #[error("key of {len} bytes exceeds the {max}-byte limit")]
    KeyTooLarge {
        /// The key's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The value is longer than the configured maximum.
    #[error("value of {len} bytes exceeds the {max}-byte limit")]
    ValueTooLarge {
        /// The value's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The entry would not fit even in an empty shard.
    #[error("entry of {charge} bytes exceeds the shard budget of {budget} bytes")]
    EntryTooLarge {
        /// What the entry would be charged.
        charge: usize,
        /// The shard's whole budget.
        budget: usize,
    },
    /// INCR/DECR on a value that is not a decimal 64-bit integer.
    #[error("value is not an integer or out of range")]
    NotAnInteger,
    /// INCR/DECR would overflow a 64-bit integer.
    #[error("increment or decrement would overflow")]
    Overflow,
}
