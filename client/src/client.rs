//! The blocking client: one connection per core, opened on first use, each key sent straight
//! to the core that owns it.

use std::fmt;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

use ringcache_proto::{Command, Expiry, Limits, SetCond, Topology};

use crate::cluster::ClusterRoutes;
use crate::config::ClientConfig;
use crate::conn::Conn;
use crate::error::ClientError;
use crate::pipeline::Pipeline;
use crate::reply::{unexpected, Reply, SetOpts, SetOutcome, Ttl, Versioned};
use crate::route::{core_slot, idempotent, MAIN};

/// A blocking, ring-aware connection to one ringcache node.
///
/// [`Client::connect`] opens the node's main port and asks it for its topology (one port per
/// core). Every keyed request then goes straight to its key's core over a connection of its
/// own, opened on first use and kept; multi-key requests (MGET, MSET, DEL, EXISTS, TOUCH) are
/// split per core and their answers put back in the caller's order.
///
/// A connection that breaks is replaced on the next call; an idempotent request that was on
/// it is sent once more on the fresh connection ([`ClientConfig::retry_idempotent`]).
///
/// [`Client::connect_cluster`] routes by the cluster map instead, and rides out a failed
/// primary ([`ClientConfig::failover_timeout`]); reads may go to replicas
/// ([`ClientConfig::read_from`]).
///
/// ```no_run
/// use std::time::Duration;
/// use ringcache_client::{Client, SetOpts, SetOutcome};
///
/// let mut c = Client::connect("127.0.0.1:7379")?;
/// c.set("greeting", "hello")?;
/// assert_eq!(c.get("greeting")?, Some(b"hello".to_vec()));
///
/// // Compare-and-set by version.
/// let v = c.get_versioned("greeting")?.expect("just written");
/// let out = c.set_with("greeting", "hi", &SetOpts::new().if_version(v.version))?;
/// assert!(out.is_stored());
///
/// c.set_with("session", "x", &SetOpts::new().ttl(Duration::from_secs(30)))?;
/// # Ok::<(), ringcache_client::ClientError>(())
/// ```
pub struct Client {
    pub(crate) cfg: ClientConfig,
    pub(crate) reply_limits: Limits,
    pub(crate) topology: Topology,
    /// Slot 0: the main port (the balancer in cluster mode); slot 1 + i: core i (in cluster
    /// mode: one slot per (member, core) of the map, see [`ClusterRoutes`]).
    pub(crate) addrs: Vec<SocketAddr>,
    pub(crate) conns: Vec<Option<Conn>>,
    /// Cluster mode: the map keys are routed by.
    pub(crate) cluster: Option<ClusterRoutes>,
    /// Map epoch sent with every request (0 outside cluster mode).
    pub(crate) epoch: u32,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("addrs", &self.addrs)
            .field("open", &self.conns.iter().filter(|c| c.is_some()).count())
            .field("config", &self.cfg)
            .finish()
    }
}

/// Milliseconds of a duration, rounded up so that a positive duration is never 0 ms.
pub(crate) fn ceil_ms(d: Duration) -> u64 {
    let ms = d.as_millis();
    let ms = if Duration::from_millis(ms as u64) < d {
        ms + 1
    } else {
        ms
    };
    u64::try_from(ms).unwrap_or(u64::MAX)
}

/// Builds the SET request for `opts`, rejecting contradictory options.
pub(crate) fn set_command<'a>(
    key: &'a [u8],
    value: &'a [u8],
    opts: &'a SetOpts,
) -> Result<Command<'a>, ClientError> {
    if opts.nx && opts.xx {
        return Err(ClientError::InvalidArgument(
            "NX and XX exclude each other".into(),
        ));
    }
    let expiry = match (opts.ttl, opts.keep_ttl) {
        (Some(_), true) => {
            return Err(ClientError::InvalidArgument(
                "a TTL and KEEPTTL exclude each other".into(),
            ))
        }
        (Some(d), false) => {
            let ms = ceil_ms(d);
            if ms == 0 || ms > i64::MAX as u64 {
                return Err(ClientError::InvalidArgument(format!(
                    "invalid TTL {d:?}: it must be positive and at most i64::MAX ms"
                )));
            }
            Expiry::RelativeMs(ms)
        }
        (None, true) => Expiry::KeepTtl,
        (None, false) => Expiry::None,
    };
    Ok(Command::Set {
        key,
        value,
        expiry,
        cond: match (opts.nx, opts.xx) {
            (true, _) => SetCond::Nx,
            (_, true) => SetCond::Xx,
            _ => SetCond::Always,
        },
        if_version: opts.if_version,
        tags: opts.tags.iter().map(Vec::as_slice).collect(),
        get_version: opts.get_version,
    })
}

/// The address of each core of topology `t` on host `ip`, in core order; a topology that
/// does not list cores 0..n in order is a protocol error.
pub(crate) fn core_addrs(t: &Topology, ip: IpAddr) -> Result<Vec<SocketAddr>, ClientError> {
    let ordered = t
        .cores
        .iter()
        .enumerate()
        .all(|(i, c)| usize::from(c.core) == i);
    if t.cores.is_empty() || !ordered {
        return Err(ClientError::Protocol(format!(
            "the node's topology lists cores {:?}; expected 0..n in order",
            t.cores.iter().map(|c| c.core).collect::<Vec<_>>()
        )));
    }
    Ok(t.cores
        .iter()
        .map(|c| SocketAddr::new(ip, c.port))
        .collect())
}

/// Borrows each key as bytes.
pub(crate) fn key_refs<K: AsRef<[u8]>>(keys: &[K]) -> Vec<&[u8]> {
    keys.iter().map(AsRef::as_ref).collect()
}

/// A count answered by the server as a non-negative integer.
pub(crate) fn count(r: Reply) -> Result<u64, ClientError> {
    let n = r.into_int()?;
    u64::try_from(n).map_err(|_| ClientError::Protocol(format!("negative count {n}")))
}

impl Client {
    /// Connects to a node's main port (e.g. `"127.0.0.1:7379"`) with default settings
    /// (5 s timeouts, no password) and learns its topology.
    pub fn connect<A: ToSocketAddrs + fmt::Display>(addr: A) -> Result<Client, ClientError> {
        Client::connect_with(addr, ClientConfig::default())
    }

    /// Connects with explicit settings.
    pub fn connect_with<A: ToSocketAddrs + fmt::Display>(
        addr: A,
        cfg: ClientConfig,
    ) -> Result<Client, ClientError> {
        let named = |source| ClientError::Connect {
            addr: addr.to_string(),
            source,
        };
        let resolved: Vec<SocketAddr> = addr.to_socket_addrs().map_err(named)?.collect();
        let reply_limits = crate::codec::reply_limits(&cfg);
        let mut last = None;
        let mut main = None;
        for a in resolved {
            match Conn::open(a, &cfg, &reply_limits) {
                Ok(c) => {
                    main = Some(c);
                    break;
                }
                Err(ClientError::Connect { source, .. }) => last = Some(source),
                Err(other) => return Err(other),
            }
        }
        let Some(main) = main else {
            let source = last.unwrap_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::NotFound, "no address to connect to")
            });
            return Err(named(source));
        };
        let main_addr = main.addr();
        let mut client = Client {
            cfg,
            reply_limits,
            topology: Topology {
                node_id: 0,
                main_port: main_addr.port(),
                cores: Vec::new(),
            },
            addrs: vec![main_addr],
            conns: vec![Some(main)],
            cluster: None,
            epoch: 0,
        };
        client.topology()?;
        Ok(client)
    }

    /// The settings this client runs with.
    pub fn config(&self) -> &ClientConfig {
        &self.cfg
    }

    /// The node's layout as last fetched.
    pub fn cached_topology(&self) -> &Topology {
        &self.topology
    }

    /// Number of cores of the node.
    pub fn cores(&self) -> u32 {
        self.topology.cores.len() as u32
    }

    /// The core that owns `key` (where its requests are sent).
    pub fn core_for_key(&self, key: impl AsRef<[u8]>) -> u32 {
        ringcache_cluster::core_for_key(key.as_ref(), self.cores())
    }

    /// Asks the node for its layout again and routes by it from now on (connections to
    /// ports that changed are closed).
    pub fn topology(&mut self) -> Result<Topology, ClientError> {
        let t = match self.call_slot(MAIN, &Command::Topology)? {
            Reply::Topology(t) => t,
            other => return Err(unexpected("TOPOLOGY", &other)),
        };
        if t.cores != self.topology.cores {
            let cores = core_addrs(&t, self.addrs[MAIN].ip())?;
            self.addrs.truncate(1);
            self.addrs.extend(cores);
            self.conns.truncate(1);
            self.conns.resize_with(self.addrs.len(), || None);
        } else {
            core_addrs(&t, self.addrs[MAIN].ip())?;
        }
        self.topology = t.clone();
        Ok(t)
    }

    /// The open connection of `slot`, (re)opened if it is missing or was closed by the server.
    pub(crate) fn conn(&mut self, slot: usize) -> Result<&mut Conn, ClientError> {
        let idle = self.cfg.idle_check;
        if self.conns[slot].as_mut().is_some_and(|c| c.is_stale(idle)) {
            self.conns[slot] = None;
        }
        let addr = self.addrs[slot];
        let epoch = self.epoch;
        match &mut self.conns[slot] {
            Some(c) => Ok(c),
            none => {
                let mut c = Conn::open(addr, &self.cfg, &self.reply_limits)?;
                c.epoch = epoch;
                Ok(none.insert(c))
            }
        }
    }

    /// One request on one connection, sent once more on a fresh connection if the first one
    /// broke and the request is idempotent.
    pub(crate) fn call_slot(
        &mut self,
        slot: usize,
        cmd: &Command<'_>,
    ) -> Result<Reply, ClientError> {
        match self.try_call(slot, cmd) {
            Err(e) if e.is_connection_broken() && self.cfg.retry_idempotent && idempotent(cmd) => {
                self.try_call(slot, cmd)
            }
            r => r,
        }
    }

    /// One request on one connection; a connection the error leaves unusable is dropped.
    fn try_call(&mut self, slot: usize, cmd: &Command<'_>) -> Result<Reply, ClientError> {
        let (limits, reply_limits) = (self.cfg.limits, self.reply_limits);
        let res = self
            .conn(slot)
            .and_then(|c| c.call(cmd, &limits, &reply_limits));
        if matches!(&res, Err(e) if e.closes_connection()) {
            self.conns[slot] = None;
        }
        res
    }

    /// Starts a batch of commands sent together: see [`Pipeline`].
    pub fn pipeline<'a>(&mut self) -> Pipeline<'_, 'a> {
        Pipeline::new(self)
    }

    /// Reads a key's value; `None` when it does not exist (or expired). In cluster mode with
    /// [`ReadFrom::Any`](crate::ReadFrom::Any) a replica may answer.
    pub fn get(&mut self, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>, ClientError> {
        Ok(self.get_versioned(key)?.map(|v| v.value))
    }

    /// Reads a key's value with its version and remaining TTL.
    pub fn get_versioned(
        &mut self,
        key: impl AsRef<[u8]>,
    ) -> Result<Option<Versioned>, ClientError> {
        self.keyed(&Command::Get { key: key.as_ref() })?
            .into_versioned()
    }

    /// Writes a key without expiry (an existing TTL is cleared).
    pub fn set(
        &mut self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
    ) -> Result<(), ClientError> {
        let cmd = Command::set(key.as_ref(), value.as_ref());
        self.keyed(&cmd)?.into_ok()
    }

    /// Writes a key with options: TTL, NX/XX, compare-and-set by version, tags, KEEPTTL.
    /// A condition that does not hold is an outcome, not an error. In cluster mode, a
    /// conditional SET resent after a failover may report its condition failed because its
    /// first copy was applied.
    pub fn set_with(
        &mut self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        opts: &SetOpts,
    ) -> Result<SetOutcome, ClientError> {
        let cmd = set_command(key.as_ref(), value.as_ref(), opts)?;
        SetOutcome::from_reply(self.keyed(&cmd))
    }

    /// Deletes keys; answers how many existed. (In cluster mode a DEL resent after a failover
    /// may count fewer keys than it deleted; the keys are gone either way.)
    pub fn del<K: AsRef<[u8]>>(&mut self, keys: &[K]) -> Result<u64, ClientError> {
        count(self.multi(Command::Del {
            keys: key_refs(keys),
        })?)
    }

    /// Counts how many of the keys exist (a key named twice counts twice).
    pub fn exists<K: AsRef<[u8]>>(&mut self, keys: &[K]) -> Result<u64, ClientError> {
        count(self.multi(Command::Exists {
            keys: key_refs(keys),
        })?)
    }

    /// Marks keys as recently used; answers how many exist.
    pub fn touch<K: AsRef<[u8]>>(&mut self, keys: &[K]) -> Result<u64, ClientError> {
        count(self.multi(Command::Touch {
            keys: key_refs(keys),
        })?)
    }

    /// Sets a key's time to live (a zero duration deletes it); `false` if it does not exist.
    pub fn expire(&mut self, key: impl AsRef<[u8]>, ttl: Duration) -> Result<bool, ClientError> {
        self.keyed(&Command::Expire {
            key: key.as_ref(),
            ms: ceil_ms(ttl),
        })?
        .into_bool()
    }

    /// Removes a key's TTL; `false` if the key does not exist or had none.
    pub fn persist(&mut self, key: impl AsRef<[u8]>) -> Result<bool, ClientError> {
        self.keyed(&Command::Persist { key: key.as_ref() })?
            .into_bool()
    }

    /// A key's remaining time to live.
    pub fn ttl(&mut self, key: impl AsRef<[u8]>) -> Result<Ttl, ClientError> {
        let ms = self
            .keyed(&Command::Ttl {
                key: key.as_ref(),
                millis: true,
            })?
            .into_int()?;
        Ok(Ttl::from_millis(ms))
    }

    /// Adds `delta` to an integer value (a missing key counts as 0); answers the new value.
    ///
    /// In cluster mode, an INCR whose node failed after it was sent is sent again once the
    /// map names a new primary ([`ClientConfig::failover_timeout`]): it may be applied twice.
    pub fn incr_by(&mut self, key: impl AsRef<[u8]>, delta: i64) -> Result<i64, ClientError> {
        self.keyed(&Command::IncrBy {
            key: key.as_ref(),
            delta,
        })?
        .into_int()
    }

    /// Adds one; answers the new value.
    pub fn incr(&mut self, key: impl AsRef<[u8]>) -> Result<i64, ClientError> {
        self.incr_by(key, 1)
    }

    /// Subtracts one; answers the new value.
    pub fn decr(&mut self, key: impl AsRef<[u8]>) -> Result<i64, ClientError> {
        self.incr_by(key, -1)
    }

    /// Reads many keys (split per core); one slot per key, in the order given.
    pub fn mget<K: AsRef<[u8]>>(
        &mut self,
        keys: &[K],
    ) -> Result<Vec<Option<Vec<u8>>>, ClientError> {
        Ok(self
            .mget_versioned(keys)?
            .into_iter()
            .map(|v| v.map(|v| v.value))
            .collect())
    }

    /// Reads many keys with versions and TTLs; one slot per key, in the order given.
    pub fn mget_versioned<K: AsRef<[u8]>>(
        &mut self,
        keys: &[K],
    ) -> Result<Vec<Option<Versioned>>, ClientError> {
        self.multi(Command::MGet {
            keys: key_refs(keys),
        })?
        .into_values()
    }

    /// Writes many keys without expiry (split per core).
    pub fn mset<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        &mut self,
        pairs: &[(K, V)],
    ) -> Result<(), ClientError> {
        let pairs = pairs
            .iter()
            .map(|(k, v)| (k.as_ref(), v.as_ref()))
            .collect();
        self.multi(Command::MSet { pairs })?.into_ok()
    }

    /// Checks that the node answers.
    pub fn ping(&mut self) -> Result<(), ClientError> {
        match self.call_slot(MAIN, &Command::Ping { msg: None })? {
            Reply::Pong => Ok(()),
            other => Err(unexpected("PING", &other)),
        }
    }

    /// Drops every key on every core.
    pub fn flush(&mut self) -> Result<(), ClientError> {
        self.call_slot(MAIN, &Command::Flush)?.into_ok()
    }

    /// Drops every key starting with `prefix`, on every core.
    pub fn invalidate_prefix(&mut self, prefix: impl AsRef<[u8]>) -> Result<(), ClientError> {
        let cmd = Command::InvalidatePrefix {
            prefix: prefix.as_ref(),
        };
        self.call_slot(MAIN, &cmd)?.into_ok()
    }

    /// Drops every key written with tag `tag`, on every core.
    pub fn invalidate_tag(&mut self, tag: impl AsRef<[u8]>) -> Result<(), ClientError> {
        let cmd = Command::InvalidateTag { tag: tag.as_ref() };
        self.call_slot(MAIN, &cmd)?.into_ok()
    }

    /// The node's counters: totals, then `core{i}.{name}` per core.
    pub fn stats(&mut self) -> Result<Vec<(String, u64)>, ClientError> {
        self.call_slot(MAIN, &Command::Stats)?.into_stats()
    }

    /// Sends a PING to every core's own port (opening the connections), so later requests
    /// pay no connection set-up.
    pub fn warm_up(&mut self) -> Result<(), ClientError> {
        for core in 0..self.cores() {
            match self.call_slot(core_slot(core), &Command::Ping { msg: None })? {
                Reply::Pong => {}
                other => return Err(unexpected("PING", &other)),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_rounds_up_to_milliseconds() {
        assert_eq!(ceil_ms(Duration::ZERO), 0);
        assert_eq!(ceil_ms(Duration::from_micros(1)), 1);
        assert_eq!(ceil_ms(Duration::from_millis(1500)), 1500);
        assert_eq!(ceil_ms(Duration::from_micros(1500)), 2);
        assert_eq!(ceil_ms(Duration::MAX), u64::MAX);
    }

    #[test]
    fn set_options_are_checked() {
        let bad = |o: SetOpts| set_command(b"k", b"v", &o).unwrap_err();
        assert!(matches!(
            bad(SetOpts::new().nx().xx()),
            ClientError::InvalidArgument(_)
        ));
        assert!(matches!(
            bad(SetOpts::new().ttl(Duration::ZERO)),
            ClientError::InvalidArgument(_)
        ));
        assert!(matches!(
            bad(SetOpts::new().ttl(Duration::from_secs(1)).keep_ttl()),
            ClientError::InvalidArgument(_)
        ));
        let o = SetOpts::new()
            .ttl(Duration::from_secs(2))
            .xx()
            .if_version(5)
            .tag("t1")
            .tag("t2")
            .get_version();
        assert_eq!(
            set_command(b"k", b"v", &o).unwrap(),
            Command::Set {
                key: b"k",
                value: b"v",
                expiry: Expiry::RelativeMs(2000),
                cond: SetCond::Xx,
                if_version: Some(5),
                tags: vec![b"t1", b"t2"],
                get_version: true,
            }
        );
    }
}
