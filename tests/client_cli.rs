//! The `ringcache cli` front end against a real node: output like redis-cli, help for every
//! subcommand, the error when no node runs, and a password-protected node through both the
//! thin client and the cli.

mod common;

use std::process::Command;

use common::clients::{b, keys_on_each_core};
use common::Node;
use ringcache_client::{Client, ClientConfig, ClientError, ErrorKind};

#[test]
fn password_protected_node() {
    let node = Node::start(2, &["--password", "s3cret"]);
    let addr = format!("127.0.0.1:{}", node.port);
    let e = Client::connect(addr.as_str()).unwrap_err();
    assert_eq!(e.server_kind(), Some(ErrorKind::NoAuth), "{e}");
    let e =
        Client::connect_with(addr.as_str(), ClientConfig::default().password("wrong")).unwrap_err();
    assert_eq!(e.server_kind(), Some(ErrorKind::WrongPass), "{e}");
    let mut c =
        Client::connect_with(addr.as_str(), ClientConfig::default().password("s3cret")).unwrap();
    // Every core connection authenticates.
    for k in keys_on_each_core(&c, "a", 2) {
        c.set(&k, "v").unwrap();
        assert_eq!(c.get(&k).unwrap(), b("v"));
    }
    let out = cli(node.port, &["get", "x"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--password"), "{}", stderr(&out));
    let out = cli(node.port, &["--password", "s3cret", "ping"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "PONG\n");
}

fn cli(port: u16, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ringcache"))
        .arg("cli")
        .args(["--port", &port.to_string()])
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run ringcache cli")
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn cli_prints_like_redis_cli() {
    let node = Node::start(2, &[]);
    let p = node.port;
    let ok = |args: &[&str]| {
        let o = cli(p, args);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        stdout(&o)
    };
    assert_eq!(ok(&["ping"]), "PONG\n");
    assert_eq!(ok(&["set", "k", "v"]), "OK\n");
    assert_eq!(ok(&["get", "k"]), "v\n");
    assert_eq!(ok(&["get", "nope"]), "(nil)\n");
    assert_eq!(ok(&["set", "k", "w", "--nx"]), "(nil)\n");
    assert_eq!(ok(&["set", "k", "w", "--xx", "--ttl", "100"]), "OK\n");
    assert_eq!(ok(&["ttl", "k"]), "(integer) 100\n");
    assert_eq!(ok(&["persist", "k"]), "(integer) 1\n");
    assert_eq!(ok(&["ttl", "k"]), "(integer) -1\n");
    assert_eq!(ok(&["ttl", "nope"]), "(integer) -2\n");
    assert_eq!(ok(&["expire", "k", "50"]), "(integer) 1\n");
    assert_eq!(ok(&["expire", "nope", "50"]), "(integer) 0\n");
    assert_eq!(ok(&["incr", "n"]), "(integer) 1\n");
    assert_eq!(ok(&["incr", "n", "--by", "-11"]), "(integer) -10\n");
    assert_eq!(ok(&["decr", "n", "--by", "5"]), "(integer) -15\n");
    assert_eq!(ok(&["mset", "a", "1", "b", "2"]), "OK\n");
    assert_eq!(ok(&["mget", "a", "x", "b"]), "1) 1\n2) (nil)\n3) 2\n");
    assert_eq!(ok(&["exists", "a", "b", "x"]), "(integer) 2\n");
    assert_eq!(ok(&["touch", "a", "x"]), "(integer) 1\n");
    assert_eq!(ok(&["del", "a", "b", "x"]), "(integer) 2\n");

    // getv, then compare-and-set with the version it printed.
    let out = ok(&["getv", "k"]);
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("w"));
    let version = lines
        .next()
        .and_then(|l| l.strip_prefix("(version) "))
        .unwrap_or_else(|| panic!("getv output: {out}"))
        .to_string();
    let out = ok(&["set", "k", "cas", "--if-version", &version, "--get-version"]);
    let newer = out.trim().strip_prefix("(version) ").unwrap().to_string();
    assert!(newer.parse::<u64>().unwrap() > version.parse::<u64>().unwrap());
    assert_eq!(
        ok(&["set", "k", "late", "--if-version", &version]),
        format!("(version mismatch) current version is {newer}\n")
    );
    assert_eq!(ok(&["get", "k"]), "cas\n");

    assert_eq!(
        ok(&["set", "tagged", "v", "--tag", "t", "--ttl-ms", "100000"]),
        "OK\n"
    );
    assert_eq!(ok(&["invalidate", "tag", "t"]), "OK\n");
    assert_eq!(ok(&["get", "tagged"]), "(nil)\n");
    assert_eq!(ok(&["set", "pre:1", "v"]), "OK\n");
    assert_eq!(ok(&["invalidate", "prefix", "pre:"]), "OK\n");
    assert_eq!(ok(&["get", "pre:1"]), "(nil)\n");

    let stats = ok(&["stats"]);
    assert!(stats.lines().any(|l| l == "cores:2"), "{stats}");
    assert!(
        stats.lines().any(|l| l.starts_with("core1.keys:")),
        "{stats}"
    );
    let topo = ok(&["topology"]);
    assert!(topo.contains(&format!("main_port: {p}")), "{topo}");
    for (i, cp) in node.core_ports.iter().enumerate() {
        assert!(topo.contains(&format!("core {i}: port {cp}")), "{topo}");
    }
    assert_eq!(ok(&["flush"]), "OK\n");
    assert_eq!(ok(&["get", "k"]), "(nil)\n");

    // Server errors and bad arguments exit non-zero with a message.
    ok(&["set", "s", "abc"]);
    let o = cli(p, &["incr", "s"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("not an integer"), "{}", stderr(&o));
    let o = cli(p, &["mset", "a", "1", "b"]);
    assert!(!o.status.success());
    let o = cli(p, &["set", "k", "v", "--nx", "--xx"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--xx"), "{}", stderr(&o));
}

#[test]
fn cli_help_explains_every_subcommand() {
    let help = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_ringcache"))
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "{args:?}");
        stdout(&o)
    };
    let top = help(&["cli", "--help"]);
    for sub in [
        "get",
        "getv",
        "set",
        "del",
        "exists",
        "touch",
        "expire",
        "ttl",
        "persist",
        "incr",
        "decr",
        "mget",
        "mset",
        "ping",
        "flush",
        "invalidate",
        "stats",
        "topology",
    ] {
        assert!(
            top.contains(&format!("  {sub} ")),
            "{sub} missing in:\n{top}"
        );
        let h = help(&["cli", sub, "--help"]);
        assert!(h.contains("--port"), "{sub} --help:\n{h}");
    }
    let set = help(&["cli", "set", "--help"]);
    for flag in ["--ttl", "--ttl-ms", "--nx", "--xx", "--if-version", "--tag"] {
        assert!(set.contains(flag), "{flag} missing in set --help:\n{set}");
    }
}

#[test]
fn cli_says_when_the_node_cannot_be_reached() {
    let port = common::free_port();
    let o = cli(port, &["get", "k"]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains(&format!(
            "cannot reach ringcache at 127.0.0.1:{port}: connection refused — is `ringcache node` running?"
        )),
        "stderr: {err}"
    );
    assert!(stdout(&o).is_empty());
    // The thin client reports the same error.
    let e = Client::connect(format!("127.0.0.1:{port}")).unwrap_err();
    assert!(matches!(e, ClientError::Connect { .. }), "{e}");
}
