//! Prints the ring's balance report: ownership max/mean and standard deviation for 3, 10 and
//! 100 groups at several virtual-node counts, and the fraction of keys moved when a group
//! joins or leaves against the ideal 1/n.
//!
//! `cargo run --release -p ringcache-cluster --example balance`

use ringcache_cluster::{balance, GroupId, Ring, DEFAULT_VNODES};

fn main() {
    println!("| groups | vnodes | max/mean | std/mean | moved on join | ideal 1/(n+1) | moved on leave | ideal 1/n |");
    println!("|---|---|---|---|---|---|---|---|");
    for n in [3u32, 10, 100] {
        for vnodes in [64u32, 256, DEFAULT_VNODES, 4096] {
            let groups: Vec<GroupId> = (1..=n).collect();
            let ring = Ring::new(&groups, vnodes);
            let (max, std) = balance(&ring);
            let join = ring.moved_fraction(&ring.with_group(n + 1));
            let leave = ring.moved_fraction(&ring.without_group(1));
            println!(
                "| {n} | {vnodes}{} | {max:.3} | {std:.3} | {join:.4} | {:.4} | {leave:.4} | {:.4} |",
                if vnodes == DEFAULT_VNODES { " (default)" } else { "" },
                1.0 / f64::from(n + 1),
                1.0 / f64::from(n),
            );
        }
    }
}
