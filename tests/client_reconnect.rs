//! The thin client across a node restart on the same fixed ports: clear errors while the node
//! is gone, and working again afterwards, also when it still holds the dead connections.

mod common;

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::clients::{b, keys_on_each_core, DEADLINE};
use common::wait_until;
use ringcache_client::{Client, ClientConfig, ClientError};

/// A node started on fixed ports (so it can be restarted on the same ones), killed on drop.
struct FixedNode {
    child: Child,
    ports: [u16; 3],
}

impl FixedNode {
    fn start(port: u16, base: u16) -> FixedNode {
        let ports = [port, base, base + 1];
        let log = std::env::temp_dir().join(format!("ringcache-client-test-{port}.log"));
        let mut tries = 0;
        loop {
            let stderr = std::fs::File::create(&log).expect("create node log");
            let child = Command::new(env!("CARGO_BIN_EXE_ringcache"))
                .args(["node", "--cores", "2", "--memory", "64m"])
                .args(["--port", &port.to_string()])
                .args(["--core-port-base", &base.to_string()])
                .env("RUST_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::from(stderr))
                .spawn()
                .expect("start ringcache");
            let mut node = FixedNode { child, ports };
            let up = wait_until(DEADLINE, || {
                matches!(node.child.try_wait(), Ok(Some(_)))
                    || ports
                        .iter()
                        .all(|p| TcpStream::connect(("127.0.0.1", *p)).is_ok())
            });
            if up && matches!(node.child.try_wait(), Ok(None)) {
                let _ = std::fs::remove_file(&log);
                return node;
            }
            // Exited (a port still held by the previous run): try again shortly.
            tries += 1;
            assert!(
                tries < 20,
                "node did not start on ports {ports:?}: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Kills the node and waits until its ports refuse connections (io_uring may keep the
    /// sockets of a dead process open for a moment).
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let closed = wait_until(DEADLINE, || {
            self.ports
                .iter()
                .all(|p| TcpStream::connect(("127.0.0.1", *p)).is_err())
        });
        assert!(
            closed,
            "ports {:?} still accept after the node was killed",
            self.ports
        );
    }
}

impl Drop for FixedNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free main port and two consecutive free core ports.
fn fixed_ports() -> (u16, u16) {
    for _ in 0..1_000 {
        let port = common::free_port();
        let base = common::free_port();
        if base < 65000
            && base + 1 != port
            && base != port
            && std::net::TcpListener::bind(("127.0.0.1", base + 1)).is_ok()
        {
            return (port, base);
        }
    }
    panic!("no two consecutive free ports in 1,000 tries");
}

/// A client of the node on `port` that never probes idle connections first (so a broken
/// connection is found by the request itself), and one key on each core set to "before".
fn client_with_keys(port: u16) -> (Client, Vec<String>) {
    let cfg = ClientConfig::default()
        .idle_check(Duration::from_secs(3600))
        .timeout(Duration::from_secs(2));
    let mut c = Client::connect_with(format!("127.0.0.1:{port}"), cfg).unwrap();
    let keys = keys_on_each_core(&c, "r", 1);
    for k in &keys {
        c.set(k, "before").unwrap();
    }
    (c, keys)
}

/// A client whose node went away reports clear errors, then works again once the node is back
/// on the same ports.
#[test]
fn works_again_after_the_node_restarts() {
    let (port, base) = fixed_ports();
    let mut node = FixedNode::start(port, base);
    let (mut c, keys) = client_with_keys(port);
    node.kill();
    // Every connection (main port and both cores) finds the node gone: the request on the
    // dead connection fails, the retry on a fresh one is refused.
    for k in &keys {
        let e = c.get(k).unwrap_err();
        assert!(matches!(e, ClientError::Connect { .. }), "{e}");
        assert!(e.to_string().contains("cannot reach ringcache"), "{e}");
    }
    assert!(matches!(c.ping().unwrap_err(), ClientError::Connect { .. }));
    assert!(c.incr("n").is_err());

    let _node = FixedNode::start(port, base);
    c.ping().unwrap();
    for k in &keys {
        assert_eq!(c.get(k).unwrap(), None, "the restarted node is empty");
        c.set(k, "after").unwrap();
        assert_eq!(c.get(k).unwrap(), b("after"));
    }
    assert_eq!(c.incr("n").unwrap(), 1);
    c.stats().unwrap();
}

/// The node restarts while the client still holds its (now dead) connections: the next call
/// on each finds it broken, an idempotent one is sent again on a fresh connection, a
/// non-idempotent one reports the error and the call after it works.
#[test]
fn reconnects_after_the_node_restarts_under_open_connections() {
    let (port, base) = fixed_ports();
    let mut node = FixedNode::start(port, base);
    let (mut c, keys) = client_with_keys(port);
    let n_key = keys[0].clone();
    c.incr(&n_key).unwrap_err(); // "before" is not an integer; the connection stays open

    node.kill();
    let _node = FixedNode::start(port, base);
    // The old connection to core 1 is dead: an idempotent GET is retried on a fresh one and
    // succeeds (the restarted node is empty).
    assert_eq!(c.get(&keys[1]).unwrap(), None);
    // A non-idempotent INCR on core 0's dead connection is not resent: its error is
    // reported, and the next call works on a new connection.
    let e = c.incr(&n_key).unwrap_err();
    assert!(e.is_connection_broken(), "{e}");
    assert_eq!(c.incr(&n_key).unwrap(), 1);
    c.ping().unwrap();
    for k in &keys {
        c.set(k, "after").unwrap();
        assert_eq!(c.get(k).unwrap(), b("after"));
    }
}
