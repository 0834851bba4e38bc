//! One client (or node) connection to the balancer: detect the wire (native or RESP), parse
//! pipelined requests, hand control frames to the control plane and the rest to routing, and
//! write the replies back in request order.

use bytes::BytesMut;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use ringcache_cluster::encode_body;
use ringcache_proto::control::encode_control;
use ringcache_proto::resp_encode::{self, RespVersion};
use ringcache_proto::{
    ClusterOp, Command, ErrorKind, Header, Limits, Opcode, RequestKind, RequestReader, Response,
    Wire,
};

use super::control::{control_request, push_maps};
use super::routing::{finish, ready, route_command, Pending};
use super::state::Shared;

pub(super) async fn serve(mut stream: TcpStream, state: Shared) {
    let _ = stream.set_nodelay(true);
    let limits = state.borrow().limits;
    let mut wire: Option<Wire> = None;
    let mut reader = RequestReader::new();
    let mut rbuf = BytesMut::with_capacity(16 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    let mut out = BytesMut::with_capacity(16 * 1024);
    loop {
        let mut pending: Vec<Pending> = Vec::new();
        let mut close = false;
        loop {
            if wire.is_none() {
                wire = Wire::detect(&rbuf);
            }
            if wire.is_none() {
                break;
            }
            let step = step(&rbuf, &mut reader, &state, &limits, &mut wire);
            match step {
                Step::More => break,
                Step::Done(len, p) => {
                    let _ = rbuf.split_to(len);
                    pending.push(p);
                }
                Step::Close(p) => {
                    pending.push(p);
                    close = true;
                    break;
                }
                Step::Subscribe(request_id) => {
                    for p in pending {
                        finish(p, &mut out, &limits).await;
                    }
                    if stream.write_all(&out).await.is_ok() {
                        let control = state.borrow().control.clone();
                        push_maps(stream, control, request_id).await;
                    }
                    return;
                }
            }
        }
        for p in pending {
            finish(p, &mut out, &limits).await;
        }
        if !out.is_empty() {
            if stream.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
        if close || rbuf.len() > limits.max_frame + 64 * 1024 {
            return;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => rbuf.extend_from_slice(&chunk[..n]),
        }
    }
}

enum Step {
    More,
    Done(usize, Pending),
    Close(Pending),
    /// The connection subscribed to map changes (its request id).
    Subscribe(u64),
}

/// Reads and answers (or routes) the request at the start of `buf`.
fn step(
    buf: &[u8],
    reader: &mut RequestReader,
    state: &Shared,
    limits: &Limits,
    wire: &mut Option<Wire>,
) -> Step {
    let Some(w) = *wire else {
        return Step::More;
    };
    let req = match reader.next(w, buf, limits) {
        Ok(Some(r)) => r,
        Ok(None) => return Step::More,
        Err(resp) => return Step::Close(ready(w, Opcode::Ping, 0, 0, &resp)),
    };
    let (len, rid) = (req.len, req.request_id);
    let cmd = match req.kind {
        RequestKind::Control(h, body) => return control_step(state, h, &buf[body], len),
        RequestKind::Command(Ok(cmd)) => cmd,
        RequestKind::Command(Err(resp)) => {
            let args = reader.resp_args(buf);
            let cluster = matches!(w, Wire::Resp(_))
                && args
                    .get(0)
                    .is_some_and(|a| a.eq_ignore_ascii_case(b"cluster"));
            if !cluster {
                return Step::Done(len, ready(w, Opcode::Ping, rid, 0, &resp));
            }
            let sub = args.get(1).unwrap_or_default().to_ascii_lowercase();
            let mut b = BytesMut::new();
            let map = state.borrow().map.clone();
            match sub.as_slice() {
                b"map" => resp_encode::write_bulk(&mut b, &encode_body(&*map)),
                b"info" | b"nodes" => resp_encode::write_bulk(&mut b, map.to_string().as_bytes()),
                _ => resp_encode::write_error(
                    &mut b,
                    "ERR unknown CLUSTER subcommand (use CLUSTER INFO or CLUSTER MAP)",
                ),
            }
            return Step::Done(len, Pending::Ready(b));
        }
    };
    if let (Wire::Resp(ver), Command::Hello { version, .. }) = (w, &cmd) {
        let v = match version {
            None => ver,
            Some(2) => RespVersion::V2,
            Some(3) => RespVersion::V3,
            Some(_) => {
                let resp = Response::error(ErrorKind::NoProto, "unsupported protocol version");
                return Step::Done(len, ready(w, Opcode::Hello, 0, 0, &resp));
            }
        };
        *wire = Some(Wire::Resp(v));
        let resp = Response::Hello {
            proto: v.number(),
            id: 0,
        };
        return Step::Done(len, ready(Wire::Resp(v), Opcode::Hello, 0, 0, &resp));
    }
    if matches!(cmd, Command::Quit) && w != Wire::Native {
        return Step::Close(ready(w, Opcode::Quit, 0, 0, &Response::Ok));
    }
    Step::Done(len, route_command(state, &cmd, w, rid))
}

/// Answers a control frame (JOIN, HEARTBEAT, MAP, ...) or turns the connection into a map
/// subscription.
fn control_step(state: &Shared, h: Header, body: &[u8], len: usize) -> Step {
    let control = ClusterOp::from_u8(h.opcode);
    if control == Some(ClusterOp::Subscribe) {
        return Step::Subscribe(h.request_id);
    }
    let reply = match control {
        Some(op) => {
            let shared = state.borrow().control.clone();
            let (reply, map) = control_request(&shared, op, body);
            state.borrow_mut().offer_map(map);
            reply
        }
        None => ringcache_cluster::ControlReply::Reject {
            reason: format!("unknown control opcode {:#x}", h.opcode),
        },
    };
    let epoch = state.borrow().map.epoch as u32;
    let mut b = BytesMut::new();
    encode_control(
        &mut b,
        ClusterOp::Reply,
        true,
        h.request_id,
        epoch,
        &encode_body(&reply),
    );
    Step::Done(len, Pending::Ready(b))
}
