//! The `ringcache` binary: `ringcache node` runs a cache node, `ringcache balancer` the control
//! plane and router, `ringcache local` a whole cluster on this machine, `ringcache cli` talks to
//! any of them. The flags live here; the node runs on `ringcache-net`, the balancer on
//! `ringcache-balancer`, and the command-line client on `ringcache-client` alone.

mod balancer_args;
mod cli;
mod heap_release;
mod local;
mod node_args;

use std::process::ExitCode;

use balancer_args::BalancerArgs;
use clap::{Parser, Subcommand};
use node_args::NodeArgs;
use ringcache_balancer::run_balancer;
use ringcache_net::run_node;
use ringcache_runtime::{allowed_cpus, StopFlag};
use tracing_subscriber::EnvFilter;

/// ringcache: a distributed in-memory cache, thread-per-core on io_uring.
#[derive(Parser, Debug)]
#[command(name = "ringcache", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a cache node: one pinned core per CPU, RESP and native protocol on --port,
    /// one port per core from --core-port-base.
    Node(NodeArgs),
    /// Run the cluster's balancer: nodes join it (`ringcache node --balancer ADDR`), it keeps
    /// the cluster map, detects dead nodes by heartbeat, and routes RESP and native requests of
    /// clients that do not know the ring to the owning node's core.
    Balancer(BalancerArgs),
    /// Talk to a running node from the command line: get, set, del, mget, stats, ...
    Cli(cli::CliArgs),
    /// Start a whole cluster on 127.0.0.1 in one command: a balancer on --port and the nodes
    /// on free ports; prints how to connect; Ctrl-C stops them all.
    Local(local::LocalArgs),
}

/// mimalloc: faster small allocations than glibc for the store's many key/value blocks, no
/// consolidation stalls after mass frees, and huge pages on request (`MIMALLOC_LARGE_OS_PAGES=1`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn init_logging() {
    let filter = EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| {
            EnvFilter::new(
                "warn,ringcache=info,ringcache_net=info,ringcache_node_core=info,ringcache_balancer=info",
            )
        });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Stops `stop` on SIGINT or SIGTERM (a second signal exits at once).
fn stop_on_signals(stop: StopFlag) -> anyhow::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    std::thread::Builder::new()
        .name("ringcache-signals".into())
        .spawn(move || {
            let mut seen = 0;
            for sig in signals.forever() {
                seen += 1;
                if seen > 1 {
                    std::process::exit(128 + sig);
                }
                tracing::info!(signal = sig, "stopping: draining connections");
                stop.stop();
            }
        })?;
    Ok(())
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Node(args) => {
            let cfg = args.config(&allowed_cpus()).map_err(anyhow::Error::msg)?;
            let stop = StopFlag::default();
            stop_on_signals(stop.clone())?;
            heap_release::start(stop.clone());
            run_node(cfg, stop)
        }
        Command::Balancer(args) => {
            let stop = StopFlag::default();
            stop_on_signals(stop.clone())?;
            run_balancer(args.config(), stop)
        }
        Command::Cli(args) => {
            // A command-line tool whose reader went away (`ringcache cli cluster | head`) ends
            // quietly, as other tools do, instead of failing on the closed pipe.
            // SAFETY: restoring the default action of a signal before any thread is started;
            // no handler runs Rust code.
            unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
            cli::run(args)
        }
        Command::Local(args) => local::run(args),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ringcache: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
