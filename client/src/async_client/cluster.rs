//! Cluster mode of the async client: the map fetched from the balancer, commands routed and
//! retried by the blocking client's [`BatchRetry`] rounds (redirects, failover, replica reads),
//! and map refreshes shared by the tasks that saw the same failure.

use std::sync::atomic::Ordering;

use ringcache_cluster::ClusterMap;
use ringcache_proto::Command;

use super::mux::Req;
use super::{AsyncClient, Slot};
use crate::cluster::{decode_map_reply, decode_remove_reply, ClusterRoutes};
use crate::config::ClientConfig;
use crate::error::ClientError;
use crate::failover::BatchRetry;
use crate::reply::Reply;
use crate::route::{self, MAIN};

impl AsyncClient {
    /// Connects to a cluster through its balancer (e.g. `"127.0.0.1:7379"`): fetches the
    /// cluster map and sends every key straight to the core of the node that owns it, as
    /// [`Client::connect_cluster`](crate::Client::connect_cluster) does.
    pub async fn connect_cluster(balancer: &str) -> Result<AsyncClient, ClientError> {
        AsyncClient::connect_cluster_with(balancer, ClientConfig::default()).await
    }

    /// [`AsyncClient::connect_cluster`] with explicit settings (failover budget, read
    /// preference, timeouts, ...).
    pub async fn connect_cluster_with(
        balancer: &str,
        cfg: ClientConfig,
    ) -> Result<AsyncClient, ClientError> {
        let client = AsyncClient::open_main(balancer, cfg).await?;
        client.refresh_map().await?;
        Ok(client)
    }

    /// The cluster map this client routes by (cluster mode only).
    pub fn cluster_map(&self) -> Option<ClusterMap> {
        self.inner.read().cluster.as_ref().map(|c| c.map.clone())
    }

    /// Fetches the cluster map from the balancer and routes by it from now on (also on a
    /// client made with [`AsyncClient::connect`] to a balancer, which switches it to cluster
    /// mode).
    pub async fn refresh_map(&self) -> Result<ClusterMap, ClientError> {
        let _one = self.inner.refreshing.lock().await;
        self.fetch_map().await
    }

    /// Refreshes the map unless another refresh completed since generation `seen`.
    pub(crate) async fn refresh_since(&self, seen: u64) -> Result<(), ClientError> {
        let _one = self.inner.refreshing.lock().await;
        if self.generation() != seen {
            return Ok(());
        }
        self.fetch_map().await.map(|_| ())
    }

    /// Asks the balancer for the map and installs it; the caller holds `refreshing`.
    async fn fetch_map(&self) -> Result<ClusterMap, ClientError> {
        let req = Req::Control {
            opcode: ringcache_proto::ClusterOp::Map,
            body: &[],
        };
        let body = self.request(MAIN, req).await?.into_control()?;
        let map = decode_map_reply(&body)?;
        {
            let mut st = self.inner.write();
            let st = &mut *st;
            let routes = ClusterRoutes::new(map.clone(), st.cluster.take(), &mut st.addrs);
            let known = st.slots.len();
            st.slots
                .extend(st.addrs[known..].iter().map(|&a| Slot::new(a)));
            st.epoch = routes.epoch();
            st.cluster = Some(routes);
        }
        self.inner.generation.fetch_add(1, Ordering::AcqRel);
        Ok(map)
    }

    /// Asks the balancer to remove member `id` (see
    /// [`Client::remove_member`](crate::Client::remove_member)); returns the map as the
    /// removal left it.
    pub async fn remove_member(
        &self,
        id: u64,
        secret: Option<String>,
    ) -> Result<ClusterMap, ClientError> {
        let body = ringcache_cluster::encode_body(&ringcache_cluster::RemoveRequest {
            member: id,
            secret,
        });
        let req = Req::Control {
            opcode: ringcache_proto::ClusterOp::Remove,
            body: &body,
        };
        let reply = self.request(MAIN, req).await?.into_control()?;
        decode_remove_reply(&reply)
    }

    /// One command in cluster mode (see [`AsyncClient::run_cluster`]).
    pub(crate) async fn run_one_cluster(&self, cmd: Command<'_>) -> Result<Reply, ClientError> {
        self.run_cluster(&[Ok(cmd)])
            .await
            .pop()
            .unwrap_or_else(|| Err(ClientError::Protocol("no reply".into())))
    }

    /// Runs commands in cluster mode in rounds of [`BatchRetry`], each round's commands sent
    /// together ([`AsyncClient::run_ops`]): a read a replica did not serve goes again to the
    /// primary, redirected commands go again after a map refresh, commands whose node failed
    /// or whose group has no primary go again after a pause and a refresh, within
    /// [`ClientConfig::failover_timeout`] for the batch. One result per command, in order.
    pub(crate) async fn run_cluster(
        &self,
        cmds: &[Result<Command<'_>, ClientError>],
    ) -> Vec<Result<Reply, ClientError>> {
        let read_from = self.inner.cfg.read_from;
        let mut batch = BatchRetry::new(cmds, &self.inner.cfg);
        // Bounded: BatchRetry ends every command within its redirect and failover budgets.
        while !batch.todo().is_empty() {
            let seen = self.generation();
            let mut ops = Vec::with_capacity(batch.todo().len());
            let mut sent = Vec::with_capacity(batch.todo().len());
            let mut unplanned = Vec::new();
            {
                let st = self.inner.read();
                let cores = u32::try_from(st.topology.cores.len()).unwrap_or(u32::MAX);
                for &i in batch.todo() {
                    let Ok(cmd) = &cmds[i] else { continue };
                    let planned = match &st.cluster {
                        Some(routes) => {
                            let turn = routes.read_turn(cmd, batch.any(i), read_from);
                            routes.plan(cmd.clone(), turn)
                        }
                        None => Ok((
                            route::plan_with(cmd.clone(), &|k| route::key_slot(k, cores)),
                            false,
                        )),
                    };
                    match planned {
                        Ok((op, replica)) => {
                            ops.push(Ok(op));
                            sent.push((i, replica));
                        }
                        Err(e) => unplanned.push((i, e)),
                    }
                }
            }
            for (i, e) in unplanned {
                batch.sent(i, Err(e), false);
            }
            if !ops.is_empty() {
                for ((i, replica), r) in sent.into_iter().zip(self.run_ops(&ops).await) {
                    batch.sent(i, r, replica);
                }
            }
            let step = batch.settle();
            if let Some(d) = step.pause {
                tokio::time::sleep(d).await;
            }
            let refreshed = !step.refresh || self.refresh_since(seen).await.is_ok();
            batch.next_round(refreshed);
        }
        batch.finish()
    }
}
