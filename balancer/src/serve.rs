//! One client (or node) connection to the balancer: detect the wire (native or RESP), parse
//! pipelined requests, hand control frames to the control plane and the rest to routing, and
//! write the replies back in request order.

use bytes::BytesMut;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use ringcache_cluster::encode_body;
use ringcache_proto::control::{encode_control, is_control};
use ringcache_proto::resp::RespParser;
use ringcache_proto::resp_command::parse_command;
use ringcache_proto::resp_encode::RespVersion;
use ringcache_proto::{
    decode_frame, decode_request, ClusterOp, Command, ErrorKind, Limits, Opcode, Response, Wire,
};

use super::control::{control_request, push_maps};
use super::routing::{finish, ready, route_command, Pending};
use super::Shared;

pub(super) async fn serve(mut stream: TcpStream, state: Shared) {
    let _ = stream.set_nodelay(true);
    let limits = state.borrow().limits;
    let mut wire: Option<Wire> = None;
    let mut parser = RespParser::new();
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
            let Some(w) = wire else { break };
            let step = match w {
                Wire::Native => native_step(&rbuf, &state, &limits),
                Wire::Resp(v) => resp_step(&rbuf, &mut parser, &state, &limits, v, &mut wire),
            };
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
                        push_maps(stream, &state, request_id).await;
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

fn native_step(buf: &[u8], state: &Shared, limits: &Limits) -> Step {
    let frame = match decode_frame(buf, limits) {
        Ok(Some(f)) => f,
        Ok(None) => return Step::More,
        Err(e) => {
            return Step::Close(ready(
                Wire::Native,
                Opcode::Ping,
                0,
                0,
                &Response::error(e.kind(), e.to_string()),
            ))
        }
    };
    let h = frame.header;
    let body = frame.body(buf);
    let control = ClusterOp::from_u8(h.opcode);
    if control == Some(ClusterOp::Subscribe) {
        return Step::Subscribe(h.request_id);
    }
    if is_control(h.opcode) {
        let reply = match control {
            Some(op) => control_request(state, op, body),
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
        return Step::Done(frame.len(), Pending::Ready(b));
    }
    let cmd = match decode_request(&h, body, limits) {
        Ok(c) => c,
        Err(e) => {
            return Step::Close(ready(
                Wire::Native,
                Opcode::Ping,
                h.request_id,
                0,
                &Response::error(e.kind(), e.to_string()),
            ))
        }
    };
    Step::Done(
        frame.len(),
        route_command(state, &cmd, Wire::Native, h.request_id),
    )
}

fn resp_step(
    buf: &[u8],
    parser: &mut RespParser,
    state: &Shared,
    limits: &Limits,
    ver: RespVersion,
    wire: &mut Option<Wire>,
) -> Step {
    let w = Wire::Resp(ver);
    let len = match parser.parse(buf, limits) {
        Ok(Some(n)) => n,
        Ok(None) => return Step::More,
        Err(e) => {
            let mut b = BytesMut::new();
            ringcache_proto::resp_encode::write_error_kind(&mut b, e.kind(), &e.to_string());
            return Step::Close(Pending::Ready(b));
        }
    };
    let args = parser.args(buf);
    if args
        .get(0)
        .is_some_and(|a| a.eq_ignore_ascii_case(b"cluster"))
    {
        let sub = args.get(1).unwrap_or_default().to_ascii_lowercase();
        let mut b = BytesMut::new();
        let map = state.borrow().map.clone();
        match sub.as_slice() {
            b"map" => ringcache_proto::resp_encode::write_bulk(&mut b, &encode_body(&*map)),
            b"info" | b"nodes" => {
                ringcache_proto::resp_encode::write_bulk(&mut b, map.to_string().as_bytes())
            }
            _ => ringcache_proto::resp_encode::write_error(
                &mut b,
                "ERR unknown CLUSTER subcommand (use CLUSTER INFO or CLUSTER MAP)",
            ),
        }
        return Step::Done(len, Pending::Ready(b));
    }
    let cmd = match parse_command(&args, limits) {
        Ok(c) => c,
        Err(e) => {
            let mut b = BytesMut::new();
            ringcache_proto::resp_encode::write_error_display(&mut b, &e);
            return Step::Done(len, Pending::Ready(b));
        }
    };
    if let Command::Hello { version, .. } = &cmd {
        let v = match version {
            None => ver,
            Some(2) => RespVersion::V2,
            Some(3) => RespVersion::V3,
            Some(_) => {
                return Step::Done(
                    len,
                    ready(
                        w,
                        Opcode::Hello,
                        0,
                        0,
                        &Response::error(ErrorKind::NoProto, "unsupported protocol version"),
                    ),
                )
            }
        };
        *wire = Some(Wire::Resp(v));
        return Step::Done(
            len,
            ready(
                Wire::Resp(v),
                Opcode::Hello,
                0,
                0,
                &Response::Hello {
                    proto: v.number(),
                    id: 0,
                },
            ),
        );
    }
    if matches!(cmd, Command::Quit) {
        return Step::Close(ready(w, Opcode::Quit, 0, 0, &Response::Ok));
    }
    Step::Done(len, route_command(state, &cmd, w, 0))
}
