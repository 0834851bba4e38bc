//! `engine-report`: measures one core's store (`ringcache_engine::Shard`) in one run and prints a
//! markdown report with targets and PASS/MISS: throughput against `lru::LruCache`, memory
//! overhead per entry, hit ratio of each eviction policy against `moka`, and expiry reclamation.
//!
//! `cargo run --release -p ringcache-bench --bin engine-report`
//!
//! Progress goes to stderr, the report to stdout. Without arguments every section runs, each in
//! a fresh child process (this binary with the section's name as argument; `throughput` in
//! several, whose runs are pooled); with section names (`throughput`, `memory`, `hits`,
//! `expiry`) only those run, in this process.
//!
//! Modules: `alloc` (the counting global allocator, VmRSS), one per section (`throughput`,
//! `memory`, `hit_ratio`, `expiry` with its `ticker`), each measuring and then printing its
//! part of the report; this file holds the section driver and the shared helpers.

mod alloc;
mod expiry;
mod hit_ratio;
mod memory;
mod throughput;
mod ticker;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use ringcache_bench::{Data, KEY_LEN, VALUE_LEN};

use expiry::{expiry, report_expiry};
use hit_ratio::{hit_ratios, report_hits};
use memory::{memory, report_memory};
use throughput::{add_raw, report_throughput, throughput, to_raw, PROCESSES};

const N: usize = 1_000_000;

fn pass(ok: bool) -> &'static str {
    if ok {
        "PASS"
    } else {
        "MISS"
    }
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

// ---------------------------------------------------------------------------------------------

/// The sections, in the order they are reported. Each runs in its own child process (this
/// binary with the section's name as argument), so that none sees the heap another left behind.
const SECTIONS: [&str; 4] = ["throughput", "memory", "hits", "expiry"];

/// The argument under which a child measures throughput and prints its raw runs for the parent.
const THROUGHPUT_RAW: &str = "throughput-raw";

fn main() {
    // glibc's fastbins make the first large free after a mass expiry consolidate every freed
    // small block at once (measured: 8 ms in one `advance`); the node ships with mimalloc,
    // which has no such pass. Turning fastbins off keeps this report about the engine.
    // SAFETY: mallopt only changes glibc's tunables; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MXFAST, 0);
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() == 1 && args[0] == THROUGHPUT_RAW {
        print!("{}", to_raw(&throughput(&Data::new(N))));
        return;
    }
    if let Some(bad) = args.iter().find(|a| !SECTIONS.contains(&a.as_str())) {
        eprintln!(
            "unknown section '{bad}'; usage: engine-report [{}]...",
            SECTIONS.join(" | ")
        );
        std::process::exit(2);
    }
    if args.is_empty() {
        run_all();
    } else {
        let data = Data::new(N);
        let mut r = String::new();
        for section in &args {
            run_section(&mut r, section, &data);
        }
        print!("{r}");
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

fn run_all() {
    let t0 = Instant::now();
    let load0 = loadavg();
    let exe = std::env::current_exe().expect("own path");
    let child = |arg: &str| {
        let out = std::process::Command::new(&exe)
            .arg(arg)
            .stderr(std::process::Stdio::inherit())
            .output()
            .expect("run a section");
        if !out.status.success() {
            eprintln!("section {arg} failed: {}", out.status);
            std::process::exit(1);
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let mut body = String::new();
    for section in SECTIONS {
        if section == "throughput" {
            let mut thr = throughput::empty();
            for _ in 0..PROCESSES {
                if add_raw(&mut thr, &child(THROUGHPUT_RAW)).is_none() {
                    eprintln!("section {section}: unreadable runs from a child");
                    std::process::exit(1);
                }
            }
            report_throughput(&mut body, &thr);
        } else {
            body.push_str(&child(section));
        }
    }
    let mut r = String::new();
    let w = &mut r;
    let _ = writeln!(w, "# ringcache engine report\n");
    let _ = writeln!(
        w,
        "`cargo run --release -p ringcache-bench --bin engine-report` — {N} entries of \
         {KEY_LEN}-byte keys and {VALUE_LEN}-byte values, one thread per measurement, {} CPUs; \
         each section in a fresh process; whole run {:.0} s; 1-minute load average {} at the \
         start, {} at the end (a load above ~1 means other processes competed for the CPUs and \
         timings are noisier).",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        t0.elapsed().as_secs_f64(),
        load0,
        loadavg()
    );
    print!("{r}{body}");
}

fn run_section(w: &mut String, section: &str, data: &Data) {
    match section {
        "throughput" => report_throughput(w, &throughput(data)),
        "memory" => {
            eprintln!("memory");
            report_memory(w, &memory(data));
        }
        "hits" => report_hits(w, &hit_ratios(data)),
        "expiry" => {
            eprintln!("expiry (staggered)");
            let a = expiry(data, false);
            eprintln!("expiry (same instant)");
            let b = expiry(data, true);
            report_expiry(w, &a, &b);
        }
        _ => unreachable!("checked in main"),
    }
}
