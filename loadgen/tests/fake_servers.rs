//! The driver end to end against small in-process servers: a RESP store, a two-core native
//! node that checks every key arrived at its core, a memcached text store, a server that never
//! answers (timeouts) and an open-loop run at a fixed rate.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use bytes::{Buf, BytesMut};
use ringcache_cluster::core_for_key;
use ringcache_loadgen::driver::{self, Refill, RunConfig, ThreadStats};
use ringcache_loadgen::protocol::Target;
use ringcache_loadgen::workload::{KeyDist, KeySpace, ValueSize, WorkloadSpec};
use ringcache_proto::{
    decode_frame, decode_request, encode_response, encode_value_reply, parse_command, Command,
    CoreInfo, ErrorKind, Limits, RespParser, Response, Topology,
};

type Store = Arc<Mutex<HashSet<Vec<u8>>>>;

/// Accepts connections on `l` forever, one thread each, running `serve`.
fn serve_forever<F>(l: TcpListener, serve: F)
where
    F: Fn(TcpStream) + Send + Sync + 'static,
{
    let serve = Arc::new(serve);
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { return };
            let serve = Arc::clone(&serve);
            thread::spawn(move || serve(s));
        }
    });
}

fn listener() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = l.local_addr().unwrap();
    (l, a)
}

/// Reads into `buf`; false at EOF or error.
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

fn resp_server(store: Store) -> SocketAddr {
    let (l, addr) = listener();
    serve_forever(l, move |mut s| {
        let limits = Limits::default();
        let mut parser = RespParser::new();
        let mut rbuf = BytesMut::new();
        let mut out = Vec::new();
        while fill(&mut s, &mut rbuf) {
            while let Ok(Some(used)) = parser.parse(&rbuf, &limits) {
                match parse_command(&parser.args(&rbuf), &limits) {
                    Ok(Command::Get { key }) => {
                        if store.lock().unwrap().contains(key) {
                            out.extend_from_slice(b"$5\r\nvalue\r\n");
                        } else {
                            out.extend_from_slice(b"$-1\r\n");
                        }
                    }
                    Ok(Command::Set { key, .. }) => {
                        store.lock().unwrap().insert(key.to_vec());
                        out.extend_from_slice(b"+OK\r\n");
                    }
                    _ => out.extend_from_slice(b"-ERR unexpected\r\n"),
                }
                rbuf.advance(used);
            }
            if s.write_all(&out).is_err() {
                return;
            }
            out.clear();
        }
    });
    addr
}

/// A node with `cores` core ports; returns the main port's address, the count of requests
/// each core saw and the count that arrived at the wrong core.
fn native_node(cores: usize) -> (SocketAddr, Arc<Vec<AtomicU64>>, Arc<AtomicU64>) {
    let store: Store = Arc::default();
    let seen: Arc<Vec<AtomicU64>> = Arc::new((0..cores).map(|_| AtomicU64::new(0)).collect());
    let wrong = Arc::new(AtomicU64::new(0));
    let mut infos = Vec::new();
    for core in 0..cores {
        let (l, a) = listener();
        infos.push(CoreInfo {
            core: core as u16,
            port: a.port(),
        });
        let (store, seen, wrong) = (store.clone(), seen.clone(), wrong.clone());
        serve_forever(l, move |mut s| {
            let limits = Limits::default();
            let mut rbuf = BytesMut::new();
            let mut out = BytesMut::new();
            while fill(&mut s, &mut rbuf) {
                while let Ok(Some(f)) = decode_frame(&rbuf, &limits) {
                    let id = f.header.request_id;
                    let cmd = decode_request(&f.header, f.body(&rbuf), &limits).unwrap();
                    let key = cmd.key().unwrap();
                    seen[core].fetch_add(1, Ordering::Relaxed);
                    if core_for_key(key, cores as u32) as usize != core {
                        wrong.fetch_add(1, Ordering::Relaxed);
                        let r = Response::error(ErrorKind::Malformed, "wrong core");
                        encode_response(&mut out, id, 0, &r).unwrap();
                    } else if let Command::Set { key, .. } = cmd {
                        store.lock().unwrap().insert(key.to_vec());
                        encode_response(&mut out, id, 0, &Response::Ok).unwrap();
                    } else if store.lock().unwrap().contains(key) {
                        encode_value_reply(&mut out, id, 0, b"value", 1, None).unwrap();
                    } else {
                        encode_response(&mut out, id, 0, &Response::Nil).unwrap();
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
    let (l, main) = listener();
    let topo = Topology {
        node_id: 1,
        main_port: main.port(),
        cores: infos,
    };
    serve_forever(l, move |mut s| {
        let limits = Limits::default();
        let mut rbuf = BytesMut::new();
        while fill(&mut s, &mut rbuf) {
            if let Ok(Some(f)) = decode_frame(&rbuf, &limits) {
                let mut out = BytesMut::new();
                let r = Response::Topology(topo.clone());
                encode_response(&mut out, f.header.request_id, 0, &r).unwrap();
                let _ = s.write_all(&out);
                return;
            }
        }
    });
    (main, seen, wrong)
}

fn memcached_server(store: Store) -> SocketAddr {
    let (l, addr) = listener();
    serve_forever(l, move |mut s| {
        let mut rbuf = BytesMut::new();
        let mut out = Vec::new();
        while fill(&mut s, &mut rbuf) {
            while let Some(eol) = rbuf.windows(2).position(|w| w == b"\r\n") {
                let line = rbuf[..eol].to_vec();
                let parts: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
                match parts[0] {
                    b"get" => {
                        if store.lock().unwrap().contains(parts[1]) {
                            out.extend_from_slice(b"VALUE ");
                            out.extend_from_slice(parts[1]);
                            out.extend_from_slice(b" 0 5\r\nvalue\r\nEND\r\n");
                        } else {
                            out.extend_from_slice(b"END\r\n");
                        }
                        rbuf.advance(eol + 2);
                    }
                    b"set" => {
                        let n: usize = std::str::from_utf8(parts[4]).unwrap().parse().unwrap();
                        if rbuf.len() < eol + 2 + n + 2 {
                            break;
                        }
                        store.lock().unwrap().insert(parts[1].to_vec());
                        out.extend_from_slice(b"STORED\r\n");
                        rbuf.advance(eol + 2 + n + 2);
                    }
                    _ => {
                        out.extend_from_slice(b"ERROR\r\n");
                        rbuf.advance(eol + 2);
                    }
                }
            }
            if s.write_all(&out).is_err() {
                return;
            }
            out.clear();
        }
    });
    addr
}

fn config(target: Target, addrs: Vec<SocketAddr>, keys: u64) -> RunConfig {
    RunConfig {
        target,
        addrs,
        route: Default::default(),
        epoch: 0,
        connections: 4,
        pipeline: 8,
        refill: Refill::Window,
        threads: 2,
        rate: None,
        keyspace: KeySpace::new(keys, 16).unwrap(),
        spec: WorkloadSpec {
            keys,
            get_ratio: 0.9,
            dist: KeyDist::Zipf(0.99),
            value_size: ValueSize { min: 8, max: 64 },
        },
        seed: 7,
        prefill: true,
        duration_ns: None,
        requests: Some(20_000),
        warmup_ns: 0,
        timeout_ns: 5_000_000_000,
        cpus: vec![],
    }
}

fn run(cfg: RunConfig) -> ThreadStats {
    driver::spawn(Arc::new(cfg)).unwrap().join().unwrap()
}

fn assert_clean_full_hits(st: &ThreadStats, keys: u64) {
    assert_eq!(st.errors.total(), 0, "{:?}", st.errors);
    assert_eq!(st.prefill_ops, keys);
    assert!(st.ops >= 20_000, "{} ops", st.ops);
    assert_eq!(st.ops, st.gets + st.sets);
    assert_eq!(st.hits, st.gets, "every key was prefilled");
    let get_share = st.gets as f64 / st.ops as f64;
    assert!((get_share - 0.9).abs() < 0.02, "{get_share}");
    assert_eq!(st.hist.len(), st.ops);
    assert!(st.window_ns > 0);
}

#[test]
fn resp_prefill_then_all_hits() {
    let store: Store = Arc::default();
    let addr = resp_server(store.clone());
    let st = run(config(Target::Resp, vec![addr], 2000));
    assert_clean_full_hits(&st, 2000);
    assert_eq!(store.lock().unwrap().len(), 2000);
}

#[test]
fn native_requests_reach_their_core() {
    let (main, seen, wrong) = native_node(3);
    let addrs = driver::fetch_core_addrs(main).unwrap();
    assert_eq!(addrs.len(), 3);
    let st = run(config(Target::Ringcache, addrs, 3000));
    assert_clean_full_hits(&st, 3000);
    assert_eq!(wrong.load(Ordering::Relaxed), 0);
    for (core, n) in seen.iter().enumerate() {
        assert!(
            n.load(Ordering::Relaxed) > 1000,
            "core {core} saw too little"
        );
    }
}

#[test]
fn memcached_batch_refill_prefill_then_all_hits() {
    let store: Store = Arc::default();
    let addr = memcached_server(store.clone());
    let mut cfg = config(Target::Memcached, vec![addr], 1500);
    cfg.refill = Refill::Batch;
    let st = run(cfg);
    assert_clean_full_hits(&st, 1500);
}

#[test]
fn silent_server_gives_timeouts_not_a_hang() {
    let (l, addr) = listener();
    serve_forever(l, |mut s| {
        let mut buf = [0u8; 4096];
        while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
    });
    let mut cfg = config(Target::Resp, vec![addr], 100);
    cfg.prefill = false;
    cfg.requests = None;
    cfg.duration_ns = Some(1_500_000_000);
    cfg.timeout_ns = 300_000_000;
    let st = run(cfg);
    assert_eq!(st.ops, 0);
    // Every connection times out its 8 requests, reconnects and times out again.
    assert!(st.errors.timeouts >= 4 * 8 * 2, "{:?}", st.errors);
    assert_eq!(st.errors.server_errors, 0);
}

#[test]
fn refused_connection_fails_the_run() {
    let (l, addr) = listener();
    drop(l);
    let r = driver::spawn(Arc::new(config(Target::Resp, vec![addr], 10)))
        .unwrap()
        .join();
    let e = r.unwrap_err().to_string();
    assert!(e.contains("cannot connect"), "{e}");
}

#[test]
fn open_loop_keeps_its_rate() {
    let store: Store = Arc::default();
    let addr = resp_server(store);
    let mut cfg = config(Target::Resp, vec![addr], 1000);
    cfg.prefill = false;
    cfg.requests = None;
    cfg.rate = Some(4000.0);
    cfg.duration_ns = Some(1_000_000_000);
    cfg.warmup_ns = 200_000_000;
    let st = run(cfg);
    assert_eq!(st.errors.total(), 0);
    let rate = st.ops as f64 / (st.window_ns as f64 / 1e9);
    assert!((2400.0..=4400.0).contains(&rate), "{rate} ops/s");
    assert!(st.gets > 0 && st.sets > 0);
    assert_eq!(st.hist.len(), st.ops);
}
