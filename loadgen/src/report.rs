//! The final figures: built from the merged thread statistics, printed as a table or as one
//! JSON object.

use std::fmt::Write as _;

use serde::Serialize;

use crate::driver::{ErrorCounts, Refill, RunConfig, ThreadStats};
use crate::latency::LatencySummary;
use crate::protocol::Target;

/// The run's parameters, echoed in the report so a JSON result stands on its own.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigEcho {
    /// Server addresses (one per core for `ringcache`, per core of every primary with
    /// `--cluster`).
    pub addrs: Vec<String>,
    /// Cluster map epoch sent in native request headers (0: not in a cluster).
    pub epoch: u32,
    /// Logical connections.
    pub connections: usize,
    /// Requests in flight per connection.
    pub pipeline: usize,
    /// How closed-loop connections refill their pipeline.
    pub refill: Refill,
    /// Loadgen threads.
    pub threads: usize,
    /// Key space size.
    pub keys: u64,
    /// Bytes per key.
    pub key_size: usize,
    /// Value size or range.
    pub value_size: String,
    /// Fraction of GETs.
    pub get_ratio: f64,
    /// Key distribution.
    pub dist: String,
    /// Base seed.
    pub seed: u64,
    /// Whether the key space was loaded first.
    pub prefill: bool,
    /// Unmeasured seconds before measuring.
    pub warmup_s: f64,
    /// Measured seconds asked for.
    pub duration_s: Option<f64>,
    /// Measured requests asked for.
    pub requests: Option<u64>,
    /// Open-loop rate asked for.
    pub rate: Option<f64>,
    /// Request timeout.
    pub timeout_ms: u64,
    /// CPUs the threads were pinned to.
    pub cpus: Vec<usize>,
}

impl ConfigEcho {
    /// The echo of `cfg`.
    pub fn of(cfg: &RunConfig) -> Self {
        ConfigEcho {
            addrs: cfg.addrs.iter().map(|a| a.to_string()).collect(),
            epoch: cfg.epoch,
            connections: cfg.connections,
            pipeline: cfg.pipeline,
            refill: cfg.refill,
            threads: cfg.threads,
            keys: cfg.spec.keys,
            key_size: cfg.keyspace.key_size(),
            value_size: cfg.spec.value_size.to_string(),
            get_ratio: cfg.spec.get_ratio,
            dist: cfg.spec.dist.to_string(),
            seed: cfg.seed,
            prefill: cfg.prefill,
            warmup_s: cfg.warmup_ns as f64 / 1e9,
            duration_s: cfg.duration_ns.map(|d| d as f64 / 1e9),
            requests: cfg.requests,
            rate: cfg.rate,
            timeout_ms: cfg.timeout_ns / 1_000_000,
            cpus: cfg.cpus.clone(),
        }
    }
}

/// The loadgen's own CPU use over the measured window.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct CpuFigures {
    /// User + system seconds of all loadgen threads.
    pub cpu_s: f64,
    /// CPU seconds per wall second, as a percentage of one core (100 = one core busy).
    pub percent_of_one_core: f64,
    /// Loadgen CPU microseconds spent per completed request.
    pub us_per_op: f64,
}

/// Prefill figures.
#[derive(Debug, Clone, Serialize)]
pub struct PrefillFigures {
    /// Keys written.
    pub keys: u64,
    /// Seconds it took.
    pub seconds: f64,
    /// Keys per second.
    pub ops_per_s: f64,
    /// Errors while loading.
    pub errors: ErrorCounts,
}

/// Open-loop figures.
#[derive(Debug, Clone, Serialize)]
pub struct OpenLoopFigures {
    /// Requests per second asked for.
    pub rate: f64,
    /// Throughput reached as a fraction of the rate.
    pub achieved_fraction: f64,
    /// Most requests due but unsent at one time (summed over threads).
    pub max_backlog: u64,
    /// Requests sent more than 1 ms after they were due.
    pub late_sends: u64,
}

/// Everything the run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Loadgen version.
    pub loadgen_version: &'static str,
    /// Protocol spoken.
    pub target: Target,
    /// `closed` or `open`.
    pub mode: &'static str,
    /// The parameters.
    pub config: ConfigEcho,
    /// Length of the measured window in seconds.
    pub duration_s: f64,
    /// Replies received in the window.
    pub ops: u64,
    /// Replies per second.
    pub throughput_ops_per_s: f64,
    /// GET replies.
    pub gets: u64,
    /// SET replies.
    pub sets: u64,
    /// GETs that found a value.
    pub hits: u64,
    /// hits / gets (`null` without GETs).
    pub hit_ratio: Option<f64>,
    /// Latency figures (from the due time in open loop).
    pub latency_us: LatencySummary,
    /// Errors by kind (warmup and measurement).
    pub errors: ErrorCounts,
    /// Loadgen CPU use.
    pub cpu: CpuFigures,
    /// Prefill figures, when `--prefill` was given.
    pub prefill: Option<PrefillFigures>,
    /// Open-loop figures, when `--rate` was given.
    pub open_loop: Option<OpenLoopFigures>,
}

/// CPU figures for `cpu_ns` of CPU over `window_ns` of wall time and `ops` requests.
pub fn cpu_figures(cpu_ns: u64, window_ns: u64, ops: u64) -> CpuFigures {
    CpuFigures {
        cpu_s: cpu_ns as f64 / 1e9,
        percent_of_one_core: if window_ns == 0 {
            0.0
        } else {
            cpu_ns as f64 / window_ns as f64 * 100.0
        },
        us_per_op: if ops == 0 {
            0.0
        } else {
            cpu_ns as f64 / 1000.0 / ops as f64
        },
    }
}

impl Report {
    /// Builds the report from the merged statistics of every thread.
    pub fn build(cfg: &RunConfig, st: &ThreadStats) -> Report {
        let secs = st.window_ns as f64 / 1e9;
        let tput = if secs > 0.0 {
            st.ops as f64 / secs
        } else {
            0.0
        };
        Report {
            loadgen_version: env!("CARGO_PKG_VERSION"),
            target: cfg.target,
            mode: if cfg.rate.is_some() { "open" } else { "closed" },
            config: ConfigEcho::of(cfg),
            duration_s: secs,
            ops: st.ops,
            throughput_ops_per_s: tput,
            gets: st.gets,
            sets: st.sets,
            hits: st.hits,
            hit_ratio: (st.gets > 0).then(|| st.hits as f64 / st.gets as f64),
            latency_us: st.hist.summary(),
            errors: st.errors.clone(),
            cpu: cpu_figures(st.cpu_ns, st.window_ns, st.ops),
            prefill: cfg.prefill.then(|| {
                let s = st.prefill_ns as f64 / 1e9;
                PrefillFigures {
                    keys: st.prefill_ops,
                    seconds: s,
                    ops_per_s: if s > 0.0 {
                        st.prefill_ops as f64 / s
                    } else {
                        0.0
                    },
                    errors: st.prefill_errors.clone(),
                }
            }),
            open_loop: cfg.rate.map(|rate| OpenLoopFigures {
                rate,
                achieved_fraction: if rate > 0.0 { tput / rate } else { 0.0 },
                max_backlog: st.max_backlog,
                late_sends: st.late_sends,
            }),
        }
    }

    /// One JSON object.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// The human-readable table.
    pub fn to_table(&self) -> String {
        let mut s = String::new();
        let c = &self.config;
        let _ = writeln!(
            s,
            "ringcache-loadgen {}: target {} at {}{}",
            self.loadgen_version,
            self.target,
            c.addrs.join(", "),
            if c.epoch > 0 {
                format!(" (cluster map epoch {})", c.epoch)
            } else {
                String::new()
            }
        );
        let _ = writeln!(
            s,
            "  {} loop, {} connections x pipeline {}{}, {} thread(s){}",
            self.mode,
            c.connections,
            c.pipeline,
            if self.mode == "closed" && c.pipeline > 1 {
                format!(
                    " ({} refill)",
                    if c.refill == Refill::Batch {
                        "batch"
                    } else {
                        "window"
                    }
                )
            } else {
                String::new()
            },
            c.threads,
            if c.cpus.is_empty() {
                String::new()
            } else {
                format!(" on CPUs {:?}", c.cpus)
            }
        );
        let _ = writeln!(
            s,
            "  {} keys of {} B, values {} B, {:.0}% GET, {} keys, seed {}",
            c.keys,
            c.key_size,
            c.value_size,
            c.get_ratio * 100.0,
            c.dist,
            c.seed
        );
        if let Some(p) = &self.prefill {
            let _ = writeln!(
                s,
                "  prefill: {} keys in {:.2} s ({:.0} keys/s){}",
                p.keys,
                p.seconds,
                p.ops_per_s,
                if p.errors.total() > 0 {
                    format!(", {} errors", p.errors.total())
                } else {
                    String::new()
                }
            );
        }
        let _ = writeln!(s);
        let row = |s: &mut String, k: &str, v: String| {
            let _ = writeln!(s, "  {k:<22} {v}");
        };
        row(&mut s, "measured", format!("{:.2} s", self.duration_s));
        row(&mut s, "requests", self.ops.to_string());
        row(
            &mut s,
            "throughput",
            format!("{:.0} ops/s", self.throughput_ops_per_s),
        );
        if let Some(o) = &self.open_loop {
            row(
                &mut s,
                "  of target rate",
                format!(
                    "{:.1}% of {:.0}/s (max backlog {}, {} sent >1 ms late)",
                    o.achieved_fraction * 100.0,
                    o.rate,
                    o.max_backlog,
                    o.late_sends
                ),
            );
        }
        row(
            &mut s,
            "gets / sets",
            format!("{} / {}", self.gets, self.sets),
        );
        row(
            &mut s,
            "hit ratio",
            match self.hit_ratio {
                Some(h) => format!("{:.2}%", h * 100.0),
                None => "-".into(),
            },
        );
        let l = &self.latency_us;
        let _ = writeln!(
            s,
            "\n  latency (us){}    p50 {:>9.1}   p90 {:>9.1}   p99 {:>9.1}   p99.9 {:>9.1}   max {:>9.1}   mean {:.1}",
            if self.mode == "open" { ", from due time" } else { "" },
            l.p50_us,
            l.p90_us,
            l.p99_us,
            l.p999_us,
            l.max_us,
            l.mean_us
        );
        let e = &self.errors;
        let _ = writeln!(s);
        row(
            &mut s,
            "errors",
            format!(
                "timeouts {}, connection {}, connect failed {}, protocol {}, server {}, redirect {} (requests lost {})",
                e.timeouts,
                e.connection_errors,
                e.connect_failures,
                e.protocol_errors,
                e.server_errors,
                e.redirects,
                e.lost_requests
            ),
        );
        if !e.server_error_kinds.is_empty() {
            let kinds: Vec<String> = e
                .server_error_kinds
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            row(&mut s, "  server errors", kinds.join(", "));
        }
        if let Some(first) = &e.first_error {
            row(&mut s, "  first error", first.clone());
        }
        row(
            &mut s,
            "loadgen cpu",
            format!(
                "{:.2} s = {:.0}% of one core, {:.2} us/op",
                self.cpu.cpu_s, self.cpu.percent_of_one_core, self.cpu.us_per_op
            ),
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::{KeyDist, KeySpace, ValueSize, WorkloadSpec};

    fn cfg() -> RunConfig {
        RunConfig {
            target: Target::Resp,
            addrs: vec!["127.0.0.1:6379".parse().unwrap()],
            route: Default::default(),
            epoch: 0,
            connections: 50,
            pipeline: 16,
            refill: Refill::Batch,
            threads: 1,
            rate: None,
            keyspace: KeySpace::new(1000, 16).unwrap(),
            spec: WorkloadSpec {
                keys: 1000,
                get_ratio: 0.9,
                dist: KeyDist::Uniform,
                value_size: ValueSize { min: 32, max: 32 },
            },
            seed: 1,
            prefill: true,
            duration_ns: Some(10_000_000_000),
            requests: None,
            warmup_ns: 0,
            timeout_ns: 5_000_000_000,
            cpus: vec![],
        }
    }

    #[test]
    fn report_figures_and_formats() {
        let mut st = ThreadStats::default();
        for i in 0..1000 {
            st.hist.record(10_000 + i);
        }
        st.ops = 1000;
        st.gets = 900;
        st.hits = 450;
        st.sets = 100;
        st.window_ns = 2_000_000_000;
        st.cpu_ns = 1_000_000_000;
        st.prefill_ops = 1000;
        st.prefill_ns = 500_000_000;
        st.errors.timeouts = 3;
        let r = Report::build(&cfg(), &st);
        assert_eq!(r.throughput_ops_per_s, 500.0);
        assert_eq!(r.hit_ratio, Some(0.5));
        assert_eq!(r.cpu.percent_of_one_core, 50.0);
        assert_eq!(r.cpu.us_per_op, 1000.0);
        let json: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(json["throughput_ops_per_s"], 500.0);
        assert_eq!(json["errors"]["timeouts"], 3);
        assert_eq!(json["prefill"]["keys"], 1000);
        assert_eq!(json["target"], "resp");
        assert!(json["latency_us"]["p99_us"].as_f64().unwrap() > 10.0);
        assert!(json["open_loop"].is_null());
        let t = r.to_table();
        assert!(t.contains("throughput             500 ops/s"), "{t}");
        assert!(t.contains("hit ratio              50.00%"), "{t}");
        assert!(t.contains("timeouts 3"), "{t}");
        let z = cpu_figures(0, 0, 0);
        assert_eq!(z.percent_of_one_core, 0.0);
        assert_eq!(z.us_per_op, 0.0);
    }
}
