//! `--cluster` end to end against in-process fakes: a balancer that answers the cluster-map
//! control request, and two "nodes" (2 and 1 cores) whose core ports check that every request
//! is theirs by the map's route and carries the map's epoch, answering REDIRECT otherwise.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use bytes::{Buf, BytesMut};
use ringcache_cluster::{
    encode_body, ClusterMap, ControlReply, Member, MemberState, Ring, Role, ShardGroup,
    DEFAULT_VNODES,
};
use ringcache_loadgen::driver::{self, Refill, RunConfig, ThreadStats};
use ringcache_loadgen::endpoints;
use ringcache_loadgen::protocol::Target;
use ringcache_loadgen::workload::{KeyDist, KeySpace, ValueSize, WorkloadSpec};
use ringcache_proto::{
    control, decode_frame, decode_request, encode_response, encode_value_reply, Command, ErrorKind,
    Limits, Response,
};

const EPOCH: u64 = 5;

fn serve_forever<F: Fn(TcpStream) + Send + Sync + 'static>(l: TcpListener, serve: F) {
    let serve = Arc::new(serve);
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { return };
            let serve = Arc::clone(&serve);
            thread::spawn(move || serve(s));
        }
    });
}

fn fill(s: &mut TcpStream, buf: &mut BytesMut) -> bool {
    let mut chunk = [0u8; 16 * 1024];
    match s.read(&mut chunk) {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
    }
}

struct Fake {
    balancer: SocketAddr,
    /// Requests per (member index, core).
    seen: Arc<Vec<Vec<AtomicU64>>>,
    /// Requests that arrived at the wrong port.
    wrong: Arc<AtomicU64>,
}

fn fake_cluster() -> Fake {
    let cores = [2usize, 1];
    let listeners: Vec<Vec<TcpListener>> = cores
        .iter()
        .map(|&n| {
            (0..n)
                .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
                .collect()
        })
        .collect();
    let members: Vec<Member> = listeners
        .iter()
        .enumerate()
        .map(|(i, ls)| Member {
            id: 100 + i as u64,
            host: "127.0.0.1".into(),
            main_port: 1,
            core_ports: ls.iter().map(|l| l.local_addr().unwrap().port()).collect(),
            role: Role::Primary,
            group: Some(1 + i as u32),
            state: MemberState::Active,
        })
        .collect();
    let groups: Vec<ShardGroup> = members
        .iter()
        .map(|m| ShardGroup {
            id: m.group.unwrap(),
            primary: Some(m.id),
            replicas: vec![],
        })
        .collect();
    let ids: Vec<u32> = groups.iter().map(|g| g.id).collect();
    let map = Arc::new(ClusterMap {
        epoch: EPOCH,
        members,
        groups,
        ring: Ring::new(&ids, DEFAULT_VNODES),
        moving: None,
    });
    let seen: Arc<Vec<Vec<AtomicU64>>> = Arc::new(
        cores
            .iter()
            .map(|&n| (0..n).map(|_| AtomicU64::new(0)).collect())
            .collect(),
    );
    let wrong = Arc::new(AtomicU64::new(0));
    let store: Arc<Mutex<HashSet<Vec<u8>>>> = Arc::default();
    for (mi, ls) in listeners.into_iter().enumerate() {
        for (core, l) in ls.into_iter().enumerate() {
            let (map, seen, wrong, store) =
                (map.clone(), seen.clone(), wrong.clone(), store.clone());
            serve_forever(l, move |mut s| {
                let limits = Limits::default();
                let (mut rbuf, mut out) = (BytesMut::new(), BytesMut::new());
                while fill(&mut s, &mut rbuf) {
                    while let Ok(Some(f)) = decode_frame(&rbuf, &limits) {
                        let id = f.header.request_id;
                        let cmd = decode_request(&f.header, f.body(&rbuf), &limits).unwrap();
                        let key = cmd.key().unwrap();
                        let r = map.route(key).unwrap();
                        let current = EPOCH as u32;
                        if f.header.epoch != 0 && f.header.epoch < current {
                            let e = ErrorKind::Redirect { epoch: current };
                            encode_response(&mut out, id, current, &Response::error(e, "stale"))
                                .unwrap();
                        } else if r.member.id != map.members[mi].id || r.core as usize != core {
                            wrong.fetch_add(1, Ordering::Relaxed);
                            let e = ErrorKind::Redirect { epoch: current };
                            encode_response(&mut out, id, current, &Response::error(e, "moved"))
                                .unwrap();
                        } else {
                            seen[mi][core].fetch_add(1, Ordering::Relaxed);
                            if let Command::Set { key, .. } = cmd {
                                store.lock().unwrap().insert(key.to_vec());
                                encode_response(&mut out, id, current, &Response::Ok).unwrap();
                            } else if store.lock().unwrap().contains(key) {
                                encode_value_reply(&mut out, id, current, b"v", 1, None).unwrap();
                            } else {
                                encode_response(&mut out, id, current, &Response::Nil).unwrap();
                            }
                        }
                        let len = f.len();
                        rbuf.advance(len);
                    }
                    if s.write_all(&out).is_err() {
                        return;
                    }
                    out.clear();
                }
            });
        }
    }
    let bl = TcpListener::bind("127.0.0.1:0").unwrap();
    let balancer = bl.local_addr().unwrap();
    serve_forever(bl, move |mut s| {
        let limits = Limits::default();
        let mut rbuf = BytesMut::new();
        while fill(&mut s, &mut rbuf) {
            while let Ok(Some(f)) = decode_frame(&rbuf, &limits) {
                assert_eq!(f.header.opcode, u8::from(ringcache_proto::ClusterOp::Map));
                let body = encode_body(&ControlReply::Map(Some((*map).clone())));
                let mut out = BytesMut::new();
                control::encode_control(
                    &mut out,
                    ringcache_proto::ClusterOp::Reply,
                    true,
                    f.header.request_id,
                    0,
                    &body,
                );
                let len = f.len();
                rbuf.advance(len);
                if s.write_all(&out).is_err() {
                    return;
                }
            }
        }
    });
    Fake {
        balancer,
        seen,
        wrong,
    }
}

fn config(ends: endpoints::Endpoints, keys: u64) -> RunConfig {
    RunConfig {
        target: Target::Ringcache,
        addrs: ends.addrs,
        route: ends.route,
        epoch: ends.epoch,
        connections: 4,
        pipeline: 8,
        refill: Refill::Window,
        threads: 2,
        rate: None,
        keyspace: KeySpace::new(keys, 16).unwrap(),
        spec: WorkloadSpec {
            keys,
            get_ratio: 0.9,
            dist: KeyDist::Uniform,
            value_size: ValueSize { min: 8, max: 32 },
        },
        seed: 3,
        prefill: true,
        duration_ns: None,
        requests: Some(10_000),
        warmup_ns: 0,
        timeout_ns: 5_000_000_000,
        cpus: vec![],
    }
}

fn run(cfg: RunConfig) -> ThreadStats {
    driver::spawn(Arc::new(cfg)).unwrap().join().unwrap()
}

#[test]
fn cluster_requests_reach_their_owning_core_with_the_epoch() {
    let fake = fake_cluster();
    let ends = endpoints::fetch_cluster(fake.balancer).unwrap();
    assert_eq!(ends.addrs.len(), 3);
    assert_eq!(ends.epoch, EPOCH as u32);
    let st = run(config(ends, 3000));
    assert_eq!(st.errors.total(), 0, "{:?}", st.errors);
    assert_eq!(st.prefill_errors.total(), 0, "{:?}", st.prefill_errors);
    assert_eq!(st.prefill_ops, 3000);
    assert!(st.ops >= 10_000);
    assert_eq!(st.hits, st.gets, "every key was prefilled");
    assert_eq!(fake.wrong.load(Ordering::Relaxed), 0);
    for (m, cores) in fake.seen.iter().enumerate() {
        for (c, n) in cores.iter().enumerate() {
            assert!(n.load(Ordering::Relaxed) > 500, "member {m} core {c}");
        }
    }
}

#[test]
fn stale_epoch_replies_count_as_redirects() {
    let fake = fake_cluster();
    let mut ends = endpoints::fetch_cluster(fake.balancer).unwrap();
    ends.epoch = EPOCH as u32 - 1;
    let mut cfg = config(ends, 500);
    cfg.prefill = false;
    cfg.requests = Some(2_000);
    let st = run(cfg);
    assert_eq!(st.errors.redirects, st.ops, "{:?}", st.errors);
    assert!(st.ops >= 2_000);
    assert_eq!(st.errors.server_errors, 0);
    assert_eq!(st.hits, 0);
}
