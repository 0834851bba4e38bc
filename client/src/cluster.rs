//! Cluster mode: the map fetched from the balancer, each key routed to the core of its shard
//! group's primary (or, for reads with [`ReadFrom::Any`], of a member chosen round-robin),
//! redirects, and failover: a node that stops answering makes the client refresh its map and
//! retry, with backoff, for up to [`ClientConfig::failover_timeout`].

use std::cell::Cell;
use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering};

use ringcache_cluster::{
    core_for_key, ClusterMap, ControlReply, GroupId, Member, MemberId, MemberState, RouteError,
};
use ringcache_proto::{Command, Topology};

use crate::client::Client;
use crate::config::{ClientConfig, ReadFrom};
use crate::conn::Conn;
use crate::error::ClientError;
use crate::failover::{next_step, BatchRetry, Failover, Next};
use crate::reply::Reply;
use crate::route::{self, Op, MAIN};

/// The cluster map of a client in cluster mode, with the connection slot of every
/// (member, core) it names.
pub(crate) struct ClusterRoutes {
    pub(crate) map: ClusterMap,
    slots: HashMap<(MemberId, u32), usize>,
    /// Reads sent so far with [`ReadFrom::Any`]: the round-robin turn of the next one.
    next_read: AtomicUsize,
}

impl ClusterRoutes {
    /// Routes by `map`. Connection slots are indexes into `addrs`: an address `prev` had a
    /// slot for keeps it, a new one is appended to `addrs`.
    pub(crate) fn new(
        map: ClusterMap,
        prev: Option<ClusterRoutes>,
        addrs: &mut Vec<SocketAddr>,
    ) -> ClusterRoutes {
        let (mut slots, next_read) = prev
            .map(|c| (c.slots, c.next_read.into_inner()))
            .unwrap_or_default();
        let mut by_addr: HashMap<SocketAddr, usize> =
            slots.values().map(|&s| (addrs[s], s)).collect();
        slots.clear();
        for m in &map.members {
            let Ok(ip) = m.host.parse::<IpAddr>() else {
                continue;
            };
            for (core, &port) in m.core_ports.iter().enumerate() {
                let addr = SocketAddr::new(ip, port);
                let slot = *by_addr.entry(addr).or_insert_with(|| {
                    addrs.push(addr);
                    addrs.len() - 1
                });
                slots.insert((m.id, core as u32), slot);
            }
        }
        ClusterRoutes {
            map,
            slots,
            next_read: AtomicUsize::new(next_read),
        }
    }

    /// The map's epoch as sent in request frames.
    pub(crate) fn epoch(&self) -> u32 {
        u32::try_from(self.map.epoch).unwrap_or(u32::MAX)
    }

    /// The round-robin turn for `cmd` when it is a read that may go to any member (`any`,
    /// [`ReadFrom::Any`] and a reading command), taken from the shared counter.
    pub(crate) fn read_turn(
        &self,
        cmd: &Command<'_>,
        any: bool,
        read_from: ReadFrom,
    ) -> Option<usize> {
        if !any || read_from != ReadFrom::Any || !is_read(cmd) {
            return None;
        }
        Some(self.next_read.fetch_add(1, Ordering::Relaxed))
    }

    /// Plans `cmd`: keys to their primaries' cores, or with `turn` (reads under
    /// [`ReadFrom::Any`]) to the member of each group whose turn it is. Also answers whether a
    /// part goes to a replica. Fails when a key's group has no primary.
    pub(crate) fn plan<'a>(
        &self,
        cmd: Command<'a>,
        turn: Option<usize>,
    ) -> Result<(Op<'a>, bool), ClientError> {
        let failed = Cell::new(None);
        let on_replica = Cell::new(false);
        let op = route::plan_with(cmd, &|k| match route_key(self, k, turn) {
            Ok((slot, replica)) => {
                on_replica.set(on_replica.get() || replica);
                slot
            }
            Err(e) => {
                failed.set(Some(e));
                MAIN
            }
        });
        match failed.into_inner() {
            Some(e) => Err(e),
            None => Ok((op, on_replica.get())),
        }
    }
}

/// The map in a balancer's answer to a removal, or its refusal as an error.
pub(crate) fn decode_remove_reply(body: &[u8]) -> Result<ClusterMap, ClientError> {
    match ringcache_cluster::decode_body::<ControlReply>(body) {
        Ok(ControlReply::Map(Some(map))) => Ok(map),
        Ok(ControlReply::Reject { reason }) => Err(ClientError::Protocol(format!(
            "the balancer refused: {reason}"
        ))),
        Ok(other) => Err(ClientError::Protocol(format!(
            "unexpected answer to a removal: {other:?}"
        ))),
        Err(e) => Err(ClientError::Protocol(e)),
    }
}

/// The cluster map in a balancer's answer to a map request.
pub(crate) fn decode_map_reply(body: &[u8]) -> Result<ClusterMap, ClientError> {
    match ringcache_cluster::decode_body::<ControlReply>(body) {
        Ok(ControlReply::Map(Some(map))) => Ok(map),
        Ok(other) => Err(ClientError::Protocol(format!(
            "unexpected answer to a map request: {other:?}"
        ))),
        Err(e) => Err(ClientError::Protocol(e)),
    }
}

/// Whether `cmd` only reads, so that [`ReadFrom::Any`] may send it to a replica.
fn is_read(cmd: &Command<'_>) -> bool {
    matches!(
        cmd,
        Command::Get { .. }
            | Command::GetVersion { .. }
            | Command::Ttl { .. }
            | Command::Exists { .. }
            | Command::MGet { .. }
    )
}

/// The member of `group` that answers a read on round-robin turn `turn`: the primary and the
/// active replicas (with core ports) in turn. `None` when the group has no such member.
pub(crate) fn read_member(map: &ClusterMap, group: GroupId, turn: usize) -> Option<&Member> {
    let g = map.group(group)?;
    let members = || {
        g.primary
            .into_iter()
            .chain(g.replicas.iter().copied())
            .filter_map(|id| map.member(id))
            .filter(|m| m.state == MemberState::Active && !m.core_ports.is_empty())
    };
    let n = members().count();
    if n == 0 {
        return None;
    }
    members().nth(turn % n)
}

/// The connection slot of `key` by `routes`, and whether it is a replica's: the primary's core,
/// or with `turn` (reads under [`ReadFrom::Any`]) the core of the member whose turn it is.
/// The balancer's slot when the cluster has no group yet.
fn route_key(
    routes: &ClusterRoutes,
    key: &[u8],
    turn: Option<usize>,
) -> Result<(usize, bool), ClientError> {
    let r = match routes.map.route(key) {
        Ok(r) => r,
        Err(RouteError::NoGroups) => return Ok((MAIN, false)),
        Err(RouteError::NoPrimary(group)) => return Err(ClientError::NoPrimary { group }),
    };
    let primary = routes
        .slots
        .get(&(r.member.id, r.core))
        .copied()
        .unwrap_or(MAIN);
    let Some(turn) = turn else {
        return Ok((primary, false));
    };
    match read_member(&routes.map, r.group, turn) {
        Some(m) if m.id != r.member.id => {
            let cores = u32::try_from(m.core_ports.len()).unwrap_or(u32::MAX);
            let core = core_for_key(key, cores);
            Ok(match routes.slots.get(&(m.id, core)) {
                Some(&slot) => (slot, true),
                None => (primary, false),
            })
        }
        _ => Ok((primary, false)),
    }
}

impl Client {
    /// Connects to a cluster through its balancer (e.g. `"127.0.0.1:7379"`): fetches the
    /// cluster map and from then on sends every key straight to the core of the node that owns
    /// it; requests without a key go to the balancer. A redirect (stale map, moved key)
    /// refreshes the map and retries, at most 3 times. A node that fails (connection refused,
    /// reset, timed out) or a group without a live primary makes the client refresh the map
    /// and retry for up to [`ClientConfig::failover_timeout`] (3 s by default).
    pub fn connect_cluster<A: ToSocketAddrs + fmt::Display>(
        balancer: A,
    ) -> Result<Client, ClientError> {
        Client::connect_cluster_with(balancer, ClientConfig::default())
    }

    /// [`Client::connect_cluster`] with explicit settings (failover budget, read preference,
    /// timeouts, ...).
    pub fn connect_cluster_with<A: ToSocketAddrs + fmt::Display>(
        balancer: A,
        cfg: ClientConfig,
    ) -> Result<Client, ClientError> {
        let named = |source| ClientError::Connect {
            addr: balancer.to_string(),
            source,
        };
        let resolved: Vec<SocketAddr> = balancer.to_socket_addrs().map_err(named)?.collect();
        let first = *resolved.first().ok_or_else(|| {
            named(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no address to connect to",
            ))
        })?;
        let reply_limits = crate::codec::reply_limits(&cfg);
        let main = Conn::open(first, &cfg, &reply_limits)?;
        let mut client = Client {
            cfg,
            reply_limits,
            topology: Topology {
                node_id: 0,
                main_port: first.port(),
                cores: Vec::new(),
            },
            addrs: vec![first],
            conns: vec![Some(main)],
            cluster: None,
            epoch: 0,
        };
        client.refresh_map()?;
        Ok(client)
    }

    /// The cluster map this client routes by (cluster mode only).
    pub fn cluster_map(&self) -> Option<&ClusterMap> {
        self.cluster.as_ref().map(|c| &c.map)
    }

    /// Asks the balancer to remove member `id` (a primary hands its ranges on to the other
    /// groups first, then stops), with the cluster secret if the balancer has one; returns the
    /// map as the removal left it (for a primary, with the range move under way).
    pub fn remove_member(
        &mut self,
        id: u64,
        secret: Option<String>,
    ) -> Result<ClusterMap, ClientError> {
        let reply_limits = self.reply_limits;
        let body = ringcache_cluster::encode_body(&ringcache_cluster::RemoveRequest {
            member: id,
            secret,
        });
        let reply = self
            .conn(MAIN)
            .and_then(|c| c.control(ringcache_proto::ClusterOp::Remove, &body, &reply_limits))?;
        decode_remove_reply(&reply)
    }

    /// Fetches the cluster map from the balancer (also works on a client made with
    /// [`Client::connect`] to a balancer, which switches it to cluster mode).
    pub fn refresh_map(&mut self) -> Result<&ClusterMap, ClientError> {
        let reply_limits = self.reply_limits;
        let body = self
            .conn(MAIN)
            .and_then(|c| c.control(ringcache_proto::ClusterOp::Map, &[], &reply_limits));
        let body = match body {
            Ok(b) => b,
            Err(e) => {
                if e.closes_connection() {
                    self.conns[MAIN] = None;
                }
                return Err(e);
            }
        };
        let map = decode_map_reply(&body)?;
        let routes = ClusterRoutes::new(map, self.cluster.take(), &mut self.addrs);
        self.conns.resize_with(self.addrs.len(), || None);
        self.epoch = routes.epoch();
        for c in self.conns.iter_mut().flatten() {
            c.epoch = self.epoch;
        }
        Ok(&self.cluster.insert(routes).map)
    }

    /// The connection slot a key's requests go to (in cluster mode its primary's core, the
    /// balancer when the map names none).
    fn slot_of_key(&self, key: &[u8]) -> usize {
        match &self.cluster {
            None => route::key_slot(key, self.cores()),
            Some(c) => route_key(c, key, None).map_or(MAIN, |(slot, _)| slot),
        }
    }

    /// Plans `cmd` over this client's connections (in cluster mode, keys to their primaries).
    pub(crate) fn plan<'a>(&self, cmd: Command<'a>) -> Op<'a> {
        route::plan_with(cmd, &|k| self.slot_of_key(k))
    }

    /// The round-robin turn for `cmd` when it is a read that may go to any member.
    fn read_turn(&self, cmd: &Command<'_>, any: bool) -> Option<usize> {
        self.cluster
            .as_ref()?
            .read_turn(cmd, any, self.cfg.read_from)
    }

    /// Plans `cmd` in cluster mode ([`ClusterRoutes::plan`]), with the read turn of `any`.
    fn plan_cluster<'a>(
        &mut self,
        cmd: Command<'a>,
        any: bool,
    ) -> Result<(Op<'a>, bool), ClientError> {
        let turn = self.read_turn(&cmd, any);
        match &self.cluster {
            Some(routes) => routes.plan(cmd, turn),
            None => Ok((self.plan(cmd), false)),
        }
    }

    /// A single-key request, sent to the key's core. In cluster mode, redirects refresh the
    /// map and retry; node failures and groups without a primary are ridden out (see
    /// [`ClientConfig::failover_timeout`]); reads may go to a replica first
    /// ([`ClientConfig::read_from`]).
    pub(crate) fn keyed(&mut self, cmd: &Command<'_>) -> Result<Reply, ClientError> {
        if self.cluster.is_none() {
            let slot = cmd.key().map_or(MAIN, |k| self.slot_of_key(k));
            return self.call_slot(slot, cmd);
        }
        let mut any = true;
        let mut redirects = 0;
        let mut failover = Failover::new(&self.cfg);
        loop {
            let turn = self.read_turn(cmd, any);
            let routed = match (&self.cluster, cmd.key()) {
                (Some(routes), Some(k)) => route_key(routes, k, turn),
                _ => Ok((MAIN, false)),
            };
            let (r, on_replica) = match routed {
                Ok((slot, on_replica)) => (self.call_slot(slot, cmd), on_replica),
                Err(e) => (Err(e), false),
            };
            match next_step(&r, on_replica, redirects) {
                Next::Done => return r,
                Next::Primary => any = false,
                Next::Redirect => {
                    redirects += 1;
                    if self.refresh_map().is_err() {
                        return r;
                    }
                }
                Next::Failover => {
                    if !failover.wait() {
                        return r;
                    }
                    // The balancer may be down too: then keep routing by the last map.
                    let _ = self.refresh_map();
                }
            }
        }
    }

    /// A request that may span cores, split per core and merged (in cluster mode: per owner,
    /// with redirects and failover handled as in [`Client::run_cluster`]).
    pub(crate) fn multi(&mut self, cmd: Command<'_>) -> Result<Reply, ClientError> {
        let r = if self.cluster.is_some() {
            self.run_cluster(&[Ok(cmd)]).pop()
        } else {
            let op = self.plan(cmd);
            self.run_ops(&[Ok(op)]).pop()
        };
        r.unwrap_or_else(|| Err(ClientError::Protocol("no reply".into())))
    }

    /// Runs commands in cluster mode, all in one batch ([`Client::run_ops`]), and answers one
    /// result per command, in order. A read sent to a replica that does not serve it goes
    /// again to the primary; redirected commands go again (at most 3 times) after a map
    /// refresh; commands whose node failed, or whose group has no primary, go again after a
    /// pause and a map refresh, within [`ClientConfig::failover_timeout`] for the batch.
    pub(crate) fn run_cluster(
        &mut self,
        cmds: &[Result<Command<'_>, ClientError>],
    ) -> Vec<Result<Reply, ClientError>> {
        let mut batch = BatchRetry::new(cmds, &self.cfg);
        while !batch.todo().is_empty() {
            let mut ops = Vec::with_capacity(batch.todo().len());
            let mut sent = Vec::with_capacity(batch.todo().len());
            let mut unplanned = Vec::new();
            for &i in batch.todo() {
                let Ok(cmd) = &cmds[i] else { continue };
                match self.plan_cluster(cmd.clone(), batch.any(i)) {
                    Ok((op, replica)) => {
                        ops.push(Ok(op));
                        sent.push((i, replica));
                    }
                    Err(e) => unplanned.push((i, e)),
                }
            }
            for (i, e) in unplanned {
                batch.sent(i, Err(e), false);
            }
            if !ops.is_empty() {
                for ((i, replica), r) in sent.into_iter().zip(self.run_ops(&ops)) {
                    batch.sent(i, r, replica);
                }
            }
            let step = batch.settle();
            if let Some(d) = step.pause {
                std::thread::sleep(d);
            }
            let refreshed = !step.refresh || self.refresh_map().is_ok();
            batch.next_round(refreshed);
        }
        batch.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringcache_cluster::Ring;
    use ringcache_cluster::{Role, ShardGroup, DEFAULT_VNODES};

    fn member(id: MemberId, group: GroupId, role: Role, cores: u16) -> Member {
        Member {
            id,
            host: "127.0.0.1".into(),
            main_port: 1000 * id as u16,
            core_ports: (1..=cores).map(|c| 1000 * id as u16 + c).collect(),
            role,
            group: Some(group),
            state: MemberState::Active,
        }
    }

    /// One group (id 1): primary 1 with 2 cores, replicas 2 (3 cores) and 3 (waiting).
    fn map() -> ClusterMap {
        let mut waiting = member(3, 1, Role::Replica, 2);
        waiting.state = MemberState::Waiting;
        ClusterMap {
            epoch: 5,
            members: vec![
                member(1, 1, Role::Primary, 2),
                member(2, 1, Role::Replica, 3),
                waiting,
            ],
            groups: vec![ShardGroup {
                id: 1,
                primary: Some(1),
                replicas: vec![2, 3],
            }],
            ring: Ring::new(&[1], DEFAULT_VNODES),
            moving: None,
        }
    }

    fn routes(map: ClusterMap) -> ClusterRoutes {
        let mut slots = HashMap::new();
        for m in &map.members {
            for core in 0..m.core_ports.len() as u32 {
                slots.insert((m.id, core), 10 * m.id as usize + core as usize);
            }
        }
        ClusterRoutes {
            map,
            slots,
            next_read: AtomicUsize::new(0),
        }
    }

    #[test]
    fn reads_take_turns_over_the_primary_and_active_replicas() {
        let map = map();
        let picked: Vec<MemberId> = (0..6)
            .map(|t| read_member(&map, 1, t).unwrap().id)
            .collect();
        assert_eq!(picked, vec![1, 2, 1, 2, 1, 2]);
        assert!(read_member(&map, 9, 0).is_none());
        let mut lonely = map.clone();
        lonely.groups[0].replicas.clear();
        assert!((0..4).all(|t| read_member(&lonely, 1, t).unwrap().id == 1));
    }

    #[test]
    fn a_replica_read_goes_to_the_core_of_that_replica() {
        let r = routes(map());
        let key = b"some-key";
        let primary_core = core_for_key(key, 2) as usize;
        assert_eq!(
            route_key(&r, key, None).unwrap(),
            (10 + primary_core, false)
        );
        assert_eq!(
            route_key(&r, key, Some(0)).unwrap(),
            (10 + primary_core, false)
        );
        let replica_core = core_for_key(key, 3) as usize;
        assert_eq!(
            route_key(&r, key, Some(1)).unwrap(),
            (20 + replica_core, true)
        );
        // A replica the client has no slot for: the primary answers.
        let mut r = r;
        r.slots.retain(|(m, _), _| *m != 2);
        assert_eq!(
            route_key(&r, key, Some(1)).unwrap(),
            (10 + primary_core, false)
        );
    }

    #[test]
    fn a_group_without_primary_is_named() {
        let mut m = map();
        m.groups[0].primary = None;
        let err = route_key(&routes(m), b"k", None).unwrap_err();
        assert!(matches!(err, ClientError::NoPrimary { group: 1 }));
        assert_eq!(err.to_string(), "shard group 1 has no live primary");
        let empty = routes(ClusterMap::default());
        assert_eq!(route_key(&empty, b"k", Some(0)).unwrap(), (MAIN, false));
    }

    #[test]
    fn only_reads_may_go_to_replicas() {
        assert!(is_read(&Command::Get { key: b"k" }));
        assert!(is_read(&Command::MGet { keys: vec![b"k"] }));
        assert!(!is_read(&Command::IncrBy {
            key: b"k",
            delta: 1
        }));
        assert!(!is_read(&Command::Del { keys: vec![b"k"] }));
    }
}
