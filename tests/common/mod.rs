//! Shared harness for integration tests: starts the real `ringcache` binary on free 127.0.0.1
//! ports, waits (with a deadline) until every port accepts, and kills the process on drop.
#![allow(dead_code)]

use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub mod clients;
pub mod cluster;
pub mod raw;

/// A running `ringcache node`.
pub struct Node {
    child: Child,
    /// The main (shared) port: RESP and native.
    pub port: u16,
    /// One port per core.
    pub core_ports: Vec<u16>,
    log: PathBuf,
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port on 127.0.0.1")
}

/// A main port and `n` consecutive core ports, all free right now.
fn free_ports(n: usize) -> (u16, u16) {
    for _ in 0..200 {
        let main = free_port();
        let base = free_port();
        if usize::from(base) + n >= 65535 {
            continue;
        }
        let all_free = (0..n as u16).all(|i| {
            let p = base + i;
            p != main && TcpListener::bind(("127.0.0.1", p)).is_ok()
        });
        if all_free {
            return (main, base);
        }
    }
    panic!("could not find {n} consecutive free ports");
}

/// Waits until `f` holds, polling every 20 ms, for at most `deadline`.
pub fn wait_until(deadline: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + deadline;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

impl Node {
    /// Starts a node with `cores` cores, a 64 MiB budget and any `extra` flags.
    pub fn start(cores: usize, extra: &[&str]) -> Node {
        Node::start_with_memory(cores, "64m", extra)
    }

    /// The node's stderr so far.
    pub fn log_text(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Resident memory of the node in bytes (from /proc).
    pub fn rss_bytes(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    }

    /// Sends SIGTERM and waits up to `deadline` for a clean exit; returns the exit status.
    pub fn terminate(&mut self, deadline: Duration) -> Option<std::process::ExitStatus> {
        // SAFETY: kill(2) on our own child's pid has no memory effects.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let end = Instant::now() + deadline;
        while Instant::now() < end {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// A plain RESP connection to the main port with a 5 s timeout.
    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to node");
        s.set_read_timeout(Some(Duration::from_secs(5))).ok();
        s.set_write_timeout(Some(Duration::from_secs(5))).ok();
        s
    }

    /// Sends raw RESP and reads one reply line (up to CRLF) or bulk (whole).
    pub fn roundtrip(&self, conn: &mut TcpStream, raw: &[u8]) -> Vec<u8> {
        conn.write_all(raw).expect("write");
        read_reply(conn)
    }
}

/// Reads one complete RESP reply (simple/error/integer line, bulk, or flat array of those).
pub fn read_reply(conn: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut want_items: i64 = 1;
    while want_items > 0 {
        let line = read_line(conn, &mut out);
        want_items -= 1;
        match line.first() {
            Some(b'$') => {
                let n: i64 = std::str::from_utf8(&line[1..line.len() - 2])
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(-1);
                if n >= 0 {
                    let mut body = vec![0u8; n as usize + 2];
                    conn.read_exact(&mut body).expect("read bulk");
                    out.extend_from_slice(&body);
                }
            }
            Some(b'*') => {
                let n: i64 = std::str::from_utf8(&line[1..line.len() - 2])
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                want_items += n.max(0);
            }
            _ => {}
        }
    }
    out
}

fn read_line(conn: &mut TcpStream, out: &mut Vec<u8>) -> Vec<u8> {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while let Ok(1) = conn.read(&mut b) {
        line.push(b[0]);
        if line.ends_with(b"\r\n") {
            break;
        }
    }
    out.extend_from_slice(&line);
    line
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

// Helpers for the robustness tests (bad_input_*, bad_clients, redis_tools, memory_budget).

/// One RESP request: an array of bulk strings.
pub fn resp_command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// The `name:value` lines of a STATS / INFO reply (any framing around them is skipped).
pub fn parse_stats(reply: &[u8]) -> std::collections::HashMap<String, u64> {
    String::from_utf8_lossy(reply)
        .lines()
        .filter_map(|l| {
            let (k, v) = l.trim().split_once(':')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

impl Node {
    /// `STATS` over a fresh connection to the main port (which itself counts as one connection).
    pub fn stats(&self) -> std::collections::HashMap<String, u64> {
        let mut c = self.connect();
        parse_stats(&self.roundtrip(&mut c, b"*1\r\n$5\r\nSTATS\r\n"))
    }
}

impl Node {
    /// Like [`Node::start`] but with a memory budget other than 64 MiB (`memory` as the flag
    /// takes it, e.g. "8m"); fails at once, with the log, if the node exits while starting.
    pub fn start_with_memory(cores: usize, memory: &str, extra: &[&str]) -> Node {
        let (port, base) = free_ports(cores);
        Node::start_on(port, base, cores, memory, extra)
    }

    /// Like [`Node::start_with_memory`] on given ports: the main `port` and core ports from
    /// `base` (e.g. to restart a node on the ports of one that was killed).
    pub fn start_on(port: u16, base: u16, cores: usize, memory: &str, extra: &[&str]) -> Node {
        let log = std::env::temp_dir().join(format!("ringcache-test-{port}.log"));
        let stderr = File::create(&log).expect("create node log");
        let (cores_s, port_s, base_s) = (cores.to_string(), port.to_string(), base.to_string());
        let mut args = vec![
            "node",
            "--port",
            &port_s,
            "--core-port-base",
            &base_s,
            "--cores",
            &cores_s,
            "--memory",
            memory,
        ];
        args.extend_from_slice(extra);
        let child = Command::new(env!("CARGO_BIN_EXE_ringcache"))
            .args(&args)
            // RINGCACHE_TEST_LOG=info (or debug) keeps more of the nodes' logs for a failure.
            .env(
                "RUST_LOG",
                std::env::var("RINGCACHE_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(stderr))
            .spawn()
            .expect("start ringcache");
        let mut node = Node {
            child,
            port,
            core_ports: (0..cores as u16).map(|i| base + i).collect(),
            log,
        };
        let ports: Vec<u16> = std::iter::once(port)
            .chain(node.core_ports.clone())
            .collect();
        let mut exited = None;
        let up = wait_until(Duration::from_secs(60), || {
            if let Ok(Some(st)) = node.child.try_wait() {
                exited = Some(st);
                return true;
            }
            ports
                .iter()
                .all(|p| TcpStream::connect(("127.0.0.1", *p)).is_ok())
        });
        if let Some(st) = exited {
            panic!(
                "node exited while starting ({st}); log:\n{}",
                node.log_text()
            );
        }
        if !up {
            panic!(
                "node did not start listening within 60 s; log:\n{}",
                node.log_text()
            );
        }
        node
    }
}
