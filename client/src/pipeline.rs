//! Batches: many commands sent together, one write per connection, answers in order.

use ringcache_proto::Command;

use crate::client::Client;
use crate::conn::ReplySlots;
use crate::error::ClientError;
use crate::reply::Reply;
use crate::route::{self, Op};

/// The builder methods of a batch, shared by [`Pipeline`] and the async client's pipeline:
/// each adds one command with `self.push` and answers `&mut Self`.
macro_rules! batch_builders {
    () => {
        /// GET: answers [`Reply::Value`](crate::Reply::Value) or [`Reply::Nil`](crate::Reply::Nil) (see [`Reply::into_value`](crate::Reply::into_value)).
        pub fn get<K: AsRef<[u8]> + ?Sized>(&mut self, key: &'a K) -> &mut Self {
            self.push(Ok(::ringcache_proto::Command::Get { key: key.as_ref() }))
        }

        /// SET without options: answers [`Reply::Ok`](crate::Reply::Ok).
        pub fn set<K, V>(&mut self, key: &'a K, value: &'a V) -> &mut Self
        where
            K: AsRef<[u8]> + ?Sized,
            V: AsRef<[u8]> + ?Sized,
        {
            self.push(Ok(::ringcache_proto::Command::set(
                key.as_ref(),
                value.as_ref(),
            )))
        }

        /// SET with options; read the answer with [`SetOutcome::from_reply`](crate::SetOutcome::from_reply).
        pub fn set_with<K, V>(
            &mut self,
            key: &'a K,
            value: &'a V,
            opts: &'a $crate::SetOpts,
        ) -> &mut Self
        where
            K: AsRef<[u8]> + ?Sized,
            V: AsRef<[u8]> + ?Sized,
        {
            self.push($crate::client::set_command(
                key.as_ref(),
                value.as_ref(),
                opts,
            ))
        }

        /// DEL: answers [`Reply::Int`](crate::Reply::Int), the number of keys that existed.
        pub fn del<K: AsRef<[u8]>>(&mut self, keys: &'a [K]) -> &mut Self {
            self.push(Ok(::ringcache_proto::Command::Del {
                keys: keys.iter().map(AsRef::as_ref).collect(),
            }))
        }

        /// EXISTS: answers [`Reply::Int`](crate::Reply::Int).
        pub fn exists<K: AsRef<[u8]>>(&mut self, keys: &'a [K]) -> &mut Self {
            self.push(Ok(::ringcache_proto::Command::Exists {
                keys: keys.iter().map(AsRef::as_ref).collect(),
            }))
        }

        /// TOUCH: answers [`Reply::Int`](crate::Reply::Int).
        pub fn touch<K: AsRef<[u8]>>(&mut self, keys: &'a [K]) -> &mut Self {
            self.push(Ok(::ringcache_proto::Command::Touch {
                keys: keys.iter().map(AsRef::as_ref).collect(),
            }))
        }

        /// EXPIRE: answers [`Reply::Bool`](crate::Reply::Bool).
        pub fn expire<K: AsRef<[u8]> + ?Sized>(
            &mut self,
            key: &'a K,
            ttl: ::std::time::Duration,
        ) -> &mut Self {
            let ms = u64::try_from(ttl.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX);
            self.push(Ok(::ringcache_proto::Command::Expire {
                key: key.as_ref(),
                ms,
            }))
        }

        /// PERSIST: answers [`Reply::Bool`](crate::Reply::Bool).
        pub fn persist<K: AsRef<[u8]> + ?Sized>(&mut self, key: &'a K) -> &mut Self {
            self.push(Ok(::ringcache_proto::Command::Persist {
                key: key.as_ref(),
            }))
        }

        /// PTTL: answers [`Reply::Int`](crate::Reply::Int) in milliseconds, -1 without expiry, -2 missing.
        pub fn ttl<K: AsRef<[u8]> + ?Sized>(&mut self, key: &'a K) -> &mut Self {
            self.push(Ok(::ringcache_proto::Command::Ttl {
                key: key.as_ref(),
                millis: true,
            }))
        }

        /// INCRBY: answers [`Reply::Int`](crate::Reply::Int), the new value.
        pub fn incr_by<K: AsRef<[u8]> + ?Sized>(&mut self, key: &'a K, delta: i64) -> &mut Self {
            self.push(Ok(::ringcache_proto::Command::IncrBy {
                key: key.as_ref(),
                delta,
            }))
        }

        /// MGET: answers [`Reply::Values`](crate::Reply::Values) in key order.
        pub fn mget<K: AsRef<[u8]>>(&mut self, keys: &'a [K]) -> &mut Self {
            self.push(Ok(::ringcache_proto::Command::MGet {
                keys: keys.iter().map(AsRef::as_ref).collect(),
            }))
        }

        /// MSET: answers [`Reply::Ok`](crate::Reply::Ok).
        pub fn mset<K: AsRef<[u8]>, V: AsRef<[u8]>>(&mut self, pairs: &'a [(K, V)]) -> &mut Self {
            self.push(Ok(::ringcache_proto::Command::MSet {
                pairs: pairs
                    .iter()
                    .map(|(k, v)| (k.as_ref(), v.as_ref()))
                    .collect(),
            }))
        }

        /// PING: answers [`Reply::Pong`](crate::Reply::Pong).
        pub fn ping(&mut self) -> &mut Self {
            self.push(Ok(::ringcache_proto::Command::Ping { msg: None }))
        }

        /// FLUSH: answers [`Reply::Ok`](crate::Reply::Ok).
        pub fn flush(&mut self) -> &mut Self {
            self.push(Ok(::ringcache_proto::Command::Flush))
        }

        /// INVALIDATE PREFIX: answers [`Reply::Ok`](crate::Reply::Ok).
        pub fn invalidate_prefix<P: AsRef<[u8]> + ?Sized>(&mut self, prefix: &'a P) -> &mut Self {
            self.push(Ok(::ringcache_proto::Command::InvalidatePrefix {
                prefix: prefix.as_ref(),
            }))
        }

        /// INVALIDATE TAG: answers [`Reply::Ok`](crate::Reply::Ok).
        pub fn invalidate_tag<T: AsRef<[u8]> + ?Sized>(&mut self, tag: &'a T) -> &mut Self {
            self.push(Ok(::ringcache_proto::Command::InvalidateTag {
                tag: tag.as_ref(),
            }))
        }

        /// STATS: answers [`Reply::Stats`](crate::Reply::Stats).
        pub fn stats(&mut self) -> &mut Self {
            self.push(Ok(::ringcache_proto::Command::Stats))
        }
    };
}
#[cfg(feature = "tokio")]
pub(crate) use batch_builders;

/// A batch of commands collected with the builder methods and sent by [`Pipeline::execute`].
///
/// Each command is routed like its [`Client`] counterpart (multi-key commands are split per
/// core). `execute` writes every connection's share of the batch in one write, then reads the
/// replies, matching them to requests by request id, and answers one result per command in
/// the order the commands were added. A failed command (a server error such as WRONGTYPE, or
/// a broken connection) fails alone; the others keep their answers.
///
/// In cluster mode, commands answered with a redirect go again after a map refresh, and
/// commands whose node failed go again after the map names a new primary, within
/// [`ClientConfig::failover_timeout`](crate::ClientConfig::failover_timeout) for the whole
/// batch (an INCR among them may then be applied twice).
///
/// ```no_run
/// use ringcache_client::{Client, Reply};
///
/// let mut c = Client::connect("127.0.0.1:7379")?;
/// let mut p = c.pipeline();
/// p.set("a", "1").incr_by("counter", 5).get("a").mget(&["a", "b"]);
/// let results = p.execute();
/// assert_eq!(results[2].clone()?.into_value()?, Some(b"1".to_vec()));
/// # Ok::<(), ringcache_client::ClientError>(())
/// ```
#[must_use = "a pipeline does nothing until it is executed"]
pub struct Pipeline<'c, 'a> {
    client: &'c mut Client,
    /// The planned commands (single-node mode).
    ops: Vec<Result<Op<'a>, ClientError>>,
    /// The commands (cluster mode), planned when the batch is executed.
    cmds: Vec<Result<Command<'a>, ClientError>>,
}

impl<'c, 'a> Pipeline<'c, 'a> {
    pub(crate) fn new(client: &'c mut Client) -> Self {
        Pipeline {
            client,
            ops: Vec::new(),
            cmds: Vec::new(),
        }
    }

    fn push(&mut self, cmd: Result<Command<'a>, ClientError>) -> &mut Self {
        if self.client.cluster_map().is_some() {
            self.cmds.push(cmd);
        } else {
            self.ops.push(cmd.map(|c| self.client.plan(c)));
        }
        self
    }

    /// Number of commands collected.
    pub fn len(&self) -> usize {
        // Only one of the two is filled.
        self.ops.len() + self.cmds.len()
    }

    /// Whether no command was collected.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    batch_builders!();

    /// Sends the batch and answers one result per command, in the order they were added.
    pub fn execute(self) -> Vec<Result<Reply, ClientError>> {
        if !self.cmds.is_empty() {
            return self.client.run_cluster(&self.cmds);
        }
        if self.ops.is_empty() {
            return Vec::new();
        }
        self.client.run_ops(&self.ops)
    }
}

/// Whether a part that failed with `e` goes once more on a fresh connection: only when its
/// connection broke, and then if it cannot have reached the server, or it is idempotent
/// (`op_retry`) and the client resends idempotent requests.
pub(crate) fn resend_part(
    e: &ClientError,
    maybe_sent: bool,
    retry_idempotent: bool,
    op_retry: bool,
) -> bool {
    e.is_connection_broken() && (!maybe_sent || (retry_idempotent && op_retry))
}

/// Merges the parts' results (all operations' parts, in order) back into one answer per
/// operation. Each operation takes exactly its own parts, even when one of them failed.
pub(crate) fn merge_ops(
    ops: &[Result<Op<'_>, ClientError>],
    results: Vec<Option<Result<Reply, ClientError>>>,
) -> Vec<Result<Reply, ClientError>> {
    let mut results = results.into_iter();
    ops.iter()
        .map(|op| match op {
            Err(e) => Err(e.clone()),
            Ok(op) => {
                let parts: Vec<_> = results
                    .by_ref()
                    .take(op.parts.len())
                    .map(|r| r.unwrap_or_else(|| Err(ClientError::Protocol("no reply".into()))))
                    .collect();
                route::merge(&op.merge, parts)
            }
        })
        .collect()
}

impl Client {
    /// Runs planned operations: every connection gets its requests in one write, then the
    /// replies are read and matched by request id; answers come back in operation order.
    pub(crate) fn run_ops(
        &mut self,
        ops: &[Result<Op<'_>, ClientError>],
    ) -> Vec<Result<Reply, ClientError>> {
        // Flatten parts: part p belongs to op part_op[p].
        let mut part_op = Vec::new();
        let mut part_ref: Vec<(usize, &Command<'_>)> = Vec::new();
        for (oi, op) in ops.iter().enumerate() {
            if let Ok(op) = op {
                for (slot, cmd) in &op.parts {
                    part_op.push(oi);
                    part_ref.push((*slot, cmd));
                }
            }
        }
        let mut results: Vec<Option<Result<Reply, ClientError>>> = vec![None; part_ref.len()];
        let mut pending: Vec<Vec<usize>> = vec![Vec::new(); self.conns.len()];
        for (p, (slot, _)) in part_ref.iter().enumerate() {
            pending[*slot].push(p);
        }
        let (limits, reply_limits) = (self.cfg.limits, self.reply_limits);
        for attempt in 0..2 {
            // (part, error, whether it may have reached the server)
            let mut failed: Vec<(usize, ClientError, bool)> = Vec::new();
            let mut sent: Vec<(usize, ReplySlots)> = Vec::new();
            for (slot, list) in pending.iter_mut().enumerate() {
                if list.is_empty() {
                    continue;
                }
                let list = std::mem::take(list);
                let conn = match self.conn(slot) {
                    Ok(c) => c,
                    Err(e) => {
                        failed.extend(list.into_iter().map(|p| (p, e.clone(), false)));
                        continue;
                    }
                };
                let mut ids = Vec::with_capacity(list.len());
                for p in list {
                    match conn.queue(part_ref[p].1, &limits) {
                        Ok(id) => ids.push((id, p)),
                        Err(e) => results[p] = Some(Err(e)),
                    }
                }
                if ids.is_empty() {
                    continue;
                }
                match conn.flush() {
                    Ok(()) => sent.push((slot, ReplySlots::new(ids))),
                    Err(e) => {
                        self.conns[slot] = None;
                        failed.extend(ids.into_iter().map(|(_, p)| (p, e.clone(), true)));
                    }
                }
            }
            for (slot, mut slots) in sent {
                let Some(conn) = self.conns[slot].as_mut() else {
                    continue;
                };
                let mut broke = None;
                while slots.left() > 0 {
                    let got = conn
                        .recv(&reply_limits)
                        .and_then(|(rid, reply)| Ok((slots.take(rid)?, reply)));
                    match got {
                        Ok((p, reply)) => results[p] = Some(reply),
                        Err(e) => {
                            broke = Some(e);
                            break;
                        }
                    }
                }
                if let Some(e) = broke {
                    self.conns[slot] = None;
                    failed.extend(slots.unanswered().map(|p| (p, e.clone(), true)));
                }
            }
            for (p, e, maybe_sent) in failed {
                let retry = attempt == 0
                    && resend_part(
                        &e,
                        maybe_sent,
                        self.cfg.retry_idempotent,
                        matches!(&ops[part_op[p]], Ok(op) if op.retry),
                    );
                if retry {
                    pending[part_ref[p].0].push(p);
                } else {
                    results[p] = Some(Err(e));
                }
            }
            if pending.iter().all(Vec::is_empty) {
                break;
            }
            for list in &mut pending {
                list.sort_unstable();
            }
        }
        merge_ops(ops, results)
    }
}
