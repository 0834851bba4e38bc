//! Fuzzes the control-body decoders (join, heartbeat, control reply, remove, cluster map, and
//! the replication stream's opening bodies): see `ringcache_cluster::fuzzing::control_body`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ringcache_cluster::fuzzing::control_body(data);
});
