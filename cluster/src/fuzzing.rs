//! Entry points for fuzzing the decoders of control bodies, the bytes a node or balancer reads
//! from its peers: one function takes arbitrary bytes and must never panic. The cargo-fuzz
//! targets in `node-core/fuzz/` call it, and this crate's tests run it over random bytes, so
//! the property is checked in every CI run (bounded) as well as in long fuzzing sessions.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::replication::{StreamChallenge, StreamHello, StreamPosition, StreamProof};
use crate::RemoveRequest;
use crate::{decode_body, encode_body, ClusterMap, ControlReply, Heartbeat, JoinRequest};

/// Decodes `body` as `T`; whatever decodes must encode and decode to itself.
fn round_trip<T>(body: &[u8])
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    if let Ok(v) = decode_body::<T>(body) {
        let again: T = decode_body(&encode_body(&v)).unwrap_or_else(|e| {
            panic!("{v:?} decoded, then failed to decode re-encoded: {e}");
        });
        assert_eq!(again, v);
    }
}

/// The first byte picks the body type (the control plane's requests and replies, the cluster
/// map, the replication stream's opening bodies); the rest is the body.
pub fn control_body(data: &[u8]) {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    match which % 9 {
        0 => round_trip::<JoinRequest>(body),
        1 => round_trip::<Heartbeat>(body),
        2 => round_trip::<ControlReply>(body),
        3 => round_trip::<RemoveRequest>(body),
        4 => round_trip::<ClusterMap>(body),
        5 => round_trip::<StreamHello>(body),
        6 => round_trip::<StreamPosition>(body),
        7 => round_trip::<StreamChallenge>(body),
        _ => round_trip::<StreamProof>(body),
    }
    // A decoded map is walked as a node walks one: its ring placing keys.
    if let Ok(map) = decode_body::<ClusterMap>(body) {
        for key in [&b""[..], b"k", b"user:1"] {
            let _ = map.ring.owner(crate::key_hash(key));
        }
        let _ = map.ring.shares();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]
        #[test]
        fn control_bodies_never_panic(b in proptest::collection::vec(any::<u8>(), 0..256)) {
            control_body(&b);
        }
    }

    /// The committed seeds of the fuzz target, each fed once.
    #[test]
    fn the_fuzz_seeds_decode_without_panicking() {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../node-core/fuzz/seeds/control_body"
        );
        let mut n = 0;
        for e in std::fs::read_dir(dir).expect("seed directory").flatten() {
            control_body(&std::fs::read(e.path()).expect("seed"));
            n += 1;
        }
        assert!(n > 0, "no seeds in {dir}");
    }
}
