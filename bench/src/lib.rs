//! Shared workload generation for ringcache benchmarks.
