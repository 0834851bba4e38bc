//! The stock Redis tools against a real node: `redis-cli` commands give the expected output and
//! `redis-benchmark` (plain, pipelined, inline and multi-bulk PING) completes and prints rates.
//!
//! The tools come from the `redis-tools` package; without them these tests fail (they do not
//! skip), so a CI image without the package is noticed. Every tool run has a deadline after
//! which it is killed and the test fails.

// `common::read_line` (shared, not ours to change) trips this lint.
mod common;

use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::Node;

/// The path of `name` on PATH; fails the test with install advice when it is missing.
fn tool(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| {
            panic!(
                "`{name}` is not installed (not found on PATH). These tests need the Redis \
                 command-line tools: install them with `apt-get install -y redis-tools` \
                 (CI installs them)."
            )
        })
}

/// A finished tool run.
struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Runs `name args`, killing it and failing the test if it takes longer than `deadline`.
fn run(name: &str, args: &[&str], deadline: Duration) -> Run {
    let mut child = Command::new(tool(name))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {name}: {e}"));
    let collect = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            String::from_utf8_lossy(&v).into_owned()
        })
    };
    let out = collect(Box::new(child.stdout.take().expect("stdout")));
    let err = collect(Box::new(child.stderr.take().expect("stderr")));
    let end = Instant::now() + deadline;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if Instant::now() < end => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                let (o, e) = (
                    out.join().unwrap_or_default(),
                    err.join().unwrap_or_default(),
                );
                panic!(
                    "`{name} {}` did not finish within {deadline:?}; killed.\nstdout:\n{o}\nstderr:\n{e}",
                    args.join(" ")
                );
            }
            Err(e) => panic!("waiting for {name}: {e}"),
        }
    };
    Run {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

/// `redis-cli -p <port> args...`: its stdout, after checking it exited 0.
fn cli(node: &Node, args: &[&str]) -> String {
    let port = node.port.to_string();
    let mut all = vec!["-p", &port];
    all.extend_from_slice(args);
    let r = run("redis-cli", &all, Duration::from_secs(20));
    assert!(
        r.status.success(),
        "redis-cli {}: {:?}\nstdout:\n{}\nstderr:\n{}",
        args.join(" "),
        r.status,
        r.stdout,
        r.stderr
    );
    r.stdout
}

#[test]
fn redis_cli_commands_give_the_expected_output() {
    let mut node = Node::start(2, &[]);
    assert_eq!(cli(&node, &["ping"]), "PONG\n");
    assert_eq!(cli(&node, &["set", "a", "b"]), "OK\n");
    assert_eq!(cli(&node, &["get", "a"]), "b\n");
    assert_eq!(cli(&node, &["--no-raw", "get", "a"]), "\"b\"\n");
    assert_eq!(cli(&node, &["incr", "n"]), "1\n");
    assert_eq!(cli(&node, &["incr", "n"]), "2\n");
    assert_eq!(cli(&node, &["decr", "n"]), "1\n");
    assert_eq!(
        cli(&node, &["mset", "k1", "v1", "k2", "v2", "k3", "v3"]),
        "OK\n"
    );
    // A nil prints as an empty line in raw (non-terminal) output.
    assert_eq!(
        cli(&node, &["mget", "k1", "k2", "missing", "k3"]),
        "v1\nv2\n\nv3\n"
    );
    assert_eq!(cli(&node, &["exists", "a", "k1", "missing"]), "2\n");
    assert_eq!(cli(&node, &["set", "t", "x", "EX", "100"]), "OK\n");
    let ttl: i64 = cli(&node, &["ttl", "t"])
        .trim()
        .parse()
        .expect("TTL is a number");
    assert!((1..=100).contains(&ttl), "ttl {ttl}");
    let err = cli(&node, &["incr", "a"]);
    assert!(
        err.contains("ERR") && err.contains("not an integer"),
        "{err:?}"
    );
    assert_eq!(cli(&node, &["del", "a", "missing"]), "1\n");
    assert_eq!(cli(&node, &["get", "a"]), "\n");

    let info = cli(&node, &["info"]);
    for field in [
        "keys:",
        "bytes_used:",
        "budget:",
        "hits:",
        "misses:",
        "evictions:",
    ] {
        assert!(info.contains(field), "INFO lacks {field}:\n{info}");
    }
    let stats = common::parse_stats(info.as_bytes());
    assert!(stats.get("keys").copied().unwrap_or(0) >= 5, "{stats:?}");

    let hello = cli(&node, &["hello", "3"]);
    let flat = hello.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(flat.contains("proto 3"), "HELLO 3 answered:\n{hello}");
    assert!(flat.contains("server"), "HELLO 3 answered:\n{hello}");
    let hello2 = cli(&node, &["hello", "2"]);
    let flat = hello2.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(flat.contains("proto 2"), "HELLO 2 answered:\n{hello2}");
    // And a RESP3 session goes on working.
    assert_eq!(cli(&node, &["-3", "get", "k1"]), "v1\n");
    assert!(node.is_running());
}

/// The `NAME: <rate> requests per second` lines of `redis-benchmark -q` (progress lines are
/// separated by carriage returns).
fn rates(stdout: &str) -> HashMap<String, f64> {
    stdout
        .split(['\r', '\n'])
        .filter_map(|l| {
            let (name, rest) = l.trim().split_once(": ")?;
            let rate = rest
                .strip_suffix(" requests per second")
                .or_else(|| rest.split_once(" requests per second").map(|(r, _)| r))?;
            Some((name.trim().to_string(), rate.trim().parse().ok()?))
        })
        .collect()
}

/// Runs redis-benchmark with `extra` flags against a fresh node; every test in `want` must
/// report a rate, and the node must have stored at least `min_sets` writes.
fn benchmark(extra: &[&str], want: &[&str], min_sets: u64) {
    let mut node = Node::start(2, &[]);
    let port = node.port.to_string();
    let mut args = vec!["-p", &port, "-n", "20000", "-c", "20", "-q"];
    args.extend_from_slice(extra);
    let r = run("redis-benchmark", &args, Duration::from_secs(300));
    assert!(
        r.status.success(),
        "redis-benchmark {}: {:?}\nstdout:\n{}\nstderr:\n{}",
        args.join(" "),
        r.status,
        r.stdout,
        r.stderr
    );
    let got = rates(&r.stdout);
    for name in want {
        let rate = got.get(*name).copied().unwrap_or(0.0);
        assert!(
            rate > 0.0,
            "redis-benchmark {}: no rate for {name}; parsed {got:?}\nstdout:\n{}\nstderr:\n{}",
            args.join(" "),
            r.stdout,
            r.stderr
        );
    }
    assert!(
        node.is_running(),
        "node exited during redis-benchmark; log:\n{}",
        node.log_text()
    );
    let mut c = node.connect();
    assert_eq!(node.roundtrip(&mut c, b"PING\r\n"), b"+PONG\r\n");
    let sets = node.stats().get("sets").copied().unwrap_or(0);
    assert!(
        sets >= min_sets,
        "the node counted {sets} writes, expected at least {min_sets}"
    );
}

#[test]
fn redis_benchmark_set_get_incr_mset() {
    benchmark(
        &["-t", "set,get,incr,mset"],
        &["SET", "GET", "INCR", "MSET (10 keys)"],
        20_000,
    );
}

#[test]
fn redis_benchmark_pipelined() {
    benchmark(
        &["-t", "set,get,incr,mset", "-P", "16"],
        &["SET", "GET", "INCR", "MSET (10 keys)"],
        20_000,
    );
}

#[test]
fn redis_benchmark_ping_inline_and_mbulk() {
    benchmark(
        &["-t", "ping_inline,ping_mbulk"],
        &["PING_INLINE", "PING_MBULK"],
        0,
    );
}
