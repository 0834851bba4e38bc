//! How the balancer answers a client request: plan it against the map (one owner, split per
//! owner, every primary, or answered locally), send the parts to the node cores, then wait for
//! them and merge their replies into one.

use std::net::{IpAddr, SocketAddr};

use bytes::BytesMut;
use futures_channel::oneshot;
use ringcache_cluster::multi_key::{split, Merge};
use ringcache_cluster::ClusterMap;
use ringcache_proto::{
    decode_frame, decode_response, encode_request, Command, Epoch, ErrorKind, Limits, Opcode,
    ReplyTo, Response, Wire,
};

use super::backend::BackendReply;
use super::state::{Shared, State};

/// Appends `resp` as the reply to request `rid` (command `op`) in protocol `wire`.
fn encode_reply(
    out: &mut BytesMut,
    wire: Wire,
    op: Opcode,
    rid: u64,
    epoch: Epoch,
    resp: &Response<'_>,
) {
    ReplyTo {
        wire,
        op,
        request_id: rid,
        epoch,
    }
    .encode(out, resp);
}

/// A reply whose place is fixed but whose bytes may not be there yet.
pub(super) enum Pending {
    Ready(BytesMut),
    Wait {
        parts: Vec<oneshot::Receiver<BackendReply>>,
        merge: Merge,
        wire: Wire,
        op: Opcode,
        rid: u64,
    },
}

pub(super) fn ready(wire: Wire, op: Opcode, rid: u64, epoch: u32, resp: &Response<'_>) -> Pending {
    let mut b = BytesMut::new();
    encode_reply(&mut b, wire, op, rid, epoch, resp);
    Pending::Ready(b)
}

/// Where a key goes: the owning primary's core port.
fn target(map: &ClusterMap, key: &[u8]) -> Result<SocketAddr, String> {
    let r = map.route(key).map_err(|e| e.to_string())?;
    let ip: IpAddr = r
        .member
        .host
        .parse()
        .map_err(|_| format!("member {} has a bad host {}", r.member.id, r.member.host))?;
    Ok(SocketAddr::new(ip, r.port))
}

/// Sends one request to `addr`, returning the waiter of its reply.
fn send(
    st: &mut State,
    addr: SocketAddr,
    cmd: &Command<'_>,
    epoch: u32,
) -> oneshot::Receiver<BackendReply> {
    let (tx, rx) = oneshot::channel();
    let mut b = BytesMut::new();
    if let Err(e) = encode_request(&mut b, 0, epoch, cmd) {
        let _ = tx.send(Err(e.to_string()));
        return rx;
    }
    let job = (b.to_vec(), tx);
    if let Err(e) = st.backend(addr).unbounded_send(job) {
        let (_, tx) = e.into_inner();
        let _ = tx.send(Err(format!("node {addr} is unreachable")));
    }
    rx
}

/// Plans and sends a client request; local commands are answered at once.
pub(super) fn route_command(state: &Shared, cmd: &Command<'_>, wire: Wire, rid: u64) -> Pending {
    let op = cmd.opcode();
    let mut st = state.borrow_mut();
    let map = st.map.clone();
    let epoch = map.epoch as u32;
    let local = |resp: &Response<'_>| ready(wire, op, rid, epoch, resp);
    let wait = |parts, merge| Pending::Wait {
        parts,
        merge,
        wire,
        op,
        rid,
    };
    if let Some(key) = cmd.key() {
        return match target(&map, key) {
            Ok(addr) => wait(vec![send(&mut st, addr, cmd, epoch)], Merge::One),
            Err(msg) => local(&Response::error(ErrorKind::Busy, msg)),
        };
    }
    match split(cmd, |k| target(&map, k)) {
        Ok(Some(s)) => {
            let parts = s
                .parts
                .iter()
                .map(|(addr, part)| send(&mut st, *addr, part, epoch))
                .collect();
            return wait(parts, s.merge);
        }
        Ok(None) => {}
        Err(msg) => return local(&Response::error(ErrorKind::Busy, msg)),
    }
    if let Command::MSetNx { pairs } = cmd {
        // Atomic only inside one node (and there, one core): keys of several shard groups get
        // Redis Cluster's CROSSSLOT, as do keys of several cores of the node.
        let mut addrs = Vec::with_capacity(pairs.len());
        for (k, _) in pairs {
            match target(&map, k) {
                Ok(a) => addrs.push(a),
                Err(msg) => return local(&Response::error(ErrorKind::Busy, msg)),
            }
        }
        return match addrs.first() {
            Some(first) if addrs.iter().all(|a| a == first) => {
                wait(vec![send(&mut st, *first, cmd, epoch)], Merge::One)
            }
            _ => local(&Response::error(
                ErrorKind::CrossSlot,
                "Keys in request don't hash to the same slot",
            )),
        };
    }
    match cmd {
        Command::Flush
        | Command::InvalidatePrefix { .. }
        | Command::InvalidateTag { .. }
        | Command::DbSize => {
            let addrs: Vec<SocketAddr> = map
                .groups
                .iter()
                .filter_map(|g| g.primary.and_then(|p| map.member(p)))
                .filter_map(|m| Some(SocketAddr::new(m.host.parse().ok()?, m.main_port)))
                .collect();
            let parts = addrs
                .into_iter()
                .map(|a| send(&mut st, a, cmd, epoch))
                .collect();
            // DBSIZE: every primary's count, added up (replicas hold copies, not more keys).
            let merge = if matches!(cmd, Command::DbSize) {
                Merge::Sum
            } else {
                Merge::AllOk
            };
            wait(parts, merge)
        }
        Command::Ping { msg: None } => local(&Response::Pong),
        Command::Ping { msg: Some(m) } => local(&Response::Bulk(m)),
        Command::Stats => {
            let fields = vec![
                ("cluster_epoch".into(), map.epoch),
                ("cluster_members".into(), map.members.len() as u64),
                ("cluster_groups".into(), map.groups.len() as u64),
                ("backend_connections".into(), st.backends.len() as u64),
            ];
            local(&Response::Stats(fields))
        }
        Command::Topology => local(&Response::Topology(ringcache_proto::Topology {
            node_id: 0,
            main_port: st.port,
            cores: vec![ringcache_proto::CoreInfo {
                core: 0,
                port: st.port,
            }],
        })),
        Command::ConfigGet { pattern } => {
            let pairs: Vec<(&[u8], &[u8])> = match pattern.to_ascii_lowercase().as_slice() {
                b"save" => vec![(b"save", b"")],
                b"appendonly" => vec![(b"appendonly", b"no")],
                _ => Vec::new(),
            };
            local(&Response::Pairs(pairs))
        }
        Command::Scan { .. } | Command::Keys { .. } => local(&Response::error(
            ErrorKind::Unsupported,
            "KEYS and SCAN are not supported through the balancer yet: send them to each \
             primary node",
        )),
        Command::CommandDocs => local(&Response::Values(Vec::new())),
        Command::Select { db: 0 }
        | Command::ClientSetInfo
        | Command::ClientSetName { .. }
        | Command::Quit
        | Command::Hello { .. } => local(&Response::Ok),
        other => local(&Response::error(
            ErrorKind::Unsupported,
            format!("{:?} is not supported by the balancer", other.opcode()),
        )),
    }
}

/// Waits for a routed request's parts and appends its one reply.
pub(super) async fn finish(p: Pending, out: &mut BytesMut, limits: &Limits) {
    let (parts, merge, wire, op, rid) = match p {
        Pending::Ready(b) => {
            out.extend_from_slice(&b);
            return;
        }
        Pending::Wait {
            parts,
            merge,
            wire,
            op,
            rid,
        } => (parts, merge, wire, op, rid),
    };
    let mut frames: Vec<Vec<u8>> = Vec::with_capacity(parts.len());
    for rx in parts {
        match rx.await {
            Ok(Ok(f)) => frames.push(f),
            Ok(Err(msg)) => {
                let resp = Response::error(ErrorKind::Busy, msg);
                return encode_reply(out, wire, op, rid, 0, &resp);
            }
            Err(_) => {
                let resp = Response::error(ErrorKind::Internal, "node connection dropped");
                return encode_reply(out, wire, op, rid, 0, &resp);
            }
        }
    }
    if let (Merge::One, Wire::Native, [f]) = (&merge, wire, frames.as_mut_slice()) {
        if let Ok(Some(frame)) = decode_frame(f, limits) {
            frame.set_request_id(f, rid);
            out.extend_from_slice(f);
            return;
        }
    }
    let mut resps = Vec::with_capacity(frames.len());
    let mut epoch = 0;
    for f in &frames {
        let decoded = decode_frame(f, limits)
            .map_err(|e| e.to_string())
            .and_then(|fr| fr.ok_or_else(|| "truncated reply".to_string()))
            .and_then(|fr| {
                epoch = fr.header.epoch;
                decode_response(&fr.header, fr.body(f), limits).map_err(|e| e.to_string())
            });
        match decoded {
            Ok(r) => resps.push(r),
            Err(msg) => {
                let resp = Response::error(ErrorKind::Internal, msg);
                return encode_reply(out, wire, op, rid, 0, &resp);
            }
        }
    }
    if let Some(err) = resps.iter().find(|r| matches!(r, Response::Error { .. })) {
        return encode_reply(out, wire, op, rid, epoch, err);
    }
    let resp = match merge {
        Merge::One => resps.pop().unwrap_or(Response::Nil),
        Merge::AllOk => Response::Ok,
        Merge::Sum => Response::Int(
            resps
                .iter()
                .map(|r| match r {
                    Response::Int(n) => *n,
                    _ => 0,
                })
                .sum(),
        ),
        Merge::MGet { .. } => {
            let parts = resps.iter().map(|r| match r {
                Response::Values(vs) => vs.clone(),
                _ => Vec::new(),
            });
            match merge.place(parts) {
                Ok(values) => Response::Values(values),
                Err(e) => Response::error(ErrorKind::Internal, e.to_string()),
            }
        }
    };
    encode_reply(out, wire, op, rid, epoch, &resp);
}
