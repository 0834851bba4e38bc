//! One run: the context a run or scenario drives (cluster, network, history, fault events),
//! faults applied and healed, and the finish — heal everything, let the cluster settle,
//! compare copies by DIGEST, read every key once more, and check the history.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::anomaly::{Anomaly, Kind, Promise};
use crate::checker::{check, Checked};
use crate::cluster::{digest, Cluster, Place, Spec, Target, BALANCER_GID, NODE_GID};
use crate::counts::FINAL_CLIENT;
use crate::error::Result;
use crate::history::{Nanos, Op};
use crate::netns::{Cut, Net, CLIENTS_IP, CLIENT_GID};
use crate::schedule::{Fault, Window};
use crate::workload::{self, since, Load};

/// A fault as it happened.
#[derive(Clone, Debug)]
pub struct Event {
    /// When it started (run time).
    pub start: Nanos,
    /// When it healed.
    pub end: Nanos,
    /// What it was, with the processes it hit.
    pub what: String,
}

/// Everything a run produced, for the report and the timeline.
#[derive(Debug)]
pub struct RunReport {
    /// Scenario name, or `random`.
    pub name: String,
    /// Seed of the schedule and the workload.
    pub seed: u64,
    /// The cluster.
    pub spec: Spec,
    /// The workload.
    pub load: Load,
    /// The promise the run is held to.
    pub promise: Promise,
    /// The planned schedule (random runs).
    pub schedule: Vec<Window>,
    /// Faults as they happened.
    pub events: Vec<Event>,
    /// The history.
    pub ops: Vec<Op>,
    /// What the checker found.
    pub checked: Checked,
    /// Remarks: isolation, skipped faults, slow recoveries.
    pub notes: Vec<String>,
    /// Run length, seconds.
    pub seconds: f64,
    /// Where logs and the timeline went.
    pub dir: PathBuf,
}

impl RunReport {
    /// The anomalies that break the run's promise.
    pub fn violations(&self) -> Vec<&Anomaly> {
        self.checked.violations(self.promise)
    }
}

/// A fault in force, to heal.
#[derive(Debug)]
pub struct Applied {
    fault: Fault,
    what: String,
    start: Nanos,
}

/// What a run drives.
pub struct Ctx {
    /// The cluster.
    pub cluster: Cluster,
    /// The namespace and its link faults.
    pub net: Net,
    /// Time zero of the history.
    pub start: Instant,
    /// The history so far (scripted operations and stopped workloads).
    pub ops: Vec<Op>,
    /// Faults so far.
    pub events: Vec<Event>,
    /// Remarks for the report.
    pub notes: Vec<String>,
    /// Anomalies found outside the history (membership changes).
    pub extra: Vec<Anomaly>,
    /// The workload (its keys are read at the end).
    pub load: Load,
}

impl Ctx {
    /// Enters the namespace (when `isolate`), starts the cluster, logs to `dir`.
    pub fn new(spec: Spec, load: Load, bin: &Path, dir: &Path, isolate: bool) -> Result<Ctx> {
        raise_memlock();
        let net = Net::enter(isolate, &crate::cluster::identities());
        let notes = net.notes.clone();
        let cluster = Cluster::start(spec, bin, dir)?;
        Ok(Ctx {
            cluster,
            net,
            start: Instant::now(),
            ops: Vec::new(),
            events: Vec::new(),
            notes,
            extra: Vec::new(),
            load,
        })
    }

    /// Run time now.
    pub fn now(&self) -> Nanos {
        since(self.start)
    }

    fn gid(t: Target) -> u32 {
        match t {
            Target::Balancer => BALANCER_GID,
            Target::Node(i) => NODE_GID + i as u32,
        }
    }

    /// Cuts (or makes lossy, `pct` < 100) the links between `a` and `b` both ways.
    pub fn two_way(&self, a: Target, b: Target, pct: u8) -> [Cut; 2] {
        [
            Cut {
                from_gid: Ctx::gid(a),
                to: self.cluster.proc(b).ip,
                loss_pct: pct,
            },
            Cut {
                from_gid: Ctx::gid(b),
                to: self.cluster.proc(a).ip,
                loss_pct: pct,
            },
        ]
    }

    /// The primary and replicas (slots) of the `g`-th group in id order.
    fn group(&self, g: usize) -> Option<(usize, Vec<usize>)> {
        let map = self.cluster.map().ok()?;
        let groups: Vec<Vec<usize>> = self.cluster.groups(&map).into_values().collect();
        let members = groups.get(g % groups.len().max(1))?;
        let primary = *members.first()?;
        Some((primary, members[1..].to_vec()))
    }

    /// Starts `fault`; `None` (with a note) when it cannot be made now.
    pub fn apply(&mut self, fault: &Fault) -> Result<Option<Applied>> {
        if fault.needs_firewall() && !self.net.firewall {
            self.notes.push(format!("skipped (no firewall): {fault}"));
            return Ok(None);
        }
        if matches!(fault, Fault::Slow { .. }) && !self.net.netem {
            self.notes.push(format!("skipped (no tc netem): {fault}"));
            return Ok(None);
        }
        let nodes = self.cluster.nodes.len();
        let what = match fault {
            Fault::Kill(t) => {
                self.cluster.proc_mut(*t).stop();
                fault.to_string()
            }
            Fault::Pause(t) => {
                self.cluster.proc_mut(*t).pause();
                fault.to_string()
            }
            Fault::Slow { ms } => {
                self.net.slow(*ms)?;
                fault.to_string()
            }
            Fault::NodeFromBalancer { node, one_way } => {
                let n = Target::Node(node % nodes);
                let mut cuts = self.two_way(n, Target::Balancer, 100).to_vec();
                if *one_way {
                    cuts.truncate(1);
                }
                self.net.add(cuts)?;
                fault.to_string()
            }
            Fault::PrimaryFromReplicas { group, one_way } => {
                let Some((p, rs)) = self.group(*group) else {
                    self.notes.push(format!("skipped (no map): {fault}"));
                    return Ok(None);
                };
                let mut cuts = Vec::new();
                for r in &rs {
                    let c = self.two_way(Target::Node(p), Target::Node(*r), 100);
                    cuts.push(c[0].clone());
                    if !one_way {
                        cuts.push(c[1].clone());
                    }
                }
                self.net.add(cuts)?;
                format!("{fault}: n{p} from {rs:?}")
            }
            Fault::ClientsFromPrimary { group } => {
                let Some((p, _)) = self.group(*group) else {
                    self.notes.push(format!("skipped (no map): {fault}"));
                    return Ok(None);
                };
                self.net.add([
                    Cut {
                        from_gid: CLIENT_GID,
                        to: self.cluster.nodes[p].ip,
                        loss_pct: 100,
                    },
                    Cut {
                        from_gid: Ctx::gid(Target::Node(p)),
                        to: CLIENTS_IP,
                        loss_pct: 100,
                    },
                ])?;
                format!("{fault}: n{p}")
            }
            Fault::Minority(minority) => {
                let minority: Vec<usize> = minority.iter().map(|m| m % nodes).collect();
                let mut cuts = Vec::new();
                for &a in &minority {
                    let majority = (0..nodes)
                        .filter(|b| !minority.contains(b))
                        .map(Target::Node)
                        .chain([Target::Balancer]);
                    for b in majority {
                        cuts.extend(self.two_way(Target::Node(a), b, 100));
                    }
                    cuts.push(Cut {
                        from_gid: CLIENT_GID,
                        to: self.cluster.nodes[a].ip,
                        loss_pct: 100,
                    });
                    cuts.push(Cut {
                        from_gid: Ctx::gid(Target::Node(a)),
                        to: CLIENTS_IP,
                        loss_pct: 100,
                    });
                }
                self.net.add(cuts)?;
                fault.to_string()
            }
            Fault::Lossy { node, pct } => {
                let a = node % nodes;
                let mut cuts = Vec::new();
                for b in (0..nodes).filter(|b| *b != a).map(Target::Node) {
                    cuts.extend(self.two_way(Target::Node(a), b, *pct));
                }
                cuts.extend(self.two_way(Target::Node(a), Target::Balancer, *pct));
                cuts.push(Cut {
                    from_gid: CLIENT_GID,
                    to: self.cluster.nodes[a].ip,
                    loss_pct: *pct,
                });
                cuts.push(Cut {
                    from_gid: Ctx::gid(Target::Node(a)),
                    to: CLIENTS_IP,
                    loss_pct: *pct,
                });
                self.net.add(cuts)?;
                fault.to_string()
            }
        };
        Ok(Some(Applied {
            fault: fault.clone(),
            what,
            start: self.now(),
        }))
    }

    /// Ends a fault: restarts what was killed, resumes what was paused, removes link faults.
    pub fn heal(&mut self, a: Applied) -> Result<()> {
        let r = match &a.fault {
            Fault::Kill(t) => self.cluster.restart(*t),
            Fault::Pause(t) => {
                self.cluster.proc_mut(*t).resume();
                Ok(())
            }
            Fault::Slow { .. } => self.net.unslow(),
            _ => self.net.heal(),
        };
        self.events.push(Event {
            start: a.start,
            end: self.now(),
            what: a.what,
        });
        r
    }

    /// Waits (up to `deadline`) for the map to be complete again and every node caught up;
    /// notes it when the cluster does not recover in time.
    pub fn recover(&mut self, deadline: Duration) -> bool {
        let spec = &self.cluster.spec;
        let groups = self
            .cluster
            .map()
            .map_or(spec.primaries, |m| m.groups.len().max(spec.primaries));
        let t = Instant::now();
        let ok = self
            .cluster
            .wait_map(groups, spec.replicas, deadline)
            .and_then(|()| {
                let left = deadline.saturating_sub(t.elapsed());
                self.cluster
                    .wait_caught_up(left.max(Duration::from_secs(1)))
            });
        if let Err(e) = ok {
            let at = self.now() as f64 / 1e9;
            self.notes
                .push(format!("at {at:.1}s the cluster had not recovered: {e}"));
            return false;
        }
        true
    }

    /// Records a [`Kind::MembershipReshuffled`] anomaly when a member present `before` a
    /// balancer fault has another id, group or role `after` it; answers whether one did.
    pub fn compare_places(
        &mut self,
        before: &BTreeMap<String, Place>,
        after: &BTreeMap<String, Place>,
        at: Nanos,
        fault: &str,
    ) -> bool {
        let moved: Vec<String> = before
            .iter()
            .filter(|(addr, p)| after.get(*addr) != Some(p))
            .map(|(addr, p)| format!("{addr}: {p:?} -> {:?}", after.get(addr)))
            .collect();
        if moved.is_empty() {
            return false;
        }
        self.extra.push(Anomaly {
            kind: Kind::MembershipReshuffled,
            at,
            key: String::new(),
            detail: format!(
                "after {fault}, members changed (id, group, role): {}",
                moved.join("; ")
            ),
            ops: Vec::new(),
        });
        true
    }

    /// Heals everything, lets the cluster settle, compares copies by DIGEST, reads every
    /// workload key once more, and checks the history.
    pub fn finish(
        mut self,
        name: &str,
        seed: u64,
        schedule: Vec<Window>,
        promise: Promise,
        budget: usize,
    ) -> RunReport {
        let _ = self.net.heal();
        let _ = self.net.unslow();
        for p in std::iter::once(Target::Balancer)
            .chain((0..self.cluster.nodes.len()).map(Target::Node))
            .collect::<Vec<_>>()
        {
            let proc = self.cluster.proc_mut(p);
            if proc.is_paused() {
                proc.resume();
            }
            if !proc.is_running() {
                if let Err(e) = self.cluster.restart(p) {
                    self.notes.push(format!("restart at the end failed: {e}"));
                }
            }
        }
        self.recover(Duration::from_secs(60));
        let divergent = self.divergent(Duration::from_secs(30));
        let end = self.now();
        for (g, detail) in divergent {
            self.extra.push(Anomaly {
                kind: Kind::DivergentCopies,
                at: end,
                key: format!("group {g}"),
                detail,
                ops: Vec::new(),
            });
        }
        let balancer = self.cluster.balancer_addr();
        let unread = workload::final_reads(
            &self.load,
            &balancer,
            self.start,
            FINAL_CLIENT,
            Duration::from_secs(30),
            &mut self.ops,
        );
        if !unread.is_empty() {
            self.notes
                .push(format!("keys unreadable after healing: {unread:?}"));
        }
        self.ops.sort_by_key(|o| o.invoke);
        let mut checked = check(&self.ops, budget);
        checked.add(self.extra.drain(..));
        RunReport {
            name: name.to_string(),
            seed,
            spec: self.cluster.spec.clone(),
            load: self.load.clone(),
            promise,
            schedule,
            events: std::mem::take(&mut self.events),
            ops: std::mem::take(&mut self.ops),
            checked,
            notes: std::mem::take(&mut self.notes),
            seconds: self.start.elapsed().as_secs_f64(),
            dir: self.cluster.dir().to_path_buf(),
        }
    }

    /// Groups whose members still answer different DIGESTs after `deadline`.
    fn divergent(&self, deadline: Duration) -> Vec<(u32, String)> {
        let mut last = Vec::new();
        crate::procs::wait_until(deadline, || {
            last.clear();
            let Ok(map) = self.cluster.map() else {
                return false;
            };
            for (g, slots) in self.cluster.groups(&map) {
                let ds: Vec<(String, Option<Vec<u64>>)> = slots
                    .iter()
                    .map(|s| {
                        let n = &self.cluster.nodes[*s];
                        (n.name.clone(), digest(&n.addr()).ok())
                    })
                    .collect();
                let same = ds.iter().all(|d| d.1.is_some() && d.1 == ds[0].1);
                if !same {
                    last.push((g, format!("DIGEST per member: {ds:?}")));
                }
            }
            last.is_empty()
        });
        last
    }
}

/// Runs a random schedule of `seconds` under the workload.
pub fn random_run(
    mut ctx: Ctx,
    seed: u64,
    seconds: f64,
    promise: Promise,
    budget: usize,
) -> Result<RunReport> {
    let (firewall, netem) = (ctx.net.firewall, ctx.net.netem);
    let nodes = ctx.cluster.nodes.len();
    let schedule = crate::schedule::random(seed, seconds, nodes, firewall, netem);
    ctx.start = Instant::now();
    let running = workload::start(&ctx.load, &ctx.cluster.balancer_addr(), ctx.start);
    for w in &schedule {
        sleep_until(ctx.start, w.start);
        // A balancer that is killed or paused must come back with the same members, groups
        // and roles: compare the map around the fault.
        let on_balancer = matches!(
            w.fault,
            Fault::Kill(Target::Balancer) | Fault::Pause(Target::Balancer)
        );
        let before = on_balancer
            .then(|| ctx.cluster.map().ok().map(|m| Cluster::places(&m)))
            .flatten();
        let t0 = ctx.now();
        let applied = ctx.apply(&w.fault)?;
        sleep_until(ctx.start, w.end);
        if let Some(a) = applied {
            if let Err(e) = ctx.heal(a) {
                ctx.notes.push(format!("healing {}: {e}", w.fault));
            }
            ctx.recover(Duration::from_secs(30));
        }
        if let (Some(before), Ok(m)) = (before, ctx.cluster.map()) {
            ctx.compare_places(&before, &Cluster::places(&m), t0, &w.fault.to_string());
        }
    }
    sleep_until(ctx.start, seconds);
    ctx.ops.extend(running.stop());
    Ok(ctx.finish("random", seed, schedule, promise, budget))
}

/// Sleeps until `at` seconds after `start` (returns at once when past).
pub fn sleep_until(start: Instant, at: f64) {
    let target = start + Duration::from_secs_f64(at.max(0.0));
    let now = Instant::now();
    if target > now {
        std::thread::sleep(target - now);
    }
}

/// Raises the locked-memory limit where allowed (io_uring rings of the nodes).
fn raise_memlock() {
    let lim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit reads the struct we pass; failure (not root) is harmless.
    unsafe {
        libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim);
    }
}
