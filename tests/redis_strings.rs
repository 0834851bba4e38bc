//! The strings family and the single-key keyspace commands against the real binary, compared
//! byte for byte with the replies redis-server 7.0.15 gave for the same lines (recorded here, so
//! CI needs no redis-server); RESP3 nulls; MSETNX's CROSSSLOT and DBSIZE over cores; and the
//! same commands through the balancer on a cluster with replicas, whose copies converge.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::clients::{rcmd, redis_con, rerr};
use common::cluster::{wait_digests_converge, Cluster};
use common::{resp_command, Node};

/// (command line, Redis's reply). `\e` stands for an empty argument. Lines whose reply depends
/// on timing (PTTL) or on long-double arithmetic (INCRBYFLOAT near f64's limits) are left out.
const REDIS_REPLIES: &[(&str, &[u8])] = &[
    ("FLUSHALL", b"+OK\r\n"),
    ("SETNX k1 v1", b":1\r\n"),
    ("SETNX k1 v2", b":0\r\n"),
    ("GET k1", b"$2\r\nv1\r\n"),
    (
        "SETNX k1",
        b"-ERR wrong number of arguments for 'setnx' command\r\n",
    ),
    ("SETEX k2 100 v", b"+OK\r\n"),
    ("TTL k2", b":100\r\n"),
    (
        "SETEX k2 0 v",
        b"-ERR invalid expire time in 'setex' command\r\n",
    ),
    (
        "SETEX k2 -5 v",
        b"-ERR invalid expire time in 'setex' command\r\n",
    ),
    (
        "SETEX k2 abc v",
        b"-ERR value is not an integer or out of range\r\n",
    ),
    (
        "SETEX k2 100",
        b"-ERR wrong number of arguments for 'setex' command\r\n",
    ),
    ("PSETEX k3 100000 v", b"+OK\r\n"),
    (
        "PSETEX k3 0 v",
        b"-ERR invalid expire time in 'psetex' command\r\n",
    ),
    ("GETSET k1 new", b"$2\r\nv1\r\n"),
    ("GETSET missing1 x", b"$-1\r\n"),
    ("GET missing1", b"$1\r\nx\r\n"),
    (
        "GETSET k1",
        b"-ERR wrong number of arguments for 'getset' command\r\n",
    ),
    ("GETDEL k1", b"$3\r\nnew\r\n"),
    ("GETDEL k1", b"$-1\r\n"),
    ("EXISTS k1", b":0\r\n"),
    (
        "GETDEL k1 k2",
        b"-ERR wrong number of arguments for 'getdel' command\r\n",
    ),
    ("SET g1 hello EX 100", b"+OK\r\n"),
    ("GETEX g1", b"$5\r\nhello\r\n"),
    ("GETEX g1 PERSIST", b"$5\r\nhello\r\n"),
    ("GETEX g1 EX 50", b"$5\r\nhello\r\n"),
    ("GETEX g1 PX 60000", b"$5\r\nhello\r\n"),
    (
        "GETEX g1 EX 0",
        b"-ERR invalid expire time in 'getex' command\r\n",
    ),
    (
        "GETEX g1 EX -1",
        b"-ERR invalid expire time in 'getex' command\r\n",
    ),
    (
        "GETEX g1 EX abc",
        b"-ERR value is not an integer or out of range\r\n",
    ),
    ("GETEX g1 EX 10 PX 100", b"-ERR syntax error\r\n"),
    ("GETEX g1 PERSIST EX 10", b"-ERR syntax error\r\n"),
    ("GETEX g1 FOO", b"-ERR syntax error\r\n"),
    ("GETEX g1 EX", b"-ERR syntax error\r\n"),
    ("GETEX missing2 EX 10", b"$-1\r\n"),
    ("GETEX g1 PXAT 1000", b"$5\r\nhello\r\n"),
    ("EXISTS g1", b":0\r\n"),
    (
        "GETEX",
        b"-ERR wrong number of arguments for 'getex' command\r\n",
    ),
    ("SET s1 old", b"+OK\r\n"),
    ("SET s1 new GET", b"$3\r\nold\r\n"),
    ("SET s1 newer NX GET", b"$3\r\nnew\r\n"),
    ("GET s1", b"$3\r\nnew\r\n"),
    ("SET s2 v XX GET", b"$-1\r\n"),
    ("GET s2", b"$-1\r\n"),
    ("SET s3 v NX GET", b"$-1\r\n"),
    ("GET s3", b"$1\r\nv\r\n"),
    ("SET s1 v2 GET EX 100", b"$3\r\nnew\r\n"),
    ("TTL s1", b":100\r\n"),
    ("SET s1 v3 GET KEEPTTL", b"$2\r\nv2\r\n"),
    ("TTL s1", b":100\r\n"),
    ("SET s1 v GET GET", b"$2\r\nv3\r\n"),
    (
        "SET s1 v GET EX 0",
        b"-ERR invalid expire time in 'set' command\r\n",
    ),
    ("SET s1 v NX XX GET", b"-ERR syntax error\r\n"),
    ("STRLEN s1", b":1\r\n"),
    ("STRLEN missing", b":0\r\n"),
    (
        "STRLEN",
        b"-ERR wrong number of arguments for 'strlen' command\r\n",
    ),
    (
        "STRLEN a b",
        b"-ERR wrong number of arguments for 'strlen' command\r\n",
    ),
    ("APPEND a1 hello", b":5\r\n"),
    (
        "APPEND a1 \" world\"",
        b"-ERR wrong number of arguments for 'append' command\r\n",
    ),
    ("GET a1", b"$5\r\nhello\r\n"),
    (
        "APPEND a1",
        b"-ERR wrong number of arguments for 'append' command\r\n",
    ),
    ("SET a2 x EX 100", b"+OK\r\n"),
    ("APPEND a2 y", b":2\r\n"),
    ("TTL a2", b":100\r\n"),
    ("GETRANGE a1 0 4", b"$5\r\nhello\r\n"),
    ("GETRANGE a1 -5 -1", b"$5\r\nhello\r\n"),
    ("GETRANGE a1 0 -1", b"$5\r\nhello\r\n"),
    ("GETRANGE a1 5 2", b"$0\r\n\r\n"),
    ("GETRANGE a1 -1 -5", b"$0\r\n\r\n"),
    ("GETRANGE a1 0 100", b"$5\r\nhello\r\n"),
    ("GETRANGE a1 100 200", b"$0\r\n\r\n"),
    ("GETRANGE a1 -100 -50", b"$1\r\nh\r\n"),
    ("GETRANGE a1 -100 2", b"$3\r\nhel\r\n"),
    ("GETRANGE missing 0 -1", b"$0\r\n\r\n"),
    (
        "GETRANGE a1 x 2",
        b"-ERR value is not an integer or out of range\r\n",
    ),
    (
        "GETRANGE a1 0",
        b"-ERR wrong number of arguments for 'getrange' command\r\n",
    ),
    ("SUBSTR a1 0 2", b"$3\r\nhel\r\n"),
    ("SETRANGE r1 5 abc", b":8\r\n"),
    ("GET r1", b"$8\r\n\0\0\0\0\0abc\r\n"),
    ("STRLEN r1", b":8\r\n"),
    ("SETRANGE r1 0 XY", b":8\r\n"),
    ("GET r1", b"$8\r\nXY\0\0\0abc\r\n"),
    ("SETRANGE r1 -1 x", b"-ERR offset is out of range\r\n"),
    (
        "SETRANGE r1 abc x",
        b"-ERR value is not an integer or out of range\r\n",
    ),
    ("SETRANGE r2 3 \\e", b":0\r\n"),
    ("EXISTS r2", b":0\r\n"),
    ("SETRANGE r1 1 \\e", b":8\r\n"),
    (
        "SETRANGE r1 536870912 x",
        b"-ERR string exceeds maximum allowed size (proto-max-bulk-len)\r\n",
    ),
    (
        "SETRANGE r1",
        b"-ERR wrong number of arguments for 'setrange' command\r\n",
    ),
    ("SET f1 10.50", b"+OK\r\n"),
    ("INCRBYFLOAT f1 0.1", b"$4\r\n10.6\r\n"),
    ("INCRBYFLOAT f1 -5", b"$3\r\n5.6\r\n"),
    ("SET f2 5.0e3", b"+OK\r\n"),
    ("INCRBYFLOAT f2 2.0e2", b"$4\r\n5200\r\n"),
    ("INCRBYFLOAT f3 3", b"$1\r\n3\r\n"),
    ("INCRBYFLOAT f3 1.5", b"$3\r\n4.5\r\n"),
    ("INCRBYFLOAT f3 abc", b"-ERR value is not a valid float\r\n"),
    ("SET f4 abc", b"+OK\r\n"),
    ("INCRBYFLOAT f4 1", b"-ERR value is not a valid float\r\n"),
    (
        "INCRBYFLOAT f3 inf",
        b"-ERR increment would produce NaN or Infinity\r\n",
    ),
    (
        "INCRBYFLOAT f3",
        b"-ERR wrong number of arguments for 'incrbyfloat' command\r\n",
    ),
    ("INCRBYFLOAT f6 -0.0", b"$1\r\n0\r\n"),
    ("INCRBYFLOAT f7 0.1", b"$3\r\n0.1\r\n"),
    ("INCRBYFLOAT f7 -0.1", b"$1\r\n0\r\n"),
    ("INCRBYFLOAT f8 1.25", b"$4\r\n1.25\r\n"),
    ("INCRBYFLOAT f8 100", b"$6\r\n101.25\r\n"),
    ("SET i1 010", b"+OK\r\n"),
    (
        "INCR i1",
        b"-ERR value is not an integer or out of range\r\n",
    ),
    ("SET i2 9223372036854775807", b"+OK\r\n"),
    ("INCR i2", b"-ERR increment or decrement would overflow\r\n"),
    (
        "INCRBY i2 1",
        b"-ERR increment or decrement would overflow\r\n",
    ),
    ("SET i3 -9223372036854775808", b"+OK\r\n"),
    ("DECR i3", b"-ERR increment or decrement would overflow\r\n"),
    (
        "DECRBY i3 -9223372036854775808",
        b"-ERR decrement would overflow\r\n",
    ),
    (
        "INCRBY i4 9223372036854775808",
        b"-ERR value is not an integer or out of range\r\n",
    ),
    (
        "INCRBY i4 abc",
        b"-ERR value is not an integer or out of range\r\n",
    ),
    ("SET i5 \" 1\"", b"-ERR syntax error\r\n"),
    ("INCR i5", b":1\r\n"),
    ("SET i6 +1", b"+OK\r\n"),
    (
        "INCR i6",
        b"-ERR value is not an integer or out of range\r\n",
    ),
    ("SET i7 1.5", b"+OK\r\n"),
    (
        "INCR i7",
        b"-ERR value is not an integer or out of range\r\n",
    ),
    ("MSETNX m1 a m2 b", b":1\r\n"),
    ("MSETNX m2 c m3 d", b":0\r\n"),
    ("MGET m1 m2 m3", b"*3\r\n$1\r\na\r\n$1\r\nb\r\n$-1\r\n"),
    (
        "MSETNX m1",
        b"-ERR wrong number of arguments for 'msetnx' command\r\n",
    ),
    (
        "MSETNX m1 a m2",
        b"-ERR wrong number of arguments for 'msetnx' command\r\n",
    ),
    ("FLUSHALL", b"+OK\r\n"),
    ("DBSIZE", b":0\r\n"),
    ("SET a 1", b"+OK\r\n"),
    ("SET b 2", b"+OK\r\n"),
    ("SET c 3", b"+OK\r\n"),
    ("DBSIZE", b":3\r\n"),
    (
        "DBSIZE x",
        b"-ERR wrong number of arguments for 'dbsize' command\r\n",
    ),
    ("TYPE a", b"+string\r\n"),
    ("TYPE nope", b"+none\r\n"),
    (
        "TYPE",
        b"-ERR wrong number of arguments for 'type' command\r\n",
    ),
    ("UNLINK a b nope", b":2\r\n"),
    ("DBSIZE", b":1\r\n"),
    ("EXPIRETIME nope", b":-2\r\n"),
    (
        "EXPIREAT c abc",
        b"-ERR value is not an integer or out of range\r\n",
    ),
    (
        "EXPIREAT c",
        b"-ERR wrong number of arguments for 'expireat' command\r\n",
    ),
    ("SET d 4", b"+OK\r\n"),
    ("EXPIRE d 100 NX", b":1\r\n"),
    ("EXPIRE d 100 NX", b":0\r\n"),
    ("EXPIRE d 200 XX", b":1\r\n"),
    ("EXPIRE e 100 XX", b":0\r\n"),
    ("SET e 5", b"+OK\r\n"),
    ("EXPIRE e 100 XX", b":0\r\n"),
    ("EXPIRE e 100 GT", b":0\r\n"),
    ("EXPIRE e 100 LT", b":1\r\n"),
    ("EXPIRE d 50 GT", b":0\r\n"),
    ("EXPIRE d 500 GT", b":1\r\n"),
    ("EXPIRE d 600 LT", b":0\r\n"),
    ("EXPIRE d 60 LT", b":1\r\n"),
    (
        "EXPIRE d 60 NX XX",
        b"-ERR NX and XX, GT or LT options at the same time are not compatible\r\n",
    ),
    (
        "EXPIRE d 60 GT LT",
        b"-ERR GT and LT options at the same time are not compatible\r\n",
    ),
    (
        "EXPIRE d 60 NX GT",
        b"-ERR NX and XX, GT or LT options at the same time are not compatible\r\n",
    ),
    ("EXPIRE d 60 FOO", b"-ERR Unsupported option FOO\r\n"),
    ("PEXPIRE d 30000 LT", b":1\r\n"),
    ("EXPIRE d -1 GT", b":0\r\n"),
    ("EXISTS d", b":1\r\n"),
    ("EXPIRE d -1 LT", b":1\r\n"),
    ("EXISTS d", b":0\r\n"),
    ("SET f 6", b"+OK\r\n"),
    ("EXPIREAT f 100 NX", b":1\r\n"),
    ("EXISTS f", b":0\r\n"),
    ("SET g 7", b"+OK\r\n"),
    ("PEXPIREAT g 1000 XX", b":0\r\n"),
    ("PEXPIREAT g 1000 LT", b":1\r\n"),
    ("EXISTS g", b":0\r\n"),
    ("EXPIRE g 10 ZZ", b"-ERR Unsupported option ZZ\r\n"),
    (
        "EXPIRE c 9223372036854775807",
        b"-ERR invalid expire time in 'expire' command\r\n",
    ),
    ("MEMORY USAGE nope", b"$-1\r\n"),
    (
        "MEMORY USAGE",
        b"-ERR wrong number of arguments for 'memory|usage' command\r\n",
    ),
    (
        "MEMORY FOO",
        b"-ERR unknown subcommand 'FOO'. Try MEMORY HELP.\r\n",
    ),
    ("MEMORY USAGE c SAMPLES", b"-ERR syntax error\r\n"),
    (
        "MEMORY USAGE c SAMPLES x",
        b"-ERR value is not an integer or out of range\r\n",
    ),
    ("MEMORY USAGE c FOO 5", b"-ERR syntax error\r\n"),
];

fn args(line: &str) -> Vec<Vec<u8>> {
    line.split(' ')
        .map(|a| {
            if a == "\\e" {
                Vec::new()
            } else {
                a.as_bytes().to_vec()
            }
        })
        .collect()
}

fn send(node: &Node, conn: &mut std::net::TcpStream, line: &str) -> Vec<u8> {
    let a = args(line);
    let refs: Vec<&[u8]> = a.iter().map(Vec::as_slice).collect();
    node.roundtrip(conn, &resp_command(&refs))
}

#[test]
fn replies_match_redis_byte_for_byte() {
    let node = Node::start(1, &[]);
    let mut conn = node.connect();
    let mut wrong = Vec::new();
    for (line, want) in REDIS_REPLIES {
        let got = send(&node, &mut conn, line);
        if got != *want {
            wrong.push(format!(
                "{line}: got {:?}, Redis {:?}",
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(want)
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn resp3_nulls_and_status_replies() {
    let node = Node::start(1, &[]);
    let mut conn = node.connect();
    // HELLO 3 answers a map: read it whole (until the connection goes quiet).
    conn.write_all(&resp_command(&[b"HELLO", b"3"])).unwrap();
    conn.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut hello = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = conn.read(&mut buf) {
        if n == 0 {
            break;
        }
        hello.extend_from_slice(&buf[..n]);
    }
    assert!(
        hello.starts_with(b"%"),
        "{:?}",
        String::from_utf8_lossy(&hello)
    );
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    for (line, want) in [
        ("GETDEL nope", &b"_\r\n"[..]),
        ("SET k v GET", b"_\r\n"),
        ("GETEX k PERSIST", b"$1\r\nv\r\n"),
        ("TYPE k", b"+string\r\n"),
        ("MEMORY USAGE nope", b"_\r\n"),
        ("SETNX k w", b":0\r\n"),
    ] {
        assert_eq!(send(&node, &mut conn, line), want, "{line}");
    }
}

#[test]
fn msetnx_and_dbsize_over_two_cores() {
    let node = Node::start(2, &[]);
    let mut con = redis_con(&node);
    // Find two keys on different cores by MSETNX's own answer.
    let keys: Vec<String> = (0..40).map(|i| format!("key{i}")).collect();
    let mut pair = None;
    for k in &keys[1..] {
        let mut c = redis::cmd("MSETNX");
        c.arg(&keys[0]).arg("1").arg(k).arg("2");
        if let Err(e) = c.query::<i64>(&mut con) {
            assert_eq!(e.kind(), redis::ErrorKind::CrossSlot, "{e}");
            assert!(e
                .to_string()
                .contains("Keys in request don't hash to the same slot"));
            pair = Some(k.clone());
            break;
        }
        let _: i64 = rcmd(&mut con, &["DEL", &keys[0], k]);
    }
    assert!(pair.is_some(), "40 keys all on one of two cores");
    assert_eq!(rcmd::<i64>(&mut con, &["MSETNX", "solo", "1"]), 1);
    assert_eq!(rcmd::<i64>(&mut con, &["MSETNX", "solo", "2"]), 0);
    for k in &keys {
        let _: () = rcmd(&mut con, &["SET", k, "v"]);
    }
    assert_eq!(rcmd::<i64>(&mut con, &["DBSIZE"]), 41);
    assert_eq!(rcmd::<String>(&mut con, &["TYPE", "key7"]), "string");
    // Every core's own port answers the same, handing keys to their owners.
    for p in &node.core_ports {
        let mut c = redis::Client::open(format!("redis://127.0.0.1:{p}/"))
            .unwrap()
            .get_connection()
            .unwrap();
        assert_eq!(rcmd::<i64>(&mut c, &["DBSIZE"]), 41);
        assert!(rcmd::<i64>(&mut c, &["APPEND", "key3", "w"]) > 1);
    }
    assert_eq!(rcmd::<String>(&mut con, &["GET", "key3"]), "vww");

    // KEYS and a SCAN walk see every key once, over both cores, from any port.
    let mut want: Vec<String> = keys
        .iter()
        .filter(|k| k.starts_with("key1"))
        .cloned()
        .collect();
    want.sort();
    let mut got: Vec<String> = rcmd(&mut con, &["KEYS", "key1*"]);
    got.sort();
    assert_eq!(got, want);
    for p in std::iter::once(node.port).chain(node.core_ports.iter().copied()) {
        let mut c = redis::Client::open(format!("redis://127.0.0.1:{p}/"))
            .unwrap()
            .get_connection()
            .unwrap();
        let mut seen: Vec<String> = redis::cmd("SCAN")
            .cursor_arg(0)
            .arg("MATCH")
            .arg("key1*")
            .arg("COUNT")
            .arg(3)
            .clone()
            .iter(&mut c)
            .unwrap()
            .collect();
        seen.sort();
        assert_eq!(seen, want, "port {p}");
        let all: Vec<String> = redis::cmd("SCAN")
            .cursor_arg(0)
            .clone()
            .iter(&mut c)
            .unwrap()
            .collect();
        assert_eq!(all.len(), 41);
    }
    let none: Vec<String> = rcmd(&mut con, &["KEYS", "nomatch[*"]);
    assert!(none.is_empty());
}

#[test]
fn through_the_balancer_with_replicas() {
    let cluster = Cluster::start(2, 1, &[], &[]);
    let rc = redis::Client::open(format!("redis://{}/", cluster.addr())).unwrap();
    let mut con = rc.get_connection().unwrap();
    let keys: Vec<String> = (0..30).map(|i| format!("bk{i}")).collect();
    for k in &keys {
        assert_eq!(rcmd::<i64>(&mut con, &["SETNX", k, "1.5"]), 1);
        assert_eq!(
            rcmd::<String>(&mut con, &["INCRBYFLOAT", k, "0.25"]),
            "1.75"
        );
        assert_eq!(rcmd::<i64>(&mut con, &["APPEND", k, "0"]), 5);
        assert_eq!(rcmd::<i64>(&mut con, &["SETRANGE", k, "0", "2"]), 5);
        assert_eq!(
            rcmd::<String>(&mut con, &["GETEX", k, "EX", "100"]),
            "2.750"
        );
        assert_eq!(rcmd::<i64>(&mut con, &["EXPIRE", k, "50", "GT"]), 0);
        assert_eq!(rcmd::<i64>(&mut con, &["EXPIRE", k, "500", "GT"]), 1);
        assert_eq!(rcmd::<String>(&mut con, &["TYPE", k]), "string");
        assert_eq!(rcmd::<i64>(&mut con, &["STRLEN", k]), 5);
    }
    assert_eq!(rcmd::<String>(&mut con, &["GETDEL", "bk0"]), "2.750");
    assert_eq!(rcmd::<i64>(&mut con, &["DBSIZE"]), 29);
    // MSETNX of keys in both groups is refused as Redis Cluster refuses it.
    let err = (1..30)
        .map(|i| {
            let mut c = redis::cmd("MSETNX");
            c.arg("bx0").arg("1").arg(format!("bx{i}")).arg("2");
            c.query::<i64>(&mut con)
        })
        .find_map(Result::err)
        .expect("some key pair spans groups or cores");
    assert_eq!(err.kind(), redis::ErrorKind::CrossSlot, "{err}");
    assert!(rerr(&mut con, &["INCRBYFLOAT", "bk1", "x"]).contains("not a valid float"));
    assert!(rerr(&mut con, &["SCAN", "0"]).contains("not supported through the balancer"));
    let mut client = cluster.client();
    wait_digests_converge(&mut client, 2, Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("replicas differ:\n{e}"));
}
