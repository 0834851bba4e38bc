//! Client tests against an in-process mock node (plain threads speaking native frames): routing
//! to core ports, replies matched by id when they come out of order, retries on broken
//! connections, AUTH, timeouts. No ringcache server is needed.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use ringcache_cluster::core_for_key;
use ringcache_proto::{
    decode_frame, decode_request, encode_response, Command, CoreInfo, ErrorKind, Limits, Response,
    Topology, ValueRef,
};

use crate::{Client, ClientConfig, ClientError, Reply, SetOpts, SetOutcome};

#[derive(Default)]
pub(crate) struct Shared {
    pub(crate) store: Mutex<HashMap<Vec<u8>, Vec<u8>>>,
    /// Keys seen per listener (0 = main, 1 + i = core i).
    seen: Mutex<Vec<Vec<Vec<u8>>>>,
    /// Answer each read batch's replies in reverse order.
    pub(crate) reverse: AtomicBool,
    /// Close the connection instead of answering this many upcoming requests.
    pub(crate) drop_next: AtomicUsize,
    /// Never answer (to provoke a timeout).
    pub(crate) mute: AtomicBool,
    /// Connections accepted, all listeners together.
    pub(crate) accepts: AtomicUsize,
    password: Option<String>,
    pub(crate) topology: Mutex<Option<Topology>>,
}

pub(crate) struct Mock {
    pub(crate) shared: Arc<Shared>,
    port: u16,
}

impl Mock {
    pub(crate) fn start(cores: u16, password: Option<&str>) -> Mock {
        let shared = Arc::new(Shared {
            password: password.map(str::to_string),
            ..Shared::default()
        });
        let listeners: Vec<TcpListener> = (0..=cores)
            .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let ports: Vec<u16> = listeners
            .iter()
            .map(|l| l.local_addr().unwrap().port())
            .collect();
        *shared.seen.lock().unwrap() = vec![Vec::new(); ports.len()];
        *shared.topology.lock().unwrap() = Some(Topology {
            node_id: 7,
            main_port: ports[0],
            cores: (0..cores)
                .map(|i| CoreInfo {
                    core: i,
                    port: ports[usize::from(i) + 1],
                })
                .collect(),
        });
        for (idx, l) in listeners.into_iter().enumerate() {
            let shared = shared.clone();
            std::thread::spawn(move || {
                for s in l.incoming().flatten() {
                    shared.accepts.fetch_add(1, Ordering::SeqCst);
                    let shared = shared.clone();
                    std::thread::spawn(move || serve(s, idx, cores, &shared));
                }
            });
        }
        Mock {
            shared,
            port: ports[0],
        }
    }

    pub(crate) fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub(crate) fn seen(&self, listener: usize) -> Vec<Vec<u8>> {
        self.shared.seen.lock().unwrap()[listener].clone()
    }
}

fn serve(mut s: TcpStream, idx: usize, cores: u16, sh: &Shared) {
    let limits = Limits::default();
    let mut buf = Vec::new();
    let mut authed = sh.password.is_none();
    let mut chunk = [0u8; 64 * 1024];
    loop {
        let n = match s.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut replies: Vec<BytesMut> = Vec::new();
        let mut used = 0;
        while let Ok(Some(f)) = decode_frame(&buf[used..], &limits) {
            let h = f.header;
            let body = f.body(&buf[used..]).to_vec();
            used += f.len();
            if sh.mute.load(Ordering::SeqCst) {
                continue;
            }
            if sh
                .drop_next
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                return; // closes the connection with the request unanswered
            }
            let cmd = decode_request(&h, &body, &limits).unwrap();
            let mut out = BytesMut::new();
            let mut reply =
                |r: &Response<'_>| encode_response(&mut out, h.request_id, 0, r).unwrap();
            if !authed && !matches!(cmd, Command::Auth { .. }) {
                reply(&Response::error(
                    ErrorKind::NoAuth,
                    "Authentication required.",
                ));
                replies.push(out);
                continue;
            }
            let mut seen = sh.seen.lock().unwrap();
            let mut store = sh.store.lock().unwrap();
            let mut note = |k: &[u8]| {
                // A keyed request on a core port must belong to that core.
                if idx > 0 {
                    assert_eq!(
                        core_for_key(k, u32::from(cores)) as usize,
                        idx - 1,
                        "misrouted"
                    );
                }
                seen[idx].push(k.to_vec());
            };
            match cmd {
                Command::Auth { creds } => {
                    if sh.password.as_deref().map(str::as_bytes) == Some(creds.password) {
                        authed = true;
                        reply(&Response::Ok);
                    } else {
                        reply(&Response::error(ErrorKind::WrongPass, "invalid password"));
                    }
                }
                Command::Topology => {
                    let t = sh.topology.lock().unwrap().clone().unwrap();
                    reply(&Response::Topology(t));
                }
                Command::Ping { .. } => reply(&Response::Pong),
                Command::Get { key } => {
                    note(key);
                    match store.get(key) {
                        Some(v) => reply(&Response::Value {
                            value: v,
                            version: v.len() as u64,
                            ttl_ms: None,
                        }),
                        None => reply(&Response::Nil),
                    }
                }
                Command::Set { key, value, .. } => {
                    note(key);
                    store.insert(key.to_vec(), value.to_vec());
                    reply(&Response::Ok);
                }
                Command::IncrBy { key, delta } => {
                    note(key);
                    let v = store
                        .get(key)
                        .and_then(|v| std::str::from_utf8(v).ok()?.parse::<i64>().ok())
                        .unwrap_or(0)
                        + delta;
                    store.insert(key.to_vec(), v.to_string().into_bytes());
                    reply(&Response::Int(v));
                }
                Command::MGet { keys } => {
                    keys.iter().for_each(|k| note(k));
                    let vals: Vec<Option<ValueRef<'_>>> = keys
                        .iter()
                        .map(|k| {
                            store.get(*k).map(|v| ValueRef {
                                value: v,
                                version: 1,
                                ttl_ms: None,
                            })
                        })
                        .collect();
                    reply(&Response::Values(vals));
                }
                Command::Del { keys } => {
                    keys.iter().for_each(|k| note(k));
                    let n = keys.iter().filter(|k| store.remove(**k).is_some()).count();
                    reply(&Response::Int(n as i64));
                }
                other => reply(&Response::error(
                    ErrorKind::Unsupported,
                    format!("mock: {:?}", other.opcode()),
                )),
            }
            replies.push(out);
        }
        buf.drain(..used);
        if sh.reverse.load(Ordering::SeqCst) {
            replies.reverse();
        }
        let all: Vec<u8> = replies.iter().flat_map(|r| r.iter().copied()).collect();
        if !all.is_empty() && s.write_all(&all).is_err() {
            return;
        }
    }
}

/// A key of `cores` owned by `core`.
pub(crate) fn key_on(core: u32, cores: u32, tag: &str) -> String {
    (0u32..)
        .map(|i| format!("{tag}{i}"))
        .find(|k| core_for_key(k.as_bytes(), cores) == core)
        .unwrap()
}

#[test]
fn keys_go_straight_to_their_core_port() {
    let m = Mock::start(3, None);
    let mut c = Client::connect(m.addr()).unwrap();
    assert_eq!(c.cores(), 3);
    assert_eq!(c.cached_topology().node_id, 7);
    let keys: Vec<String> = (0..30).map(|i| format!("key{i}")).collect();
    for k in &keys {
        c.set(k, k).unwrap();
    }
    for k in &keys {
        assert_eq!(c.get(k).unwrap(), Some(k.as_bytes().to_vec()));
    }
    assert!(m.seen(0).is_empty(), "no keyed request on the main port");
    for core in 0..3u32 {
        let want = keys
            .iter()
            .filter(|k| core_for_key(k.as_bytes(), 3) == core)
            .count();
        assert_eq!(m.seen(core as usize + 1).len(), 2 * want);
    }
    // MGET split over cores comes back in key order.
    let mut ask: Vec<&str> = keys.iter().map(String::as_str).collect();
    ask.insert(3, "missing");
    let got = c.mget(&ask).unwrap();
    assert_eq!(got.len(), ask.len());
    for (k, v) in ask.iter().zip(&got) {
        let want = (*k != "missing").then(|| k.as_bytes().to_vec());
        assert_eq!(v, &want);
    }
    assert_eq!(c.del(&keys[..10]).unwrap(), 10);
    assert_eq!(c.del(&keys[..10]).unwrap(), 0);
    assert_eq!(c.del::<&str>(&[]).unwrap(), 0);
}

#[test]
fn out_of_order_replies_are_matched_by_request_id() {
    let m = Mock::start(2, None);
    let mut c = Client::connect(m.addr()).unwrap();
    m.shared.reverse.store(true, Ordering::SeqCst);
    let keys: Vec<String> = (0..200).map(|i| format!("k{i}")).collect();
    let vals: Vec<String> = (0..200).map(|i| format!("v{i}")).collect();
    let mut p = c.pipeline();
    for (k, v) in keys.iter().zip(&vals) {
        p.set(k, v);
    }
    for k in &keys {
        p.get(k);
    }
    p.incr_by("n", 2).incr_by("n", 3).mget(&keys[..5]);
    let res = p.execute();
    assert_eq!(res.len(), 403);
    for r in &res[..200] {
        assert_eq!(r.as_ref().unwrap(), &Reply::Ok);
    }
    for (r, v) in res[200..400].iter().zip(&vals) {
        assert_eq!(
            r.clone().unwrap().into_value().unwrap(),
            Some(v.as_bytes().to_vec())
        );
    }
    let n2 = res[400].clone().unwrap().into_int().unwrap();
    let n5 = res[401].clone().unwrap().into_int().unwrap();
    // Both increments ran; each reply carries its own request's answer.
    assert!(matches!((n2, n5), (2, 5) | (5, 3)), "{n2} {n5}");
    let vs = res[402].clone().unwrap().into_values().unwrap();
    assert_eq!(vs.len(), 5);
    assert_eq!(vs[4].as_ref().unwrap().value, b"v4");
}

#[test]
fn a_big_pipeline_does_not_deadlock() {
    let m = Mock::start(1, None);
    let mut c = Client::connect(m.addr()).unwrap();
    let big = vec![b'x'; 64 * 1024];
    // Megabytes of requests and of replies in one batch: the server blocks writing replies
    // that are not read, so the client must take them while it is still writing.
    let n = 300;
    let mut p = c.pipeline();
    for _ in 0..n {
        p.set("big", &big).get("big");
    }
    let res = p.execute();
    assert_eq!(res.len(), 2 * n);
    for pair in res.chunks(2) {
        assert_eq!(pair[0].as_ref().unwrap(), &Reply::Ok);
        let v = pair[1].clone().unwrap().into_value().unwrap().unwrap();
        assert_eq!(v.len(), big.len());
    }
}

#[test]
fn idempotent_requests_are_retried_once_on_a_fresh_connection() {
    let m = Mock::start(2, None);
    let mut c = Client::connect(m.addr()).unwrap();
    c.set("a", "1").unwrap();
    // The connection breaks under a GET: it is sent again and succeeds.
    m.shared.drop_next.store(1, Ordering::SeqCst);
    assert_eq!(c.get("a").unwrap(), Some(b"1".to_vec()));
    // Under an INCR it is not resent: the error is reported, and the next call works.
    m.shared.drop_next.store(1, Ordering::SeqCst);
    let e = c.incr_by("n", 1).unwrap_err();
    assert!(e.is_connection_broken(), "{e}");
    assert_eq!(c.incr_by("n", 1).unwrap(), 1);
    // Broken twice in a row: the retry's error is reported.
    m.shared.drop_next.store(2, Ordering::SeqCst);
    assert!(c.get("a").is_err());
    assert_eq!(c.get("a").unwrap(), Some(b"1".to_vec()));
    // In a pipeline, only the idempotent parts are resent.
    let k0 = key_on(0, 2, "p");
    m.shared.drop_next.store(1, Ordering::SeqCst);
    let mut p = c.pipeline();
    p.get(&k0).incr_by(&k0, 1);
    let res = p.execute();
    assert_eq!(res[0].as_ref().unwrap(), &Reply::Nil);
    assert!(res[1].as_ref().unwrap_err().is_connection_broken());
    // Retries can be turned off.
    let mut c =
        Client::connect_with(m.addr(), ClientConfig::default().retry_idempotent(false)).unwrap();
    c.get("a").unwrap();
    m.shared.drop_next.store(1, Ordering::SeqCst);
    assert!(c.get("a").is_err());
}

#[test]
fn password_is_sent_on_every_connection() {
    let m = Mock::start(2, Some("pw"));
    let e = Client::connect(m.addr()).unwrap_err();
    assert_eq!(e.server_kind(), Some(ErrorKind::NoAuth), "{e}");
    let e = Client::connect_with(m.addr(), ClientConfig::default().password("nope")).unwrap_err();
    assert_eq!(e.server_kind(), Some(ErrorKind::WrongPass), "{e}");
    let mut c = Client::connect_with(m.addr(), ClientConfig::default().password("pw")).unwrap();
    for i in 0..20 {
        c.set(format!("k{i}"), "v").unwrap();
    }
    c.warm_up().unwrap();
}

#[test]
fn a_silent_server_times_out() {
    let m = Mock::start(1, None);
    let cfg = ClientConfig::default().read_timeout(Duration::from_millis(200));
    let mut c = Client::connect_with(m.addr(), cfg).unwrap();
    m.shared.mute.store(true, Ordering::SeqCst);
    let e = c.get("a").unwrap_err();
    assert!(matches!(e, ClientError::Timeout { .. }), "{e}");
    m.shared.mute.store(false, Ordering::SeqCst);
    assert_eq!(c.get("a").unwrap(), None);
}

#[test]
fn refused_connections_are_reported_clearly() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let e = Client::connect(format!("127.0.0.1:{port}")).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("cannot reach ringcache at 127.0.0.1:{port}: connection refused")
    );
}

#[test]
fn oversized_and_invalid_requests_fail_before_sending() {
    let m = Mock::start(1, None);
    let limits = Limits {
        max_value: 10,
        ..Limits::default()
    };
    let mut c = Client::connect_with(m.addr(), ClientConfig::default().limits(limits)).unwrap();
    assert!(matches!(
        c.set("k", [0u8; 11]).unwrap_err(),
        ClientError::TooLarge(_)
    ));
    assert!(matches!(
        c.set_with("k", "v", &SetOpts::new().nx().xx()).unwrap_err(),
        ClientError::InvalidArgument(_)
    ));
    // The connection is still fine.
    c.set("k", "v").unwrap();
    let opts = SetOpts::new().nx().xx();
    let mut p = c.pipeline();
    p.set_with("k", "v", &opts).get("k");
    let res = p.execute();
    assert!(matches!(res[0], Err(ClientError::InvalidArgument(_))));
    assert_eq!(
        SetOutcome::from_reply(Ok(Reply::Ok)).unwrap(),
        SetOutcome::Stored { version: None }
    );
    assert_eq!(
        res[1].clone().unwrap().into_value().unwrap(),
        Some(b"v".to_vec())
    );
}

#[test]
fn a_failed_part_of_a_split_command_does_not_shift_later_answers() {
    let mock = Mock::start(2, None);
    let mut c = Client::connect(mock.addr()).unwrap();
    let (a, b) = (key_on(0, 2, "a"), key_on(1, 2, "b"));
    c.set(&a, "1").unwrap();
    let keys = [a.as_str(), b.as_str()];
    let mut p = c.pipeline();
    // The mock does not know TOUCH: both of its parts fail, and only TOUCH answers that.
    p.touch(&keys).get(&a);
    let r = p.execute();
    assert!(r[0].is_err());
    assert_eq!(
        r[1].clone().unwrap().into_value().unwrap(),
        Some(b"1".to_vec())
    );
}
