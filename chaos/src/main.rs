//! `ringcache-chaos`: runs the fault-injection harness — a random seeded schedule or a named
//! scenario against a real cluster — prints the report and writes the timeline PNG; also
//! measures the checker on a synthetic history (`--bench-checker MINUTES`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use ringcache_chaos::checker::{check, DEFAULT_BUDGET};
use ringcache_chaos::cluster::Spec;
use ringcache_chaos::run::{random_run, Ctx, RunReport};
use ringcache_chaos::workload::Load;
use ringcache_chaos::{plot, report, scenario, synth, Promise};

/// Fault-injection harness and consistency checker for a ringcache cluster.
#[derive(Parser, Debug)]
#[command(name = "ringcache-chaos", version, about)]
struct Args {
    /// Length of a random run, seconds.
    #[arg(long, default_value_t = 120.0)]
    duration: f64,
    /// Seed of the fault schedule and the workload (a seed replays its schedule).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Run this named scenario instead of a random schedule (see --list).
    #[arg(long)]
    scenario: Option<String>,
    /// List the named scenarios.
    #[arg(long)]
    list: bool,
    /// Write acks of the nodes: all, quorum or one.
    #[arg(long, default_value = "all", value_parser = ["all", "quorum", "one"])]
    write_ack: String,
    /// Thin clients read from any member (ReadFrom::Any): the weak promise applies.
    #[arg(long)]
    read_any: bool,
    /// Primaries of a random run.
    #[arg(long, default_value_t = 3)]
    primaries: usize,
    /// Thin clients of the workload (plus --resp-clients through the balancer).
    #[arg(long, default_value_t = 4)]
    clients: u32,
    /// RESP clients through the balancer.
    #[arg(long, default_value_t = 2)]
    resp_clients: u32,
    /// Most operations per second per client.
    #[arg(long, default_value_t = 300)]
    rate: u32,
    /// The ringcache binary (default: `ringcache` next to this one).
    #[arg(long, env = "RINGCACHE_BIN")]
    bin: Option<PathBuf>,
    /// Directory for logs, report and timeline (default: target/chaos/NAME-SEED).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Do not enter a network namespace (plain loopback, no link faults).
    #[arg(long)]
    no_netns: bool,
    /// Memoised configurations per key before the linearizability search gives up.
    #[arg(long, default_value_t = DEFAULT_BUDGET)]
    budget: usize,
    /// Only measure the checker on a synthetic linearizable history of this many minutes.
    #[arg(long, value_name = "MINUTES")]
    bench_checker: Option<f64>,
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn bench_checker(minutes: f64, clients: u32, rate: u32, budget: usize) {
    let shape = synth::Shape {
        clients,
        keys: 12,
        counters: 2,
        duration_ns: (minutes * 60e9) as u64,
        op_ns: 1_000_000_000 / u64::from(rate.max(1)),
        unknown: 0.01,
        seed: 1,
    };
    let t = Instant::now();
    let ops = synth::history(&shape);
    let gen = t.elapsed();
    let t = Instant::now();
    let c = check(&ops, budget);
    let took = t.elapsed();
    println!(
        "synthetic history: {minutes} min, {clients} clients at <= {rate} ops/s, {} ops over {} keys (generated in {:.1} s)",
        ops.len(),
        c.keys,
        gen.as_secs_f64()
    );
    println!(
        "checker: {:.2} s in all ({:.2} s in the linearizability search), {} anomalies, peak RSS {:.0} MiB",
        took.as_secs_f64(),
        c.search_time.as_secs_f64(),
        c.anomalies.len(),
        peak_rss_mib()
    );
    for a in c.anomalies.iter().take(3) {
        print!("  {a}");
    }
}

fn main() -> anyhow::Result<ExitCode> {
    let a = Args::parse();
    if a.list {
        for s in scenario::ALL {
            let today = if s.passes_today {
                "passes today"
            } else {
                "fails today"
            };
            println!("{:<18} ({today}) {}", s.name, s.about);
        }
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(m) = a.bench_checker {
        bench_checker(m, a.clients + a.resp_clients, a.rate, a.budget);
        return Ok(ExitCode::SUCCESS);
    }
    let bin = match a.bin.clone() {
        Some(b) => b,
        None => std::env::current_exe()
            .context("locating this binary")?
            .with_file_name("ringcache"),
    };
    anyhow::ensure!(
        bin.exists(),
        "no ringcache binary at {} (build it: cargo build --release --bin ringcache, or pass --bin)",
        bin.display()
    );
    let name = a.scenario.clone().unwrap_or_else(|| "random".into());
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("target/chaos/{name}-{}", a.seed)));
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let out = out.canonicalize().unwrap_or(out);
    let report: RunReport = match &a.scenario {
        Some(n) => {
            let s = scenario::find(n)?;
            println!("scenario {}: {}", s.name, s.about);
            s.run(&bin, &out, !a.no_netns, a.seed)?
        }
        None => {
            let spec = Spec {
                primaries: a.primaries,
                write_ack: a.write_ack.clone(),
                ..Spec::default()
            };
            let load = Load {
                thin_clients: a.clients,
                resp_clients: a.resp_clients,
                rate: a.rate,
                read_any: a.read_any,
                seed: a.seed,
                ..Load::default()
            };
            let promise = if a.write_ack == "all" && !a.read_any {
                Promise::Strong
            } else {
                Promise::Weak
            };
            let ctx = Ctx::new(spec, load, &bin, &out, !a.no_netns)?;
            random_run(ctx, a.seed, a.duration, promise, a.budget)?
        }
    };
    let text = report::text(&report);
    let png = out.join("timeline.png");
    let plotted = plot::timeline(&png, &report);
    print!("{text}");
    match plotted {
        Ok(()) => println!("timeline: {}", png.display()),
        Err(e) => println!("timeline: not drawn ({e})"),
    }
    println!("logs and report: {}", out.display());
    if report.ops.len() <= 2_000_000 {
        let lines: Vec<String> = report.ops.iter().map(ToString::to_string).collect();
        std::fs::write(out.join("history.txt"), lines.join("\n") + "\n")
            .with_context(|| format!("writing {}", out.display()))?;
    }
    std::fs::write(out.join("report.txt"), &text)
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(if report.violations().is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
