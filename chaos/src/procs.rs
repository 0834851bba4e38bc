//! The cluster's processes: a `ringcache` balancer or node on its own 127.0.0.x address and
//! group id, started from the binary with fixed flags so it can be killed (SIGKILL), paused
//! (SIGSTOP/SIGCONT) and restarted on the same address and ports. Killed on drop.

use std::fs::File;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{ChaosError, Result};

/// Waits until `f` holds, polling every 20 ms, for at most `deadline`.
pub fn wait_until(deadline: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + deadline;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A port nothing listens on at `ip` right now.
pub fn free_port(ip: Ipv4Addr) -> Result<u16> {
    TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| ChaosError::Cluster(format!("no free port on {ip}: {e}")))
}

/// One process of the cluster.
#[derive(Debug)]
pub struct Proc {
    /// A name for reports (`balancer`, `n1`, ...).
    pub name: String,
    /// The address it binds and advertises.
    pub ip: Ipv4Addr,
    /// Its main port.
    pub port: u16,
    /// Its core ports' base (nodes).
    pub core_base: u16,
    /// The group id it runs with (link faults match it).
    pub gid: u32,
    bin: PathBuf,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
    paused: bool,
}

impl Proc {
    /// A process to run `bin args` as `gid`, logging to `log_dir/name.log`; not started.
    pub fn new(
        name: &str,
        ip: Ipv4Addr,
        gid: u32,
        bin: &Path,
        args: Vec<String>,
        log_dir: &Path,
    ) -> Result<Proc> {
        Ok(Proc {
            name: name.to_string(),
            ip,
            port: 0,
            core_base: 0,
            gid,
            bin: bin.to_path_buf(),
            args,
            log: log_dir.join(format!("{name}.log")),
            child: None,
            paused: false,
        })
    }

    /// The `ip:port` of its main port.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.ip, self.port)
    }

    /// Replaces its arguments (for the next start).
    pub fn set_args(&mut self, args: Vec<String>) {
        self.args = args;
    }

    /// Starts it (appending to its log) and waits up to `deadline` for its main port.
    pub fn start(&mut self, deadline: Duration) -> Result<()> {
        self.stop();
        let ports: Vec<u16> = [self.port, self.core_base]
            .into_iter()
            .filter(|p| *p != 0)
            .collect();
        // A killed process keeps its listening sockets until the kernel tears down its
        // io_uring instances: wait until they are free again.
        let ip = self.ip;
        if !wait_until(deadline, || {
            ports.iter().all(|p| TcpListener::bind((ip, *p)).is_ok())
        }) {
            return Err(ChaosError::Timeout(format!(
                "ports {ports:?} of {} to be free",
                self.name
            )));
        }
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|source| ChaosError::File {
                path: self.log.clone(),
                source,
            })?;
        let mut cmd = Command::new(&self.bin);
        cmd.args(&self.args)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        // SAFETY: geteuid(2) has no side effects. Only root may take another group id (which
        // link faults match); others run as themselves, without link faults.
        if unsafe { libc::geteuid() } == 0 {
            cmd.gid(self.gid);
        }
        let child = cmd.spawn().map_err(|source| ChaosError::Spawn {
            what: format!("{} ({})", self.name, self.bin.display()),
            source,
        })?;
        self.child = Some(child);
        self.paused = false;
        let addr = (self.ip, self.port);
        if !wait_until(deadline, || TcpStream::connect(addr).is_ok()) {
            return Err(ChaosError::Timeout(format!(
                "{} to listen on {}; log: {}",
                self.name,
                self.addr(),
                self.log_tail(10)
            )));
        }
        Ok(())
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether it is running (possibly paused).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Whether it is paused.
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    fn signal(&self, sig: libc::c_int) {
        if let Some(pid) = self.pid() {
            // SAFETY: kill(2) on our own child's pid has no memory effects.
            unsafe {
                libc::kill(pid as libc::pid_t, sig);
            }
        }
    }

    /// SIGKILL, and reaps it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.paused = false;
    }

    /// SIGSTOP.
    pub fn pause(&mut self) {
        self.signal(libc::SIGSTOP);
        self.paused = self.child.is_some();
    }

    /// SIGCONT.
    pub fn resume(&mut self) {
        self.signal(libc::SIGCONT);
        self.paused = false;
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}
