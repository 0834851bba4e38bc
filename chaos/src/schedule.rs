//! Nemeses and their schedule: each fault has a start and an end on the run's timeline; a
//! random schedule is drawn from a seed (one fault at a time, quiet gaps between), so any
//! run can be replayed exactly.

use std::fmt;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::cluster::Target;

/// One kind of fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL at the start, restarted at the end (a node rejoins as a replica).
    Kill(Target),
    /// SIGSTOP at the start, SIGCONT at the end.
    Pause(Target),
    /// Node slot cut from the balancer (two-way, or only node -> balancer).
    NodeFromBalancer {
        /// Node slot.
        node: usize,
        /// Only the node's connections to the balancer are cut.
        one_way: bool,
    },
    /// The primary of the `group`-th group (by id order) cut from its replicas.
    PrimaryFromReplicas {
        /// Index of the group in id order (modulo the group count).
        group: usize,
        /// Only the primary's connections to the replicas are cut.
        one_way: bool,
    },
    /// The workload clients cut from the primary of the `group`-th group.
    ClientsFromPrimary {
        /// Index of the group in id order (modulo the group count).
        group: usize,
    },
    /// These node slots (a minority) cut two-way from the balancer, the clients and the
    /// other nodes (the majority).
    Minority(Vec<usize>),
    /// Every link of the namespace delayed by `ms` ± `ms`/2 (`tc netem` on its loopback).
    Slow {
        /// Mean added delay, ms.
        ms: u32,
    },
    /// A node's links drop `pct` percent of packets both ways.
    Lossy {
        /// Node slot.
        node: usize,
        /// Percent of packets dropped.
        pct: u8,
    },
}

impl Fault {
    /// Whether it needs link faults (a firewall in the namespace).
    pub fn needs_firewall(&self) -> bool {
        !matches!(self, Fault::Kill(_) | Fault::Pause(_) | Fault::Slow { .. })
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = |t: &Target| match t {
            Target::Balancer => "balancer".to_string(),
            Target::Node(i) => format!("n{i}"),
        };
        match self {
            Fault::Kill(x) => write!(f, "kill -9 {} (restart at end)", t(x)),
            Fault::Pause(x) => write!(f, "pause {}", t(x)),
            Fault::NodeFromBalancer { node, one_way } => {
                let dir = if *one_way { "one-way" } else { "two-way" };
                write!(f, "partition n{node} from balancer ({dir})")
            }
            Fault::PrimaryFromReplicas { group, one_way } => {
                let dir = if *one_way { "one-way" } else { "two-way" };
                write!(
                    f,
                    "partition primary of group #{group} from its replicas ({dir})"
                )
            }
            Fault::ClientsFromPrimary { group } => {
                write!(f, "partition clients from primary of group #{group}")
            }
            Fault::Minority(ns) => {
                let names: Vec<String> = ns.iter().map(|n| format!("n{n}")).collect();
                write!(f, "minority [{}] | majority", names.join(" "))
            }
            Fault::Lossy { node, pct } => write!(f, "lossy links of n{node} ({pct}% drop)"),
            Fault::Slow { ms } => write!(f, "slow links ({ms} ms +- {} ms, all)", ms / 2),
        }
    }
}

/// A fault with its window, in seconds since the run started.
#[derive(Clone, Debug, PartialEq)]
pub struct Window {
    /// When the fault starts.
    pub start: f64,
    /// When it heals.
    pub end: f64,
    /// What it is.
    pub fault: Fault,
}

/// Draws a schedule for a run of `duration` seconds over `nodes` node slots: quiet gaps of 4
/// to 10 s and faults of 3 to 15 s, from 5 s in until 15 s before the end; link faults only
/// with `firewall`, slow links only with `netem` (without it a seed draws the same schedule as
/// before slow links existed).
pub fn random(seed: u64, duration: f64, nodes: usize, firewall: bool, netem: bool) -> Vec<Window> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut out = Vec::new();
    let mut t = 5.0;
    let nodes = nodes.max(1);
    loop {
        t += rng.gen_range(4.0..10.0);
        let len: f64 = rng.gen_range(3.0..15.0);
        if t + len > duration - 15.0 {
            break;
        }
        let node = rng.gen_range(0..nodes);
        let kinds = if firewall { 8 } else { 2 };
        let fault = match rng.gen_range(0..kinds) {
            0 => Fault::Kill(if rng.gen_bool(0.2) {
                Target::Balancer
            } else {
                Target::Node(node)
            }),
            1 => Fault::Pause(if rng.gen_bool(0.2) {
                Target::Balancer
            } else {
                Target::Node(node)
            }),
            2 => Fault::NodeFromBalancer {
                node,
                one_way: rng.gen_bool(0.5),
            },
            3 => Fault::PrimaryFromReplicas {
                group: rng.gen_range(0..8),
                one_way: rng.gen_bool(0.5),
            },
            4 => Fault::ClientsFromPrimary {
                group: rng.gen_range(0..8),
            },
            5 => {
                let mut minority = vec![node];
                let other = rng.gen_range(0..nodes);
                if other != node && nodes > 3 {
                    minority.push(other);
                }
                minority.sort_unstable();
                Fault::Minority(minority)
            }
            6 => Fault::Lossy {
                node,
                pct: rng.gen_range(5..30),
            },
            _ => Fault::Kill(Target::Node(node)),
        };
        let fault = if netem && rng.gen_bool(0.1) {
            Fault::Slow {
                ms: rng.gen_range(20..200),
            }
        } else {
            fault
        };
        out.push(Window {
            start: t,
            end: t + len,
            fault,
        });
        t += len;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_replays_its_schedule_and_windows_do_not_overlap() {
        let a = random(42, 600.0, 6, true, false);
        assert_eq!(a, random(42, 600.0, 6, true, false));
        assert_ne!(a, random(43, 600.0, 6, true, false));
        assert!(a.iter().all(|w| !matches!(w.fault, Fault::Slow { .. })));
        assert!(random(42, 600.0, 6, true, true)
            .iter()
            .any(|w| matches!(w.fault, Fault::Slow { .. })));
        assert!(a.len() > 15, "{}", a.len());
        for w in a.windows(2) {
            assert!(w[0].end < w[1].start);
        }
        assert!(a.iter().all(|w| w.end <= 585.0 && w.start >= 5.0));
        assert!(random(1, 600.0, 6, false, false)
            .iter()
            .all(|w| !w.fault.needs_firewall()));
        assert!(random(1, 10.0, 6, true, true).is_empty());
    }
}
