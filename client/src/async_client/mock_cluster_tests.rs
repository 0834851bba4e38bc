//! Cluster mode of the async client against the mock balancer and one-core mock nodes of
//! `mock_cluster_tests`: a failed primary ridden out until its replica is promoted (single,
//! multi-key and pipelined calls), the failover budget, reads from any member, and a
//! redirect answered by a map refresh and a retry.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use ringcache_proto::{decode_frame, decode_request, encode_response, ErrorKind, Limits, Response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::mock_cluster_tests::{core_port, dead_port, map, stored, Balancer};
use crate::mock_tests::Mock;
use crate::{AsyncClient, ClientConfig, ClientError, ReadFrom};

/// Swaps the balancer's map to `next` after `after` (the time the failover takes).
fn promote_later(b: &Balancer, next: ringcache_cluster::ClusterMap, after: Duration) {
    let shared = b.map.clone();
    tokio::spawn(async move {
        tokio::time::sleep(after).await;
        *shared.lock().unwrap() = next;
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_primary_is_ridden_out_until_its_replica_is_promoted() {
    let (dead, replica) = (dead_port(), Mock::start(1, None));
    let p2 = core_port(&replica);
    let b = Balancer::start(map(1, dead, p2, Some(1), &[2]));
    let c = AsyncClient::connect_cluster(&b.addr()).await.unwrap();
    promote_later(
        &b,
        map(2, dead, p2, Some(2), &[]),
        Duration::from_millis(150),
    );
    // Many tasks at once: each rides the failover out and gets its own answer.
    let t = Instant::now();
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let c = c.clone();
            tokio::spawn(async move {
                c.set(format!("k{i}"), format!("v{i}")).await?;
                c.get(format!("k{i}")).await
            })
        })
        .collect();
    for (i, task) in tasks.into_iter().enumerate() {
        let got = task.await.unwrap().unwrap();
        assert_eq!(got, Some(format!("v{i}").into_bytes()));
    }
    assert!(
        t.elapsed() >= Duration::from_millis(100),
        "{:?}",
        t.elapsed()
    );
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    assert_eq!(c.cluster_map().unwrap().epoch, 2);
    assert_eq!(stored(&replica, "k7"), Some(b"v7".to_vec()));

    // Multi-key calls and pipelines ride it out too.
    for round in 0..2u64 {
        b.set(map(10 + 2 * round, dead, p2, Some(1), &[2]));
        let c = AsyncClient::connect_cluster(&b.addr()).await.unwrap();
        let next = map(11 + 2 * round, dead, p2, Some(2), &[]);
        promote_later(&b, next, Duration::from_millis(100));
        if round == 0 {
            let got = c.mget(&["k1", "x"]).await.unwrap();
            assert_eq!(got, vec![Some(b"v1".to_vec()), None]);
        } else {
            let mut p = c.pipeline();
            p.set("p", "1").get("p").incr_by("n", 2).del(&["k1"]);
            let got: Vec<_> = p.execute().await.into_iter().map(Result::unwrap).collect();
            assert_eq!(got[1].clone().into_value().unwrap(), Some(b"1".to_vec()));
            assert_eq!(got[2].clone().into_int().unwrap(), 2);
            assert_eq!(got[3].clone().into_int().unwrap(), 1);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_primary_and_a_dead_node_fail_clearly_within_the_budget() {
    let budget = Duration::from_millis(300);
    let cfg = ClientConfig::default().failover_timeout(budget);
    let b = Balancer::start(map(1, dead_port(), dead_port(), None, &[2]));
    let c = AsyncClient::connect_cluster_with(&b.addr(), cfg.clone())
        .await
        .unwrap();
    let t = Instant::now();
    let e = c.get("k").await.unwrap_err();
    assert!(matches!(e, ClientError::NoPrimary { group: 1 }), "{e}");
    assert!(t.elapsed() >= budget && t.elapsed() < Duration::from_secs(2));

    b.set(map(2, dead_port(), dead_port(), Some(1), &[]));
    let t = Instant::now();
    let e = c.set("k", "v").await.unwrap_err();
    assert!(matches!(e, ClientError::Connect { .. }), "{e}");
    assert!(t.elapsed() >= budget && t.elapsed() < Duration::from_secs(2));

    // Failover off: the error comes at once.
    let off = cfg.failover_timeout(Duration::ZERO);
    let c = AsyncClient::connect_cluster_with(&b.addr(), off)
        .await
        .unwrap();
    let t = Instant::now();
    assert!(c.get("k").await.is_err());
    assert!(t.elapsed() < Duration::from_millis(200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_from_any_member_take_turns_and_fall_back_to_the_primary() {
    let (primary, replica) = (Mock::start(1, None), Mock::start(1, None));
    let (p1, p2) = (core_port(&primary), core_port(&replica));
    for (m, v) in [(&primary, "on-primary"), (&replica, "on-replica")] {
        let mut store = m.shared.store.lock().unwrap();
        store.insert(b"k".to_vec(), v.as_bytes().to_vec());
    }
    let b = Balancer::start(map(1, p1, p2, Some(1), &[2]));
    let cfg = ClientConfig::default().read_from(ReadFrom::Any);
    let c = AsyncClient::connect_cluster_with(&b.addr(), cfg)
        .await
        .unwrap();
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(c.get("k").await.unwrap().unwrap());
    }
    assert!(got.contains(&b"on-primary".to_vec()) && got.contains(&b"on-replica".to_vec()));
    c.set("w", "1").await.unwrap();
    assert_eq!(stored(&primary, "w"), Some(b"1".to_vec()));
    assert_eq!(stored(&replica, "w"), None);

    // A replica that does not answer: the primary serves every read.
    b.set(map(2, p1, dead_port(), Some(1), &[2]));
    c.refresh_map().await.unwrap();
    for _ in 0..4 {
        assert_eq!(c.get("k").await.unwrap(), Some(b"on-primary".to_vec()));
    }
    // The default reads the primary only.
    b.set(map(3, p1, p2, Some(1), &[2]));
    let c = AsyncClient::connect_cluster(&b.addr()).await.unwrap();
    for _ in 0..4 {
        assert_eq!(c.get("k").await.unwrap(), Some(b"on-primary".to_vec()));
    }
}

/// A one-core node on one port that answers its first request with a redirect (its map is
/// at epoch 2) and every later GET with the value "v"; counts the requests it got.
async fn redirecting_node() -> (u16, Arc<AtomicUsize>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let seen = counter.clone();
            tokio::spawn(async move {
                let (limits, mut buf, mut chunk) = (Limits::default(), Vec::new(), [0u8; 4096]);
                loop {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                    let (mut used, mut out) = (0, BytesMut::new());
                    while let Ok(Some(f)) = decode_frame(&buf[used..], &limits) {
                        let h = f.header;
                        let body = f.body(&buf[used..]).to_vec();
                        used += f.len();
                        decode_request(&h, &body, &limits).unwrap();
                        let r = if seen.fetch_add(1, Ordering::SeqCst) == 0 {
                            Response::error(ErrorKind::Redirect { epoch: 2 }, "stale map")
                        } else {
                            Response::Value {
                                value: b"v",
                                version: 1,
                                ttl_ms: None,
                            }
                        };
                        encode_response(&mut out, h.request_id, 2, &r).unwrap();
                    }
                    buf.drain(..used);
                    if s.write_all(&out).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_refreshes_the_map_and_the_request_goes_again() {
    let (port, seen) = redirecting_node().await;
    let b = Balancer::start(map(1, port, dead_port(), Some(1), &[]));
    let c = AsyncClient::connect_cluster(&b.addr()).await.unwrap();
    assert_eq!(c.cluster_map().unwrap().epoch, 1);
    b.set(map(2, port, dead_port(), Some(1), &[]));
    assert_eq!(c.get("k").await.unwrap(), Some(b"v".to_vec()));
    assert_eq!(c.cluster_map().unwrap().epoch, 2);
    assert_eq!(seen.load(Ordering::SeqCst), 2);
}
