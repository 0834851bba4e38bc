//! Named scenarios: scripted fault sequences — the three the cluster fails today (paused replica
//! then crashed primary, balancer restart, primary cut off from the balancer) and three it passes
//! (smoke: primary killed, replica outage and restart, range move during writes).

use std::time::{Duration, Instant};

use ringcache_client::ClientConfig;
use ringcache_cluster::Role;

use crate::anomaly::Promise;
use crate::checker::DEFAULT_BUDGET;
use crate::cluster::{stat, Cluster, Spec, Target};
use crate::error::{ChaosError, Result};
use crate::history::{Answer, OpKind};
use crate::procs::wait_until;
use crate::run::{Ctx, Event, RunReport};
use crate::workload::{self, record, Conn, Load, Who};

/// A named scenario.
#[derive(Clone, Copy, Debug)]
pub struct Scenario {
    /// Its name (`--scenario NAME`).
    pub name: &'static str,
    /// What it does.
    pub about: &'static str,
    /// Whether the cluster is expected to pass it today.
    pub passes_today: bool,
    run: fn(&mut Ctx) -> Result<()>,
    spec: fn() -> Spec,
}

/// Every scenario.
pub const ALL: [Scenario; 6] = [
    Scenario {
        name: "paused-replica",
        about: "1 primary + 1 replica, ack=all: SET v1; SIGSTOP the replica until declared dead; SET v2 (acked); kill -9 the primary; resume the replica; GET",
        passes_today: false,
        run: paused_replica,
        spec: small,
    },
    Scenario {
        name: "balancer-restart",
        about: "3 primaries + 1 replica each under load: kill -9 the balancer and start it again (up to 3 times); members must keep their ids, groups and roles and the data",
        passes_today: false,
        run: balancer_restart,
        spec: Spec::default,
    },
    Scenario {
        name: "primary-cut-off",
        about: "1 primary + 1 replica, ack=all: cut the primary from the balancer (both ways) until its replica is promoted; a client holding the old map writes to and reads the old primary, a client through the balancer writes and reads the new one",
        passes_today: false,
        run: primary_cut_off,
        spec: small,
    },
    Scenario {
        name: "kill-primary",
        about: "3 primaries + 1 replica each, ack=all, under load: kill -9 a primary, wait for its replica's promotion, restart it (rejoins as replica)",
        passes_today: true,
        run: kill_primary,
        spec: lenient,
    },
    Scenario {
        name: "restart-replica",
        about: "3 primaries + 1 replica each under load: SIGSTOP a replica until dropped, resume it (backlog catch-up), then kill -9 and restart it (full copy)",
        passes_today: true,
        run: restart_replica,
        spec: lenient,
    },
    Scenario {
        name: "range-move",
        about: "3 primaries + 1 replica each under load: a 4th primary joins and takes its ranges while writes flow",
        passes_today: true,
        run: range_move,
        spec: lenient,
    },
];

/// The scenario named `name`.
pub fn find(name: &str) -> Result<Scenario> {
    ALL.iter()
        .find(|s| s.name == name)
        .copied()
        .ok_or_else(|| ChaosError::NoScenario(name.to_string()))
}

fn small() -> Spec {
    Spec {
        primaries: 1,
        replicas: 1,
        missed_heartbeats: 5,
        ..Spec::default()
    }
}

/// Slow failure detection (2.5 s): a loaded CI machine must not declare nodes dead by itself.
fn lenient() -> Spec {
    Spec {
        missed_heartbeats: 25,
        ..Spec::default()
    }
}

impl Scenario {
    /// The cluster it runs on.
    pub fn spec(&self) -> Spec {
        (self.spec)()
    }

    /// Runs it on a fresh cluster (binary `bin`, logs in `dir`, workload seeded by `seed`)
    /// and checks the history.
    pub fn run(
        &self,
        bin: &std::path::Path,
        dir: &std::path::Path,
        isolate: bool,
        seed: u64,
    ) -> Result<RunReport> {
        let load = Load {
            thin_clients: 3,
            resp_clients: 1,
            keys: 8,
            counters: 1,
            rate: 200,
            read_any: false,
            seed,
        };
        let mut ctx = Ctx::new(self.spec(), load, bin, dir, isolate)?;
        ctx.start = Instant::now();
        (self.run)(&mut ctx)?;
        Ok(ctx.finish(self.name, seed, Vec::new(), Promise::Strong, DEFAULT_BUDGET))
    }
}

/// A scripted client recording into the context's history.
struct Scripted {
    conn: Conn,
    client: u32,
}

impl Scripted {
    fn thin(client: u32) -> Scripted {
        let cfg: ClientConfig = workload::thin_config(false).timeout(Duration::from_secs(10));
        Scripted {
            conn: Conn::Thin(None, cfg),
            client,
        }
    }

    fn resp(client: u32) -> Scripted {
        Scripted {
            conn: Conn::Resp(None),
            client,
        }
    }

    /// One attempt.
    fn once(&mut self, ctx: &mut Ctx, key: &str, kind: OpKind) -> Option<Answer> {
        let addr = ctx.cluster.balancer_addr();
        let who = Who {
            client: self.client,
            addr: &addr,
            start: ctx.start,
        };
        record(&mut self.conn, &who, key, kind, None, &mut ctx.ops).0
    }

    /// Attempts until answered or `deadline` passes.
    fn until_ok(
        &mut self,
        ctx: &mut Ctx,
        key: &str,
        kind: OpKind,
        deadline: Duration,
    ) -> Result<Answer> {
        let end = Instant::now() + deadline;
        loop {
            if let Some(a) = self.once(ctx, key, kind.clone()) {
                return Ok(a);
            }
            if Instant::now() > end {
                return Err(ChaosError::Timeout(format!(
                    "{key}: {kind:?} to be answered"
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn set(v: &str) -> OpKind {
    OpKind::Write(v.as_bytes().to_vec())
}

/// Waits until `f` holds for the balancer's map.
fn wait_map(
    ctx: &Ctx,
    what: &str,
    deadline: Duration,
    f: impl Fn(&Cluster, &ringcache_cluster::ClusterMap) -> bool,
) -> Result<()> {
    let c = &ctx.cluster;
    if wait_until(deadline, || c.map().is_ok_and(|m| f(c, &m))) {
        Ok(())
    } else {
        Err(ChaosError::Timeout(what.to_string()))
    }
}

/// Whether node `slot` is `role` in `map`.
fn is(c: &Cluster, m: &ringcache_cluster::ClusterMap, slot: usize, role: Role) -> bool {
    let addr = c.nodes[slot].addr();
    Cluster::places(m).get(&addr).is_some_and(|p| p.2 == role)
}

fn event(ctx: &mut Ctx, start: u64, what: &str) {
    let end = ctx.now();
    ctx.events.push(Event {
        start,
        end,
        what: what.to_string(),
    });
}

fn paused_replica(ctx: &mut Ctx) -> Result<()> {
    let mut s = Scripted::thin(0);
    s.until_ok(ctx, "r0", set("v1"), Duration::from_secs(20))?;
    let t0 = ctx.now();
    ctx.cluster.nodes[1].pause();
    wait_map(
        ctx,
        "the paused replica to be declared dead",
        Duration::from_secs(30),
        |c, m| !Cluster::places(m).contains_key(&c.nodes[1].addr()),
    )?;
    s.until_ok(ctx, "r0", set("v2"), Duration::from_secs(20))?;
    let t1 = ctx.now();
    ctx.cluster.nodes[0].stop();
    ctx.cluster.nodes[1].resume();
    event(ctx, t0, "pause n1 (replica) until declared dead");
    wait_map(
        ctx,
        "the resumed replica to be promoted",
        Duration::from_secs(30),
        |c, m| is(c, m, 1, Role::Primary),
    )?;
    s.until_ok(ctx, "r0", OpKind::Read, Duration::from_secs(30))?;
    event(ctx, t1, "kill -9 n0 (primary)");
    Ok(())
}

fn balancer_restart(ctx: &mut Ctx) -> Result<()> {
    let running = workload::start(&ctx.load, &ctx.cluster.balancer_addr(), ctx.start);
    std::thread::sleep(Duration::from_secs(3));
    for round in 1..=3 {
        let before = Cluster::places(&ctx.cluster.map()?);
        let t0 = ctx.now();
        ctx.cluster.balancer.stop();
        ctx.cluster.restart(Target::Balancer)?;
        let groups = ctx.cluster.spec.primaries;
        let recovered = ctx.recover(Duration::from_secs(60));
        event(
            ctx,
            t0,
            &format!("kill -9 balancer and restart (round {round})"),
        );
        let after = Cluster::places(&ctx.cluster.map()?);
        let what = format!("a balancer restart (round {round}, {groups} groups)");
        if ctx.compare_places(&before, &after, t0, &what) || !recovered {
            break;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    std::thread::sleep(Duration::from_secs(2));
    ctx.ops.extend(running.stop());
    Ok(())
}

fn primary_cut_off(ctx: &mut Ctx) -> Result<()> {
    let mut a = Scripted::thin(0);
    let mut b = Scripted::resp(1);
    b.until_ok(ctx, "r0", set("b1"), Duration::from_secs(20))?;
    a.until_ok(ctx, "r0", OpKind::Read, Duration::from_secs(20))?;
    if !ctx.net.firewall {
        return Err(ChaosError::Cluster(
            "this scenario needs link faults (a network namespace with nftables)".into(),
        ));
    }
    // The primary loses the balancer; clients (and its replica) still reach it.
    let t0 = ctx.now();
    let cuts = ctx.two_way(Target::Node(0), Target::Balancer, 100).to_vec();
    ctx.net.add(cuts)?;
    let waited = wait_map(
        ctx,
        "the replica to be promoted",
        Duration::from_secs(30),
        |c, m| is(c, m, 1, Role::Primary),
    );
    // The client still holds the old map: its write goes to the old primary.
    a.once(ctx, "r0", set("a1"));
    b.until_ok(ctx, "r0", OpKind::Read, Duration::from_secs(20))?;
    b.until_ok(ctx, "r0", set("b2"), Duration::from_secs(20))?;
    a.once(ctx, "r0", OpKind::Read);
    ctx.net.heal()?;
    event(
        ctx,
        t0,
        "partition n0 (primary) from the balancer (two-way)",
    );
    waited
}

fn kill_primary(ctx: &mut Ctx) -> Result<()> {
    let running = workload::start(&ctx.load, &ctx.cluster.balancer_addr(), ctx.start);
    std::thread::sleep(Duration::from_secs(3));
    let t0 = ctx.now();
    ctx.cluster.nodes[0].stop();
    let promoted = wait_map(
        ctx,
        "a replica to replace the killed primary",
        Duration::from_secs(30),
        |c, m| {
            c.groups(m)
                .values()
                .all(|g| g.first() != Some(&0) && !g.is_empty())
        },
    );
    std::thread::sleep(Duration::from_secs(2));
    let restarted = ctx.cluster.restart(Target::Node(0));
    event(ctx, t0, "kill -9 n0 (primary), restart as replica");
    ctx.recover(Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(2));
    ctx.ops.extend(running.stop());
    promoted.and(restarted)
}

fn restart_replica(ctx: &mut Ctx) -> Result<()> {
    let running = workload::start(&ctx.load, &ctx.cluster.balancer_addr(), ctx.start);
    std::thread::sleep(Duration::from_secs(2));
    let replica = ctx.cluster.spec.primaries; // first replica slot
    let map = ctx.cluster.map()?;
    let primary = ctx
        .cluster
        .groups(&map)
        .into_values()
        .find(|g| g.contains(&replica))
        .and_then(|g| g.first().copied())
        .ok_or_else(|| ChaosError::Cluster("the replica has no group".into()))?;
    let paddr = ctx.cluster.nodes[primary].addr();
    let catchups = || stat(&paddr, "repl_backlog_catchups").unwrap_or(0);
    let before = catchups();
    let t0 = ctx.now();
    ctx.cluster.nodes[replica].pause();
    let raddr = ctx.cluster.nodes[replica].addr();
    let dropped = wait_map(
        ctx,
        "the paused replica to be dropped",
        Duration::from_secs(30),
        |_, m| !Cluster::places(m).contains_key(&raddr),
    );
    std::thread::sleep(Duration::from_secs(1));
    ctx.cluster.nodes[replica].resume();
    ctx.recover(Duration::from_secs(60));
    event(
        ctx,
        t0,
        &format!("pause n{replica} (replica) until dropped, resume"),
    );
    let caught_by_backlog = catchups() > before;
    if !caught_by_backlog {
        ctx.notes.push(format!(
            "n{replica} did not catch up from the backlog (repl_backlog_catchups stayed {before})"
        ));
    }
    std::thread::sleep(Duration::from_secs(1));
    let t1 = ctx.now();
    ctx.cluster.nodes[replica].stop();
    std::thread::sleep(Duration::from_secs(1));
    let restarted = ctx.cluster.restart(Target::Node(replica));
    ctx.recover(Duration::from_secs(60));
    event(ctx, t1, &format!("kill -9 n{replica} (replica), restart"));
    std::thread::sleep(Duration::from_secs(2));
    ctx.ops.extend(running.stop());
    dropped.and(restarted)?;
    if caught_by_backlog {
        Ok(())
    } else {
        Err(ChaosError::Cluster("no backlog catch-up happened".into()))
    }
}

fn range_move(ctx: &mut Ctx) -> Result<()> {
    let running = workload::start(&ctx.load, &ctx.cluster.balancer_addr(), ctx.start);
    std::thread::sleep(Duration::from_secs(3));
    let t0 = ctx.now();
    let added = ctx.cluster.add_node(Role::Primary);
    let groups = ctx.cluster.spec.primaries + 1;
    let moved = wait_map(
        ctx,
        "the 4th primary's ranges to move",
        Duration::from_secs(60),
        |_, m| {
            m.groups.len() == groups
                && m.moving.is_none()
                && m.groups.iter().all(|g| g.primary.is_some())
        },
    );
    event(ctx, t0, "a 4th primary joins (range move)");
    // Give the new group a replica, as the others have.
    let replica = ctx.cluster.add_node(Role::Replica);
    ctx.cluster.spec.primaries = groups;
    ctx.recover(Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(2));
    ctx.ops.extend(running.stop());
    added.and(moved).and(replica.map(|_| ()))
}
