//! `async-client-report`: many tokio tasks issuing W2's GET/SET against one running node,
//! through one shared `AsyncClient` and through redis-rs's `MultiplexedConnection` to the
//! node's RESP port, in alternating rounds of one run; prints ops/s and client CPU per request.
//!
//! ```text
//! cargo build --release -p ringcache --bin ringcache -p ringcache-bench --bin async-client-report
//! taskset -c 1 target/release/ringcache node --port 7379 --cores 1 --memory 1g &
//! taskset -c 0 target/release/async-client-report --port 7379 --prefill
//! ```
//!
//! Flags: `--port` (7379), `--tasks` (1000), `--secs` per round (5), `--rounds` per client (3),
//! `--keys` (1000000), `--get-ratio` (0.9), `--threads` of the tokio runtime (1), `--prefill`,
//! `--server-pid` (the node's pid: its CPU per request is reported too), `--only async|redis`
//! (one side alone, e.g. under a profiler; no comparison is printed).

mod load;

use std::process::ExitCode;
use std::time::Duration;

use load::{measure, prefill, Side, Workload};

/// The report's settings, from the command line.
#[derive(Debug, Clone)]
struct Args {
    port: u16,
    tasks: usize,
    secs: f64,
    rounds: usize,
    keys: u64,
    get_ratio: f64,
    threads: usize,
    prefill: bool,
    server_pid: Option<u32>,
    /// Measure only this side (`async` or `redis`), e.g. under a profiler.
    only: Option<String>,
}

/// Parses `--flag value` pairs and `--prefill`; answers a message for anything else.
fn parse(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut a = Args {
        port: 7379,
        tasks: 1000,
        secs: 5.0,
        rounds: 3,
        keys: 1_000_000,
        get_ratio: 0.9,
        threads: 1,
        prefill: false,
        server_pid: None,
        only: None,
    };
    fn num<T: std::str::FromStr>(flag: &str, v: Option<String>) -> Result<T, String> {
        let v = v.ok_or_else(|| format!("{flag} needs a value"))?;
        v.parse()
            .map_err(|_| format!("{flag}: '{v}' is not a valid number"))
    }
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--port" => a.port = num(&flag, it.next())?,
            "--tasks" => a.tasks = num(&flag, it.next())?,
            "--secs" => a.secs = num(&flag, it.next())?,
            "--rounds" => a.rounds = num(&flag, it.next())?,
            "--keys" => a.keys = num(&flag, it.next())?,
            "--get-ratio" => a.get_ratio = num(&flag, it.next())?,
            "--threads" => a.threads = num(&flag, it.next())?,
            "--prefill" => a.prefill = true,
            "--server-pid" => a.server_pid = Some(num(&flag, it.next())?),
            "--only" => match it.next().as_deref() {
                Some(side @ ("async" | "redis")) => a.only = Some(side.to_string()),
                _ => return Err("--only takes async or redis".into()),
            },
            "-h" | "--help" => return Err(help()),
            other => return Err(format!("unknown argument '{other}'\n{}", help())),
        }
    }
    if a.tasks == 0 || a.rounds == 0 || a.keys == 0 || a.threads == 0 || a.secs <= 0.0 {
        return Err("--tasks, --rounds, --keys, --threads and --secs must be positive".into());
    }
    if !(0.0..=1.0).contains(&a.get_ratio) {
        return Err("--get-ratio must be within 0..=1".into());
    }
    Ok(a)
}

fn help() -> String {
    "usage: async-client-report [--port 7379] [--tasks 1000] [--secs 5] [--rounds 3] \
     [--keys 1000000] [--get-ratio 0.9] [--threads 1] [--prefill] [--server-pid PID] [--only async|redis]"
        .into()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(2);
        }
    };
    let rt = if args.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()
    };
    let rt = match rt {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(&args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("async-client-report: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &Args) -> Result<(), String> {
    let addr = format!("127.0.0.1:{}", args.port);
    let w = Workload {
        keys: args.keys,
        get_ratio: args.get_ratio,
        tasks: args.tasks,
        duration: Duration::from_secs_f64(args.secs),
    };
    let sides = [
        Side::connect_async(&addr).await?,
        Side::connect_redis(&addr).await?,
    ];
    if args.prefill {
        eprintln!("prefilling {} keys ...", args.keys);
        prefill(&sides[0], args.keys).await?;
        eprintln!("prefilled");
    }
    // A short warm-up of each side: connections open, caches and allocators settle.
    let measured = |s: &Side| match args.only.as_deref() {
        Some("async") => matches!(s, Side::Async(_)),
        Some(_) => matches!(s, Side::Redis(_)),
        None => true,
    };
    for s in sides.iter().filter(|s| measured(s)) {
        let warm = Workload {
            duration: Duration::from_millis(500),
            ..w
        };
        let r = measure(s, &warm, 0, None).await;
        eprintln!(
            "warm-up: {:<20} {:>10.0} ops/s  {} errors  {} stuck",
            s.name(),
            r.ops_per_sec(),
            r.errors,
            r.stuck
        );
    }
    let mut runs: Vec<Vec<load::Round>> = vec![Vec::new(); sides.len()];
    for round in 0..args.rounds {
        for (i, s) in sides.iter().enumerate() {
            if !measured(s) {
                continue;
            }
            let before = s.write_stats();
            let r = measure(s, &w, round as u64 + 1, args.server_pid).await;
            let batching = match (before, s.write_stats()) {
                (Some(b), Some(a)) if a.writes > b.writes => format!(
                    "  {:.1} requests per write",
                    (a.frames - b.frames) as f64 / (a.writes - b.writes) as f64
                ),
                _ => String::new(),
            };
            eprintln!(
                "round {}: {:<20} {:>10.0} ops/s  client {:>5.2} µs CPU/op  server {:>5.2} µs CPU/op  \
                 {} errors  {} stuck{batching}",
                round + 1,
                s.name(),
                r.ops_per_sec(),
                r.cpu_us_per_op(),
                r.server_us_per_op(),
                r.errors,
                r.stuck
            );
            runs[i].push(r);
        }
    }
    let ops: Vec<f64> = runs
        .iter()
        .map(|r| median(r.iter().map(load::Round::ops_per_sec).collect()))
        .collect();
    let cpu: Vec<f64> = runs
        .iter()
        .map(|r| median(r.iter().map(load::Round::cpu_us_per_op).collect()))
        .collect();
    let server: Vec<f64> = runs
        .iter()
        .map(|r| median(r.iter().map(load::Round::server_us_per_op).collect()))
        .collect();
    let errors: Vec<u64> = runs
        .iter()
        .map(|r| r.iter().map(|x| x.errors).sum())
        .collect();
    println!(
        "## Async client: {} tokio tasks ({} runtime thread(s)), W2 ({} keys, {:.0}% GET, \
         16-byte keys, 32-byte values), {} rounds of {} s per client, alternating\n",
        args.tasks,
        args.threads,
        args.keys,
        args.get_ratio * 100.0,
        args.rounds,
        args.secs
    );
    println!(
        "| client | ops/s (median) | client CPU µs/request (median) | \
         server CPU µs/request (median) | errors (and stuck tasks) |"
    );
    println!("|---|---:|---:|---:|---:|");
    for (i, s) in sides.iter().enumerate() {
        println!(
            "| {} | {:.0} | {:.2} | {:.2} | {} |",
            s.name(),
            ops[i],
            cpu[i],
            server[i],
            errors[i]
        );
    }
    if args.only.is_some() {
        return Ok(());
    }
    // Each round's ratio against the other client's round right after it: the two ran
    // under nearly the same load of the host, so this median is steadier on a busy machine
    // than the ratio of the two medians.
    let paired = median(
        runs[0]
            .iter()
            .zip(&runs[1])
            .map(|(a, r)| a.ops_per_sec() / r.ops_per_sec())
            .collect(),
    );
    let verdict = if paired >= 1.5 { "PASS" } else { "MISS" };
    println!(
        "\nAsyncClient / redis-rs: {paired:.2}x ops/s (median of the {} round pairs; \
         {:.2}x by the medians above; target >= 1.5x: {verdict}), {:.2}x less client CPU \
         per request, {:.2}x less server CPU per request",
        runs[0].len(),
        ops[0] / ops[1],
        cpu[1] / cpu[0],
        server[1] / server[0]
    );
    Ok(())
}
