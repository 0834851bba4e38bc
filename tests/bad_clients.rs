//! Bad clients against a real node: a client that never reads its replies (stalls only itself
//! and is dropped by the write timeout), more clients than --max-connections, and idle
//! connections closed by --idle-timeout.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::raw::{assert_serving_main, connect_to, drain, native, read_frame, write_keys, MIB};
use common::{parse_stats, resp_command, wait_until, Node};
use ringcache_proto::{Command, ReplyCode};

/// A socket whose receive buffer is `bytes` (set before connecting, so the advertised window
/// is small from the start).
fn connect_small_rcvbuf(port: u16, bytes: i32) -> TcpStream {
    use std::os::fd::FromRawFd;
    // SAFETY: plain socket calls on a descriptor we own; the structs outlive the calls, and
    // the descriptor is handed to TcpStream, which closes it.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let rc = libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&bytes as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        );
        assert_eq!(rc, 0, "SO_RCVBUF: {}", std::io::Error::last_os_error());
        let addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes([127, 0, 0, 1]),
            },
            sin_zero: [0; 8],
        };
        let rc = libc::connect(
            fd,
            (&addr as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            libc::close(fd);
            panic!("connect: {e}");
        }
        TcpStream::from_raw_fd(fd)
    }
}

#[test]
fn a_client_that_never_reads_stalls_only_itself_and_is_dropped() {
    let mut node = Node::start(1, &["--write-timeout", "2"]);
    let keys = write_keys(&node, 20);
    let value = vec![b'x'; 512 * 1024];
    let mut c = node.connect();
    assert_eq!(
        node.roundtrip(&mut c, &resp_command(&[b"SET", b"big", &value])),
        b"+OK\r\n"
    );
    drop(c);
    let base_rss = node.rss_bytes();

    // 2000 GETs of 512 KiB each (1000 MiB of replies), never read.
    let mut stuck = connect_small_rcvbuf(node.port, 4096);
    stuck.set_write_timeout(Some(Duration::from_secs(5))).ok();
    let get = resp_command(&[b"GET", b"big"]);
    let pipeline: Vec<u8> = get.repeat(2000);
    // 44 KB: fits in the socket buffers even once the server stops reading.
    stuck
        .write_all(&pipeline)
        .expect("send the pipeline of GETs");
    let stuck_at = Instant::now();

    // Meanwhile, another client on the same (only) core is served promptly.
    let mut other = node.connect();
    other.set_read_timeout(Some(Duration::from_secs(2))).ok();
    let mut max_rss = base_rss;
    let mut slowest = Duration::ZERO;
    for i in 0..50 {
        let t = Instant::now();
        let k = format!("other:{i}");
        let v = format!("v{i}");
        assert_eq!(
            node.roundtrip(
                &mut other,
                &resp_command(&[b"SET", k.as_bytes(), v.as_bytes()])
            ),
            b"+OK\r\n",
            "SET {i} while a client is stuck"
        );
        let want = format!("${}\r\n{v}\r\n", v.len());
        assert_eq!(
            node.roundtrip(&mut other, &resp_command(&[b"GET", k.as_bytes()])),
            want.as_bytes(),
            "GET {i} while a client is stuck"
        );
        slowest = slowest.max(t.elapsed());
        max_rss = max_rss.max(node.rss_bytes());
    }
    assert!(
        slowest < Duration::from_secs(1),
        "a round trip took {slowest:?} while another client was stuck"
    );

    // The write timeout drops the stuck connection: only `other` is left.
    let mut conns = u64::MAX;
    let dropped = wait_until(Duration::from_secs(20), || {
        let stats = parse_stats(&node.roundtrip(&mut other, b"*1\r\n$5\r\nSTATS\r\n"));
        conns = stats.get("core0.connections").copied().unwrap_or(u64::MAX);
        max_rss = max_rss.max(node.rss_bytes());
        conns == 1
    });
    let dropped_after = stuck_at.elapsed();
    assert!(
        dropped,
        "stuck connection still open {dropped_after:?} after it stopped reading \
         ({conns} connections)"
    );
    assert!(
        max_rss < base_rss + 200 * MIB,
        "RSS grew from {base_rss} to {max_rss} bytes while replies were pending"
    );
    // The stuck client sees its connection end after a bounded part of the replies.
    let d = drain(&mut stuck, Duration::from_secs(30));
    eprintln!(
        "stuck client dropped after {dropped_after:?}; it then read {} bytes; RSS {base_rss} -> \
         max {max_rss}; slowest round trip of the other client {slowest:?}",
        d.total
    );
    assert!(d.closed, "stuck client: no EOF after {} bytes", d.total);
    assert!(
        d.total < 200 * MIB,
        "stuck client received {} bytes after it was dropped",
        d.total
    );
    assert_serving_main(&mut node, &keys, "a stuck client");
    assert!(node.is_running());
}

#[test]
fn max_connections_refuses_the_extra_client_and_keeps_the_others() {
    let mut node = Node::start(1, &["--max-connections", "4"]);
    let stats_cmd = b"*1\r\n$5\r\nSTATS\r\n";
    // The harness's readiness probes may still be counted: wait until only we are.
    let mut first = node.connect();
    let alone = wait_until(Duration::from_secs(10), || {
        let s = parse_stats(&node.roundtrip(&mut first, stats_cmd));
        s.get("core0.connections") == Some(&1)
    });
    assert!(alone, "readiness probes still counted after 10 s");
    let mut conns = vec![first];
    for _ in 1..4 {
        let mut c = node.connect();
        assert_eq!(node.roundtrip(&mut c, b"PING\r\n"), b"+PONG\r\n");
        conns.push(c);
    }
    // The fifth is refused: an error line and close, or just close.
    let mut fifth = node.connect();
    let _ = fifth.write_all(b"PING\r\n");
    let d = drain(&mut fifth, Duration::from_secs(5));
    let text = String::from_utf8_lossy(&d.bytes);
    assert!(d.closed, "fifth connection not closed: {text:?}");
    assert!(
        text.is_empty() || text == "-ERR max number of clients reached\r\n",
        "fifth connection got {text:?}"
    );
    // The four keep working.
    for (i, c) in conns.iter_mut().enumerate() {
        let k = format!("mc{i}");
        assert_eq!(
            node.roundtrip(c, &resp_command(&[b"SET", k.as_bytes(), b"v"])),
            b"+OK\r\n",
            "connection {i}"
        );
    }
    let s = parse_stats(&node.roundtrip(&mut conns[0], stats_cmd));
    assert!(
        s.get("core0.connections_rejected").copied().unwrap_or(0) >= 1,
        "{s:?}"
    );
    assert_eq!(s.get("core0.connections"), Some(&4), "{s:?}");
    // Once one leaves, a new client gets in.
    drop(conns.pop());
    let admitted = wait_until(Duration::from_secs(10), || {
        let mut c = node.connect();
        c.set_read_timeout(Some(Duration::from_secs(2))).ok();
        node.roundtrip(&mut c, b"PING\r\n") == b"+PONG\r\n"
    });
    assert!(admitted, "no new connection admitted after one closed");
    assert!(node.is_running());
}

#[test]
fn idle_connections_are_closed_by_the_server() {
    let mut node = Node::start(2, &["--idle-timeout", "1"]);
    let mut idle_main = node.connect();
    let mut idle_core = connect_to(node.core_ports[1]);
    let mut idle_native = connect_to(node.core_ports[0]);
    let mut never_used = node.connect();
    assert_eq!(node.roundtrip(&mut idle_main, b"PING\r\n"), b"+PONG\r\n");
    assert_eq!(node.roundtrip(&mut idle_core, b"PING\r\n"), b"+PONG\r\n");
    idle_native
        .write_all(&native(&Command::Ping { msg: None }, 1))
        .expect("write");
    assert_eq!(
        read_frame(&mut idle_native).0.opcode,
        u8::from(ReplyCode::Pong)
    );
    let started = Instant::now();
    // Meanwhile a connection that keeps talking (every 200 ms) stays open.
    let port = node.port;
    let busy = std::thread::spawn(move || {
        let mut c = connect_to(port);
        for i in 0..15 {
            c.write_all(b"PING\r\n").expect("busy write");
            let mut got = [0u8; 7];
            if c.read_exact(&mut got).is_err() || &got != b"+PONG\r\n" {
                return Err(format!("busy connection lost at ping {i}"));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(())
    });
    for (name, c) in [
        ("idle main", &mut idle_main),
        ("idle core", &mut idle_core),
        ("idle native", &mut idle_native),
        ("never used", &mut never_used),
    ] {
        // Bounded: the server must close every idle connection within 5 s.
        let left = Duration::from_secs(5).saturating_sub(started.elapsed());
        let d = drain(c, left + Duration::from_millis(100));
        assert!(
            d.closed,
            "{name}: not closed by the server after {:?} with --idle-timeout 1",
            started.elapsed()
        );
        assert_eq!(d.total, 0, "{name}: unexpected bytes");
    }
    busy.join().expect("busy thread").expect("busy connection");
    assert!(node.is_running());
}
