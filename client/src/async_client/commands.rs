//! The typed calls of [`AsyncClient`], one per command of the blocking client, with the same
//! arguments and answers: requests built and replies read by the code both clients share.

use std::time::Duration;

use ringcache_proto::Command;

use super::AsyncClient;
use crate::client::{ceil_ms, count, key_refs, set_command};
use crate::error::ClientError;
use crate::reply::{unexpected, Reply, SetOpts, SetOutcome, Ttl, Versioned};
use crate::route::{core_slot, MAIN};

impl AsyncClient {
    /// Reads a key's value; `None` when it does not exist (or expired).
    pub async fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>, ClientError> {
        Ok(self.get_versioned(key).await?.map(|v| v.value))
    }

    /// Reads a key's value with its version and remaining TTL.
    pub async fn get_versioned(
        &self,
        key: impl AsRef<[u8]>,
    ) -> Result<Option<Versioned>, ClientError> {
        self.keyed(&Command::Get { key: key.as_ref() })
            .await?
            .into_versioned()
    }

    /// Writes a key without expiry (an existing TTL is cleared).
    pub async fn set(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
    ) -> Result<(), ClientError> {
        let cmd = Command::set(key.as_ref(), value.as_ref());
        self.keyed(&cmd).await?.into_ok()
    }

    /// Writes a key with options: TTL, NX/XX, compare-and-set by version, tags, KEEPTTL (see
    /// [`Client::set_with`](crate::Client::set_with)).
    pub async fn set_with(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        opts: &SetOpts,
    ) -> Result<SetOutcome, ClientError> {
        let cmd = set_command(key.as_ref(), value.as_ref(), opts)?;
        SetOutcome::from_reply(self.keyed(&cmd).await)
    }

    /// Deletes keys; answers how many existed.
    pub async fn del<K: AsRef<[u8]>>(&self, keys: &[K]) -> Result<u64, ClientError> {
        let cmd = Command::Del {
            keys: key_refs(keys),
        };
        count(self.multi(cmd).await?)
    }

    /// Counts how many of the keys exist (a key named twice counts twice).
    pub async fn exists<K: AsRef<[u8]>>(&self, keys: &[K]) -> Result<u64, ClientError> {
        let cmd = Command::Exists {
            keys: key_refs(keys),
        };
        count(self.multi(cmd).await?)
    }

    /// Marks keys as recently used; answers how many exist.
    pub async fn touch<K: AsRef<[u8]>>(&self, keys: &[K]) -> Result<u64, ClientError> {
        let cmd = Command::Touch {
            keys: key_refs(keys),
        };
        count(self.multi(cmd).await?)
    }

    /// Sets a key's time to live (a zero duration deletes it); `false` if it does not exist.
    pub async fn expire(&self, key: impl AsRef<[u8]>, ttl: Duration) -> Result<bool, ClientError> {
        let cmd = Command::Expire {
            key: key.as_ref(),
            ms: ceil_ms(ttl),
        };
        self.keyed(&cmd).await?.into_bool()
    }

    /// Removes a key's TTL; `false` if the key does not exist or had none.
    pub async fn persist(&self, key: impl AsRef<[u8]>) -> Result<bool, ClientError> {
        self.keyed(&Command::Persist { key: key.as_ref() })
            .await?
            .into_bool()
    }

    /// A key's remaining time to live.
    pub async fn ttl(&self, key: impl AsRef<[u8]>) -> Result<Ttl, ClientError> {
        let cmd = Command::Ttl {
            key: key.as_ref(),
            millis: true,
        };
        Ok(Ttl::from_millis(self.keyed(&cmd).await?.into_int()?))
    }

    /// Adds `delta` to an integer value (a missing key counts as 0); answers the new value.
    /// In cluster mode it may be applied twice when its node fails (see
    /// [`Client::incr_by`](crate::Client::incr_by)).
    pub async fn incr_by(&self, key: impl AsRef<[u8]>, delta: i64) -> Result<i64, ClientError> {
        let cmd = Command::IncrBy {
            key: key.as_ref(),
            delta,
        };
        self.keyed(&cmd).await?.into_int()
    }

    /// Adds one; answers the new value.
    pub async fn incr(&self, key: impl AsRef<[u8]>) -> Result<i64, ClientError> {
        self.incr_by(key, 1).await
    }

    /// Subtracts one; answers the new value.
    pub async fn decr(&self, key: impl AsRef<[u8]>) -> Result<i64, ClientError> {
        self.incr_by(key, -1).await
    }

    /// Reads many keys (split per core); one slot per key, in the order given.
    pub async fn mget<K: AsRef<[u8]>>(
        &self,
        keys: &[K],
    ) -> Result<Vec<Option<Vec<u8>>>, ClientError> {
        Ok(self
            .mget_versioned(keys)
            .await?
            .into_iter()
            .map(|v| v.map(|v| v.value))
            .collect())
    }

    /// Reads many keys with versions and TTLs; one slot per key, in the order given.
    pub async fn mget_versioned<K: AsRef<[u8]>>(
        &self,
        keys: &[K],
    ) -> Result<Vec<Option<Versioned>>, ClientError> {
        let cmd = Command::MGet {
            keys: key_refs(keys),
        };
        self.multi(cmd).await?.into_values()
    }

    /// Writes many keys without expiry (split per core).
    pub async fn mset<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        &self,
        pairs: &[(K, V)],
    ) -> Result<(), ClientError> {
        let pairs = pairs
            .iter()
            .map(|(k, v)| (k.as_ref(), v.as_ref()))
            .collect();
        self.multi(Command::MSet { pairs }).await?.into_ok()
    }

    /// Checks that the node (the balancer in cluster mode) answers.
    pub async fn ping(&self) -> Result<(), ClientError> {
        match self.call_slot(MAIN, &Command::Ping { msg: None }).await? {
            Reply::Pong => Ok(()),
            other => Err(unexpected("PING", &other)),
        }
    }

    /// Drops every key on every core.
    pub async fn flush(&self) -> Result<(), ClientError> {
        self.call_slot(MAIN, &Command::Flush).await?.into_ok()
    }

    /// Drops every key starting with `prefix`, on every core.
    pub async fn invalidate_prefix(&self, prefix: impl AsRef<[u8]>) -> Result<(), ClientError> {
        let cmd = Command::InvalidatePrefix {
            prefix: prefix.as_ref(),
        };
        self.call_slot(MAIN, &cmd).await?.into_ok()
    }

    /// Drops every key written with tag `tag`, on every core.
    pub async fn invalidate_tag(&self, tag: impl AsRef<[u8]>) -> Result<(), ClientError> {
        let cmd = Command::InvalidateTag { tag: tag.as_ref() };
        self.call_slot(MAIN, &cmd).await?.into_ok()
    }

    /// The node's counters: totals, then `core{i}.{name}` per core.
    pub async fn stats(&self) -> Result<Vec<(String, u64)>, ClientError> {
        self.call_slot(MAIN, &Command::Stats).await?.into_stats()
    }

    /// Sends a PING to every core's own port (opening the shared connections), so later
    /// requests pay no connection set-up.
    pub async fn warm_up(&self) -> Result<(), ClientError> {
        for core in 0..self.cores() {
            match self
                .call_slot(core_slot(core), &Command::Ping { msg: None })
                .await?
            {
                Reply::Pong => {}
                other => return Err(unexpected("PING", &other)),
            }
        }
        Ok(())
    }
}
