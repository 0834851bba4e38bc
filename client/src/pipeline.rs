//! Batches: many commands sent together, one write per connection, answers in order.

use std::time::Duration;

use ringcache_proto::{Command, Expiry, SetCond};

use crate::client::{set_command, Client};
use crate::error::ClientError;
use crate::reply::{Reply, SetOpts};
use crate::route::Op;

/// A batch of commands collected with the builder methods and sent by [`Pipeline::execute`].
///
/// Each command is routed like its [`Client`] counterpart (multi-key commands are split per
/// core). `execute` writes every connection's share of the batch in one write, then reads the
/// replies, matching them to requests by request id, and answers one result per command in
/// the order the commands were added. A failed command (a server error such as WRONGTYPE, or
/// a broken connection) fails alone; the others keep their answers.
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
    ops: Vec<Result<Op<'a>, ClientError>>,
    /// The commands (cluster mode only), to plan again after a redirect.
    cmds: Vec<Option<Command<'a>>>,
}

impl<'c, 'a> Pipeline<'c, 'a> {
    pub(crate) fn new(client: &'c mut Client) -> Self {
        Pipeline {
            client,
            ops: Vec::new(),
            cmds: Vec::new(),
        }
    }

    fn push(&mut self, cmd: Command<'a>) -> &mut Self {
        if self.client.cluster_map().is_some() {
            self.cmds.push(Some(cmd.clone()));
        }
        let op = self.client.plan(cmd);
        self.ops.push(Ok(op));
        self
    }

    /// Number of commands collected.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether no command was collected.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// GET: answers [`Reply::Value`] or [`Reply::Nil`] (see [`Reply::into_value`]).
    pub fn get<K: AsRef<[u8]> + ?Sized>(&mut self, key: &'a K) -> &mut Self {
        self.push(Command::Get { key: key.as_ref() })
    }

    /// SET without options: answers [`Reply::Ok`].
    pub fn set<K, V>(&mut self, key: &'a K, value: &'a V) -> &mut Self
    where
        K: AsRef<[u8]> + ?Sized,
        V: AsRef<[u8]> + ?Sized,
    {
        self.push(Command::Set {
            key: key.as_ref(),
            value: value.as_ref(),
            expiry: Expiry::None,
            cond: SetCond::Always,
            if_version: None,
            tags: Vec::new(),
            get_version: false,
        })
    }

    /// SET with options; read the answer with [`SetOutcome::from_reply`](crate::SetOutcome::from_reply).
    pub fn set_with<K, V>(&mut self, key: &'a K, value: &'a V, opts: &'a SetOpts) -> &mut Self
    where
        K: AsRef<[u8]> + ?Sized,
        V: AsRef<[u8]> + ?Sized,
    {
        match set_command(key.as_ref(), value.as_ref(), opts) {
            Ok(cmd) => self.push(cmd),
            Err(e) => {
                self.ops.push(Err(e));
                if self.client.cluster_map().is_some() {
                    self.cmds.push(None);
                }
                self
            }
        }
    }

    /// DEL: answers [`Reply::Int`], the number of keys that existed.
    pub fn del<K: AsRef<[u8]>>(&mut self, keys: &'a [K]) -> &mut Self {
        self.push(Command::Del {
            keys: keys.iter().map(AsRef::as_ref).collect(),
        })
    }

    /// EXISTS: answers [`Reply::Int`].
    pub fn exists<K: AsRef<[u8]>>(&mut self, keys: &'a [K]) -> &mut Self {
        self.push(Command::Exists {
            keys: keys.iter().map(AsRef::as_ref).collect(),
        })
    }

    /// TOUCH: answers [`Reply::Int`].
    pub fn touch<K: AsRef<[u8]>>(&mut self, keys: &'a [K]) -> &mut Self {
        self.push(Command::Touch {
            keys: keys.iter().map(AsRef::as_ref).collect(),
        })
    }

    /// EXPIRE: answers [`Reply::Bool`].
    pub fn expire<K: AsRef<[u8]> + ?Sized>(&mut self, key: &'a K, ttl: Duration) -> &mut Self {
        let ms = u64::try_from(ttl.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX);
        self.push(Command::Expire {
            key: key.as_ref(),
            ms,
        })
    }

    /// PERSIST: answers [`Reply::Bool`].
    pub fn persist<K: AsRef<[u8]> + ?Sized>(&mut self, key: &'a K) -> &mut Self {
        self.push(Command::Persist { key: key.as_ref() })
    }

    /// PTTL: answers [`Reply::Int`] in milliseconds, -1 without expiry, -2 missing.
    pub fn ttl<K: AsRef<[u8]> + ?Sized>(&mut self, key: &'a K) -> &mut Self {
        self.push(Command::Ttl {
            key: key.as_ref(),
            millis: true,
        })
    }

    /// INCRBY: answers [`Reply::Int`], the new value.
    pub fn incr_by<K: AsRef<[u8]> + ?Sized>(&mut self, key: &'a K, delta: i64) -> &mut Self {
        self.push(Command::IncrBy {
            key: key.as_ref(),
            delta,
        })
    }

    /// MGET: answers [`Reply::Values`] in key order.
    pub fn mget<K: AsRef<[u8]>>(&mut self, keys: &'a [K]) -> &mut Self {
        self.push(Command::MGet {
            keys: keys.iter().map(AsRef::as_ref).collect(),
        })
    }

    /// MSET: answers [`Reply::Ok`].
    pub fn mset<K: AsRef<[u8]>, V: AsRef<[u8]>>(&mut self, pairs: &'a [(K, V)]) -> &mut Self {
        self.push(Command::MSet {
            pairs: pairs
                .iter()
                .map(|(k, v)| (k.as_ref(), v.as_ref()))
                .collect(),
        })
    }

    /// PING: answers [`Reply::Pong`].
    pub fn ping(&mut self) -> &mut Self {
        self.push(Command::Ping { msg: None })
    }

    /// FLUSH: answers [`Reply::Ok`].
    pub fn flush(&mut self) -> &mut Self {
        self.push(Command::Flush)
    }

    /// INVALIDATE PREFIX: answers [`Reply::Ok`].
    pub fn invalidate_prefix<P: AsRef<[u8]> + ?Sized>(&mut self, prefix: &'a P) -> &mut Self {
        self.push(Command::InvalidatePrefix {
            prefix: prefix.as_ref(),
        })
    }

    /// INVALIDATE TAG: answers [`Reply::Ok`].
    pub fn invalidate_tag<T: AsRef<[u8]> + ?Sized>(&mut self, tag: &'a T) -> &mut Self {
        self.push(Command::InvalidateTag { tag: tag.as_ref() })
    }

    /// STATS: answers [`Reply::Stats`].
    pub fn stats(&mut self) -> &mut Self {
        self.push(Command::Stats)
    }

    /// Sends the batch and answers one result per command, in the order they were added.
    pub fn execute(self) -> Vec<Result<Reply, ClientError>> {
        if self.ops.is_empty() {
            return Vec::new();
        }
        let mut results = self.client.run_ops(&self.ops);
        // Cluster mode: commands answered with a redirect go again after a map refresh.
        for _ in 0..3 {
            let redirected: Vec<usize> = (0..results.len())
                .filter(|&i| crate::client::is_redirect(&results[i]) && self.cmds.len() > i)
                .collect();
            if redirected.is_empty() || self.client.refresh_map().is_err() {
                break;
            }
            let ops: Vec<_> = redirected
                .iter()
                .filter_map(|&i| self.cmds[i].clone())
                .map(|c| Ok(self.client.plan(c)))
                .collect();
            if ops.len() != redirected.len() {
                break;
            }
            for (i, r) in redirected.into_iter().zip(self.client.run_ops(&ops)) {
                results[i] = r;
            }
        }
        results
    }
}
