//! The measured load of `async-client-report`: W2's keys and values, one round of many tasks
//! on one client (ringcache's `AsyncClient` or redis-rs's `MultiplexedConnection`), its
//! throughput and the process's CPU time per request.

use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use ringcache_client::AsyncClient;

/// Length of a W2 key: `key:` and 12 digits, as ringcache-loadgen and redis-benchmark name them.
const KEY_LEN: usize = 16;
/// Length of a W2 value.
const VALUE_LEN: usize = 32;

/// What every round runs.
#[derive(Debug, Clone, Copy)]
pub struct Workload {
    /// Keys drawn uniformly from `key:000000000000` on.
    pub keys: u64,
    /// Share of GETs; the rest are SETs.
    pub get_ratio: f64,
    /// Concurrent tasks sharing the client.
    pub tasks: usize,
    /// How long each round lasts.
    pub duration: Duration,
}

/// One client under test.
pub enum Side {
    /// ringcache's async client (native frames, straight to the key's core).
    Async(AsyncClient),
    /// redis-rs's multiplexed connection to the node's RESP port.
    Redis(MultiplexedConnection),
}

impl Side {
    /// An `AsyncClient` on the node's main port.
    pub async fn connect_async(addr: &str) -> Result<Side, String> {
        let c = AsyncClient::connect(addr)
            .await
            .map_err(|e| format!("AsyncClient: {e}"))?;
        c.warm_up().await.map_err(|e| format!("AsyncClient: {e}"))?;
        Ok(Side::Async(c))
    }

    /// A redis-rs multiplexed connection to the node's main (RESP) port.
    pub async fn connect_redis(addr: &str) -> Result<Side, String> {
        let client = redis::Client::open(format!("redis://{addr}/"))
            .map_err(|e| format!("redis-rs: {e}"))?;
        let con = client
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| format!("redis-rs: {e}"))?;
        Ok(Side::Redis(con))
    }

    /// The async client's write counters (`None` for redis-rs, which has none).
    pub fn write_stats(&self) -> Option<ringcache_client::WriteStats> {
        match self {
            Side::Async(c) => Some(c.write_stats()),
            Side::Redis(_) => None,
        }
    }

    /// The name in the report.
    pub fn name(&self) -> &'static str {
        match self {
            Side::Async(_) => "AsyncClient",
            Side::Redis(_) => "redis-rs multiplexed",
        }
    }
}

/// Writes every key once, through the async client, 1000 keys per pipeline.
pub async fn prefill(side: &Side, keys: u64) -> Result<(), String> {
    let Side::Async(c) = side else {
        return Err("prefill goes through the async client".into());
    };
    let value = [b'v'; VALUE_LEN];
    let mut start = 0;
    while start < keys {
        let end = (start + 1000).min(keys);
        let names: Vec<[u8; KEY_LEN]> = (start..end).map(key).collect();
        let mut p = c.pipeline();
        for k in &names {
            p.set(k, &value);
        }
        if let Some(Err(e)) = p.execute().await.into_iter().find(Result::is_err) {
            return Err(format!("prefill: {e}"));
        }
        start = end;
    }
    Ok(())
}

/// W2's name of key `i`: `key:` and `i` in 12 digits.
fn key(i: u64) -> [u8; KEY_LEN] {
    let mut k = *b"key:000000000000";
    let mut n = i;
    for d in k[4..].iter_mut().rev() {
        *d = b'0' + (n % 10) as u8;
        n /= 10;
    }
    k
}

/// A small fast generator (xorshift64*), seeded per task.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// What one round measured.
#[derive(Debug, Clone, Copy)]
pub struct Round {
    /// Requests answered without error.
    pub ops: u64,
    /// Requests that failed.
    pub errors: u64,
    /// Tasks whose request was still unanswered 10 s after the round ended.
    pub stuck: u64,
    /// Wall time of the round.
    pub elapsed: Duration,
    /// CPU time (user + system) of this process during the round.
    pub cpu: Duration,
    /// CPU time of the server process during the round, when its pid was given.
    pub server_cpu: Option<Duration>,
}

impl Round {
    /// Requests per second.
    pub fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }

    /// Server CPU per request, in microseconds (NaN without the server's pid).
    pub fn server_us_per_op(&self) -> f64 {
        self.server_cpu.map_or(f64::NAN, |c| {
            c.as_secs_f64() * 1e6 / (self.ops.max(1) as f64)
        })
    }

    /// Client CPU per request, in microseconds.
    pub fn cpu_us_per_op(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / (self.ops.max(1) as f64)
    }
}

/// CPU time (user + system) of this process so far.
fn process_cpu() -> Duration {
    // SAFETY: an all-zero rusage is a valid value, and getrusage only writes into it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF with a valid pointer to a rusage.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// CPU time (user + system) of process `pid` so far, from /proc (10 ms resolution); `None`
/// when it cannot be read.
pub fn other_process_cpu(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at state; utime and stime
    // are the 14th and 15th fields of the line.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no memory effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = u64::try_from(hz).ok().filter(|&h| h > 0)?;
    Some(Duration::from_micros(ticks * 1_000_000 / hz))
}

/// One round: `w.tasks` tasks on `side` until `w.duration` has passed; with `server`, the
/// server process's CPU time over the round too.
pub async fn measure(side: &Side, w: &Workload, round: u64, server: Option<u32>) -> Round {
    let start = Instant::now();
    let cpu0 = process_cpu();
    let server0 = server.and_then(other_process_cpu);
    let deadline = start + w.duration;
    let get_below = (w.get_ratio * u64::MAX as f64) as u64;
    let tasks: Vec<_> = (0..w.tasks as u64)
        .map(|t| {
            let seed = (round << 32 | t).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
            let w = *w;
            match side {
                Side::Async(c) => {
                    let c = c.clone();
                    tokio::spawn(async move { run_async(c, w, seed, get_below, deadline).await })
                }
                Side::Redis(con) => {
                    let con = con.clone();
                    tokio::spawn(async move { run_redis(con, w, seed, get_below, deadline).await })
                }
            }
        })
        .collect();
    let (mut ops, mut errors, mut stuck) = (0, 0, 0);
    // A task still running 10 s after the end of the round has a request that never got an
    // answer: it is stopped and counted.
    let give_up = deadline + Duration::from_secs(10);
    for mut t in tasks {
        match tokio::time::timeout_at(give_up.into(), &mut t).await {
            Ok(Ok((o, e))) => {
                ops += o;
                errors += e;
            }
            Ok(Err(_)) => errors += 1,
            Err(_) => {
                t.abort();
                stuck += 1;
            }
        }
    }
    let server_cpu = match (server0, server.and_then(other_process_cpu)) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a)),
        _ => None,
    };
    Round {
        ops,
        errors,
        stuck,
        elapsed: start.elapsed(),
        cpu: process_cpu().saturating_sub(cpu0),
        server_cpu,
    }
}

async fn run_async(
    c: AsyncClient,
    w: Workload,
    seed: u64,
    get_below: u64,
    deadline: Instant,
) -> (u64, u64) {
    let mut rng = Rng(seed);
    let value = [b'x'; VALUE_LEN];
    let (mut ops, mut errors) = (0, 0);
    while Instant::now() < deadline {
        let k = key(rng.next() % w.keys);
        let ok = if rng.next() < get_below {
            c.get(k).await.is_ok()
        } else {
            c.set(k, value).await.is_ok()
        };
        if ok {
            ops += 1;
        } else {
            errors += 1;
        }
    }
    (ops, errors)
}

async fn run_redis(
    mut con: MultiplexedConnection,
    w: Workload,
    seed: u64,
    get_below: u64,
    deadline: Instant,
) -> (u64, u64) {
    let mut rng = Rng(seed);
    let value = [b'x'; VALUE_LEN];
    let (mut ops, mut errors) = (0, 0);
    while Instant::now() < deadline {
        let k = key(rng.next() % w.keys);
        let ok = if rng.next() < get_below {
            let r: redis::RedisResult<Option<Vec<u8>>> =
                redis::cmd("GET").arg(&k[..]).query_async(&mut con).await;
            r.is_ok()
        } else {
            let r: redis::RedisResult<()> = redis::cmd("SET")
                .arg(&k[..])
                .arg(&value[..])
                .query_async(&mut con)
                .await;
            r.is_ok()
        };
        if ok {
            ops += 1;
        } else {
            errors += 1;
        }
    }
    (ops, errors)
}
