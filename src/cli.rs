//! `ringcache cli`: a command-line client for one node, built on `ringcache-client`.
//!
//! Output follows redis-cli: a value as is, `(nil)`, `(integer) N`, `OK`, numbered lines for
//! lists. Connection failures and server errors end the program with a non-zero status and a
//! message that says what to do.

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use ringcache_client::{
    Client, ClientConfig, ClientError, ErrorKind, SetOpts, SetOutcome, Ttl, Versioned,
};

/// Flags of `ringcache cli`.
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  ringcache cli set greeting hello --ttl 60\n  \
                        ringcache cli get greeting\n  ringcache cli --port 7400 stats"
)]
pub struct CliArgs {
    /// Host of the node to talk to.
    #[arg(
        long,
        env = "RINGCACHE_HOST",
        default_value = "127.0.0.1",
        global = true,
        help_heading = "Connection"
    )]
    host: String,
    /// Main port of the node (its `--port`).
    #[arg(
        long,
        short = 'p',
        env = "RINGCACHE_PORT",
        default_value_t = 7379,
        global = true,
        help_heading = "Connection"
    )]
    port: u16,
    /// Password, when the node was started with `--password`.
    #[arg(
        long,
        short = 'a',
        env = "RINGCACHE_PASSWORD",
        hide_env_values = true,
        global = true,
        help_heading = "Connection"
    )]
    password: Option<String>,
    /// The cluster secret, for `cluster remove` when the balancer has `--cluster-secret`.
    #[arg(
        long,
        env = "RINGCACHE_CLUSTER_SECRET",
        hide_env_values = true,
        global = true,
        help_heading = "Connection"
    )]
    cluster_secret: Option<String>,
    /// Seconds to wait for a connection and for each answer.
    #[arg(long, value_name = "SECS", default_value_t = 5.0, value_parser = parse_secs, global = true, help_heading = "Connection")]
    timeout: f64,
    #[command(subcommand)]
    command: CliCommand,
}

fn parse_secs(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= 86_400.0 => Ok(v),
        _ => Err(format!(
            "'{s}' is not a number of seconds between 0 and 86400"
        )),
    }
}

/// One request to the node.
#[derive(Subcommand, Debug)]
enum CliCommand {
    /// Print a key's value, or (nil) if it does not exist.
    Get {
        /// The key.
        key: OsString,
    },
    /// Print a key's value and its version (use the version with `set --if-version`).
    Getv {
        /// The key.
        key: OsString,
    },
    /// Write a key; prints OK, or (nil) when --nx/--xx did not hold.
    Set(SetArgs),
    /// Delete keys; prints how many existed.
    Del {
        /// The keys.
        #[arg(required = true)]
        keys: Vec<OsString>,
    },
    /// Print how many of the keys exist.
    Exists {
        /// The keys.
        #[arg(required = true)]
        keys: Vec<OsString>,
    },
    /// Mark keys as recently used; prints how many exist.
    Touch {
        /// The keys.
        #[arg(required = true)]
        keys: Vec<OsString>,
    },
    /// Set a key's time to live in seconds (0 deletes it); prints 1, or 0 if it does not exist.
    Expire {
        /// The key.
        key: OsString,
        /// Seconds from now.
        seconds: u64,
        /// Read the time as milliseconds instead of seconds.
        #[arg(long)]
        ms: bool,
    },
    /// Print a key's remaining time to live in seconds (-1: no expiry, -2: no such key).
    Ttl {
        /// The key.
        key: OsString,
        /// Print milliseconds instead of seconds.
        #[arg(long)]
        ms: bool,
    },
    /// Remove a key's time to live; prints 1, or 0 if it had none or does not exist.
    Persist {
        /// The key.
        key: OsString,
    },
    /// Add to an integer value (a missing key counts as 0); prints the new value.
    Incr {
        /// The key.
        key: OsString,
        /// Amount to add (may be negative).
        #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
        by: i64,
    },
    /// Subtract from an integer value; prints the new value.
    Decr {
        /// The key.
        key: OsString,
        /// Amount to subtract.
        #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
        by: i64,
    },
    /// Print the values of many keys, one numbered line per key.
    Mget {
        /// The keys.
        #[arg(required = true)]
        keys: Vec<OsString>,
    },
    /// Write many keys at once: KEY VALUE [KEY VALUE]...
    Mset {
        /// Alternating keys and values.
        #[arg(required = true, num_args = 2.., value_names = ["KEY", "VALUE"])]
        pairs: Vec<OsString>,
    },
    /// Check that the node answers; prints PONG.
    Ping,
    /// Delete every key on the node.
    Flush,
    /// Delete every key with a prefix, or every key written with a tag.
    Invalidate {
        #[command(subcommand)]
        what: InvalidateWhat,
    },
    /// Print the node's counters (totals, then per core).
    Stats,
    /// Print the node's id, main port and per-core ports.
    Topology,
    /// Print the cluster map of the balancer at --port: epoch, shard groups with their
    /// members and key share, members with their ports, roles and states.
    Cluster {
        #[command(subcommand)]
        action: Option<ClusterAction>,
    },
}

/// What `cluster` does besides printing the map.
#[derive(Subcommand, Debug)]
enum ClusterAction {
    /// Remove member ID (see `cluster` for ids): a primary first hands its key ranges on to
    /// the other groups by streaming, then the ring switches and the node stops; a replica
    /// leaves at once. The node may not join again.
    Remove {
        /// The member's id.
        member: u64,
    },
}

/// What `invalidate` drops.
#[derive(Subcommand, Debug)]
enum InvalidateWhat {
    /// Delete every key starting with PREFIX.
    Prefix {
        /// The prefix.
        prefix: OsString,
    },
    /// Delete every key written with `set --tag TAG`.
    Tag {
        /// The tag.
        tag: OsString,
    },
}

/// Flags of `ringcache cli set`.
#[derive(Args, Debug)]
struct SetArgs {
    /// The key.
    key: OsString,
    /// The value.
    value: OsString,
    /// Expire after this many seconds.
    #[arg(long, value_name = "SECS", conflicts_with_all = ["ttl_ms", "keep_ttl"])]
    ttl: Option<u64>,
    /// Expire after this many milliseconds.
    #[arg(long, value_name = "MS", conflicts_with = "keep_ttl")]
    ttl_ms: Option<u64>,
    /// Keep the key's current time to live instead of clearing it.
    #[arg(long)]
    keep_ttl: bool,
    /// Write only if the key does not exist.
    #[arg(long, conflicts_with = "xx")]
    nx: bool,
    /// Write only if the key exists.
    #[arg(long)]
    xx: bool,
    /// Write only if the key's current version is V (compare-and-set; see `getv`).
    #[arg(long, value_name = "V")]
    if_version: Option<u64>,
    /// Tag the key for `invalidate tag` (repeat for several tags).
    #[arg(long = "tag", value_name = "T")]
    tags: Vec<OsString>,
    /// Print the new version instead of OK.
    #[arg(long)]
    get_version: bool,
}

/// Runs one `ringcache cli` command.
pub fn run(args: CliArgs) -> anyhow::Result<()> {
    let addr = if args.host.contains(':') && !args.host.starts_with('[') {
        format!("[{}]:{}", args.host, args.port)
    } else {
        format!("{}:{}", args.host, args.port)
    };
    let mut cfg = ClientConfig::default().timeout(Duration::from_secs_f64(args.timeout));
    if let Some(pw) = &args.password {
        cfg = cfg.password(pw.clone());
    }
    if let CliCommand::Cluster { action } = &args.command {
        let mut c = Client::connect_cluster_with(addr.as_str(), cfg).map_err(|e| match e {
            ClientError::Connect { .. } => {
                anyhow::anyhow!("{e} — is `ringcache balancer` (or `ringcache local`) running?")
            }
            other => anyhow::anyhow!("{other} — is --port the balancer's port?"),
        })?;
        if let Some(ClusterAction::Remove { member }) = action {
            let map = c
                .remove_member(*member, args.cluster_secret.clone())
                .map_err(explain)?;
            println!(
                "removing member {member}{}",
                if map.moving.is_some() {
                    ": its ranges are being streamed to the other groups"
                } else {
                    ""
                }
            );
            print!("{map}");
            return Ok(());
        }
        let map = c.refresh_map().map_err(explain)?;
        print!("{map}");
        return Ok(());
    }
    let mut out = Vec::new();
    let res = Client::connect_with(addr.as_str(), cfg)
        .and_then(|mut c| execute(&mut c, args.command, &mut out));
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(&out).context("cannot write to stdout")?;
    stdout.flush().context("cannot write to stdout")?;
    res.map_err(explain)
}

/// Turns a client error into the message the user sees.
fn explain(e: ClientError) -> anyhow::Error {
    match &e {
        ClientError::Connect { .. } => {
            anyhow::anyhow!("{e} — is `ringcache node` running?")
        }
        ClientError::Server {
            kind: ErrorKind::NoAuth,
            ..
        } => anyhow::anyhow!("the node answered: {e} — pass --password"),
        ClientError::Server {
            kind: ErrorKind::WrongPass,
            ..
        } => anyhow::anyhow!("the node answered: {e} — check --password"),
        ClientError::Server { .. } => anyhow::anyhow!("the node answered: {e}"),
        _ => anyhow::Error::new(e),
    }
}

fn line(out: &mut Vec<u8>, s: impl AsRef<[u8]>) {
    out.extend_from_slice(s.as_ref());
    out.push(b'\n');
}

fn int(out: &mut Vec<u8>, n: impl std::fmt::Display) {
    line(out, format!("(integer) {n}"));
}

fn value(out: &mut Vec<u8>, v: Option<Vec<u8>>) {
    match v {
        Some(v) => line(out, v),
        None => line(out, "(nil)"),
    }
}

fn bytes_of(keys: &[OsString]) -> Vec<&[u8]> {
    keys.iter().map(|k| k.as_bytes()).collect()
}

fn execute(c: &mut Client, cmd: CliCommand, out: &mut Vec<u8>) -> Result<(), ClientError> {
    match cmd {
        CliCommand::Get { key } => value(out, c.get(key.as_bytes())?),
        CliCommand::Getv { key } => match c.get_versioned(key.as_bytes())? {
            None => line(out, "(nil)"),
            Some(Versioned {
                value,
                version,
                ttl,
            }) => {
                line(out, value);
                line(out, format!("(version) {version}"));
                if let Some(t) = ttl {
                    line(out, format!("(ttl) {} ms", t.as_millis()));
                }
            }
        },
        CliCommand::Set(a) => {
            let opts = SetOpts {
                ttl: a
                    .ttl
                    .map(Duration::from_secs)
                    .or(a.ttl_ms.map(Duration::from_millis)),
                nx: a.nx,
                xx: a.xx,
                if_version: a.if_version,
                tags: a.tags.iter().map(|t| t.as_bytes().to_vec()).collect(),
                keep_ttl: a.keep_ttl,
                get_version: a.get_version,
            };
            if opts.ttl == Some(Duration::ZERO) {
                // As redis: an expiry must be positive.
                return Err(ClientError::InvalidArgument(
                    "--ttl/--ttl-ms must be positive".into(),
                ));
            }
            match c.set_with(a.key.as_bytes(), a.value.as_bytes(), &opts)? {
                SetOutcome::Stored { version: Some(v) } => line(out, format!("(version) {v}")),
                SetOutcome::Stored { version: None } => line(out, "OK"),
                SetOutcome::NotStored => line(out, "(nil)"),
                SetOutcome::VersionMismatch { current: Some(v) } => {
                    line(out, format!("(version mismatch) current version is {v}"))
                }
                SetOutcome::VersionMismatch { current: None } => {
                    line(out, "(version mismatch) the key does not exist")
                }
            }
        }
        CliCommand::Del { keys } => int(out, c.del(&bytes_of(&keys))?),
        CliCommand::Exists { keys } => int(out, c.exists(&bytes_of(&keys))?),
        CliCommand::Touch { keys } => int(out, c.touch(&bytes_of(&keys))?),
        CliCommand::Expire { key, seconds, ms } => {
            let d = if ms {
                Duration::from_millis(seconds)
            } else {
                Duration::from_secs(seconds)
            };
            int(out, u8::from(c.expire(key.as_bytes(), d)?))
        }
        CliCommand::Ttl { key, ms } => match c.ttl(key.as_bytes())? {
            Ttl::Missing => int(out, -2),
            Ttl::Persistent => int(out, -1),
            Ttl::Expires(d) if ms => int(out, d.as_millis()),
            Ttl::Expires(d) => int(out, d.as_millis().div_ceil(1000)),
        },
        CliCommand::Persist { key } => int(out, u8::from(c.persist(key.as_bytes())?)),
        CliCommand::Incr { key, by } => int(out, c.incr_by(key.as_bytes(), by)?),
        CliCommand::Decr { key, by } => {
            let delta = by.checked_neg().ok_or_else(|| {
                ClientError::InvalidArgument(format!("--by {by} cannot be negated"))
            })?;
            int(out, c.incr_by(key.as_bytes(), delta)?)
        }
        CliCommand::Mget { keys } => {
            for (i, v) in c.mget(&bytes_of(&keys))?.into_iter().enumerate() {
                out.extend_from_slice(format!("{}) ", i + 1).as_bytes());
                value(out, v);
            }
        }
        CliCommand::Mset { pairs } => {
            if pairs.len() % 2 != 0 {
                return Err(ClientError::InvalidArgument(
                    "mset takes KEY VALUE pairs: the last key has no value".into(),
                ));
            }
            let pairs: Vec<(&[u8], &[u8])> = pairs
                .chunks(2)
                .map(|p| (p[0].as_bytes(), p[1].as_bytes()))
                .collect();
            c.mset(&pairs)?;
            line(out, "OK");
        }
        CliCommand::Ping => {
            c.ping()?;
            line(out, "PONG");
        }
        CliCommand::Flush => {
            c.flush()?;
            line(out, "OK");
        }
        CliCommand::Invalidate { what } => {
            match what {
                InvalidateWhat::Prefix { prefix } => c.invalidate_prefix(prefix.as_bytes())?,
                InvalidateWhat::Tag { tag } => c.invalidate_tag(tag.as_bytes())?,
            }
            line(out, "OK");
        }
        CliCommand::Stats => {
            for (name, v) in c.stats()? {
                line(out, format!("{name}:{v}"));
            }
        }
        CliCommand::Topology => {
            let t = c.cached_topology();
            line(out, format!("node_id: {}", t.node_id));
            line(out, format!("main_port: {}", t.main_port));
            for core in &t.cores {
                line(out, format!("core {}: port {}", core.core, core.port));
            }
        }
        CliCommand::Cluster { .. } => line(out, "use `ringcache cli --port BALANCER_PORT cluster`"),
    }
    Ok(())
}
