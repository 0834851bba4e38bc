//! The tasks behind one replica link: connect (retrying with backoff while the replica is in
//! the group), say hello, let the core queue the catch-up, then write whatever is queued while
//! a second task reads the replica's acks from a duplicate of the socket.

use std::os::fd::{AsRawFd, FromRawFd};
use std::rc::Rc;
use std::time::Duration;

use bytes::BytesMut;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use glommio::{spawn_local, timer::sleep};
use ringcache_cluster::replication::{StreamHello, StreamPosition};
use ringcache_cluster::{decode_body, encode_body};
use ringcache_proto::control::{encode_control, REPL_ACK, REPL_HELLO, REPL_SYNCED};
use ringcache_proto::{decode_frame, Limits, FLAG_RESPONSE};
use tracing::{debug, info};

use crate::core_state::{now_ms, SharedCore};
use crate::replication::ReplLink;

/// Longest wait for a replica to connect or answer the hello.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest pause between connection attempts.
const MAX_BACKOFF: Duration = Duration::from_millis(500);

/// Starts the tasks of `link` on this core; they end once the link is closed.
pub fn spawn_link(core: SharedCore, link: Rc<ReplLink>) {
    spawn_local(run(core, link)).detach();
}

async fn run(core: SharedCore, link: Rc<ReplLink>) {
    let mut backoff = Duration::from_millis(20);
    while !link.state.borrow().closed {
        match session(&core, &link).await {
            Ok(()) => {}
            Err(e) => debug!(replica = link.member, addr = %link.addr, "replication link: {e}"),
        }
        {
            let mut st = link.state.borrow_mut();
            // What was queued is resent by the next catch-up (backlog or copy).
            if st.streaming {
                backoff = Duration::from_millis(20);
            }
            st.streaming = false;
            st.broken = false;
            st.copy_from = None;
            st.out.clear();
            // A finished range move is not reconnected: the ring switched, its keys' new owner
            // serves them.
            if st.closed || st.drain {
                break;
            }
        }
        sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    debug!(replica = link.member, "replication link closed");
}

async fn session(core: &SharedCore, link: &Rc<ReplLink>) -> std::io::Result<()> {
    let mut stream = TcpStream::connect_timeout(link.addr, HANDSHAKE_TIMEOUT).await?;
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT));
    let hello = {
        let c = core.borrow();
        StreamHello {
            stream: c.repl.stream,
            primary_core: c.id,
            primary_cores: c.cores,
            group: c.cluster.as_ref().and_then(|v| v.group).unwrap_or(0),
            moving: link.filter.is_some(),
            secret: c.cfg_secret.clone(),
            epoch: c.cluster.as_ref().map_or(0, |v| v.map.epoch),
        }
    };
    let mut out = BytesMut::new();
    encode_control(&mut out, REPL_HELLO, false, 0, 0, &encode_body(&hello));
    stream.write_all(&out).await?;
    let limits = Limits::default();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let pos: StreamPosition = loop {
        if let Some(f) = decode_frame(&buf, &limits).map_err(invalid)? {
            if f.header.opcode != REPL_HELLO || f.header.flags & FLAG_RESPONSE == 0 {
                return Err(invalid("the replica answered the hello with another frame"));
            }
            let pos = decode_body(f.body(&buf)).map_err(invalid)?;
            buf.drain(..f.len());
            break pos;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(invalid(
                "the replica closed the connection during the hello",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    if link.state.borrow().closed {
        return Ok(());
    }
    let plan = core.borrow_mut().repl.start_stream(link, &pos);
    info!(replica = link.member, addr = %link.addr, ?plan, "replica stream started");
    let _ = stream.set_read_timeout(None);
    // SAFETY: dup(2) of a socket we own returns a new descriptor for the same socket (or -1,
    // checked); the new TcpStream owns it and closes it on drop.
    let dup = unsafe { libc::dup(stream.as_raw_fd()) };
    if dup < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let reader = unsafe { TcpStream::from_raw_fd(dup) };
    let acks = spawn_local(read_acks(core.clone(), link.clone(), reader, buf));
    let result = write_loop(core, link, &mut stream).await;
    drop(acks);
    result
}

async fn write_loop(
    core: &SharedCore,
    link: &Rc<ReplLink>,
    stream: &mut TcpStream,
) -> std::io::Result<()> {
    let mut buf = BytesMut::new();
    loop {
        {
            let mut c = core.borrow_mut();
            let c = &mut *c;
            c.repl.fill_copy(link, &c.shard, now_ms());
            let mut st = link.state.borrow_mut();
            if st.closed {
                return Ok(());
            }
            if st.broken {
                return Err(invalid("the replica stopped acknowledging"));
            }
            if st.drain && st.out.is_empty() {
                // A finished range move: what it held is written; the receiver applies it.
                st.closed = true;
                return Ok(());
            }
            std::mem::swap(&mut buf, &mut st.out);
        }
        if buf.is_empty() {
            link.doorbell.wait().await;
            continue;
        }
        stream.write_all(&buf).await?;
        buf.clear();
    }
}

async fn read_acks(core: SharedCore, link: Rc<ReplLink>, mut stream: TcpStream, mut buf: Vec<u8>) {
    let limits = Limits::default();
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        loop {
            match decode_frame(&buf, &limits) {
                Ok(Some(f)) => {
                    match f.header.opcode {
                        REPL_ACK => core.borrow_mut().repl.on_ack(link.id, f.header.request_id),
                        REPL_SYNCED => {
                            let mut c = core.borrow_mut();
                            c.repl.on_copied(&link);
                            c.publish_progress();
                        }
                        _ => {}
                    }
                    let len = f.len();
                    buf.drain(..len);
                }
                Ok(None) => break,
                Err(_) => {
                    link.state.borrow_mut().broken = true;
                    link.doorbell.ring();
                    return;
                }
            }
        }
        match stream.read(&mut chunk).await {
            Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => {
                link.state.borrow_mut().broken = true;
                link.doorbell.ring();
                return;
            }
        }
    }
}

fn invalid(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())
}

/// After a new map reached this core: a primary opens links to its group's replicas (the same
/// core index on each) and closes links to members gone; any other role closes them all; a
/// primary on the ring streams the keys a range move hands to other groups. A node moved to
/// another group forgets the old group's data; after the ring changed, a member drops the keys
/// its group no longer owns.
pub fn on_map(core: &SharedCore, previous: Option<&crate::cluster_link::NodeView>) {
    use ringcache_cluster::{MemberState, Role};
    let mut c = core.borrow_mut();
    let Some(view) = c.cluster.clone() else {
        return;
    };
    let previous_group = previous.and_then(|p| p.group);
    if previous_group.is_some() && view.group.is_some() && previous_group != view.group {
        info!(
            from = ?previous_group,
            to = ?view.group,
            "moved to another shard group: dropping the old group's data"
        );
        c.shard.flush();
    } else if let (Some(p), Some(g)) = (previous, view.group) {
        if p.map.ring != view.map.ring && !view.map.ring.groups().is_empty() {
            let ring = &view.map.ring;
            let n = c
                .shard
                .remove_where(|k| ring.owner(ringcache_cluster::key_hash(k)) != Some(g));
            if n > 0 {
                info!(
                    dropped = n,
                    "the ring changed: dropped keys other groups own now"
                );
            }
        }
    }
    let me = view.map.member(view.member);
    let wanted: Vec<(ringcache_cluster::MemberId, std::net::SocketAddr)> = match me {
        Some(m) if m.role == Role::Primary => view
            .group
            .and_then(|g| view.map.group(g))
            .map(|g| {
                g.replicas
                    .iter()
                    .filter_map(|&r| view.map.member(r))
                    .filter(|r| r.state == MemberState::Active)
                    .filter_map(|r| {
                        let port = r.core_ports.get(c.id as usize).copied()?;
                        let ip = r.host.parse().ok()?;
                        Some((r.id, std::net::SocketAddr::new(ip, port)))
                    })
                    .collect()
            })
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    let is_primary = me.is_some_and(|m| m.role == Role::Primary);
    if !is_primary && c.repl.is_active() {
        c.repl.stop_all();
    }
    c.repl.set_recording(is_primary);
    let mut added = c.repl.set_replicas(&wanted);
    let (move_id, targets) = move_targets(&view, c.id, is_primary);
    added.extend(c.repl.set_moves(move_id, targets));
    c.publish_progress();
    drop(c);
    for link in added {
        spawn_link(core.clone(), link);
    }
}

/// The range-move links core `core` of this node needs: one per core of each group's primary
/// that receives some of its keys. Only a primary of a group on the current ring is a source.
fn move_targets(
    view: &std::sync::Arc<crate::cluster_link::NodeView>,
    core: u32,
    is_primary: bool,
) -> (
    u64,
    Vec<(
        ringcache_cluster::MemberId,
        std::net::SocketAddr,
        crate::replication::MoveFilter,
    )>,
) {
    let (Some(m), Some(mine)) = (view.map.moving.as_ref(), view.group) else {
        return (0, Vec::new());
    };
    if !is_primary || !view.map.ring.groups().contains(&mine) {
        return (0, Vec::new());
    }
    let receivers: Vec<ringcache_cluster::GroupId> = if m.leaving.contains(&mine) {
        m.next_ring.groups().to_vec()
    } else {
        m.joining.clone()
    };
    let mut out = Vec::new();
    for g in receivers.into_iter().filter(|&g| g != mine) {
        let Some(p) = view
            .map
            .group(g)
            .and_then(|sg| sg.primary)
            .and_then(|p| view.map.member(p))
        else {
            continue;
        };
        let Ok(ip) = p.host.parse::<std::net::IpAddr>() else {
            continue;
        };
        let cores = p.core_ports.len() as u32;
        for (c, &port) in p.core_ports.iter().enumerate() {
            let filter = crate::replication::MoveFilter {
                view: view.clone(),
                group: g,
                core: c as u32,
                cores,
            };
            out.push((p.id, std::net::SocketAddr::new(ip, port), filter));
        }
    }
    let _ = core;
    (m.id, out)
}
