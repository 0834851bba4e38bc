//! `ringcache-loadgen`: throughput and latency load generator for ringcache (native protocol,
//! routed to each key's core), any RESP server and memcached.
//!
//! One OS thread per `--threads`, each driving its share of `--connections` with nonblocking
//! sockets on an epoll loop; closed loop by default, open loop with `--rate`.

use std::net::ToSocketAddrs;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use clap::Parser;

use ringcache_loadgen::driver::{self, Phase, Refill, RunConfig};
use ringcache_loadgen::endpoints::{self, Endpoints};
use ringcache_loadgen::protocol::Target;
use ringcache_loadgen::workload::{self, KeyDist, KeySpace, ValueSize, WorkloadSpec};
use ringcache_loadgen::{latency, plot, report};

/// Load generator for ringcache, Redis-compatible servers and memcached: closed or open loop,
/// pipelined, with latency percentiles (hdrhistogram), error counts and its own CPU use.
///
/// Example (workload W2 against a local node):
///   ringcache-loadgen --target ringcache --port 7379 --keys 1000000 --value-size 32
///     --get-ratio 0.9 --connections 50 --pipeline 16 --prefill --duration 10
/// Straight to the cluster's nodes, with the map from a balancer on port 7600:
///   ringcache-loadgen --target ringcache --cluster --port 7600 ...same flags...
#[derive(Parser, Debug)]
#[command(name = "ringcache-loadgen", version, about, verbatim_doc_comment)]
struct Args {
    /// Protocol: `ringcache` (native frames, each request sent to its key's core port, found
    /// with TOPOLOGY on --port), `resp` (RESP2 to any Redis-compatible server) or `memcached`
    /// (text protocol get/set).
    #[arg(long, value_enum, default_value_t = Target::Ringcache)]
    target: Target,

    /// With `--target ringcache`: --host/--port name a ringcache balancer; fetch its cluster map
    /// and send each request straight to the (node, core) port that owns its key, carrying the
    /// map's epoch (REDIRECT replies are counted as errors of their own kind).
    #[arg(long)]
    cluster: bool,

    /// Server host name or IP address.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,

    /// Server port [default: 7379 for ringcache, 6379 for resp, 11211 for memcached].
    #[arg(long, short = 'p')]
    port: Option<u16>,

    /// OS threads; each drives its share of the connections on its own epoll loop.
    #[arg(long, short = 't', default_value_t = 1)]
    threads: usize,

    /// Pin thread i to CPU cpus[i % len], e.g. `--cpus 0` or `--cpus 0,2`.
    #[arg(long, value_delimiter = ',')]
    cpus: Vec<usize>,

    /// Client connections in all (for `ringcache`, each is one socket per core of the node).
    #[arg(long, short = 'c', default_value_t = 50)]
    connections: usize,

    /// Requests in flight per connection (closed loop: refilled as --refill says; open loop:
    /// the cap beyond which due requests wait in the loadgen, their latency then included).
    #[arg(long, short = 'P', default_value_t = 1)]
    pipeline: usize,

    /// How a closed-loop connection refills its pipeline: `batch` sends --pipeline requests
    /// together and waits for all their replies (like redis-benchmark -P); `window` sends a new
    /// request for each reply (like memtier), so the server sees smaller batches.
    #[arg(long, value_enum, default_value_t = Refill::Batch)]
    refill: Refill,

    /// Open loop: send this many requests per second in all, at fixed intervals, and measure
    /// latency from each request's due time. Without it the run is closed loop.
    #[arg(long)]
    rate: Option<f64>,

    /// Key space size: keys are numbered 0..keys.
    #[arg(long, short = 'k', default_value_t = 1_000_000)]
    keys: u64,

    /// Bytes per key: `key:` and the zero-padded key number (the number alone if too short).
    #[arg(long, default_value_t = 16)]
    key_size: usize,

    /// Value size in bytes for SETs: N, or MIN-MAX for a uniform range.
    #[arg(long, default_value = "32")]
    value_size: ValueSize,

    /// Fraction of requests that are GETs (the rest are SETs).
    #[arg(long, default_value_t = 0.9)]
    get_ratio: f64,

    /// Key popularity: `uniform`, or `zipf:S` with exponent S (e.g. zipf:0.99; key 0 hottest).
    #[arg(long, default_value = "uniform")]
    dist: KeyDist,

    /// Seed of the key and operation streams (thread t uses seed + t): same seed, same run.
    #[arg(long, default_value_t = 1)]
    seed: u64,

    /// Write every key of the key space first (pipelined, excluded from the figures).
    #[arg(long)]
    prefill: bool,

    /// Seconds to measure [default: 10 unless --requests is given].
    #[arg(long, short = 'd', conflicts_with = "requests")]
    duration: Option<f64>,

    /// Measure this many requests (over all threads) instead of a duration.
    #[arg(long, short = 'n')]
    requests: Option<u64>,

    /// Seconds of load before measuring starts (excluded from the figures).
    #[arg(long, default_value_t = 0.0)]
    warmup: f64,

    /// Seconds without a reply after which a request counts as timed out (its connection is
    /// then closed and reopened).
    #[arg(long, default_value_t = 5.0)]
    timeout: f64,

    /// Print one JSON object with every figure instead of the table.
    #[arg(long)]
    json: bool,

    /// Also draw the latency-by-percentile curve into this PNG file.
    #[arg(long, value_name = "FILE.png")]
    plot: Option<PathBuf>,

    /// No progress line on stderr.
    #[arg(long, short = 'q')]
    quiet: bool,
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// The first Ctrl-C stops the run early and still prints what was measured.
fn catch_sigint() {
    let handler = on_sigint as extern "C" fn(libc::c_int);
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, handler as libc::sighandler_t);
    }
}

fn secs_to_ns(what: &str, s: f64) -> anyhow::Result<u64> {
    ensure!(
        (0.0..1e7).contains(&s),
        "--{what} must be a number of seconds >= 0, got {s}"
    );
    Ok((s * 1e9) as u64)
}

fn build_config(a: &Args) -> anyhow::Result<RunConfig> {
    ensure!(a.threads >= 1, "--threads must be at least 1");
    ensure!(
        a.connections >= a.threads,
        "--connections ({}) must be at least --threads ({})",
        a.connections,
        a.threads
    );
    ensure!(a.pipeline >= 1, "--pipeline must be at least 1");
    if let Some(r) = a.rate {
        ensure!(
            r.is_finite() && r > 0.0,
            "--rate must be a positive number of requests per second"
        );
    }
    if let Some(n) = a.requests {
        ensure!(n > 0, "--requests must be at least 1");
    }
    ensure!(
        a.timeout > 0.0,
        "--timeout must be a positive number of seconds"
    );
    let keyspace = KeySpace::new(a.keys, a.key_size)?;
    let spec = WorkloadSpec {
        keys: a.keys,
        get_ratio: a.get_ratio,
        dist: a.dist,
        value_size: a.value_size,
    };
    // Validate the generator parameters once, up front.
    workload::Generator::new(spec.clone(), a.seed)?;
    let port = a.port.unwrap_or(match a.target {
        Target::Ringcache => 7379,
        Target::Resp => 6379,
        Target::Memcached => 11211,
    });
    let addr = (a.host.as_str(), port)
        .to_socket_addrs()
        .with_context(|| format!("resolving {}:{port}", a.host))?
        .next()
        .with_context(|| format!("{} resolves to no address", a.host))?;
    ensure!(
        !a.cluster || a.target == Target::Ringcache,
        "--cluster needs --target ringcache"
    );
    let ends = match a.target {
        Target::Ringcache if a.cluster => endpoints::fetch_cluster(addr)?,
        Target::Ringcache => Endpoints::cores(driver::fetch_core_addrs(addr)?),
        _ => Endpoints::single(addr),
    };
    let duration = match (a.duration, a.requests) {
        (Some(d), _) => Some(secs_to_ns("duration", d)?),
        (None, Some(_)) => None,
        (None, None) => Some(10_000_000_000),
    };
    if let Some(d) = duration {
        ensure!(d > 0, "--duration must be more than 0 seconds");
    }
    Ok(RunConfig {
        target: a.target,
        addrs: ends.addrs,
        route: ends.route,
        epoch: ends.epoch,
        connections: a.connections,
        pipeline: a.pipeline,
        refill: a.refill,
        threads: a.threads,
        rate: a.rate,
        keyspace,
        spec,
        seed: a.seed,
        prefill: a.prefill,
        duration_ns: duration,
        requests: a.requests,
        warmup_ns: secs_to_ns("warmup", a.warmup)?,
        timeout_ns: secs_to_ns("timeout", a.timeout)?,
        cpus: a.cpus.clone(),
    })
}

/// Prints one progress line a second until every thread is done.
fn watch(running: &driver::Running, quiet: bool, keys: u64) {
    let shared = &running.shared;
    let start = Instant::now();
    let mut last = Instant::now();
    let mut last_replies = 0u64;
    let mut last_phase = Phase::Connecting;
    while !running.finished() {
        std::thread::sleep(Duration::from_millis(50));
        if INTERRUPTED.load(Ordering::SeqCst) {
            shared.abort.store(true, Ordering::SeqCst);
        }
        if last.elapsed() < Duration::from_secs(1) {
            continue;
        }
        let mut phase = Phase::Done;
        let (mut replies, mut measured, mut gets, mut hits, mut errors) = (0, 0, 0, 0, 0);
        let mut hist = latency::LatencyHist::new();
        for l in &shared.live {
            let Ok(l) = l.lock() else { continue };
            phase = phase_min(phase, l.phase);
            replies += l.replies;
            measured += l.measured;
            gets += l.gets;
            hits += l.hits;
            errors += l.errors;
            hist.merge(&l.hist);
        }
        let dt = last.elapsed().as_secs_f64();
        let rate = replies.saturating_sub(last_replies) as f64 / dt;
        last = Instant::now();
        last_replies = replies;
        if quiet {
            continue;
        }
        let t = start.elapsed().as_secs_f64();
        let line = match phase {
            Phase::Connecting => format!("[{t:5.0}s] connecting"),
            Phase::Prefill => format!(
                "[{t:5.0}s] prefill   {rate:>9.0} keys/s   {:.0}% of {keys} keys",
                (replies as f64 / keys as f64 * 100.0).min(100.0)
            ),
            Phase::Warmup => format!("[{t:5.0}s] warmup    {rate:>9.0} ops/s   errors {errors}"),
            Phase::Measure | Phase::Done => {
                let hit = if gets > 0 {
                    format!("{:5.1}%", hits as f64 / gets as f64 * 100.0)
                } else {
                    "    -".into()
                };
                format!(
                    "[{t:5.0}s] measure   {rate:>9.0} ops/s   hit {hit}   p99 {:>8.1} us   requests {measured}   errors {errors}",
                    hist.quantile_ns(0.99) as f64 / 1000.0
                )
            }
        };
        if phase != Phase::Done || last_phase != Phase::Done {
            eprintln!("{line}");
        }
        last_phase = phase;
    }
}

fn phase_min(a: Phase, b: Phase) -> Phase {
    let rank = |p: Phase| match p {
        Phase::Connecting => 0,
        Phase::Prefill => 1,
        Phase::Warmup => 2,
        Phase::Measure => 3,
        Phase::Done => 4,
    };
    if rank(a) <= rank(b) {
        a
    } else {
        b
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let cfg = Arc::new(build_config(&args)?);
    catch_sigint();
    let running = driver::spawn(Arc::clone(&cfg))?;
    watch(&running, args.quiet, cfg.spec.keys);
    let total = running.join()?;
    let rep = report::Report::build(&cfg, &total);
    if args.json {
        println!("{}", rep.to_json());
    } else {
        print!("{}", rep.to_table());
    }
    if let Some(path) = &args.plot {
        let title = format!(
            "{} {} P{} C{}: {:.0} OPS/S, P99 {:.0} US",
            cfg.target,
            rep.mode,
            cfg.pipeline,
            cfg.connections,
            rep.throughput_ops_per_s,
            rep.latency_us.p99_us
        );
        plot::plot_percentiles(path, &total.hist, &title)?;
        if !args.json {
            println!("  plot                   {}", path.display());
        }
    }
    if rep.ops == 0 {
        bail!("no request completed in the measured window");
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ringcache-loadgen: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent_and_every_flag_has_help() {
        Args::command().debug_assert();
        for arg in Args::command().get_arguments() {
            assert!(
                arg.get_help().is_some(),
                "flag --{} has no help",
                arg.get_id()
            );
        }
    }

    #[test]
    fn defaults_and_validation() {
        let a = Args::try_parse_from(["x"]).unwrap();
        assert_eq!(a.connections, 50);
        assert_eq!(a.pipeline, 1);
        assert_eq!(a.threads, 1);
        assert_eq!(a.keys, 1_000_000);
        assert_eq!(a.key_size, 16);
        assert_eq!(a.get_ratio, 0.9);
        assert_eq!(a.dist, KeyDist::Uniform);
        assert!(Args::try_parse_from(["x", "--duration", "1", "--requests", "5"]).is_err());
        assert!(Args::try_parse_from(["x", "--dist", "zipf:abc"]).is_err());
        let a = Args::try_parse_from([
            "x",
            "--target",
            "memcached",
            "--value-size",
            "10-20",
            "--cpus",
            "0,1",
        ])
        .unwrap();
        assert_eq!(a.value_size, ValueSize { min: 10, max: 20 });
        assert_eq!(a.cpus, vec![0, 1]);
        let bad = |v: &[&str]| {
            let mut all = vec!["x", "--target", "resp"];
            all.extend_from_slice(v);
            build_config(&Args::try_parse_from(all).unwrap()).is_err()
        };
        assert!(bad(&["--pipeline", "0"]));
        assert!(bad(&["--threads", "4", "--connections", "2"]));
        assert!(bad(&["--get-ratio", "1.5"]));
        assert!(bad(&["--rate", "0"]));
        assert!(bad(&["--keys", "100000", "--key-size", "3"]));
        assert!(bad(&["--duration=-1"]));
        assert!(bad(&["--cluster"]));
    }
}
