//! The harness's typed errors: processes that do not start or answer, namespaces and
//! firewall commands that fail, reports that cannot be written.

use std::path::PathBuf;

/// What can go wrong while running the harness.
#[derive(Debug, thiserror::Error)]
pub enum ChaosError {
    /// A process could not be started.
    #[error("cannot start {what}: {source}")]
    Spawn {
        /// Which process.
        what: String,
        /// Why.
        source: std::io::Error,
    },
    /// A condition was not reached before its deadline.
    #[error("timed out waiting for {0}")]
    Timeout(String),
    /// A system command (ip, nft, iptables, tc) failed.
    #[error("`{cmd}` failed: {stderr}")]
    Command {
        /// The command line.
        cmd: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// A file could not be written or read.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The timeline could not be drawn.
    #[error("drawing the timeline: {0}")]
    Plot(String),
    /// The cluster answered something unexpected.
    #[error("cluster: {0}")]
    Cluster(String),
    /// An unknown scenario name.
    #[error("no scenario named {0:?} (see --list)")]
    NoScenario(String),
}

/// Results of the harness.
pub type Result<T, E = ChaosError> = std::result::Result<T, E>;
