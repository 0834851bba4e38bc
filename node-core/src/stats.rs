//! STATS names and values: one core's fields (engine counters, connections, replication) and the
//! node totals merged from every core's. The one place the stat names are spelled.

use std::borrow::Cow;

use ringcache_engine::Stats;

use crate::core_state::CoreState;

/// Per-core replication counters, by STATS name.
pub const REPL_STATS: [&str; 8] = [
    "repl_full_copies",
    "repl_backlog_catchups",
    "repl_ack_failures",
    "repl_applied",
    "repl_caught_up",
    "repl_links",
    "repl_pending_acks",
    "repl_clock_refused",
];

/// One core's STATS: its fields prefixed `core{id}.` and its raw engine counters.
pub fn core_stats(core: &CoreState) -> (Vec<(String, u64)>, Stats) {
    let s = core.shard.stats();
    let id = core.id;
    let c = core.repl.counters;
    let mut fields: Vec<(String, u64)> = s
        .fields()
        .iter()
        .map(|(n, v)| (format!("core{id}.{n}"), *v))
        .collect();
    let repl = [
        c.full_copies,
        c.backlog_catchups,
        c.ack_failures,
        core.streams.applied_total,
        u64::from(core.serves_reads()),
        core.repl.streaming_links() as u64,
        core.repl.pending_acks() as u64,
        core.streams.clock_refused,
    ];
    let conns = [
        ("connections", core.open_connections as u64),
        ("connections_total", core.total_connections),
        ("connections_rejected", core.rejected_connections),
        ("commands", core.commands),
    ];
    let named = conns.into_iter().chain(REPL_STATS.into_iter().zip(repl));
    fields.extend(named.map(|(n, v)| (format!("core{id}.{n}"), v)));
    (fields, s)
}

/// The node's STATS from every core's: engine totals, the core count, replication totals (sums,
/// except `repl_caught_up`, 1 only when every core serves reads), then every per-core field.
pub fn node_stats(
    cores: u32,
    per_core: Vec<(Vec<(String, u64)>, Stats)>,
) -> Vec<(Cow<'static, str>, u64)> {
    let mut total = Stats::default();
    let mut fields: Vec<(String, u64)> = Vec::new();
    for (f, s) in per_core {
        total.merge(&s);
        fields.extend(f);
    }
    let mut all: Vec<(Cow<'static, str>, u64)> = total
        .fields()
        .iter()
        .map(|(n, v)| (Cow::Borrowed(*n), *v))
        .collect();
    all.push(("cores".into(), u64::from(cores)));
    for name in REPL_STATS {
        let values = fields
            .iter()
            .filter(|(n, _)| n.split_once('.').is_some_and(|(_, rest)| rest == name))
            .map(|(_, v)| *v);
        let v = if name == "repl_caught_up" {
            values.min().unwrap_or(1)
        } else {
            values.sum()
        };
        all.push((Cow::Borrowed(name), v));
    }
    all.extend(fields.into_iter().map(|(n, v)| (Cow::Owned(n), v)));
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core_state::test_support::core;
    use ringcache_cluster::replication::WriteAck;

    #[test]
    fn node_stats_add_up_cores_and_keep_their_fields() {
        let mut a = core(0, 2, WriteAck::All);
        let b = core(1, 2, WriteAck::All);
        a.commands = 3;
        a.shard
            .set(b"k", b"v", &Default::default(), 1_000, 1)
            .unwrap();
        let all = node_stats(2, vec![core_stats(&a), core_stats(&b)]);
        let get = |n: &str| all.iter().find(|(k, _)| k == n).map(|(_, v)| *v);
        assert_eq!(get("cores"), Some(2));
        assert_eq!(get("core0.commands"), Some(3));
        assert_eq!(get("core1.commands"), Some(0));
        assert_eq!(get("repl_caught_up"), Some(1));
        assert_eq!(get("repl_links"), Some(0));
        assert_eq!(get("keys"), Some(1));
    }
}
