//! Cluster-mode tests against a mock balancer (answers map requests with a map the test swaps)
//! and mock one-core nodes: failover to a promoted replica, a group without a primary, the
//! failover budget, and reads from any member with fallback to the primary.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use ringcache_cluster::{
    encode_body, ClusterMap, ControlReply, Member, MemberId, MemberState, Ring, Role, ShardGroup,
    DEFAULT_VNODES,
};
use ringcache_proto::control::encode_control;
use ringcache_proto::ClusterOp;
use ringcache_proto::{decode_frame, Limits};

use crate::mock_tests::Mock;
use crate::{Client, ClientConfig, ClientError, ReadFrom};

/// A balancer that answers every map request with the current `map`.
pub(crate) struct Balancer {
    pub(crate) map: Arc<Mutex<ClusterMap>>,
    port: u16,
}

impl Balancer {
    pub(crate) fn start(map: ClusterMap) -> Balancer {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let map = Arc::new(Mutex::new(map));
        let shared = map.clone();
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                let map = shared.clone();
                std::thread::spawn(move || serve_maps(s, &map));
            }
        });
        Balancer { map, port }
    }

    pub(crate) fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub(crate) fn set(&self, map: ClusterMap) {
        *self.map.lock().unwrap() = map;
    }
}

fn serve_maps(mut s: TcpStream, map: &Mutex<ClusterMap>) {
    let (limits, mut buf, mut chunk) = (Limits::default(), Vec::new(), [0u8; 4096]);
    loop {
        let n = match s.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut used = 0;
        while let Ok(Some(f)) = decode_frame(&buf[used..], &limits) {
            used += f.len();
            assert_eq!(f.header.opcode, u8::from(ClusterOp::Map));
            let body = encode_body(&ControlReply::Map(Some(map.lock().unwrap().clone())));
            let mut out = BytesMut::new();
            encode_control(
                &mut out,
                ClusterOp::Reply,
                true,
                f.header.request_id,
                0,
                &body,
            );
            if s.write_all(&out).is_err() {
                return;
            }
        }
        buf.drain(..used);
    }
}

/// The core port of a one-core mock node.
pub(crate) fn core_port(m: &Mock) -> u16 {
    m.shared.topology.lock().unwrap().as_ref().unwrap().cores[0].port
}

/// A port nobody listens on (connections to it are refused).
pub(crate) fn dead_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn member(id: MemberId, port: u16, role: Role) -> Member {
    Member {
        id,
        host: "127.0.0.1".into(),
        main_port: port,
        core_ports: vec![port],
        role,
        group: Some(1),
        state: MemberState::Active,
    }
}

/// One group (1) of primary `primary` and replicas `replicas`, among members 1 (on port `p1`)
/// and 2 (on port `p2`).
pub(crate) fn map(
    epoch: u64,
    p1: u16,
    p2: u16,
    primary: Option<MemberId>,
    replicas: &[MemberId],
) -> ClusterMap {
    let role = |id| {
        if primary == Some(id) {
            Role::Primary
        } else {
            Role::Replica
        }
    };
    ClusterMap {
        epoch,
        members: vec![member(1, p1, role(1)), member(2, p2, role(2))],
        groups: vec![ShardGroup {
            id: 1,
            primary,
            replicas: replicas.to_vec(),
        }],
        ring: Ring::new(&[1], DEFAULT_VNODES),
        moving: None,
    }
}

pub(crate) fn stored(m: &Mock, key: &str) -> Option<Vec<u8>> {
    m.shared.store.lock().unwrap().get(key.as_bytes()).cloned()
}

#[test]
fn a_failed_primary_is_ridden_out_until_its_replica_is_promoted() {
    let (dead, replica) = (dead_port(), Mock::start(1, None));
    let b = Balancer::start(map(1, dead, core_port(&replica), Some(1), &[2]));
    let mut c = Client::connect_cluster(b.addr()).unwrap();
    let promote = {
        let map = b.map.clone();
        let p2 = core_port(&replica);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(150));
            *map.lock().unwrap() = self::map(2, dead, p2, Some(2), &[]);
        })
    };
    let t = Instant::now();
    c.set("k", "v").unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(100),
        "{:?}",
        t.elapsed()
    );
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    promote.join().unwrap();
    assert_eq!(stored(&replica, "k"), Some(b"v".to_vec()));
    assert_eq!(c.cluster_map().unwrap().epoch, 2);
    assert_eq!(c.incr_by("n", 2).unwrap(), 2);
    // Multi-key requests and pipelines ride it out too.
    let p2 = core_port(&replica);
    for round in 0..2u64 {
        b.set(map(10 + 2 * round, dead, p2, Some(1), &[2]));
        let mut c = Client::connect_cluster(b.addr()).unwrap();
        let map2 = b.map.clone();
        let promote = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            *map2.lock().unwrap() = map(11 + 2 * round, dead, p2, Some(2), &[]);
        });
        if round == 0 {
            let got = c.mget(&["k", "x"]).unwrap();
            assert_eq!(got, vec![Some(b"v".to_vec()), None]);
        } else {
            let mut p = c.pipeline();
            p.set("p", "1").get("p").incr_by("n", 1).del(&["k"]);
            let got: Vec<_> = p.execute().into_iter().map(Result::unwrap).collect();
            assert_eq!(got[1].clone().into_value().unwrap(), Some(b"1".to_vec()));
            assert_eq!(got[2].clone().into_int().unwrap(), 3);
            assert_eq!(got[3].clone().into_int().unwrap(), 1);
        }
        promote.join().unwrap();
    }
    assert_eq!(stored(&replica, "p"), Some(b"1".to_vec()));
}

#[test]
fn no_primary_and_a_dead_node_fail_clearly_within_the_budget() {
    let budget = Duration::from_millis(300);
    let cfg = ClientConfig::default().failover_timeout(budget);
    let b = Balancer::start(map(1, dead_port(), dead_port(), None, &[2]));
    let mut c = Client::connect_cluster_with(b.addr(), cfg.clone()).unwrap();
    let t = Instant::now();
    let e = c.get("k").unwrap_err();
    assert!(matches!(e, ClientError::NoPrimary { group: 1 }), "{e}");
    assert_eq!(e.to_string(), "shard group 1 has no live primary");
    assert!(t.elapsed() >= budget && t.elapsed() < Duration::from_secs(2));
    let t = Instant::now();
    let e = c.mset(&[("a", "1"), ("b", "2")]).unwrap_err();
    assert!(matches!(e, ClientError::NoPrimary { group: 1 }), "{e}");
    assert!(t.elapsed() >= budget && t.elapsed() < Duration::from_secs(2));

    b.set(map(2, dead_port(), dead_port(), Some(1), &[]));
    let t = Instant::now();
    let e = c.set("k", "v").unwrap_err();
    assert!(matches!(e, ClientError::Connect { .. }), "{e}");
    assert!(t.elapsed() >= budget && t.elapsed() < Duration::from_secs(2));
    let mut p = c.pipeline();
    p.set("k", "v").get("k");
    let results = p.execute();
    assert!(results
        .iter()
        .all(|r| matches!(r, Err(ClientError::Connect { .. }))));

    // Failover off: the error comes at once.
    let mut c =
        Client::connect_cluster_with(b.addr(), cfg.failover_timeout(Duration::ZERO)).unwrap();
    let t = Instant::now();
    assert!(c.get("k").is_err());
    assert!(t.elapsed() < Duration::from_millis(200));
}

#[test]
fn reads_from_any_member_take_turns_and_fall_back_to_the_primary() {
    let (primary, replica) = (Mock::start(1, None), Mock::start(1, None));
    let (p1, p2) = (core_port(&primary), core_port(&replica));
    for (m, v) in [(&primary, "on-primary"), (&replica, "on-replica")] {
        m.shared
            .store
            .lock()
            .unwrap()
            .insert(b"k".to_vec(), v.as_bytes().to_vec());
    }
    let b = Balancer::start(map(1, p1, p2, Some(1), &[2]));
    let cfg = ClientConfig::default().read_from(ReadFrom::Any);
    let mut c = Client::connect_cluster_with(b.addr(), cfg).unwrap();
    let got: Vec<Vec<u8>> = (0..4).map(|_| c.get("k").unwrap().unwrap()).collect();
    assert!(got.contains(&b"on-primary".to_vec()) && got.contains(&b"on-replica".to_vec()));
    assert_ne!(got[0], got[1]);
    let both = c.mget(&["k"]).unwrap()[0].clone().unwrap();
    let next = c.mget(&["k"]).unwrap()[0].clone().unwrap();
    assert_ne!(both, next, "MGET takes turns too");
    // Writes go to the primary only.
    c.set("w", "1").unwrap();
    assert_eq!(stored(&primary, "w"), Some(b"1".to_vec()));
    assert_eq!(stored(&replica, "w"), None);

    // A replica that does not answer: every read is served by the primary, at once.
    b.set(map(2, p1, dead_port(), Some(1), &[2]));
    c.refresh_map().unwrap();
    let t = Instant::now();
    for _ in 0..4 {
        assert_eq!(c.get("k").unwrap(), Some(b"on-primary".to_vec()));
        assert_eq!(c.mget(&["k"]).unwrap(), vec![Some(b"on-primary".to_vec())]);
    }
    assert!(t.elapsed() < Duration::from_millis(500));

    // The default reads the primary only.
    b.set(map(3, p1, p2, Some(1), &[2]));
    let mut c = Client::connect_cluster(b.addr()).unwrap();
    for _ in 0..4 {
        assert_eq!(c.get("k").unwrap(), Some(b"on-primary".to_vec()));
    }
}
