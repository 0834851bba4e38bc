//! Where each request goes: a list of endpoints (one socket per endpoint per connection) and a
//! key -> endpoint function.
//!
//! - `resp` / `memcached`: one endpoint, the server.
//! - `ringcache` on one node: one endpoint per core (found with TOPOLOGY), a key goes to
//!   `core_for_key(key, cores)`.
//! - `ringcache --cluster`: the cluster map fetched from a balancer; one endpoint per core of
//!   every shard group's primary, a key goes to the (member, core) its route names. Requests
//!   carry the map's epoch, so a node whose map is newer answers REDIRECT.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;

use anyhow::{ensure, Context};
use ringcache_cluster::{core_for_key, ClusterMap, MemberId};

/// How a key picks its endpoint.
#[derive(Debug, Clone, Default)]
pub enum KeyRoute {
    /// Endpoint `core_for_key(key, n)` among `n` endpoints (the cores of one node, in core
    /// order); a single endpoint takes every key.
    #[default]
    Cores,
    /// By the cluster map's route.
    Cluster(Arc<ClusterRoutes>),
}

/// A cluster map and the endpoint index of each routed member's core 0 (its cores follow).
#[derive(Debug, Clone)]
pub struct ClusterRoutes {
    /// The map routed by.
    pub map: ClusterMap,
    /// Member id -> index of the endpoint of its core 0.
    pub base: HashMap<MemberId, usize>,
}

impl KeyRoute {
    /// Index of `key`'s endpoint among `n` endpoints. A key the map cannot route (no group,
    /// no live primary) goes to endpoint 0, whose node then answers with an error.
    #[inline]
    pub fn endpoint(&self, key: &[u8], n: usize) -> usize {
        match self {
            KeyRoute::Cores if n > 1 => core_for_key(key, n as u32) as usize,
            KeyRoute::Cores => 0,
            KeyRoute::Cluster(c) => match c.map.route(key) {
                Ok(r) => c.base.get(&r.member.id).map_or(0, |&b| b + r.core as usize),
                Err(_) => 0,
            },
        }
    }
}

/// The endpoints of a run and how keys are spread over them.
#[derive(Debug, Clone)]
pub struct Endpoints {
    /// One socket per endpoint per connection.
    pub addrs: Vec<SocketAddr>,
    /// Key -> index into `addrs`.
    pub route: KeyRoute,
    /// Cluster map epoch sent in native request headers (0 outside a cluster).
    pub epoch: u32,
}

impl Endpoints {
    /// A single server address (resp, memcached).
    pub fn single(addr: SocketAddr) -> Self {
        Endpoints {
            addrs: vec![addr],
            route: KeyRoute::Cores,
            epoch: 0,
        }
    }

    /// The core ports of one node, in core order.
    pub fn cores(addrs: Vec<SocketAddr>) -> Self {
        Endpoints {
            addrs,
            route: KeyRoute::Cores,
            epoch: 0,
        }
    }

    /// Every core of every shard group's primary in `map`; member hosts are resolved with
    /// `resolve` (host, port) -> address.
    pub fn from_map(
        map: ClusterMap,
        resolve: impl Fn(&str, u16) -> anyhow::Result<SocketAddr>,
    ) -> anyhow::Result<Self> {
        ensure!(!map.groups.is_empty(), "the cluster map has no shard group");
        let mut addrs = Vec::new();
        let mut base = HashMap::new();
        for g in &map.groups {
            let id = g
                .primary
                .with_context(|| format!("shard group {} has no live primary", g.id))?;
            if base.contains_key(&id) {
                continue;
            }
            let m = map
                .member(id)
                .with_context(|| format!("primary {id} of group {} is not in the map", g.id))?;
            base.insert(id, addrs.len());
            if m.core_ports.is_empty() {
                addrs.push(resolve(&m.host, m.main_port)?);
            }
            for &port in &m.core_ports {
                addrs.push(resolve(&m.host, port)?);
            }
        }
        let epoch = u32::try_from(map.epoch).unwrap_or(u32::MAX);
        Ok(Endpoints {
            addrs,
            route: KeyRoute::Cluster(Arc::new(ClusterRoutes { map, base })),
            epoch,
        })
    }

    /// Index of `key`'s endpoint.
    #[inline]
    pub fn endpoint(&self, key: &[u8]) -> usize {
        self.route.endpoint(key, self.addrs.len())
    }
}

/// Resolves `host:port` to its first address.
pub fn resolve(host: &str, port: u16) -> anyhow::Result<SocketAddr> {
    (host, port)
        .to_socket_addrs()
        .with_context(|| format!("resolving {host}:{port}"))?
        .next()
        .with_context(|| format!("{host} resolves to no address"))
}

/// Fetches the cluster map from the balancer at `balancer` (the control frame
/// `ringcache-client` sends) and builds the endpoints of its primaries.
pub fn fetch_cluster(balancer: SocketAddr) -> anyhow::Result<Endpoints> {
    let ctx = || {
        format!(
            "fetching the cluster map from {balancer} (is a ringcache balancer listening there?)"
        )
    };
    let client = ringcache_client::Client::connect_cluster(balancer).with_context(ctx)?;
    let map = client
        .cluster_map()
        .cloned()
        .context("the client holds no cluster map")
        .with_context(ctx)?;
    Endpoints::from_map(map, resolve).with_context(ctx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringcache_cluster::{Member, MemberState, Ring, Role, ShardGroup, DEFAULT_VNODES};

    fn member(id: MemberId, group: u32, role: Role, ports: &[u16]) -> Member {
        Member {
            id,
            host: "127.0.0.1".into(),
            main_port: 9000 + id as u16,
            core_ports: ports.to_vec(),
            role,
            group: Some(group),
            state: MemberState::Active,
        }
    }

    /// Three groups (primaries with 2, 1 and 3 cores), group 2 with a replica.
    fn map() -> ClusterMap {
        let groups: Vec<ShardGroup> = [(1, 10), (2, 20), (3, 30)]
            .into_iter()
            .map(|(g, p)| ShardGroup {
                id: g,
                primary: Some(p),
                replicas: if g == 2 { vec![21] } else { vec![] },
            })
            .collect();
        let ids: Vec<u32> = groups.iter().map(|g| g.id).collect();
        ClusterMap {
            epoch: 7,
            members: vec![
                member(10, 1, Role::Primary, &[1001, 1002]),
                member(20, 2, Role::Primary, &[2001]),
                member(21, 2, Role::Replica, &[2101, 2102]),
                member(30, 3, Role::Primary, &[3001, 3002, 3003]),
            ],
            groups,
            ring: Ring::new(&ids, DEFAULT_VNODES),
            moving: None,
        }
    }

    fn fake_resolve(host: &str, port: u16) -> anyhow::Result<SocketAddr> {
        Ok(SocketAddr::new(host.parse()?, port))
    }

    #[test]
    fn cluster_keys_go_to_their_owners_core_port() {
        let m = map();
        let e = Endpoints::from_map(m.clone(), fake_resolve).unwrap();
        assert_eq!(e.epoch, 7);
        // Every core of every primary, the replica left out.
        let mut ports: Vec<u16> = e.addrs.iter().map(|a| a.port()).collect();
        ports.sort_unstable();
        assert_eq!(ports, [1001, 1002, 2001, 3001, 3002, 3003]);
        let mut used = vec![0u32; e.addrs.len()];
        for i in 0..20_000u32 {
            let key = format!("key:{i:012}");
            let r = m.route(key.as_bytes()).unwrap();
            let ix = e.endpoint(key.as_bytes());
            assert_eq!(e.addrs[ix].port(), r.port, "{key}");
            used[ix] += 1;
        }
        assert!(used.iter().all(|&n| n > 1000), "{used:?}");
    }

    #[test]
    fn single_node_routes_by_core() {
        let addrs: Vec<SocketAddr> = (0..3)
            .map(|p| SocketAddr::from(([127, 0, 0, 1], 7000 + p)))
            .collect();
        let e = Endpoints::cores(addrs);
        assert_eq!(e.epoch, 0);
        for i in 0..1000u32 {
            let key = format!("k{i}");
            assert_eq!(
                e.endpoint(key.as_bytes()),
                core_for_key(key.as_bytes(), 3) as usize
            );
        }
        let one = Endpoints::single(SocketAddr::from(([127, 0, 0, 1], 6379)));
        assert_eq!(one.endpoint(b"anything"), 0);
    }

    #[test]
    fn unusable_maps_are_refused() {
        assert!(Endpoints::from_map(ClusterMap::default(), fake_resolve).is_err());
        let mut m = map();
        m.groups[1].primary = None;
        assert!(Endpoints::from_map(m, fake_resolve).is_err());
    }
}
