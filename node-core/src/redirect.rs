//! Whether a request may run here: in cluster mode, a request sent with a stale map epoch, a
//! write to a replica, a read from a replica still catching up, or a key another group owns is
//! answered with a redirect naming the current epoch.

use ringcache_cluster::multi_key::multi_keys;
use ringcache_cluster::Role;
use ringcache_proto::{Command, Epoch, ErrorKind, Response};

use crate::core_state::CoreState;

impl CoreState {
    /// The redirect owed to `cmd` sent with map epoch `epoch` (0: the sender does not track
    /// the map), or `None` when it may run here. Outside a cluster nothing is redirected.
    pub fn cluster_redirect(&self, cmd: &Command<'_>, epoch: Epoch) -> Option<Response<'static>> {
        let view = self.cluster.as_deref()?;
        let current = u32::try_from(view.map.epoch).unwrap_or(u32::MAX);
        let redirect = |msg: String| Response::error(ErrorKind::Redirect { epoch: current }, msg);
        if epoch != 0 && epoch < current {
            return Some(redirect(format!(
                "request sent with cluster map epoch {epoch}; fetch the current map"
            )));
        }
        let mine = view.group?;
        if view.role() == Some(Role::Replica) {
            if cmd.is_write() {
                return Some(redirect(format!(
                    "this member is a replica of shard group {mine}: send writes to its primary"
                )));
            }
            if !self.streams.caught_up() && cmd.key().is_some() {
                return Some(redirect(format!(
                    "this replica of shard group {mine} is still catching up: read from the primary"
                )));
            }
        }
        let foreign = |k: &[u8]| view.map.group_for_key(k).filter(|&g| g != mine);
        let other = match cmd.key() {
            Some(k) => foreign(k),
            None => multi_keys(cmd).and_then(|keys| keys.iter().find_map(|k| foreign(k))),
        };
        other.map(|g| redirect(format!("key belongs to shard group {g}, not {mine}")))
    }
}

#[cfg(test)]
mod tests {
    use crate::core_state::test_support::{core, map, view};
    use ringcache_cluster::key_hash;
    use ringcache_cluster::replication::WriteAck;
    use ringcache_proto::{Command, ErrorKind, Response};

    fn key_of_group(m: &ringcache_cluster::ClusterMap, g: u32) -> Vec<u8> {
        (0..10_000)
            .map(|i| format!("key{i}").into_bytes())
            .find(|k| m.ring.owner(key_hash(k)) == Some(g))
            .unwrap_or_default()
    }

    fn redirect_epoch(r: Option<Response<'static>>) -> Option<u32> {
        match r? {
            Response::Error {
                kind: ErrorKind::Redirect { epoch },
                ..
            } => Some(epoch),
            _ => None,
        }
    }

    #[test]
    fn nothing_is_redirected_outside_a_cluster() {
        let c = core(0, 1, WriteAck::All);
        assert!(c.cluster_redirect(&Command::Get { key: b"k" }, 5).is_none());
    }

    #[test]
    fn stale_epochs_and_foreign_keys_are_redirected_with_the_current_epoch() {
        let m = map(2, 1, 1, 7);
        let (mine, theirs) = (key_of_group(&m, 1), key_of_group(&m, 2));
        let mut c = core(0, 1, WriteAck::All);
        c.cluster = Some(view(m, 1));
        assert!(c
            .cluster_redirect(&Command::Get { key: &mine }, 7)
            .is_none());
        assert!(c
            .cluster_redirect(&Command::Get { key: &mine }, 0)
            .is_none());
        assert_eq!(
            redirect_epoch(c.cluster_redirect(&Command::Get { key: &mine }, 6)),
            Some(7)
        );
        assert_eq!(
            redirect_epoch(c.cluster_redirect(&Command::Get { key: &theirs }, 7)),
            Some(7)
        );
        let mixed = Command::MGet {
            keys: vec![&mine, &theirs],
        };
        assert_eq!(redirect_epoch(c.cluster_redirect(&mixed, 0)), Some(7));
        // Commands without keys run anywhere.
        assert!(c.cluster_redirect(&Command::Stats, 7).is_none());
    }

    #[test]
    fn a_replica_refuses_writes_and_reads_until_caught_up() {
        let m = map(1, 1, 1, 3);
        let k = key_of_group(&m, 1);
        let mut c = core(0, 1, WriteAck::All);
        c.cluster = Some(view(m, 101));
        let set = Command::set(&k, b"v");
        assert!(redirect_epoch(c.cluster_redirect(&set, 3)).is_some());
        assert!(redirect_epoch(c.cluster_redirect(&Command::Get { key: &k }, 3)).is_some());
        c.streams.hello(9, 1);
        c.streams.synced(9, 0);
        assert!(c.cluster_redirect(&Command::Get { key: &k }, 3).is_none());
        assert!(redirect_epoch(c.cluster_redirect(&set, 3)).is_some());
    }
}
