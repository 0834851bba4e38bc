//! Fuzzes the receiving side of replication and range-move streams: arbitrary frames fed to a
//! `StreamReceiver` on a replica or move-receiving core (see
//! `ringcache_node_core::fuzzing::replication_stream` for what the first byte selects).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ringcache_node_core::fuzzing::replication_stream(data);
});
