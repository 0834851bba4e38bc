//! The run's network: a namespace of its own (unshare(CLONE_NEWNET)) where each process's
//! connections leave from its own 127.0.0.x (nftables SNAT by group id), so link faults are rules
//! on sender group id and receiver address; plain loopback, without link faults, where refused.

use std::collections::BTreeSet;
use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use crate::error::{ChaosError, Result};

/// The group id the harness's own sockets (the workload clients) send with.
pub const CLIENT_GID: u32 = 0;

/// The address the harness's own sockets send from.
pub const CLIENTS_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);

/// One link fault: packets sent by processes of group `from_gid` to `to` are dropped
/// (all of them, or `loss_pct` percent).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cut {
    /// The sender's group id.
    pub from_gid: u32,
    /// The receiver's address.
    pub to: Ipv4Addr,
    /// Percent of packets dropped (100: a cut link).
    pub loss_pct: u8,
}

/// Where the run's processes talk.
#[derive(Debug)]
pub struct Net {
    /// Whether the harness runs in its own namespace.
    pub isolated: bool,
    /// Whether link faults can be made (nft works in the namespace).
    pub firewall: bool,
    /// Whether slow links can be made (`tc netem` works on the namespace's loopback).
    pub netem: bool,
    /// Why the run is less isolated than asked, for the report.
    pub notes: Vec<String>,
    cuts: BTreeSet<Cut>,
}

fn run(cmd: &str, args: &[&str], stdin: Option<&str>) -> Result<()> {
    let line = format!("{cmd} {}", args.join(" "));
    let mut child = Command::new(cmd)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| ChaosError::Command {
            cmd: line.clone(),
            stderr: e.to_string(),
        })?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .map_err(|e| ChaosError::Command {
                cmd: line.clone(),
                stderr: e.to_string(),
            })?;
    }
    let out = child.wait_with_output().map_err(|e| ChaosError::Command {
        cmd: line.clone(),
        stderr: e.to_string(),
    })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(ChaosError::Command {
            cmd: line,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

impl Net {
    /// Moves the calling thread (and every thread and process it starts from now on) into a
    /// new network namespace with `lo` up, and prepares the nftables chain; falls back to
    /// the host's loopback when `isolate` is false or the kernel refuses.
    ///
    /// `identities` are the `(group id, address)` pairs of the processes to come: packets a
    /// process sends leave from its own address, so a cut in either direction is a rule on
    /// the sender's group id and the receiver's address.
    pub fn enter(isolate: bool, identities: &[(u32, Ipv4Addr)]) -> Net {
        let mut net = Net {
            isolated: false,
            firewall: false,
            netem: false,
            notes: Vec::new(),
            cuts: BTreeSet::new(),
        };
        if !isolate {
            net.notes
                .push("plain loopback (asked): no link faults".to_string());
            return net;
        }
        // SAFETY: unshare(2) only changes this thread's namespace membership.
        let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            net.notes.push(format!(
                "network namespace refused ({e}): plain loopback, no link faults"
            ));
            return net;
        }
        net.isolated = true;
        if let Err(e) = run("ip", &["link", "set", "lo", "up"], None) {
            net.notes.push(format!("cannot bring lo up: {e}"));
            return net;
        }
        // The filter runs before NAT's destination hook (-100): it sees replies still addressed
        // to a process's own 127.0.0.x, not yet translated back to 127.0.0.1.
        let mut setup = String::from(
            "add table inet chaos\n\
             add chain inet chaos out { type filter hook output priority -150; policy accept; }\n\
             add chain inet chaos post { type nat hook postrouting priority 100; policy accept; }\n",
        );
        for (gid, ip) in identities {
            setup.push_str(&format!(
                "add rule inet chaos post meta skgid {gid} ip daddr 127.0.0.0/8 snat ip to {ip}\n"
            ));
        }
        match run("nft", &["-f", "-"], Some(&setup)) {
            Ok(()) => net.firewall = true,
            Err(e) => net.notes.push(format!(
                "nftables unavailable ({e}): no link faults (install nftables)"
            )),
        }
        let probe = run(
            "tc",
            &["qdisc", "add", "dev", "lo", "root", "netem", "delay", "0ms"],
            None,
        )
        .and_then(|()| run("tc", &["qdisc", "del", "dev", "lo", "root"], None));
        match probe {
            Ok(()) => net.netem = true,
            Err(e) => net
                .notes
                .push(format!("tc netem unavailable ({e}): no slow links")),
        }
        net
    }

    /// Delays every packet of the namespace by `ms` ± `ms`/2 (no-op without netem).
    pub fn slow(&mut self, ms: u32) -> Result<()> {
        if !self.netem {
            return Ok(());
        }
        let (d, j) = (format!("{ms}ms"), format!("{}ms", ms / 2));
        run(
            "tc",
            &[
                "qdisc", "add", "dev", "lo", "root", "netem", "delay", &d, &j,
            ],
            None,
        )
    }

    /// Removes the delay.
    pub fn unslow(&mut self) -> Result<()> {
        if !self.netem {
            return Ok(());
        }
        run("tc", &["qdisc", "del", "dev", "lo", "root"], None)
    }

    /// The link faults in force.
    pub fn cuts(&self) -> &BTreeSet<Cut> {
        &self.cuts
    }

    /// Adds link faults (no-op without a firewall).
    pub fn add(&mut self, cuts: impl IntoIterator<Item = Cut>) -> Result<()> {
        self.cuts.extend(cuts);
        self.apply()
    }

    /// Removes every link fault.
    pub fn heal(&mut self) -> Result<()> {
        self.cuts.clear();
        self.apply()
    }

    fn apply(&self) -> Result<()> {
        if !self.firewall {
            return Ok(());
        }
        let mut rules = String::from("flush chain inet chaos out\n");
        for c in &self.cuts {
            let sample = if c.loss_pct >= 100 {
                String::new()
            } else {
                format!("numgen random mod 100 < {} ", c.loss_pct)
            };
            rules.push_str(&format!(
                "add rule inet chaos out meta skgid {} ip daddr {} {sample}drop\n",
                c.from_gid, c.to
            ));
        }
        run("nft", &["-f", "-"], Some(&rules))
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // The namespace (and its rules) vanish with the last process in it; clear the rules
        // anyway so a harness that keeps running after a run leaves nothing cut.
        let _ = self.heal();
    }
}
