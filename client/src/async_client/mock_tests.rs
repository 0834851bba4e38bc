//! Async client tests against the in-process mock node of `mock_tests` and a holding mock
//! (answers only when told): shared connections, coalesced writes, replies matched by id,
//! the in-flight window, cancellation, timeouts, retries, AUTH and pipelines.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use ringcache_proto::{
    decode_frame, decode_request, encode_response, Command, CoreInfo, ErrorKind, Limits, Response,
    Topology,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::mock_tests::{key_on, Mock};
use crate::{AsyncClient, ClientConfig, ClientError, Reply};

fn assert_send_sync<T: Send + Sync + Clone + 'static>() {}

/// Polls `f` every 5 ms until it holds or `deadline` passes.
async fn eventually(deadline: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + deadline;
    while Instant::now() < end {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    f()
}

#[test]
fn the_client_and_its_futures_can_go_to_other_tasks() {
    assert_send_sync::<AsyncClient>();
    fn send<F: std::future::Future + Send>(_: F) {}
    let c: Option<AsyncClient> = None;
    if let Some(c) = c {
        send(c.get("k"));
        send(c.mget(&["a", "b"]));
        send(async move {
            let mut p = c.pipeline();
            p.get("a");
            p.execute().await
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tasks_share_one_connection_per_core_and_get_their_own_replies() {
    let mock = Mock::start(2, None);
    let c = AsyncClient::connect(&mock.addr()).await.unwrap();
    mock.shared.reverse.store(true, Ordering::SeqCst);
    let tasks: Vec<_> = (0..2000)
        .map(|i| {
            let c = c.clone();
            tokio::spawn(async move {
                c.set(format!("k{i}"), format!("v{i}")).await?;
                let got = c.get(format!("k{i}")).await?;
                Ok::<_, ClientError>((i, got))
            })
        })
        .collect();
    for t in tasks {
        let (i, got) = t.await.unwrap().unwrap();
        assert_eq!(got, Some(format!("v{i}").into_bytes()), "task {i}");
    }
    // The main connection and one per core, whatever the number of tasks and clones.
    assert_eq!(mock.shared.accepts.load(Ordering::SeqCst), 3);
    assert_eq!(c.open_connections(), 3);
    // Each key went to its core's port.
    assert!(mock
        .seen(1)
        .iter()
        .all(|k| crate::route::key_slot(k, 2) == 1));
    assert!(mock
        .seen(2)
        .iter()
        .all(|k| crate::route::key_slot(k, 2) == 2));
}

#[tokio::test(flavor = "current_thread")]
async fn requests_of_tasks_that_meet_leave_in_one_write() {
    let mock = Mock::start(1, None);
    let c = AsyncClient::connect(&mock.addr()).await.unwrap();
    c.warm_up().await.unwrap();
    let before = c.write_stats();
    // On one thread, the 200 tasks all queue their request before the writer runs.
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let c = c.clone();
            tokio::spawn(async move { c.set(format!("k{i}"), "v").await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let after = c.write_stats();
    let (writes, frames) = (after.writes - before.writes, after.frames - before.frames);
    assert_eq!(frames, 200);
    assert!(writes <= 4, "200 requests took {writes} writes");
}

/// A one-core mock node whose core port holds every reply until `release` turns true, and
/// counts the request frames it received.
struct Holding {
    addr: String,
    received: Arc<AtomicUsize>,
    release: watch::Sender<bool>,
}

impl Holding {
    async fn start() -> Holding {
        let main = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let core = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let main_addr = main.local_addr().unwrap();
        let core_addr = core.local_addr().unwrap();
        let topology = Topology {
            node_id: 1,
            main_port: main_addr.port(),
            cores: vec![CoreInfo {
                core: 0,
                port: core_addr.port(),
            }],
        };
        let received = Arc::new(AtomicUsize::new(0));
        let (release, released) = watch::channel(false);
        for (l, hold) in [(main, false), (core, true)] {
            let (topology, received, released) =
                (topology.clone(), received.clone(), released.clone());
            tokio::spawn(async move {
                while let Ok((s, _)) = l.accept().await {
                    let (t, r, rel) = (topology.clone(), received.clone(), released.clone());
                    tokio::spawn(hold_serve(s, t, hold.then_some((r, rel))));
                }
            });
        }
        Holding {
            addr: main_addr.to_string(),
            received,
            release,
        }
    }
}

/// Answers GET with the key as value, SET with OK, TOPOLOGY and PING; with `hold`, counts the
/// frames and answers none until released.
async fn hold_serve(
    mut s: TcpStream,
    topology: Topology,
    mut hold: Option<(Arc<AtomicUsize>, watch::Receiver<bool>)>,
) {
    let limits = Limits::default();
    let mut buf = Vec::new();
    let mut out = BytesMut::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let held = matches!(&hold, Some((_, rel)) if !*rel.borrow());
        if !held && !out.is_empty() {
            if s.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
        let read = match &mut hold {
            Some((_, rel)) if !*rel.borrow() => tokio::select! {
                r = s.read(&mut chunk) => r,
                _ = rel.changed() => continue,
            },
            _ => s.read(&mut chunk).await,
        };
        match read {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        let mut used = 0;
        while let Ok(Some(f)) = decode_frame(&buf[used..], &limits) {
            let h = f.header;
            let body = f.body(&buf[used..]).to_vec();
            used += f.len();
            if let Some((n, _)) = &hold {
                n.fetch_add(1, Ordering::SeqCst);
            }
            let cmd = decode_request(&h, &body, &limits).unwrap();
            let r = match cmd {
                Command::Topology => Response::Topology(topology.clone()),
                Command::Get { key } => Response::Value {
                    value: key,
                    version: 1,
                    ttl_ms: None,
                },
                Command::Set { .. } => Response::Ok,
                Command::Ping { .. } => Response::Pong,
                _ => Response::error(ErrorKind::Unsupported, "holding mock"),
            };
            let (id, owned) = (h.request_id, r.clone());
            encode_response(&mut out, id, 0, &owned).unwrap();
        }
        buf.drain(..used);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_more_than_the_window_is_in_flight_and_the_rest_wait() {
    let mock = Holding::start().await;
    let cfg = ClientConfig::default().max_in_flight(8);
    let c = AsyncClient::connect_with(&mock.addr, cfg).await.unwrap();
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let c = c.clone();
            tokio::spawn(async move { (i, c.get(format!("key{i}")).await) })
        })
        .collect();
    let received = mock.received.clone();
    assert!(
        eventually(Duration::from_secs(5), || received.load(Ordering::SeqCst)
            >= 8)
        .await
    );
    // Nothing beyond the window arrives while the replies are held.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(mock.received.load(Ordering::SeqCst), 8);
    mock.release.send(true).unwrap();
    for t in tasks {
        let (i, got) = t.await.unwrap();
        assert_eq!(got.unwrap(), Some(format!("key{i}").into_bytes()));
    }
    assert_eq!(mock.received.load(Ordering::SeqCst), 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_future_leaves_the_connection_usable_and_its_reply_discarded() {
    let mock = Holding::start().await;
    let cfg = ClientConfig::default().max_in_flight(4);
    let c = AsyncClient::connect_with(&mock.addr, cfg).await.unwrap();
    // Four requests fill the window; their futures are dropped while the replies are held.
    for i in 0..4 {
        let r = tokio::time::timeout(Duration::from_millis(20), c.get(format!("gone{i}"))).await;
        assert!(r.is_err(), "a held request was answered");
    }
    let received = mock.received.clone();
    assert!(
        eventually(Duration::from_secs(5), || received.load(Ordering::SeqCst)
            == 4)
        .await
    );
    mock.release.send(true).unwrap();
    // The late replies free the window and go nowhere; every later request gets its own.
    for i in 0..20 {
        let got = c.get(format!("later{i}")).await.unwrap();
        assert_eq!(got, Some(format!("later{i}").into_bytes()));
    }
    assert_eq!(c.open_connections(), 2, "the connection was replaced");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn futures_dropped_at_random_points_leave_every_later_request_correct() {
    let mock = Mock::start(2, None);
    let c = AsyncClient::connect(&mock.addr()).await.unwrap();
    // Connections open first: a call dropped while its connection is being opened abandons
    // that connection (the next call opens another), which is not what is tested here.
    c.warm_up().await.unwrap();
    let mut cancelled = 0;
    for round in 0..20u64 {
        let tasks: Vec<_> = (0..100u64)
            .map(|i| {
                let c = c.clone();
                // A pseudo-random budget from 0 to ~300 µs: some finish, some are dropped.
                let budget = Duration::from_micros((round * 7919 + i * 104_729) % 300);
                tokio::spawn(async move {
                    let key = format!("r{round}-{i}");
                    tokio::time::timeout(budget, c.set(&key, &key)).await
                })
            })
            .collect();
        for t in tasks {
            if t.await.unwrap().is_err() {
                cancelled += 1;
            }
        }
    }
    assert!(cancelled > 0, "no future was dropped mid-request");
    for i in 0..200 {
        let key = format!("after{i}");
        c.set(&key, &key).await.unwrap();
        assert_eq!(c.get(&key).await.unwrap(), Some(key.into_bytes()));
    }
    assert_eq!(mock.shared.accepts.load(Ordering::SeqCst), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_server_times_out_and_the_connection_is_replaced() {
    let mock = Mock::start(1, None);
    let cfg = ClientConfig::default().read_timeout(Duration::from_millis(200));
    let c = AsyncClient::connect_with(&mock.addr(), cfg).await.unwrap();
    c.set("a", "1").await.unwrap();
    mock.shared.mute.store(true, Ordering::SeqCst);
    let t0 = Instant::now();
    let err = c.get("a").await.unwrap_err();
    assert!(matches!(err, ClientError::Timeout { .. }), "{err}");
    // A bound against hanging, not a speed check: the 200 ms timeout fired well before it.
    assert!(t0.elapsed() < Duration::from_secs(10));
    mock.shared.mute.store(false, Ordering::SeqCst);
    // On a loaded machine a fresh connection's first answer may itself miss 200 ms: a few
    // bounded attempts, each on a replaced connection.
    let mut got = c.get("a").await;
    for _ in 0..20 {
        if got.is_ok() {
            break;
        }
        got = c.get("a").await;
    }
    assert_eq!(got.unwrap(), Some(b"1".to_vec()));
    assert!(mock.shared.accepts.load(Ordering::SeqCst) >= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_requests_are_retried_once_on_a_fresh_connection() {
    let mock = Mock::start(1, None);
    let c = AsyncClient::connect(&mock.addr()).await.unwrap();
    c.set("k", "v").await.unwrap();
    mock.shared.drop_next.store(1, Ordering::SeqCst);
    assert_eq!(c.get("k").await.unwrap(), Some(b"v".to_vec()));
    mock.shared.drop_next.store(1, Ordering::SeqCst);
    let err = c.incr("n").await.unwrap_err();
    assert!(err.is_connection_broken(), "{err}");
    assert_eq!(c.incr("n").await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_connection_authenticates() {
    let mock = Mock::start(2, Some("pw"));
    let cfg = ClientConfig::default().password("pw");
    let c = AsyncClient::connect_with(&mock.addr(), cfg).await.unwrap();
    for (k, v) in [("a", "1"), ("b", "2"), ("c", "3")] {
        c.set(k, v).await.unwrap();
    }
    assert_eq!(
        c.mget(&["a", "x", "c"]).await.unwrap(),
        vec![Some(b"1".to_vec()), None, Some(b"3".to_vec())]
    );
    let err = AsyncClient::connect(&mock.addr()).await.unwrap_err();
    assert_eq!(err.server_kind(), Some(ErrorKind::NoAuth), "{err}");
    let bad = ClientConfig::default().password("nope");
    let err = AsyncClient::connect_with(&mock.addr(), bad)
        .await
        .unwrap_err();
    assert_eq!(err.server_kind(), Some(ErrorKind::WrongPass), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelines_answer_in_order_and_split_multi_key_commands() {
    let mock = Mock::start(2, None);
    let c = AsyncClient::connect(&mock.addr()).await.unwrap();
    let (a, b) = (key_on(0, 2, "a"), key_on(1, 2, "b"));
    let keys = [a.as_str(), b.as_str(), "missing"];
    let mut p = c.pipeline();
    p.set(&a, "1")
        .set(&b, "2")
        .incr_by("n", 5)
        .mget(&keys)
        .del(&keys)
        .touch(&keys)
        .get(&a);
    assert_eq!(p.len(), 7);
    let r = p.execute().await;
    assert_eq!(r[0].clone().unwrap(), Reply::Ok);
    assert_eq!(r[2].clone().unwrap(), Reply::Int(5));
    let vals = r[3].clone().unwrap().into_values().unwrap();
    let vals: Vec<_> = vals.into_iter().map(|v| v.map(|v| v.value)).collect();
    assert_eq!(vals, vec![Some(b"1".to_vec()), Some(b"2".to_vec()), None]);
    assert_eq!(r[4].clone().unwrap(), Reply::Int(2));
    // The mock does not know TOUCH: that command fails alone.
    assert_eq!(
        r[5].as_ref().unwrap_err().server_kind(),
        Some(ErrorKind::Unsupported)
    );
    assert_eq!(r[6].clone().unwrap(), Reply::Nil);
    assert!(c.pipeline().execute().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_arguments_and_refused_connections_are_typed_errors() {
    let mock = Mock::start(1, None);
    let c = AsyncClient::connect(&mock.addr()).await.unwrap();
    let opts = crate::SetOpts::new().nx().xx();
    let err = c.set_with("k", "v", &opts).await.unwrap_err();
    assert!(matches!(err, ClientError::InvalidArgument(_)), "{err}");
    let big = vec![0u8; ringcache_proto::limits::DEFAULT_MAX_VALUE + 1];
    let err = c.set("k", &big).await.unwrap_err();
    assert!(matches!(err, ClientError::TooLarge(_)), "{err}");
    c.ping().await.unwrap();
    let free: SocketAddr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let err = AsyncClient::connect(&free.to_string()).await.unwrap_err();
    assert!(matches!(err, ClientError::Connect { .. }), "{err}");
}
