//! The balancer's control plane: the membership state machine shared by every core, the
//! control frames nodes send (JOIN, HEARTBEAT, MAP, REMOVE, LEAVE), map pushes to subscribed
//! connections, and the map as text for operators.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use bytes::BytesMut;
use futures_channel::mpsc;
use futures_lite::{AsyncWriteExt, StreamExt};
use glommio::net::TcpStream;
use ringcache_cluster::{
    decode_body, encode_body, secret_matches, Action, ClusterMap, ControlReply, Event, Heartbeat,
    JoinRequest, Membership, RemoveRequest,
};
use ringcache_proto::control::encode_control;
use ringcache_proto::ClusterOp;
use tracing::{debug, info, warn};

/// The control plane, shared by the balancer's cores: the membership state machine and the
/// senders that hand every new map to each core. Only control frames and the ticker take the
/// lock; the data path reads each core's own copy of the map.
pub(super) struct Control {
    /// Joins and removals must carry it, when set.
    pub(super) secret: Option<String>,
    pub(super) membership: Membership,
    pub(super) map: Arc<ClusterMap>,
    pub(super) started: Instant,
    pub(super) cores: Vec<mpsc::UnboundedSender<Arc<ClusterMap>>>,
    /// Connections subscribed to map changes (nodes, clients).
    pub(super) subscribers: Vec<mpsc::UnboundedSender<Arc<ClusterMap>>>,
}

impl Control {
    pub(super) fn handle(&mut self, event: Event) -> Vec<Action> {
        let now = self.started.elapsed().as_millis() as u64;
        let actions = self.membership.handle(event, now);
        for a in &actions {
            match a {
                Action::PublishMap => {
                    let map = Arc::new(self.membership.map().clone());
                    info!(
                        epoch = map.epoch,
                        members = map.members.len(),
                        groups = map.groups.len(),
                        "cluster map changed"
                    );
                    for c in &self.cores {
                        let _ = c.unbounded_send(map.clone());
                    }
                    self.subscribers
                        .retain(|s| s.unbounded_send(map.clone()).is_ok());
                    self.map = map;
                }
                Action::Dead { member } => warn!(member, "member missed its heartbeats: dead"),
                Action::Promoted { member, group } => info!(member, group, "member promoted"),
                Action::Welcome { member, group } => info!(member, ?group, "member joined"),
                Action::Reject { reason } => warn!(%reason, "join refused"),
                Action::Rejoin { member } => debug!(member, "unknown member told to rejoin"),
                Action::Removed { member } => info!(member, "removed member told to stop"),
                Action::MoveStarted { id } => info!(id, "range move started"),
                Action::MoveDone { id } => info!(id, "range move done: the ring switched"),
                Action::ReplicaMoved { member, from, to } => {
                    info!(member, from, to, "replica moved to a group that had none")
                }
            }
        }
        actions
    }
}

pub(super) type SharedControl = Arc<Mutex<Control>>;

pub(super) fn lock(c: &SharedControl) -> MutexGuard<'_, Control> {
    c.lock().unwrap_or_else(|e| e.into_inner())
}

/// Answers a control request; returns the reply and the map after it (the calling core routes
/// by it at once; the others get it by message).
pub(super) fn control_request(
    control: &SharedControl,
    opcode: ClusterOp,
    body: &[u8],
) -> (ControlReply, Arc<ClusterMap>) {
    let mut st = lock(control);
    let reply = control_locked(&mut st, opcode, body);
    (reply, st.map.clone())
}

fn control_locked(st: &mut Control, opcode: ClusterOp, body: &[u8]) -> ControlReply {
    match opcode {
        ClusterOp::Join => {
            let req: JoinRequest = match decode_body(body) {
                Ok(r) => r,
                Err(reason) => return ControlReply::Reject { reason },
            };
            if !secret_matches(st.secret.as_deref(), req.secret.as_deref()) {
                warn!(host = %req.host, port = req.main_port, "join refused: wrong cluster secret");
                return ControlReply::Reject {
                    reason: "wrong or missing cluster secret (--cluster-secret)".into(),
                };
            }
            let actions = st.handle(Event::Join(req));
            for a in actions {
                match a {
                    Action::Reject { reason } => return ControlReply::Reject { reason },
                    Action::Welcome { member, group } => {
                        return ControlReply::Welcome {
                            member,
                            group,
                            map: (*st.map).clone(),
                        }
                    }
                    _ => {}
                }
            }
            ControlReply::Reject {
                reason: "join not answered".into(),
            }
        }
        ClusterOp::Heartbeat => {
            let hb: Heartbeat = match decode_body(body) {
                Ok(h) => h,
                Err(reason) => return ControlReply::Reject { reason },
            };
            let actions = st.handle(Event::Heartbeat {
                member: hb.member,
                applied: hb.applied,
                ready: hb.ready,
                moved: hb.moved,
                port: hb.main_port,
            });
            if actions.iter().any(|a| matches!(a, Action::Rejoin { .. })) {
                return ControlReply::Rejoin;
            }
            if actions.iter().any(|a| matches!(a, Action::Removed { .. })) {
                return ControlReply::Removed;
            }
            if hb.epoch < st.map.epoch {
                ControlReply::Map(Some((*st.map).clone()))
            } else {
                ControlReply::Map(None)
            }
        }
        ClusterOp::Map => ControlReply::Map(Some((*st.map).clone())),
        ClusterOp::Remove => match decode_body::<RemoveRequest>(body) {
            Ok(req) if !secret_matches(st.secret.as_deref(), req.secret.as_deref()) => {
                ControlReply::Reject {
                    reason: "wrong or missing cluster secret (--cluster-secret)".into(),
                }
            }
            Ok(RemoveRequest { member, .. }) => {
                info!(member, "operator removes a member");
                let actions = st.handle(Event::Remove { member });
                match actions.into_iter().find_map(|a| match a {
                    Action::Reject { reason } => Some(reason),
                    _ => None,
                }) {
                    Some(reason) => ControlReply::Reject { reason },
                    None => ControlReply::Map(Some((*st.map).clone())),
                }
            }
            Err(reason) => ControlReply::Reject { reason },
        },
        ClusterOp::Leave => match decode_body::<u64>(body) {
            Ok(member) => {
                info!(member, "member leaves");
                st.handle(Event::Leave { member });
                ControlReply::Map(None)
            }
            Err(reason) => ControlReply::Reject { reason },
        },
        ClusterOp::Subscribe | ClusterOp::Reply => ControlReply::Reject {
            reason: format!("{opcode:?} is not a request the balancer answers here"),
        },
    }
}

/// Writes the current map, then every new one, to a subscribed connection until it breaks.
pub(super) async fn push_maps(mut stream: TcpStream, control: SharedControl, request_id: u64) {
    let (tx, mut rx) = mpsc::unbounded();
    {
        let mut c = lock(&control);
        let _ = tx.unbounded_send(c.map.clone());
        c.subscribers.push(tx);
    }
    let mut out = BytesMut::new();
    while let Some(map) = rx.next().await {
        out.clear();
        let body = encode_body(&ControlReply::Map(Some((*map).clone())));
        encode_control(
            &mut out,
            ClusterOp::Reply,
            true,
            request_id,
            map.epoch as u32,
            &body,
        );
        if stream.write_all(&out).await.is_err() {
            return;
        }
    }
}
