//! The `ringcache` binary: every subcommand's logic lives in `ringcache-net`.
fn main() {}
