//! Every write of the strings family and of the single-key keyspace commands reaches the
//! replica: after each one, primary and replica hold the same data (equal digests, which cover
//! keys, values, versions and expiries).

use super::end_to_end::{connect, pair, pump};
use super::*;
use ringcache_proto::{parse_command, Limits};

const NOW: u64 = 10_000;

#[test]
fn string_and_keyspace_writes_converge_on_the_replica() {
    let (mut p, mut r, id) = pair();
    let (mut rx, _) = connect(&mut p, &mut r, id, 1);
    pump(&mut p, &mut r, &mut rx, id);
    let script = [
        "SET base 1 EX 100",
        "SETNX a 1",
        "SETNX a 2",
        "SETEX b 100 v",
        "PSETEX c 5000 v",
        "GETSET a 3",
        "SET a 4 GET EX 50",
        "SET nx 1 NX GET",
        "APPEND a tail",
        "APPEND fresh x",
        "SETRANGE a 10 zz",
        "SETRANGE r 2 ab",
        "INCRBYFLOAT f 1.5",
        "INCRBYFLOAT f 0.25",
        "GETEX b EX 7",
        "GETEX b PERSIST",
        "GETEX c PXAT 100",
        "EXPIREAT base 20",
        "EXPIRE b 30 NX",
        "PEXPIRE b 60000 GT",
        "PEXPIREAT b 1 LT",
        "EXPIRE a 100 XX",
        "GETDEL fresh",
        "GETDEL missing",
        "MSETNX m1 x m2 y",
        "MSETNX m1 z m3 w",
    ];
    let limits = Limits::default();
    for line in script {
        let args: Vec<&[u8]> = line.split(' ').map(str::as_bytes).collect();
        let cmd = parse_command(&args[..], &limits).expect("parses");
        assert!(cmd.is_write(), "{line}");
        let resp = execute(&mut p, &cmd, NOW);
        assert!(!matches!(resp, Response::Error { .. }), "{line}: {resp:?}");
        drop(resp);
        replicate(&mut p, &cmd, NOW);
        pump(&mut p, &mut r, &mut rx, id);
        assert_eq!(p.shard.digest(NOW), r.shard.digest(NOW), "after {line}");
    }
    let (n, _) = p.shard.digest(NOW);
    // base a nx r f m1 m2; b, c (expiries in the past) and fresh (GETDEL) are gone.
    assert_eq!(n, 7);
}
