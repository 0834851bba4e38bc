//! One run's history: every operation a workload client invoked, with its outcome and its
//! monotonic invoke and complete times (nanoseconds since the run started), as the checkers
//! read it.

use std::fmt;

/// Nanoseconds since the run started (monotonic clock).
pub type Nanos = u64;

/// The complete time of an operation whose outcome is unknown: it may take effect at any
/// time after its invocation, or never.
pub const NEVER: Nanos = u64::MAX;

/// What an operation asked for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum OpKind {
    /// `GET` (or `GETV`).
    Read,
    /// `SET key value`, unconditional; values are unique per run.
    Write(Vec<u8>),
    /// `DEL key`.
    Delete,
    /// `SET key new IF-VERSION v` where `v` is the version the same client read with `expect`.
    Cas {
        /// The value whose version the request named.
        expect: Vec<u8>,
        /// The value written when the version matched.
        new: Vec<u8>,
    },
    /// `INCR key`.
    Incr,
}

/// What an answered operation returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// A write or delete was acknowledged.
    Done,
    /// A read returned this value (`None`: the key was absent).
    Value(Option<Vec<u8>>),
    /// A compare-and-set was stored (`true`) or refused because the version differed.
    Stored(bool),
    /// `INCR` answered the new count.
    Count(i64),
}

/// How an operation ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Answered.
    Ok(Answer),
    /// Certainly not applied (e.g. refused before any node saw it).
    Fail,
    /// Timed out or the connection broke: it may take effect or not.
    Unknown,
}

/// One operation of the history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Op {
    /// The workload client that ran it.
    pub client: u32,
    /// The key.
    pub key: String,
    /// What it asked for.
    pub kind: OpKind,
    /// How it ended.
    pub outcome: Outcome,
    /// When it was invoked.
    pub invoke: Nanos,
    /// When it was answered ([`NEVER`] when the outcome is unknown).
    pub complete: Nanos,
}

impl Op {
    /// Whether this op changes the key when it takes effect (SET, DEL, CAS, INCR).
    pub fn is_write(&self) -> bool {
        !matches!(self.kind, OpKind::Read)
    }

    /// Whether it was answered with success.
    pub fn is_ok(&self) -> bool {
        matches!(self.outcome, Outcome::Ok(_))
    }

    /// The value this op writes when it takes effect (`Some(None)` for a delete; `None` for
    /// reads and increments, whose written value is not unique).
    pub fn written(&self) -> Option<Option<&[u8]>> {
        match &self.kind {
            OpKind::Write(v) => Some(Some(v)),
            OpKind::Cas { new, .. } => Some(Some(new)),
            OpKind::Delete => Some(None),
            OpKind::Read | OpKind::Incr => None,
        }
    }

    /// Whether it is an acknowledged write (SET or DEL answered, CAS answered stored).
    pub fn is_acked_write(&self) -> bool {
        match (&self.kind, &self.outcome) {
            (OpKind::Write(_) | OpKind::Delete, Outcome::Ok(_)) => true,
            (OpKind::Cas { .. }, Outcome::Ok(Answer::Stored(s))) => *s,
            _ => false,
        }
    }

    /// The value a read returned, if this is an answered read.
    pub fn read_value(&self) -> Option<Option<&[u8]>> {
        match (&self.kind, &self.outcome) {
            (OpKind::Read, Outcome::Ok(Answer::Value(v))) => Some(v.as_deref()),
            _ => None,
        }
    }
}

/// Shows a value for reports (lossy UTF-8, `nil` for absent).
pub fn show(v: Option<&[u8]>) -> String {
    match v {
        Some(b) => String::from_utf8_lossy(b).into_owned(),
        None => "nil".into(),
    }
}

fn ms(t: Nanos) -> String {
    if t == NEVER {
        "?".into()
    } else {
        format!("{:.3}s", t as f64 / 1e9)
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match &self.kind {
            OpKind::Read => "GET".to_string(),
            OpKind::Write(v) => format!("SET {}", show(Some(v))),
            OpKind::Delete => "DEL".to_string(),
            OpKind::Cas { expect, new } => {
                format!(
                    "SET {} IF-VERSION(of {})",
                    show(Some(new)),
                    show(Some(expect))
                )
            }
            OpKind::Incr => "INCR".to_string(),
        };
        let out = match &self.outcome {
            Outcome::Ok(Answer::Done) => "ok".to_string(),
            Outcome::Ok(Answer::Value(v)) => format!("-> {}", show(v.as_deref())),
            Outcome::Ok(Answer::Stored(s)) => format!("-> stored {s}"),
            Outcome::Ok(Answer::Count(n)) => format!("-> {n}"),
            Outcome::Fail => "failed".to_string(),
            Outcome::Unknown => "unknown (timeout)".to_string(),
        };
        write!(
            f,
            "[{} .. {}] client {} {} {} {}",
            ms(self.invoke),
            ms(self.complete),
            self.client,
            self.key,
            what,
            out
        )
    }
}

/// Groups the ops of a history by key (each key's ops in invoke order).
pub fn by_key(ops: &[Op]) -> std::collections::BTreeMap<&str, Vec<&Op>> {
    let mut m: std::collections::BTreeMap<&str, Vec<&Op>> = Default::default();
    for op in ops {
        m.entry(op.key.as_str()).or_default().push(op);
    }
    for v in m.values_mut() {
        v.sort_by_key(|o| o.invoke);
    }
    m
}
