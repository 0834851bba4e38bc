//! The workload: concurrent clients on a small key set — ring-aware thin clients and RESP
//! clients through the balancer — running SET (unique values), GET, DEL, INCR and
//! compare-and-set (GETV then SET IF-VERSION), each operation recorded with its outcome.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use ringcache_client::{
    Client, ClientConfig, ClientError, ErrorKind, ReadFrom, SetOpts, SetOutcome,
};

use crate::history::{Answer, Nanos, Op, OpKind, Outcome, NEVER};

/// What load to run.
#[derive(Clone, Debug)]
pub struct Load {
    /// Ring-aware thin clients.
    pub thin_clients: u32,
    /// RESP clients through the balancer.
    pub resp_clients: u32,
    /// Register keys (`r0`..): SET, GET, DEL, CAS.
    pub keys: u32,
    /// Counter keys (`c0`..): INCR, GET.
    pub counters: u32,
    /// Most operations per second per client.
    pub rate: u32,
    /// Thin clients read from any member (`ReadFrom::Any`) instead of the primary.
    pub read_any: bool,
    /// Seed of the clients' choices.
    pub seed: u64,
}

impl Default for Load {
    fn default() -> Self {
        Load {
            thin_clients: 4,
            resp_clients: 2,
            keys: 12,
            counters: 2,
            rate: 300,
            read_any: false,
            seed: 1,
        }
    }
}

/// A running workload.
pub struct Running {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Vec<Op>>>,
}

/// Nanoseconds from `start` to now.
pub fn since(start: Instant) -> Nanos {
    start.elapsed().as_nanos() as Nanos
}

/// The thin clients' settings: short timeouts, and no retries of their own (a retried write
/// could take effect twice), so every attempt is one recorded operation.
pub fn thin_config(read_any: bool) -> ClientConfig {
    let cfg = ClientConfig::default()
        .timeout(Duration::from_millis(1500))
        .failover_timeout(Duration::ZERO)
        .retry_idempotent(false);
    if read_any {
        cfg.read_from(ReadFrom::Any)
    } else {
        cfg
    }
}

/// Starts the clients against the balancer at `balancer`; times are taken from `start`.
pub fn start(load: &Load, balancer: &str, start: Instant) -> Running {
    let stop = Arc::new(AtomicBool::new(false));
    let threads = (0..load.thin_clients + load.resp_clients)
        .map(|id| {
            let (load, addr, stop) = (load.clone(), balancer.to_string(), stop.clone());
            std::thread::spawn(move || client_loop(id, &load, &addr, start, &stop))
        })
        .collect();
    Running { stop, threads }
}

impl Running {
    /// Stops the clients and merges their histories.
    pub fn stop(mut self) -> Vec<Op> {
        self.stop.store(true, Ordering::Relaxed);
        let mut ops = Vec::new();
        for t in std::mem::take(&mut self.threads) {
            if let Ok(h) = t.join() {
                ops.extend(h);
            }
        }
        ops.sort_by_key(|o| o.invoke);
        ops
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A thin client's error as an outcome: refusals before anything was applied fail, the rest
/// (timeouts, broken connections, internal errors) are unknown.
pub fn thin_outcome(e: &ClientError) -> Outcome {
    match e {
        ClientError::Connect { .. }
        | ClientError::NoPrimary { .. }
        | ClientError::TooLarge(_)
        | ClientError::InvalidArgument(_)
        | ClientError::Server {
            kind:
                ErrorKind::Redirect { .. }
                | ErrorKind::Busy
                | ErrorKind::WrongType
                | ErrorKind::NotFound
                | ErrorKind::Malformed
                | ErrorKind::TooLarge,
            ..
        } => Outcome::Fail,
        _ => Outcome::Unknown,
    }
}

/// One client: a thin client or a RESP connection.
pub(crate) enum Conn {
    Thin(Option<Box<Client>>, ClientConfig),
    Resp(Option<redis::Connection>),
}

/// The answer of one operation, or its outcome when it was not answered.
type Res = Result<Answer, Outcome>;

impl Conn {
    fn thin(&mut self, addr: &str) -> Result<&mut Client, Outcome> {
        let Conn::Thin(c, cfg) = self else {
            return Err(Outcome::Fail);
        };
        if c.is_none() {
            *c = Client::connect_cluster_with(addr, cfg.clone())
                .ok()
                .map(Box::new);
        }
        c.as_deref_mut().ok_or(Outcome::Fail)
    }

    fn resp(&mut self, addr: &str) -> Result<&mut redis::Connection, Outcome> {
        let Conn::Resp(c) = self else {
            return Err(Outcome::Fail);
        };
        if c.is_none() {
            *c = redis::Client::open(format!("redis://{addr}/"))
                .and_then(|cl| cl.get_connection_with_timeout(Duration::from_millis(1500)))
                .and_then(|conn| {
                    conn.set_read_timeout(Some(Duration::from_millis(1500)))?;
                    conn.set_write_timeout(Some(Duration::from_millis(1500)))?;
                    Ok(conn)
                })
                .ok();
        }
        c.as_mut().ok_or(Outcome::Fail)
    }

    /// After an error: a thin client refreshes its map, a RESP connection is reopened.
    fn after_error(&mut self) {
        match self {
            Conn::Thin(Some(c), _) => {
                let _ = c.refresh_map();
            }
            Conn::Resp(c) => *c = None,
            Conn::Thin(None, _) => {}
        }
    }

    /// Runs `kind` on `key`; for a read, also answers the version (GETV).
    fn run(&mut self, addr: &str, key: &str, kind: &OpKind, version: Option<u64>) -> (Res, u64) {
        let mut ver = 0;
        let r = match self {
            Conn::Thin(..) => {
                let c = match self.thin(addr) {
                    Ok(c) => c,
                    Err(o) => return (Err(o), 0),
                };
                let r = match kind {
                    OpKind::Read => c.get_versioned(key).map(|v| {
                        ver = v.as_ref().map_or(0, |v| v.version);
                        Answer::Value(v.map(|v| v.value))
                    }),
                    OpKind::Write(v) => c.set(key, v).map(|()| Answer::Done),
                    OpKind::Delete => c.del(&[key]).map(|_| Answer::Done),
                    OpKind::Incr => c.incr(key).map(Answer::Count),
                    OpKind::Cas { new, .. } => {
                        let opts = SetOpts::new().if_version(version.unwrap_or(0));
                        c.set_with(key, new, &opts)
                            .map(|o| Answer::Stored(matches!(o, SetOutcome::Stored { .. })))
                    }
                };
                r.map_err(|e| thin_outcome(&e))
            }
            Conn::Resp(_) => {
                let c = match self.resp(addr) {
                    Ok(c) => c,
                    Err(o) => return (Err(o), 0),
                };
                let (r, v) = resp_run(c, key, kind, version);
                ver = v;
                r
            }
        };
        if r.is_err() {
            self.after_error();
        }
        (r, ver)
    }
}

fn resp_run(
    c: &mut redis::Connection,
    key: &str,
    kind: &OpKind,
    version: Option<u64>,
) -> (Res, u64) {
    let unknown = |_e: redis::RedisError| Outcome::Unknown;
    match kind {
        OpKind::Read => match redis::cmd("GETV").arg(key).query::<redis::Value>(c) {
            Ok(redis::Value::Nil) => (Ok(Answer::Value(None)), 0),
            Ok(redis::Value::Array(items)) => match items.as_slice() {
                [redis::Value::BulkString(v), redis::Value::Int(ver)] => {
                    (Ok(Answer::Value(Some(v.clone()))), *ver as u64)
                }
                _ => (Err(Outcome::Unknown), 0),
            },
            Ok(_) => (Err(Outcome::Unknown), 0),
            Err(e) => (Err(unknown(e)), 0),
        },
        OpKind::Write(v) => (
            redis::cmd("SET")
                .arg(key)
                .arg(v.as_slice())
                .query::<redis::Value>(c)
                .map_err(unknown)
                .and_then(|r| match r {
                    redis::Value::Okay => Ok(Answer::Done),
                    _ => Err(Outcome::Unknown),
                }),
            0,
        ),
        OpKind::Delete => (
            redis::cmd("DEL")
                .arg(key)
                .query::<i64>(c)
                .map(|_| Answer::Done)
                .map_err(unknown),
            0,
        ),
        OpKind::Incr => (
            redis::cmd("INCR")
                .arg(key)
                .query::<i64>(c)
                .map(Answer::Count)
                .map_err(unknown),
            0,
        ),
        OpKind::Cas { new, .. } => {
            let r = redis::cmd("SET")
                .arg(key)
                .arg(new.as_slice())
                .arg("IF-VERSION")
                .arg(version.unwrap_or(0))
                .query::<redis::Value>(c);
            let r = match r {
                Ok(redis::Value::Okay) => Ok(Answer::Stored(true)),
                Ok(redis::Value::Nil) => Ok(Answer::Stored(false)),
                Ok(_) => Err(Outcome::Unknown),
                Err(e) if e.to_string().to_ascii_lowercase().contains("version") => {
                    Ok(Answer::Stored(false))
                }
                Err(e) => Err(unknown(e)),
            };
            (r, 0)
        }
    }
}

/// Who records: the client's id, the balancer's address, time zero.
pub(crate) struct Who<'a> {
    pub(crate) client: u32,
    pub(crate) addr: &'a str,
    pub(crate) start: Instant,
}

/// Runs one operation and records it.
pub(crate) fn record(
    conn: &mut Conn,
    who: &Who<'_>,
    key: &str,
    kind: OpKind,
    version: Option<u64>,
    out: &mut Vec<Op>,
) -> (Option<Answer>, u64) {
    let (client, start) = (who.client, who.start);
    let invoke = since(start);
    let (r, ver) = conn.run(who.addr, key, &kind, version);
    let complete = since(start);
    let (outcome, answer) = match r {
        Ok(a) => (Outcome::Ok(a.clone()), Some(a)),
        Err(o) => (o, None),
    };
    let complete = if outcome == Outcome::Unknown {
        NEVER
    } else {
        complete
    };
    out.push(Op {
        client,
        key: key.to_string(),
        kind,
        outcome,
        invoke,
        complete,
    });
    (answer, ver)
}

fn client_loop(id: u32, load: &Load, addr: &str, start: Instant, stop: &AtomicBool) -> Vec<Op> {
    let mut rng = SmallRng::seed_from_u64(load.seed.wrapping_mul(1000).wrapping_add(id as u64));
    let mut conn = if id < load.thin_clients {
        Conn::Thin(None, thin_config(load.read_any))
    } else {
        Conn::Resp(None)
    };
    let who = Who {
        client: id,
        addr,
        start,
    };
    let mut out = Vec::new();
    let gap = Duration::from_secs_f64(1.0 / f64::from(load.rate.max(1)));
    let mut seq = 0u64;
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now < next {
            std::thread::sleep((next - now).min(Duration::from_millis(50)));
            continue;
        }
        next += gap;
        if next + Duration::from_secs(1) < now {
            next = now; // do not burst after a stall
        }
        seq += 1;
        let value = format!("{id}-{seq}").into_bytes();
        let counter = load.counters > 0 && rng.gen_bool(0.15);
        if counter {
            let key = format!("c{}", rng.gen_range(0..load.counters));
            let kind = if rng.gen_bool(0.6) {
                OpKind::Incr
            } else {
                OpKind::Read
            };
            record(&mut conn, &who, &key, kind, None, &mut out);
            continue;
        }
        let key = format!("r{}", rng.gen_range(0..load.keys.max(1)));
        let kind = match rng.gen_range(0..20) {
            0..=6 => OpKind::Read,
            7..=13 => OpKind::Write(value),
            14..=15 => OpKind::Delete,
            _ => {
                // Compare-and-set: read the version, then write if it still holds.
                let (a, ver) = record(&mut conn, &who, &key, OpKind::Read, None, &mut out);
                if let Some(Answer::Value(Some(expect))) = a {
                    let kind = OpKind::Cas { expect, new: value };
                    record(&mut conn, &who, &key, kind, Some(ver), &mut out);
                }
                continue;
            }
        };
        record(&mut conn, &who, &key, kind, None, &mut out);
    }
    out
}

/// Reads every key of `load` once more after the faults healed (retrying errors until
/// `deadline`), recorded as client `client`; answers the keys that could not be read.
pub fn final_reads(
    load: &Load,
    balancer: &str,
    start: Instant,
    client: u32,
    deadline: Duration,
    out: &mut Vec<Op>,
) -> Vec<String> {
    let end = Instant::now() + deadline;
    let mut conn = Conn::Thin(None, thin_config(false));
    let keys = (0..load.keys)
        .map(|i| format!("r{i}"))
        .chain((0..load.counters).map(|i| format!("c{i}")));
    let who = Who {
        client,
        addr: balancer,
        start,
    };
    let mut unread = Vec::new();
    for key in keys {
        loop {
            let mut tmp = Vec::new();
            let (a, _) = record(&mut conn, &who, &key, OpKind::Read, None, &mut tmp);
            if a.is_some() {
                out.extend(tmp);
                break;
            }
            if Instant::now() > end {
                unread.push(key.clone());
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    unread
}
