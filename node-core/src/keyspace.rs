//! Walking the keyspace: SCAN, one step on one core, and KEYS, every core's matching keys.
//!
//! A SCAN cursor is `(slot position << 10) | core`: a walk visits core 0's slab slots in order,
//! then core 1's, and so on; 0 starts and ends it. Slab slots do not move while an entry lives
//! and the slab only grows, so a key present for the whole walk is returned exactly once (Redis
//! promises at least once); keys written or deleted meanwhile may or may not show.

use ringcache_proto::{ErrorKind, Response, ValueRef};

use crate::core_state::CoreState;
use crate::glob::key_matches;

/// Bits of a SCAN cursor that name the core.
pub const CURSOR_CORE_BITS: u32 = 10;
const CORE_MASK: u64 = (1 << CURSOR_CORE_BITS) - 1;

/// The core a SCAN cursor continues on.
pub fn cursor_core(cursor: u64) -> u32 {
    (cursor & CORE_MASK) as u32
}

/// Whether a type filter admits strings (every value is one); `None` admits all.
fn type_admits(kind: Option<&[u8]>) -> bool {
    kind.is_none_or(|k| k.eq_ignore_ascii_case(b"string"))
}

/// Calls `f` on every live key of the slots `start..start + slots` of `core`'s slab that
/// matches; returns where the next step starts (`None`: this core is done).
fn walk(
    core: &CoreState,
    start: usize,
    slots: usize,
    pattern: Option<&[u8]>,
    now: u64,
    mut f: impl FnMut(&[u8]),
) -> Option<usize> {
    core.shard.for_each_entry_in(start, slots, |e| {
        let live = !e.tombstone && e.expires_at.is_none_or(|t| t > now);
        if live && key_matches(pattern, e.key) {
            f(e.key);
        }
    })
}

/// One SCAN step on this core (the cursor's core): the next cursor and the keys, as `Values`
/// whose first slot is the cursor (RESP renders `[cursor, [keys]]`).
pub fn scan<'s>(
    core: &'s mut CoreState,
    cursor: u64,
    pattern: Option<&[u8]>,
    count: u64,
    kind: Option<&[u8]>,
    now: u64,
) -> Response<'s> {
    if cursor_core(cursor) != core.id {
        return Response::error(ErrorKind::Malformed, "invalid cursor");
    }
    let start = usize::try_from(cursor >> CURSOR_CORE_BITS).unwrap_or(usize::MAX);
    let slots = usize::try_from(count).unwrap_or(usize::MAX);
    let mut bytes = std::mem::take(&mut core.scratch);
    bytes.clear();
    let mut ends = Vec::new();
    let next = walk(core, start, slots, pattern, now, |k| {
        if type_admits(kind) {
            bytes.extend_from_slice(k);
            ends.push(bytes.len());
        }
    });
    let next_cursor = match next {
        Some(pos) => ((pos as u64) << CURSOR_CORE_BITS) | u64::from(core.id),
        None if core.id + 1 < core.cores => u64::from(core.id + 1),
        None => 0,
    };
    let keys_len = bytes.len();
    bytes.extend_from_slice(next_cursor.to_string().as_bytes());
    core.scratch = bytes;
    let scratch = &core.scratch;
    let slot = |value: &'s [u8]| {
        Some(ValueRef {
            value,
            version: 0,
            ttl_ms: None,
        })
    };
    let mut values = Vec::with_capacity(ends.len() + 1);
    values.push(slot(scratch.get(keys_len..).unwrap_or_default()));
    let mut from = 0;
    for end in ends {
        values.push(slot(scratch.get(from..end).unwrap_or_default()));
        from = end;
    }
    Response::Values(values)
}

/// Every live key of this core matching `pattern` (this core's part of KEYS).
pub fn keys(core: &CoreState, pattern: &[u8], now: u64) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    walk(core, 0, usize::MAX, Some(pattern), now, |k| {
        out.push(k.to_vec())
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core_state::test_support::core;
    use crate::execute::execute;
    use ringcache_cluster::replication::WriteAck;
    use ringcache_proto::Command;

    fn step(
        c: &mut CoreState,
        cursor: u64,
        pattern: Option<&[u8]>,
        count: u64,
    ) -> (u64, Vec<Vec<u8>>) {
        let Response::Values(v) = scan(c, cursor, pattern, count, None, 1_000) else {
            panic!("values");
        };
        let mut it = v
            .into_iter()
            .map(|s| s.map(|s| s.value.to_vec()).unwrap_or_default());
        let cur = it.next().unwrap_or_default();
        let cur = std::str::from_utf8(&cur).unwrap().parse().unwrap();
        (cur, it.collect())
    }

    #[test]
    fn a_walk_returns_every_key_once_and_ends_at_zero() {
        let mut cores = [core(0, 2, WriteAck::All), core(1, 2, WriteAck::All)];
        let mut want = Vec::new();
        for i in 0..100 {
            let k = format!("k{i}");
            let c = ringcache_cluster::core_for_key(k.as_bytes(), 2) as usize;
            execute(&mut cores[c], &Command::set(k.as_bytes(), b"v"), 1_000);
            want.push(k.into_bytes());
        }
        execute(&mut cores[0], &Command::set(b"other", b"v"), 1_000);
        let mut got = Vec::new();
        let mut cursor = 0;
        let mut steps = 0;
        loop {
            let c = cursor_core(cursor) as usize;
            let (next, keys) = step(&mut cores[c], cursor, Some(b"k*"), 7);
            got.extend(keys);
            steps += 1;
            cursor = next;
            if cursor == 0 {
                break;
            }
            assert!(steps < 1000);
        }
        got.sort();
        want.sort();
        assert_eq!(got, want);
        assert!(matches!(
            scan(&mut cores[0], 1, None, 10, None, 1_000),
            Response::Error { .. }
        ));
        let (_, none) = step(&mut cores[0], 0, Some(b"nomatch*"), 1000);
        assert!(none.is_empty());
        let Response::Values(v) = scan(&mut cores[1], 1, None, 100_000, Some(b"hash"), 1_000)
        else {
            panic!("values");
        };
        assert_eq!(v.len(), 1, "no key is a hash");
        let mut all = keys(&cores[0], b"*", 1_000);
        all.extend(keys(&cores[1], b"*", 1_000));
        assert_eq!(all.len(), 101);
        assert_eq!(keys(&cores[0], b"oth?r", 1_000), vec![b"other".to_vec()]);
    }
}
