//! The async client for tokio applications: [`AsyncClient`], cheap to clone and shared by any
//! number of tasks, with one multiplexed connection per (node, core) that every clone uses.
//! Routing, codec, cluster map, retry policy and errors are the blocking client's own.

mod cluster;
mod commands;
mod mux;
mod pipeline;

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use ringcache_proto::{Command, Limits, Topology};
use tokio::net::lookup_host;

use crate::client::core_addrs;
use crate::cluster::ClusterRoutes;
use crate::codec::reply_limits;
use crate::config::ClientConfig;
use crate::error::ClientError;
use crate::pipeline::{merge_ops, resend_part};
use crate::reply::{unexpected, Reply};
use crate::route::{self, idempotent, Op, MAIN};

pub use pipeline::AsyncPipeline;

pub use mux::WriteStats;
use mux::{lock, MuxConn, Req, Sent};

/// Parts queued on one connection: (part index, handle).
type SentParts = Vec<(usize, Sent)>;

/// An async, ring-aware client of a ringcache node or cluster, for tokio.
///
/// `AsyncClient` is `Clone + Send + Sync`: clone it into every task (a clone is one reference
/// count). All clones share one connection per (node, core), opened on first use. Requests
/// of concurrent tasks that meet on a connection leave in one write and are matched to their
/// callers by request id; at most [`ClientConfig::max_in_flight`] are in flight per
/// connection, and callers beyond that wait (back-pressure).
///
/// It behaves as the blocking [`Client`](crate::Client): the same typed calls and
/// [pipelines](AsyncClient::pipeline), each key sent to the core that owns it, multi-key
/// calls split per core, one resend of idempotent requests on a fresh connection, and in
/// cluster mode ([`AsyncClient::connect_cluster`]) routing by the cluster map, redirects,
/// failover ([`ClientConfig::failover_timeout`]) and [`ReadFrom`](crate::ReadFrom).
///
/// Every call is cancellation-safe: dropping its future (a `select!`, a timeout) at any
/// point leaves the connection usable; a reply still to come is read and discarded.
/// Connections run on the tokio runtime of the task that opened them.
///
/// ```no_run
/// use ringcache_client::{AsyncClient, ClientError};
///
/// # async fn run() -> Result<(), ClientError> {
/// let c = AsyncClient::connect("127.0.0.1:7379").await?;
/// let tasks: Vec<_> = (0..100)
///     .map(|i| {
///         let c = c.clone();
///         tokio::spawn(async move { c.set(format!("k{i}"), format!("v{i}")).await })
///     })
///     .collect();
/// for t in tasks {
///     t.await.expect("task panicked")?;
/// }
/// assert_eq!(c.get("k7").await?, Some(b"v7".to_vec()));
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct AsyncClient {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: ClientConfig,
    reply_limits: Limits,
    state: RwLock<State>,
    /// Serialises topology and map refreshes; the generation counts the completed ones.
    refreshing: tokio::sync::Mutex<()>,
    generation: AtomicU64,
}

/// Where requests go: the slots and what routes keys to them.
struct State {
    topology: Topology,
    /// Cluster mode: the map keys are routed by.
    cluster: Option<ClusterRoutes>,
    /// Map epoch sent with every request (0 outside cluster mode).
    epoch: u32,
    /// Slot 0: the main port (the balancer in cluster mode); then one per core (in cluster
    /// mode one per (member, core) of the map).
    addrs: Vec<SocketAddr>,
    slots: Vec<Arc<Slot>>,
}

/// One (node, core) address and its shared connection.
struct Slot {
    addr: SocketAddr,
    conn: Mutex<Option<Arc<MuxConn>>>,
    /// Held while a connection is being opened, so concurrent callers open one.
    opening: tokio::sync::Mutex<()>,
}

impl Slot {
    fn new(addr: SocketAddr) -> Arc<Slot> {
        Arc::new(Slot {
            addr,
            conn: Mutex::new(None),
            opening: tokio::sync::Mutex::new(()),
        })
    }

    fn live(&self) -> Option<Arc<MuxConn>> {
        lock(&self.conn).as_ref().filter(|c| c.is_alive()).cloned()
    }
}

impl fmt::Debug for AsyncClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.inner.read();
        f.debug_struct("AsyncClient")
            .field("addrs", &st.addrs)
            .field(
                "open",
                &st.slots.iter().filter(|s| s.live().is_some()).count(),
            )
            .field("config", &self.inner.cfg)
            .finish()
    }
}

impl Inner {
    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The first of `addr`'s addresses that accepts a connection.
async fn open_first(
    addr: &str,
    cfg: &ClientConfig,
    limits: Limits,
) -> Result<(SocketAddr, Arc<MuxConn>), ClientError> {
    let named = |source| ClientError::Connect {
        addr: addr.to_string(),
        source,
    };
    let resolved: Vec<SocketAddr> = lookup_host(addr).await.map_err(named)?.collect();
    let mut last = None;
    for a in resolved {
        match MuxConn::open(a, cfg, limits).await {
            Ok(c) => return Ok((a, c)),
            Err(ClientError::Connect { source, .. }) => last = Some(source),
            Err(other) => return Err(other),
        }
    }
    Err(named(last.unwrap_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::NotFound, "no address to connect to")
    })))
}

impl AsyncClient {
    /// Connects to a node's main port (e.g. `"127.0.0.1:7379"`) with default settings and
    /// learns its topology.
    pub async fn connect(addr: &str) -> Result<AsyncClient, ClientError> {
        AsyncClient::connect_with(addr, ClientConfig::default()).await
    }

    /// Connects with explicit settings (timeouts, password, in-flight window, ...).
    pub async fn connect_with(addr: &str, cfg: ClientConfig) -> Result<AsyncClient, ClientError> {
        let client = AsyncClient::open_main(addr, cfg).await?;
        client.topology().await?;
        Ok(client)
    }

    /// A client with only its main connection open, not routing yet.
    async fn open_main(addr: &str, cfg: ClientConfig) -> Result<AsyncClient, ClientError> {
        let limits = reply_limits(&cfg);
        let (main_addr, main) = open_first(addr, &cfg, limits).await?;
        let slot = Slot::new(main_addr);
        *lock(&slot.conn) = Some(main);
        Ok(AsyncClient {
            inner: Arc::new(Inner {
                cfg,
                reply_limits: limits,
                state: RwLock::new(State {
                    topology: Topology {
                        node_id: 0,
                        main_port: main_addr.port(),
                        cores: Vec::new(),
                    },
                    cluster: None,
                    epoch: 0,
                    addrs: vec![main_addr],
                    slots: vec![slot],
                }),
                refreshing: tokio::sync::Mutex::new(()),
                generation: AtomicU64::new(0),
            }),
        })
    }

    /// The settings this client runs with.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.cfg
    }

    /// The node's layout as last fetched.
    pub fn cached_topology(&self) -> Topology {
        self.inner.read().topology.clone()
    }

    /// Number of cores of the node.
    pub fn cores(&self) -> u32 {
        u32::try_from(self.inner.read().topology.cores.len()).unwrap_or(u32::MAX)
    }

    /// The core that owns `key` (where its requests are sent).
    pub fn core_for_key(&self, key: impl AsRef<[u8]>) -> u32 {
        ringcache_cluster::core_for_key(key.as_ref(), self.cores())
    }

    /// Asks the node for its layout again and routes by it from now on (connections to
    /// ports that changed are closed once no request uses them).
    pub async fn topology(&self) -> Result<Topology, ClientError> {
        let t = match self.call_slot(MAIN, &Command::Topology).await? {
            Reply::Topology(t) => t,
            other => return Err(unexpected("TOPOLOGY", &other)),
        };
        let mut st = self.inner.write();
        let cores = core_addrs(&t, st.addrs[MAIN].ip())?;
        if t.cores != st.topology.cores {
            st.addrs.truncate(1);
            st.slots.truncate(1);
            st.slots.extend(cores.iter().map(|&a| Slot::new(a)));
            st.addrs.extend(cores);
        }
        st.topology = t.clone();
        Ok(t)
    }

    /// Starts a batch of commands sent together: see [`AsyncPipeline`].
    pub fn pipeline<'a>(&self) -> AsyncPipeline<'_, 'a> {
        AsyncPipeline::new(self)
    }

    /// Writes and request frames of the connections open now, added up (a connection that
    /// closed takes its counts with it): frames per write says how much requests of
    /// concurrent tasks were coalesced.
    pub fn write_stats(&self) -> WriteStats {
        let st = self.inner.read();
        st.slots
            .iter()
            .filter_map(|s| s.live())
            .fold(WriteStats::default(), |acc, c| {
                let s = c.stats();
                WriteStats {
                    writes: acc.writes + s.writes,
                    frames: acc.frames + s.frames,
                }
            })
    }

    /// Connections open now (one per (node, core) in use, shared by every clone).
    pub fn open_connections(&self) -> usize {
        self.inner
            .read()
            .slots
            .iter()
            .filter(|s| s.live().is_some())
            .count()
    }

    /// The slot's address and the map epoch to send with.
    fn slot(&self, slot: usize) -> Result<(Arc<Slot>, u32), ClientError> {
        let st = self.inner.read();
        match st.slots.get(slot) {
            Some(s) => Ok((s.clone(), st.epoch)),
            None => Err(ClientError::Protocol(format!("no connection slot {slot}"))),
        }
    }

    /// The open connection of `slot`, opened if there is none or it broke.
    async fn conn(&self, slot: &Slot) -> Result<Arc<MuxConn>, ClientError> {
        if let Some(c) = slot.live() {
            return Ok(c);
        }
        let _opening = slot.opening.lock().await;
        if let Some(c) = slot.live() {
            return Ok(c);
        }
        let c = MuxConn::open(slot.addr, &self.inner.cfg, self.inner.reply_limits).await?;
        *lock(&slot.conn) = Some(c.clone());
        Ok(c)
    }

    /// One request (command or control frame) on the connection of `slot`, answered within
    /// the read timeout.
    async fn request(&self, slot: usize, req: Req<'_>) -> Result<mux::Answer, ClientError> {
        let (slot, epoch) = self.slot(slot)?;
        let conn = self.conn(&slot).await?;
        conn.call(req, epoch).await
    }

    /// One command on one connection, sent once more on a fresh connection if the first one
    /// broke and the command is idempotent (or was never sent).
    pub(crate) async fn call_slot(
        &self,
        slot: usize,
        cmd: &Command<'_>,
    ) -> Result<Reply, ClientError> {
        let (slot, epoch) = self.slot(slot)?;
        self.call_on(&slot, epoch, cmd).await
    }

    /// [`AsyncClient::call_slot`] on a slot in hand, with the map epoch to send.
    async fn call_on(
        &self,
        slot: &Slot,
        epoch: u32,
        cmd: &Command<'_>,
    ) -> Result<Reply, ClientError> {
        let once = || async {
            let conn = self.conn(slot).await?;
            conn.call(Req::Cmd(cmd), epoch)
                .await
                .and_then(mux::Answer::into_reply)
        };
        let retry = self.inner.cfg.retry_idempotent && idempotent(cmd);
        match once().await {
            Err(e) if resend_part(&e, true, retry, true) => once().await,
            r => r,
        }
    }

    /// The connection slot a key's requests go to outside cluster mode.
    fn plan<'a>(&self, cmd: Command<'a>) -> Op<'a> {
        let cores = self.cores();
        route::plan_with(cmd, &|k| route::key_slot(k, cores))
    }

    /// A single-key (or keyless) request, to the key's core; in cluster mode with redirects,
    /// failover and replica reads as [`AsyncClient::run_cluster`] does them.
    pub(crate) async fn keyed(&self, cmd: &Command<'_>) -> Result<Reply, ClientError> {
        // One look at the state: cluster mode, or the key's core slot and the epoch.
        let target = {
            let st = self.inner.read();
            if st.cluster.is_some() {
                None
            } else {
                let cores = u32::try_from(st.topology.cores.len()).unwrap_or(u32::MAX);
                let slot = cmd.key().map_or(MAIN, |k| route::key_slot(k, cores));
                Some(st.slots.get(slot).cloned().map(|s| (s, st.epoch)))
            }
        };
        match target {
            None => self.run_one_cluster(cmd.clone()).await,
            Some(Some((slot, epoch))) => self.call_on(&slot, epoch, cmd).await,
            Some(None) => Err(ClientError::Protocol(
                "no connection slot for the key's core".into(),
            )),
        }
    }

    /// A request that may span cores, split per core and merged.
    pub(crate) async fn multi(&self, cmd: Command<'_>) -> Result<Reply, ClientError> {
        if self.is_cluster() {
            return self.run_one_cluster(cmd).await;
        }
        let op = self.plan(cmd);
        self.run_ops(&[Ok(op)])
            .await
            .pop()
            .unwrap_or_else(|| Err(ClientError::Protocol("no reply".into())))
    }

    /// Whether the client routes by a cluster map.
    fn is_cluster(&self) -> bool {
        self.inner.read().cluster.is_some()
    }

    /// Runs planned operations: every connection gets its share queued in one go (so it
    /// leaves in one write), then the replies are awaited; a part whose connection broke goes
    /// once more on a fresh connection when that is safe ([`resend_part`]). Answers one
    /// result per operation, in order.
    pub(crate) async fn run_ops(
        &self,
        ops: &[Result<Op<'_>, ClientError>],
    ) -> Vec<Result<Reply, ClientError>> {
        // Part p belongs to op part_op[p].
        let mut part_op = Vec::new();
        let mut parts: Vec<(usize, &Command<'_>)> = Vec::new();
        for (oi, op) in ops.iter().enumerate() {
            if let Ok(op) = op {
                for (slot, cmd) in &op.parts {
                    part_op.push(oi);
                    parts.push((*slot, cmd));
                }
            }
        }
        let mut results: Vec<Option<Result<Reply, ClientError>>> = vec![None; parts.len()];
        let mut todo: Vec<usize> = (0..parts.len()).collect();
        for attempt in 0..2 {
            let failed = self.send_parts(&parts, &todo, &mut results).await;
            todo.clear();
            for (p, e, maybe_sent) in failed {
                let op_retry = matches!(&ops[part_op[p]], Ok(op) if op.retry);
                if attempt == 0
                    && resend_part(&e, maybe_sent, self.inner.cfg.retry_idempotent, op_retry)
                {
                    todo.push(p);
                } else {
                    results[p] = Some(Err(e));
                }
            }
            if todo.is_empty() {
                break;
            }
        }
        merge_ops(ops, results)
    }

    /// Sends parts `todo` (grouped per connection, each group queued at once) and waits for
    /// their replies (each within the read timeout). Fills `results`;
    /// answers the failures as (part, error, whether it may have reached the server).
    async fn send_parts(
        &self,
        parts: &[(usize, &Command<'_>)],
        todo: &[usize],
        results: &mut [Option<Result<Reply, ClientError>>],
    ) -> Vec<(usize, ClientError, bool)> {
        let mut by_slot: Vec<(usize, Vec<usize>)> = Vec::new();
        for &p in todo {
            let slot = parts[p].0;
            match by_slot.iter_mut().find(|(s, _)| *s == slot) {
                Some((_, v)) => v.push(p),
                None => by_slot.push((slot, vec![p])),
            }
        }
        let mut failed = Vec::new();
        let mut waiting: Vec<(Arc<MuxConn>, SentParts)> = Vec::new();
        for (slot, list) in by_slot {
            let opened = match self.slot(slot) {
                Ok((s, epoch)) => self.conn(&s).await.map(|c| (c, epoch)),
                Err(e) => Err(e),
            };
            let (conn, epoch) = match opened {
                Ok(c) => c,
                Err(e) => {
                    failed.extend(list.into_iter().map(|p| (p, e.clone(), false)));
                    continue;
                }
            };
            let reqs: Vec<Req<'_>> = list.iter().map(|&p| Req::Cmd(parts[p].1)).collect();
            let mut sent = Vec::with_capacity(list.len());
            for (p, s) in list.into_iter().zip(conn.submit(&reqs, epoch).await) {
                match s {
                    Ok(s) => sent.push((p, s)),
                    Err(e) if e.is_connection_broken() => failed.push((p, e, false)),
                    Err(e) => results[p] = Some(Err(e)),
                }
            }
            waiting.push((conn, sent));
        }
        for (conn, sent) in waiting {
            for (p, s) in sent {
                match conn.wait(s).await.and_then(mux::Answer::into_reply) {
                    Err(e) if e.is_connection_broken() => failed.push((p, e, true)),
                    r => results[p] = Some(r),
                }
            }
        }
        failed
    }

    /// The refresh generation, to pass to a later refresh so that callers that saw the same
    /// failure refresh once between them.
    fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod mock_cluster_tests;
#[cfg(test)]
mod mock_tests;
