//! Native opcodes: the header byte that names a request's command or a response's kind.
//!
//! Requests use 0x01..=0x7f, responses 0x80..=0xff, so the two never collide.

macro_rules! byte_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident = $n:expr,)* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum $name { $($(#[$vm])* $v = $n,)* }

        impl $name {
            /// Every value, in wire order.
            pub const ALL: &'static [$name] = &[$($name::$v,)*];

            /// Parses the header byte; `None` for an unknown value.
            pub fn from_u8(b: u8) -> Option<Self> {
                match b {
                    $($n => Some($name::$v),)*
                    _ => None,
                }
            }
        }

        impl From<$name> for u8 {
            fn from(o: $name) -> u8 {
                o as u8
            }
        }
    };
}
pub(crate) use byte_enum;

byte_enum! {
    /// The command of a request frame.
    Opcode {
        /// GET.
        Get = 0x01,
        /// GETV (get with version).
        GetVersion = 0x02,
        /// SET.
        Set = 0x03,
        /// DEL.
        Del = 0x04,
        /// EXISTS.
        Exists = 0x05,
        /// TOUCH.
        Touch = 0x06,
        /// EXPIRE / PEXPIRE.
        Expire = 0x07,
        /// TTL / PTTL.
        Ttl = 0x08,
        /// PERSIST.
        Persist = 0x09,
        /// MGET.
        MGet = 0x0a,
        /// MSET.
        MSet = 0x0b,
        /// INCR / DECR / INCRBY / DECRBY.
        IncrBy = 0x0c,
        /// PING.
        Ping = 0x0d,
        /// FLUSH.
        Flush = 0x0e,
        /// INVALIDATE PREFIX.
        InvalidatePrefix = 0x0f,
        /// INVALIDATE TAG.
        InvalidateTag = 0x10,
        /// STATS.
        Stats = 0x11,
        /// TOPOLOGY.
        Topology = 0x12,
        /// HELLO.
        Hello = 0x13,
        /// AUTH.
        Auth = 0x14,
        /// CONFIG GET.
        ConfigGet = 0x15,
        /// COMMAND [DOCS].
        CommandDocs = 0x16,
        /// QUIT.
        Quit = 0x17,
        /// SELECT.
        Select = 0x18,
        /// CLIENT SETINFO.
        ClientSetInfo = 0x19,
        /// CLIENT SETNAME.
        ClientSetName = 0x1a,
        /// DIGEST.
        Digest = 0x1b,
        /// A single-key string/keyspace operation (`Command::Key`: SETNX, GETDEL, APPEND, ...).
        Key = 0x1c,
        /// MSETNX.
        MSetNx = 0x1d,
        /// DBSIZE.
        DbSize = 0x1e,
        /// TYPE.
        Type = 0x1f,
        /// SCAN.
        Scan = 0x20,
        /// KEYS.
        Keys = 0x21,
    }
}

byte_enum! {
    /// The kind of a response frame (one per `Response` variant).
    ReplyCode {
        /// `Response::Ok`.
        Ok = 0x80,
        /// `Response::Nil`.
        Nil = 0x81,
        /// `Response::Value`.
        Value = 0x82,
        /// `Response::Int`.
        Int = 0x83,
        /// `Response::Bool`.
        Bool = 0x84,
        /// `Response::Values`.
        Values = 0x85,
        /// `Response::Bulk`.
        Bulk = 0x86,
        /// `Response::Pong`.
        Pong = 0x87,
        /// `Response::Stats`.
        Stats = 0x88,
        /// `Response::Topology`.
        Topology = 0x89,
        /// `Response::Pairs`.
        Pairs = 0x8a,
        /// `Response::Hello`.
        Hello = 0x8b,
        /// `Response::Error`.
        Error = 0x8c,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_round_trip() {
        for &o in Opcode::ALL {
            assert_eq!(Opcode::from_u8(u8::from(o)), Some(o));
            assert!(u8::from(o) < 0x80);
        }
        for &r in ReplyCode::ALL {
            assert_eq!(ReplyCode::from_u8(u8::from(r)), Some(r));
            assert!(u8::from(r) >= 0x80);
        }
        assert_eq!(Opcode::from_u8(0), None);
        assert_eq!(ReplyCode::from_u8(0xff), None);
    }
}
