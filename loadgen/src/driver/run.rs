//! Run coordination: the state the threads share with the main thread, spawning one thread per
//! `--threads`, each thread's setup and prefill before the common start at the barrier, and
//! joining the threads and merging their figures.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex};

use anyhow::Context;

use super::stats::{Live, Phase, ThreadStats};
use super::worker::Worker;
use super::{RunConfig, PREFILL_DEPTH};
use crate::sys::{self, now_ns};
use crate::workload::PrefillRange;

/// State shared by the threads and the main thread.
pub struct Shared {
    /// One progress record per thread.
    pub live: Vec<Mutex<Live>>,
    /// Set to stop every thread early (a thread failed, or the user interrupted).
    pub abort: AtomicBool,
    /// Passed by every thread once prefill is done, so all start measuring together.
    pub barrier: Barrier,
}

impl Shared {
    /// Shared state for `threads` threads.
    pub fn new(threads: usize) -> Self {
        Shared {
            live: (0..threads).map(|_| Mutex::new(Live::default())).collect(),
            abort: AtomicBool::new(false),
            barrier: Barrier::new(threads),
        }
    }
}

/// Runs thread `tid`: connect, prefill its share, wait at the barrier, run, return its figures.
pub fn run_thread(cfg: &RunConfig, shared: &Shared, tid: usize) -> anyhow::Result<ThreadStats> {
    let setup = setup_and_prefill(cfg, shared, tid);
    if setup.is_err() {
        shared.abort.store(true, Ordering::SeqCst);
    }
    shared.barrier.wait();
    let mut w = setup?;
    if shared.abort.load(Ordering::SeqCst) {
        anyhow::bail!("stopped: another thread failed");
    }
    w.run()?;
    w.publish();
    w.set_phase(Phase::Done);
    Ok(w.stats)
}

/// The threads of a run, started by `spawn`.
pub struct Running {
    /// Progress records and the abort flag.
    pub shared: Arc<Shared>,
    /// One handle per thread.
    pub handles: Vec<std::thread::JoinHandle<anyhow::Result<ThreadStats>>>,
}

impl Running {
    /// Whether every thread has finished.
    pub fn finished(&self) -> bool {
        self.handles.iter().all(|h| h.is_finished())
    }

    /// Waits for every thread and merges their figures; the first thread error is returned.
    pub fn join(self) -> anyhow::Result<ThreadStats> {
        let mut total = ThreadStats::default();
        let mut failure = None;
        for h in self.handles {
            match h.join() {
                Ok(Ok(st)) => total.merge(&st),
                Ok(Err(e)) => {
                    failure.get_or_insert(e);
                }
                Err(_) => {
                    failure.get_or_insert(anyhow::anyhow!("a loadgen thread panicked"));
                }
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(total),
        }
    }
}

/// Starts one thread per `cfg.threads`.
pub fn spawn(cfg: Arc<RunConfig>) -> anyhow::Result<Running> {
    let shared = Arc::new(Shared::new(cfg.threads));
    let mut handles = Vec::new();
    for tid in 0..cfg.threads {
        let (cfg, sh) = (Arc::clone(&cfg), Arc::clone(&shared));
        let h = std::thread::Builder::new()
            .name(format!("loadgen-{tid}"))
            .spawn(move || run_thread(&cfg, &sh, tid));
        match h {
            Ok(h) => handles.push(h),
            Err(e) => {
                shared.abort.store(true, Ordering::SeqCst);
                return Err(e).context("spawning a loadgen thread");
            }
        }
    }
    Ok(Running { shared, handles })
}

fn setup_and_prefill<'a>(
    cfg: &'a RunConfig,
    shared: &'a Shared,
    tid: usize,
) -> anyhow::Result<Worker<'a>> {
    if !cfg.cpus.is_empty() {
        let cpu = cfg.cpus[tid % cfg.cpus.len()];
        sys::pin_to_cpu(cpu)
            .map_err(|e| anyhow::anyhow!("pinning thread {tid} to CPU {cpu}: {e}"))?;
    }
    if cfg.rate.is_some() {
        sys::tight_timer_slack();
    }
    let mut w = Worker::new(cfg, shared, tid)?;
    if cfg.prefill {
        w.set_phase(Phase::Prefill);
        let t0 = now_ns();
        w.last_reply = t0;
        w.prefill = Some(PrefillRange::new(cfg.spec.keys, tid, cfg.threads));
        w.depth = cfg.pipeline.max(PREFILL_DEPTH);
        w.run_closed(None)?;
        w.prefill = None;
        w.stats.prefill_ns = now_ns() - t0;
        w.publish();
    }
    Ok(w)
}
