//! Anomalies an operator understands — lost acknowledged writes, stale reads, resurrected
//! deletes, phantom values, divergent copies — and the promises (strong for `--write-ack all`
//! with primary reads, weak otherwise) that say which of them break the contract.

use std::fmt;

use crate::history::{Nanos, Op};

/// The kinds of anomaly a run can show.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// The final read (after healing) misses an acknowledged write: the key holds an older
    /// value, or none although no delete could explain it.
    LostWrite,
    /// A read returned a value older than one acknowledged before the read began.
    StaleRead,
    /// A read answered nil although a SET was acknowledged before it began and no delete can
    /// explain it (the cache forgot).
    ForgottenRead,
    /// A read returned a value written before an acknowledged delete that completed before
    /// the read began.
    ResurrectedDelete,
    /// A read returned a value no write wrote, or one written only after the read ended.
    Phantom,
    /// No order of the key's operations explains every answer (per-key linearizability).
    NotLinearizable,
    /// The linearizability search ran out of budget (neither verdict).
    Undecided,
    /// Members of one group answered different DIGESTs after the faults healed.
    DivergentCopies,
    /// A balancer restart changed a node's group or role (the brief: it never should).
    MembershipReshuffled,
}

impl Kind {
    /// Every kind, in report order.
    pub const ALL: [Kind; 9] = [
        Kind::LostWrite,
        Kind::StaleRead,
        Kind::ForgottenRead,
        Kind::ResurrectedDelete,
        Kind::Phantom,
        Kind::NotLinearizable,
        Kind::Undecided,
        Kind::DivergentCopies,
        Kind::MembershipReshuffled,
    ];

    /// A short label for reports.
    pub fn label(self) -> &'static str {
        match self {
            Kind::LostWrite => "lost acknowledged writes",
            Kind::StaleRead => "stale reads",
            Kind::ForgottenRead => "forgotten reads (nil)",
            Kind::ResurrectedDelete => "resurrected deletes",
            Kind::Phantom => "phantom reads",
            Kind::NotLinearizable => "keys not linearizable",
            Kind::Undecided => "keys undecided (budget)",
            Kind::DivergentCopies => "divergent groups by DIGEST",
            Kind::MembershipReshuffled => "members renumbered/reshuffled by a restart",
        }
    }
}

/// Which promise a run is held to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Promise {
    /// `--write-ack all`, reads from primaries: each key is a linearizable register, no
    /// acknowledged write is lost while an in-sync copy lives, copies converge.
    Strong,
    /// `--write-ack quorum|one` or reads from any replica: every read returns a value some
    /// write wrote and invoked before the read ended (no phantoms), copies converge once the
    /// faults heal, balancer restarts keep groups and roles. Stale reads and lost writes are
    /// counted but allowed.
    Weak,
}

impl Promise {
    /// Whether an anomaly of `kind` breaks this promise.
    pub fn forbids(self, kind: Kind) -> bool {
        match self {
            Promise::Strong => kind != Kind::Undecided,
            Promise::Weak => matches!(
                kind,
                Kind::Phantom | Kind::DivergentCopies | Kind::MembershipReshuffled
            ),
        }
    }
}

/// One anomaly with the operations involved.
#[derive(Clone, Debug)]
pub struct Anomaly {
    /// What kind.
    pub kind: Kind,
    /// When it showed (run time, for the timeline).
    pub at: Nanos,
    /// The key (empty for cluster-wide anomalies).
    pub key: String,
    /// What was seen, in words.
    pub detail: String,
    /// The operations involved (the offending one first).
    pub ops: Vec<Op>,
}

impl fmt::Display for Anomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} at {:.3}s, key {:?}: {}",
            self.kind.label(),
            self.at as f64 / 1e9,
            self.key,
            self.detail
        )?;
        for op in &self.ops {
            writeln!(f, "    {op}")?;
        }
        Ok(())
    }
}
