//! Entry points for fuzzing what a node reads from its peers on a replication or range-move
//! stream: `StreamReceiver` fed arbitrary frames on a replica (or move-receiving) core. The
//! cargo-fuzz target `node-core/fuzz/` calls it; this crate's tests run it over random bytes
//! so CI checks the same property, bounded.

use bytes::BytesMut;
use ringcache_cluster::encode_body;
use ringcache_cluster::replication::{StreamHello, WriteAck};
use ringcache_cluster::stream_auth::{stream_proof, NONCE_LEN};
use ringcache_proto::control::encode_control;
use ringcache_proto::{decode_frame, Limits, ReplFrame};

use crate::core_state::test_support::{core, joining_map, map, view};
use crate::map_change::on_map;
use crate::replica::StreamReceiver;

/// The secret of the fuzzed receiver, when the first byte asks for one.
const SECRET: &str = "fuzz";
/// The receiver's nonce (fixed, so a seed can hold a valid proof).
const NONCE: [u8; NONCE_LEN] = [0x5a; NONCE_LEN];

/// Feeds `data` to a stream receiver. The first byte sets the scene: bit 0, the receiver has a
/// cluster secret; bit 1, its clients need a password; bit 2, a valid opening (hello, and proof
/// when a secret is set) goes first, so the fuzzer reaches the stream proper; bit 3, the core
/// receives a range move (a joining primary) instead of being a replica. The rest is frames, as
/// a connection would read them; the first refused frame ends the stream, as it closes the
/// connection.
pub fn replication_stream(data: &[u8]) {
    let Some((&scene, rest)) = data.split_first() else {
        return;
    };
    let (secret, password, opened, moving) = (
        scene & 1 != 0,
        scene & 2 != 0,
        scene & 4 != 0,
        scene & 8 != 0,
    );
    let mut c = core(0, 1, WriteAck::All);
    if moving {
        on_map(&mut c, view(joining_map(1, 1), 2));
    } else {
        on_map(&mut c, view(map(1, 1, 1, 3), 101));
    }
    c.secret = secret.then(|| SECRET.to_string());
    let mut rx = StreamReceiver::new(1, NONCE, password);
    let mut input = Vec::new();
    if opened {
        let hello = StreamHello {
            stream: 77,
            primary_core: 0,
            primary_cores: 1,
            group: 1,
            moving,
            epoch: 5,
        };
        let body = encode_body(&hello);
        let mut out = BytesMut::new();
        encode_control(&mut out, ReplFrame::Hello, false, 0, 0, &body);
        if secret {
            let proof = stream_proof(SECRET, &NONCE, &body);
            encode_control(
                &mut out,
                ReplFrame::Proof,
                false,
                0,
                0,
                &encode_body(&proof),
            );
        }
        input.extend_from_slice(&out);
    }
    input.extend_from_slice(rest);
    let limits = Limits::default();
    let mut out = BytesMut::new();
    let mut at = 0;
    let now = 10_000;
    while let Ok(Some(f)) = decode_frame(&input[at..], &limits) {
        let buf = &input[at..];
        if rx
            .on_frame(&mut c, &f.header, f.body(buf), now, &mut out)
            .is_err()
        {
            break;
        }
        at += f.len();
        rx.end_of_batch(&mut out);
        out.clear();
    }
    rx.finish(&mut c);
    // Whatever was applied leaves the store consistent and the clock sane.
    let stamp = c.clock.stamp(now);
    assert!(
        ringcache_cluster::HybridClock::physical_ms(stamp)
            <= now + ringcache_cluster::MAX_AHEAD_MS + 1
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]
        #[test]
        fn replication_streams_never_panic(b in proptest::collection::vec(any::<u8>(), 0..512)) {
            replication_stream(&b);
        }
    }

    /// The committed seeds of the fuzz target, each fed once.
    #[test]
    fn the_fuzz_seeds_run_without_panicking() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/seeds/repl_stream");
        let mut n = 0;
        for e in std::fs::read_dir(dir).expect("seed directory").flatten() {
            replication_stream(&std::fs::read(e.path()).expect("seed"));
            n += 1;
        }
        assert!(n > 0, "no seeds in {dir}");
    }
}

/// Writes the seed corpora of the fuzz targets (`fuzz/seeds/`): run
/// `cargo test -p ringcache-node-core --features fuzzing -- --ignored write_fuzz_seeds`.
#[cfg(test)]
mod seeds {
    use super::*;
    use ringcache_cluster::replication::{encode_op, ReplOp, StreamPosition, Tag};
    use ringcache_cluster::stream_auth::{StreamChallenge, StreamProof};
    use ringcache_cluster::{ControlReply, Heartbeat, JoinRequest, RemoveRequest, Role};

    fn frame(out: &mut Vec<u8>, op: ReplFrame, seq: u64, body: &[u8]) {
        let mut b = BytesMut::new();
        encode_control(&mut b, op, false, seq, 0, body);
        out.extend_from_slice(&b);
    }

    fn ops() -> Vec<u8> {
        let mut v = Vec::new();
        let put = ReplOp::Put {
            key: b"k",
            value: b"v",
            version: 10_000 << 20 | 3,
            expires_at: Some(20_000),
            tags: vec![Tag(b"t")],
        };
        frame(&mut v, ReplFrame::Op, 1, &encode_op(&put));
        let del = ReplOp::Del {
            key: b"k",
            version: 10_001 << 20,
        };
        frame(&mut v, ReplFrame::Op, 2, &encode_op(&del));
        let inv = ReplOp::InvalidatePrefix {
            prefix: b"p",
            cut: 10_002 << 20,
        };
        frame(&mut v, ReplFrame::Op, 3, &encode_op(&inv));
        let far = ReplOp::Put {
            key: b"far",
            value: b"v",
            version: u64::MAX,
            expires_at: None,
            tags: vec![],
        };
        frame(&mut v, ReplFrame::Op, 4, &encode_op(&far));
        frame(&mut v, ReplFrame::Reset, 4, b"");
        frame(&mut v, ReplFrame::Op, 0, &encode_op(&ReplOp::Flush));
        frame(&mut v, ReplFrame::Synced, 4, b"");
        v
    }

    #[test]
    #[ignore = "writes the seed files; run by hand"]
    fn write_fuzz_seeds() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/seeds");
        let hello = encode_body(&StreamHello {
            stream: 77,
            primary_core: 0,
            primary_cores: 1,
            group: 1,
            moving: false,
            epoch: 5,
        });
        let mut raw_hello = Vec::new();
        frame(&mut raw_hello, ReplFrame::Hello, 0, &hello);
        let proof = encode_body(&StreamProof { mac: [1; 32] });
        let mut bad_proof = raw_hello.clone();
        frame(&mut bad_proof, ReplFrame::Proof, 0, &proof);
        let streams: [(&str, u8, Vec<u8>); 7] = [
            ("replica_open", 0b0100, ops()),
            ("replica_secret", 0b0101, ops()),
            ("move_open", 0b1100, ops()),
            ("move_secret", 0b1101, ops()),
            (
                "hello_then_ops",
                0b0000,
                [raw_hello.clone(), ops()].concat(),
            ),
            ("bad_proof", 0b0001, bad_proof),
            ("password_no_secret", 0b0010, raw_hello),
        ];
        for (name, scene, rest) in streams {
            let path = format!("{root}/repl_stream/{name}");
            std::fs::write(path, [&[scene][..], &rest].concat()).expect("write seed");
        }
        let place = ringcache_cluster::Place {
            group: 1,
            role: Role::Replica,
            epoch: 2,
        };
        let bodies: [(&str, u8, Vec<u8>); 9] = [
            (
                "join",
                0,
                encode_body(&JoinRequest {
                    host: "127.0.0.1".into(),
                    main_port: 7000,
                    core_ports: vec![7001, 7002],
                    role: Role::Primary,
                    group: Some(1),
                    secret: Some("s".into()),
                    previous: Some(place),
                }),
            ),
            (
                "heartbeat",
                1,
                encode_body(&Heartbeat {
                    member: 3,
                    applied: 9,
                    ready: true,
                    moved: 0,
                    main_port: 7000,
                    epoch: 4,
                }),
            ),
            (
                "reply_map",
                2,
                encode_body(&ControlReply::Map(Some(map(2, 1, 2, 3)))),
            ),
            (
                "remove",
                3,
                encode_body(&RemoveRequest {
                    member: 3,
                    secret: None,
                }),
            ),
            ("map_moving", 4, encode_body(&joining_map(1, 2))),
            ("stream_hello", 5, hello),
            (
                "stream_position",
                6,
                encode_body(&StreamPosition { applied: Some(3) }),
            ),
            (
                "challenge",
                7,
                encode_body(&StreamChallenge { nonce: NONCE }),
            ),
            ("proof", 8, proof),
        ];
        for (name, which, body) in bodies {
            let path = format!("{root}/control_body/{name}");
            std::fs::write(path, [&[which][..], &body].concat()).expect("write seed");
        }
    }
}
