//! One client connection: read, parse every complete request in place, run it here or hand it
//! to its core, batch the replies into one write. Tells RESP from native frames by the first
//! bytes. Bounded: the read buffer never holds more than one largest request plus a read, and
//! replies are flushed every `OUT_FLUSH` bytes, so a client that does not read stalls only
//! itself (and is dropped after the write timeout).

use std::cell::Cell;
use std::rc::Rc;

use bytes::BytesMut;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use ringcache_proto::resp::RespParser;
use ringcache_proto::resp_command::parse_command;
use ringcache_proto::resp_encode::RespVersion;
use ringcache_proto::{
    decode_frame, decode_request, Command, Epoch, ErrorKind, Opcode, Response, ValueRef, MAGIC,
};
use tracing::debug;

use ringcache_cluster::core_for_key;

use crate::core_state::{now_ms, SharedCore};
use crate::execute::execute;
use crate::handover::{
    broadcast_op, run_remote, CountKind, OwnedValue, RemoteOp, RemoteReply, ReplyTo, Wire,
};
use crate::mesh::Mesh;
use crate::node_config::NodeConfig;
use crate::ordered_replies::{failed, Ordered, Slot};
use crate::read_buf::ReadBuf;
use crate::replication::{replicate, replicates, wait_gate};
use crate::routing::{multi_keys, plan, split_by_core, Plan};

/// Replies are written out once this many bytes are pending.
const OUT_FLUSH: usize = 256 * 1024;
/// Initial read buffer per connection.
const READ_INITIAL: usize = 16 * 1024;
/// Most requests of a batch whose keys are looked up ahead (see `Conn::prefetch_batch`).
const PREFETCH_MAX: usize = 32;
/// Most handovers one connection keeps in flight before waiting for their answers.
const MAX_IN_FLIGHT: usize = 256;

/// What every connection of a core shares.
pub struct ConnContext {
    pub core: SharedCore,
    pub mesh: Option<Rc<Mesh>>,
    pub cfg: Rc<NodeConfig>,
    pub shutdown: Rc<Cell<bool>>,
    pub next_client_id: Cell<u64>,
}

/// Whether to go on reading after a batch.
#[derive(Debug, PartialEq, Eq)]
enum After {
    Continue,
    Close,
    /// A primary opened a replication stream on this connection.
    Replication,
}

/// One parsed request and where it sits in the buffer.
struct Parsed<'a> {
    /// The command, or the error reply for a well-framed but invalid one.
    cmd: Result<Command<'a>, Response<'static>>,
    len: usize,
    request_id: u64,
    epoch: Epoch,
    /// A replication stream's hello: the connection is handed to the replica side.
    replication: bool,
}

struct Conn {
    wire: Option<Wire>,
    resp: RespParser,
    /// A second parser for looking ahead without disturbing `resp`'s progress.
    scan: RespParser,
    authed: bool,
    client_id: u64,
    ordered: Ordered,
}

/// Serves one connection until the client leaves, errs, idles out or the node shuts down.
pub async fn serve(mut stream: TcpStream, ctx: Rc<ConnContext>) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(ctx.cfg.idle_timeout);
    let _ = stream.set_write_timeout(Some(ctx.cfg.write_timeout));
    let id = ctx.next_client_id.get();
    ctx.next_client_id.set(id + 1);
    let mut conn = Conn {
        wire: None,
        resp: RespParser::new(),
        scan: RespParser::new(),
        authed: ctx.cfg.password.is_none(),
        client_id: id,
        ordered: Ordered::default(),
    };
    let mut rbuf = ReadBuf::new(READ_INITIAL);
    let mut out = BytesMut::with_capacity(READ_INITIAL);
    let max_pending = ctx.cfg.limits.max_frame + 64 * 1024;
    loop {
        let after = conn.process(&mut rbuf, &mut out, &ctx, &mut stream).await;
        if !out.is_empty() {
            if let Err(e) = stream.write_all(&out).await {
                debug!(error = %e, "write failed; closing connection");
                return;
            }
            out.clear();
        }
        if after == After::Replication {
            return crate::repl_receiver::serve(stream, rbuf, ctx).await;
        }
        if after == After::Close || ctx.shutdown.get() {
            return;
        }
        rbuf.shrink_if_idle();
        if rbuf.data().len() > max_pending {
            return;
        }
        let spare = rbuf.spare(READ_INITIAL);
        match stream.read(spare).await {
            Ok(0) => return,
            Ok(n) => rbuf.filled(n),
            Err(e) => {
                debug!(error = %e, "read ended");
                return;
            }
        }
    }
}

fn wire_of(buf: &[u8]) -> Option<Wire> {
    match buf {
        [] => None,
        [b] if *b == MAGIC[0] => None,
        [a, b, ..] if *a == MAGIC[0] && *b == MAGIC[1] => Some(Wire::Native),
        _ => Some(Wire::Resp(RespVersion::V2)),
    }
}

impl Conn {
    /// Parses the next request; `Ok(None)` when more bytes are needed, `Err` with the error
    /// reply when the input is malformed (the connection then closes).
    fn parse<'a>(
        &mut self,
        buf: &'a [u8],
        ctx: &ConnContext,
    ) -> Result<Option<Parsed<'a>>, Response<'static>> {
        let limits = &ctx.cfg.limits;
        match self.wire {
            None => Ok(None),
            Some(Wire::Native) => {
                let frame = match decode_frame(buf, limits) {
                    Ok(Some(f)) => f,
                    Ok(None) => return Ok(None),
                    Err(e) => return Err(Response::error(e.kind(), e.to_string())),
                };
                let h = frame.header;
                if h.opcode == ringcache_proto::control::REPL_HELLO {
                    return Ok(Some(Parsed {
                        cmd: Ok(Command::Quit),
                        len: 0,
                        request_id: 0,
                        epoch: 0,
                        replication: true,
                    }));
                }
                match decode_request(&h, frame.body(buf), limits) {
                    Ok(cmd) => Ok(Some(Parsed {
                        cmd: Ok(cmd),
                        len: frame.len(),
                        request_id: h.request_id,
                        epoch: h.epoch,
                        replication: false,
                    })),
                    Err(e) => Err(Response::error(e.kind(), e.to_string())),
                }
            }
            Some(Wire::Resp(_)) => match self.resp.parse(buf, limits) {
                Ok(None) => Ok(None),
                Err(e) => Err(Response::error(e.kind(), e.to_string())),
                Ok(Some(len)) => {
                    let args = self.resp.args(buf);
                    // A well-framed but invalid command is answered and the connection goes
                    // on, as with Redis.
                    let cmd = parse_command(&args, limits).map_err(|e| {
                        let mut body = String::new();
                        let _ = e.write_body(&mut body);
                        Response::error(e.kind(), body)
                    });
                    Ok(Some(Parsed {
                        cmd,
                        len,
                        request_id: 0,
                        epoch: 0,
                        replication: false,
                    }))
                }
            },
        }
    }

    /// Runs every complete request in the buffer, appending replies to `out` in order.
    async fn process(
        &mut self,
        rbuf: &mut ReadBuf,
        out: &mut BytesMut,
        ctx: &ConnContext,
        stream: &mut TcpStream,
    ) -> After {
        let after = self.process_batch(rbuf, out, ctx, stream).await;
        self.ordered.drain(out).await;
        after
    }

    /// Looks up the keys of the complete requests waiting in `buf` (this core's keys only)
    /// before any of them runs: independent lookups overlap their cache misses, so the run that
    /// follows finds its entries in cache. Only worth it when two or more requests wait.
    fn prefetch_batch(&mut self, buf: &[u8], ctx: &ConnContext) {
        let Some(wire) = self.wire else { return };
        let limits = &ctx.cfg.limits;
        let mut keys: [&[u8]; PREFETCH_MAX] = [&[]; PREFETCH_MAX];
        let (mut n, mut at) = (0, 0);
        while n < PREFETCH_MAX && at < buf.len() {
            let rest = &buf[at..];
            let (len, key) = match wire {
                Wire::Native => match decode_frame(rest, limits) {
                    Ok(Some(f)) => {
                        let cmd = decode_request(&f.header, f.body(rest), limits).ok();
                        (f.len(), cmd.and_then(|c| c.key()))
                    }
                    _ => break,
                },
                Wire::Resp(_) => {
                    self.scan.reset();
                    match self.scan.parse(rest, limits) {
                        Ok(Some(len)) => {
                            let args = self.scan.args(rest);
                            (len, parse_command(&args, limits).ok().and_then(|c| c.key()))
                        }
                        _ => break,
                    }
                }
            };
            if let Some(k) = key {
                keys[n] = k;
                n += 1;
            }
            at += len;
        }
        if n < 2 {
            return;
        }
        let core = ctx.core.borrow();
        for k in &keys[..n] {
            if core.cores == 1 || core_for_key(k, core.cores) == core.id {
                core.shard.prefetch(k);
            }
        }
    }

    async fn process_batch(
        &mut self,
        rbuf: &mut ReadBuf,
        out: &mut BytesMut,
        ctx: &ConnContext,
        stream: &mut TcpStream,
    ) -> After {
        self.prefetch_batch(rbuf.data(), ctx);
        loop {
            if self.wire.is_none() {
                self.wire = wire_of(rbuf.data());
                if self.wire.is_none() {
                    return After::Continue;
                }
            }
            let wire = self.wire.unwrap_or(Wire::Resp(RespVersion::V2));
            let now = now_ms();
            let buf = rbuf.data();
            let parsed = match self.parse(buf, ctx) {
                Ok(Some(p)) => p,
                Ok(None) => return After::Continue,
                Err(resp) => {
                    self.ordered.drain(out).await;
                    let to = ReplyTo {
                        wire,
                        op: Opcode::Ping,
                        request_id: 0,
                        epoch: 0,
                    };
                    to.encode(out, &resp);
                    return After::Close;
                }
            };
            if parsed.replication {
                self.ordered.drain(out).await;
                return After::Replication;
            }
            let len = parsed.len;
            let after = self.run(parsed, buf, wire, out, ctx, now).await;
            rbuf.consume(len);
            if after == After::Close {
                return After::Close;
            }
            if self.ordered.slots.len() >= MAX_IN_FLIGHT || self.ordered.side.len() >= OUT_FLUSH {
                self.ordered.drain(out).await;
            }
            if out.len() >= OUT_FLUSH {
                if stream.write_all(out).await.is_err() {
                    return After::Close;
                }
                out.clear();
            }
        }
    }

    /// Runs one request and appends its reply.
    async fn run(
        &mut self,
        p: Parsed<'_>,
        buf: &[u8],
        wire: Wire,
        out: &mut BytesMut,
        ctx: &ConnContext,
        now: u64,
    ) -> After {
        let epoch = p.epoch;
        let mut to = ReplyTo {
            wire,
            op: Opcode::Ping,
            request_id: p.request_id,
            epoch,
        };
        let cmd = match p.cmd {
            Ok(cmd) => cmd,
            Err(resp) => {
                self.reply_in_order(out, to, &resp);
                return After::Continue;
            }
        };
        to.op = cmd.opcode();
        if !self.authed
            && !matches!(
                cmd,
                Command::Auth { .. } | Command::Hello { .. } | Command::Quit
            )
        {
            let resp = Response::error(ErrorKind::NoAuth, "Authentication required.");
            self.reply_in_order(out, to, &resp);
            return After::Continue;
        }
        let plan = {
            let c = ctx.core.borrow();
            if let Some(resp) = c.cluster_redirect(&cmd, epoch) {
                drop(c);
                self.reply_in_order(out, to, &resp);
                return After::Continue;
            }
            plan(&cmd, c.id, c.cores)
        };
        if !self.ordered.is_empty() && !matches!(plan, Plan::Local | Plan::Owner(_)) {
            // Split, broadcast and session commands run inline: answer what is pending first.
            self.ordered.drain(out).await;
        }
        match plan {
            Plan::Local => {
                let mut core = ctx.core.borrow_mut();
                if core.repl.is_active() && replicates(&cmd) {
                    // The reply waits for the replica acks: encode it aside.
                    let mut reply = BytesMut::new();
                    to.encode(&mut reply, &execute(&mut core, &cmd, now));
                    match replicate(&mut core, &cmd, now) {
                        Some(gate) => self
                            .ordered
                            .slots
                            .push_back(Slot::Gated { gate, reply, to }),
                        None if self.ordered.is_empty() => out.extend_from_slice(&reply),
                        None => {
                            let len = reply.len();
                            self.ordered.side.extend_from_slice(&reply);
                            self.ordered.slots.push_back(Slot::Local(len));
                        }
                    }
                } else {
                    let resp = execute(&mut core, &cmd, now);
                    self.reply_in_order(out, to, &resp);
                }
            }
            Plan::Owner(owner) => {
                let raw = buf[..p.len].to_vec();
                let sent = match &ctx.mesh {
                    Some(mesh) => mesh
                        .send(owner, RemoteOp::Request { wire, raw })
                        .await
                        .map_err(|e| e.to_string()),
                    None => Err(format!("no mesh to reach core {owner}")),
                };
                match sent {
                    Ok(rx) => self.ordered.slots.push_back(Slot::Remote { rx, to }),
                    Err(msg) => {
                        let resp = Response::error(ErrorKind::Internal, msg);
                        self.reply_in_order(out, to, &resp);
                    }
                }
            }
            Plan::Split => self.run_split(&cmd, ctx, out, to, now).await,
            Plan::Broadcast => self.run_broadcast(&cmd, ctx, out, to, now).await,
            Plan::Session => return self.run_session(&cmd, ctx, out, to),
        }
        After::Continue
    }

    /// Appends a reply now, or behind the pending handovers if there are any.
    fn reply_in_order(&mut self, out: &mut BytesMut, to: ReplyTo, resp: &Response<'_>) {
        if self.ordered.is_empty() {
            to.encode(out, resp);
        } else {
            let before = self.ordered.side.len();
            to.encode(&mut self.ordered.side, resp);
            let len = self.ordered.side.len() - before;
            self.ordered.slots.push_back(Slot::Local(len));
        }
    }

    /// Runs `op` on core `to`: directly when it is this core, else handed over the mesh.
    async fn on_core(&self, ctx: &ConnContext, to: u32, op: RemoteOp, now: u64) -> RemoteReply {
        let me = ctx.core.borrow().id;
        if to == me {
            let (reply, gate) = run_remote(&mut ctx.core.borrow_mut(), op, now);
            return match gate {
                None => reply,
                Some(g) => match wait_gate(g).await {
                    Ok(()) => reply,
                    Err(msg) => RemoteReply::Failed(msg),
                },
            };
        }
        match &ctx.mesh {
            Some(mesh) => match mesh.call(to, op).await {
                Ok(r) => r,
                Err(e) => RemoteReply::Failed(e.to_string()),
            },
            None => RemoteReply::Failed(format!("no mesh to reach core {to}")),
        }
    }

    async fn run_split(
        &self,
        cmd: &Command<'_>,
        ctx: &ConnContext,
        out: &mut BytesMut,
        to: ReplyTo,
        now: u64,
    ) {
        let reply = |out: &mut BytesMut, resp: &Response<'_>| to.encode(out, resp);
        let keys = multi_keys(cmd).unwrap_or_default();
        let cores = ctx.core.borrow().cores;
        let groups = split_by_core(&keys, cores);
        match cmd {
            Command::MGet { .. } => {
                let mut values: Vec<Option<OwnedValue>> = vec![None; keys.len()];
                for (core, positions) in groups {
                    let part: Vec<Vec<u8>> = positions.iter().map(|&i| keys[i].to_vec()).collect();
                    let got = self
                        .on_core(ctx, core, RemoteOp::Get { keys: part }, now)
                        .await;
                    match got {
                        RemoteReply::Values(vs) => {
                            for (i, v) in positions.into_iter().zip(vs) {
                                values[i] = v;
                            }
                        }
                        other => return reply(out, &failed(other)),
                    }
                }
                let refs = values
                    .iter()
                    .map(|v| {
                        v.as_ref().map(|v| ValueRef {
                            value: &v.value,
                            version: v.version,
                            ttl_ms: v.ttl_ms,
                        })
                    })
                    .collect();
                reply(out, &Response::Values(refs));
            }
            Command::MSet { pairs } => {
                for (core, positions) in groups {
                    let part = positions
                        .iter()
                        .map(|&i| (pairs[i].0.to_vec(), pairs[i].1.to_vec()))
                        .collect();
                    let op = RemoteOp::MSet { pairs: part };
                    let got = self.on_core(ctx, core, op, now).await;
                    if !matches!(got, RemoteReply::Done) {
                        return reply(out, &failed(got));
                    }
                }
                reply(out, &Response::Ok);
            }
            _ => {
                let kind = match cmd {
                    Command::Del { .. } => CountKind::Del,
                    Command::Exists { .. } => CountKind::Exists,
                    _ => CountKind::Touch,
                };
                let mut total = 0;
                for (core, positions) in groups {
                    let part = positions.iter().map(|&i| keys[i].to_vec()).collect();
                    let op = RemoteOp::Count { kind, keys: part };
                    let got = self.on_core(ctx, core, op, now).await;
                    match got {
                        RemoteReply::Count(n) => total += n,
                        other => return reply(out, &failed(other)),
                    }
                }
                reply(out, &Response::Int(total));
            }
        }
    }

    async fn run_broadcast(
        &self,
        cmd: &Command<'_>,
        ctx: &ConnContext,
        out: &mut BytesMut,
        to: ReplyTo,
        now: u64,
    ) {
        let reply = |out: &mut BytesMut, resp: &Response<'_>| to.encode(out, resp);
        let cores = ctx.core.borrow().cores;
        let mut fields: Vec<(String, u64)> = Vec::new();
        let mut total = ringcache_engine::Stats::default();
        let mut digests: Vec<Vec<u8>> = Vec::new();
        for core in 0..cores {
            let Some(bop) = broadcast_op(cmd) else {
                return reply(
                    out,
                    &Response::error(ErrorKind::Internal, "not a broadcast command"),
                );
            };
            let got = self.on_core(ctx, core, bop, now).await;
            match got {
                RemoteReply::Done => {}
                RemoteReply::Stats(f, s) => {
                    total.merge(&s);
                    fields.extend(f);
                }
                RemoteReply::Digest(n, d) => {
                    digests.push(n.to_string().into_bytes());
                    digests.push(d.to_string().into_bytes());
                }
                other => return reply(out, &failed(other)),
            }
        }
        if matches!(cmd, Command::Stats) {
            let mut all: Vec<(std::borrow::Cow<'_, str>, u64)> = total
                .fields()
                .iter()
                .map(|(n, v)| (std::borrow::Cow::Borrowed(*n), *v))
                .collect();
            all.push(("cores".into(), u64::from(cores)));
            all.extend(
                repl_totals(&fields)
                    .into_iter()
                    .map(|(n, v)| (std::borrow::Cow::Borrowed(n), v)),
            );
            all.extend(
                fields
                    .into_iter()
                    .map(|(n, v)| (std::borrow::Cow::Owned(n), v)),
            );
            reply(out, &Response::Stats(all));
        } else if matches!(cmd, Command::Digest) {
            let values = digests
                .iter()
                .map(|d| {
                    Some(ValueRef {
                        value: d,
                        version: 0,
                        ttl_ms: None,
                    })
                })
                .collect();
            reply(out, &Response::Values(values));
        } else {
            reply(out, &Response::Ok);
        }
    }

    fn run_session(
        &mut self,
        cmd: &Command<'_>,
        ctx: &ConnContext,
        out: &mut BytesMut,
        to: ReplyTo,
    ) -> After {
        let wire = to.wire;
        let reply = |out: &mut BytesMut, w: Wire, resp: &Response<'_>| {
            ReplyTo { wire: w, ..to }.encode(out, resp)
        };
        match cmd {
            Command::Ping { msg: None } => reply(out, wire, &Response::Pong),
            Command::Ping { msg: Some(m) } => reply(out, wire, &Response::Bulk(m)),
            Command::Hello { version, auth } => {
                if let Some(creds) = auth {
                    if !self.check_password(ctx, creds.password) {
                        reply(
                            out,
                            wire,
                            &Response::error(
                                ErrorKind::WrongPass,
                                "invalid username-password pair or user is disabled.",
                            ),
                        );
                        return After::Continue;
                    }
                    self.authed = true;
                }
                if !self.authed {
                    reply(
                        out,
                        wire,
                        &Response::error(
                            ErrorKind::NoAuth,
                            "HELLO must be called with the client's credentials (AUTH)",
                        ),
                    );
                    return After::Continue;
                }
                let new_wire = match (wire, version) {
                    (Wire::Native, _) => Wire::Native,
                    (_, None) => wire,
                    (_, Some(2)) => Wire::Resp(RespVersion::V2),
                    (_, Some(3)) => Wire::Resp(RespVersion::V3),
                    (_, Some(_)) => {
                        reply(
                            out,
                            wire,
                            &Response::error(ErrorKind::NoProto, "unsupported protocol version"),
                        );
                        return After::Continue;
                    }
                };
                self.wire = Some(new_wire);
                let proto = match new_wire {
                    Wire::Resp(v) => v.number(),
                    Wire::Native => 0,
                };
                reply(
                    out,
                    new_wire,
                    &Response::Hello {
                        proto,
                        id: self.client_id,
                    },
                );
            }
            Command::Auth { creds } => {
                if ctx.cfg.password.is_none() {
                    reply(out, wire, &Response::error(ErrorKind::Unsupported, "AUTH <password> called without any password configured for the default user."));
                } else if self.check_password(ctx, creds.password) {
                    self.authed = true;
                    reply(out, wire, &Response::Ok);
                } else {
                    reply(
                        out,
                        wire,
                        &Response::error(
                            ErrorKind::WrongPass,
                            "invalid username-password pair or user is disabled.",
                        ),
                    );
                }
            }
            Command::Topology => {
                let t = ctx.core.borrow().topology.clone();
                reply(out, wire, &Response::Topology(t));
            }
            Command::ConfigGet { pattern } => {
                // redis-benchmark asks for these; a cache persists nothing.
                let pairs: Vec<(&[u8], &[u8])> = match pattern.to_ascii_lowercase().as_slice() {
                    b"save" => vec![(b"save", b"")],
                    b"appendonly" => vec![(b"appendonly", b"no")],
                    _ => Vec::new(),
                };
                reply(out, wire, &Response::Pairs(pairs));
            }
            Command::CommandDocs => reply(out, wire, &Response::Values(Vec::new())),
            Command::Select { db: 0 } | Command::ClientSetInfo | Command::ClientSetName { .. } => {
                reply(out, wire, &Response::Ok)
            }
            Command::Select { .. } => reply(
                out,
                wire,
                &Response::error(ErrorKind::Unsupported, "DB index is out of range"),
            ),
            Command::Quit => {
                reply(out, wire, &Response::Ok);
                return After::Close;
            }
            other => reply(
                out,
                wire,
                &Response::error(
                    ErrorKind::Unsupported,
                    format!("{:?} is not supported here", other.opcode()),
                ),
            ),
        }
        After::Continue
    }

    fn check_password(&self, ctx: &ConnContext, given: &[u8]) -> bool {
        ctx.cfg
            .password
            .as_ref()
            .is_some_and(|p| constant_time_eq(p.as_bytes(), given))
    }
}

/// Node totals of the per-core replication counters: sums, except `repl_caught_up`, which is
/// 1 only when every core serves reads.
fn repl_totals(fields: &[(String, u64)]) -> Vec<(&'static str, u64)> {
    const NAMES: [&str; 7] = [
        "repl_full_copies",
        "repl_backlog_catchups",
        "repl_ack_failures",
        "repl_applied",
        "repl_caught_up",
        "repl_links",
        "repl_pending_acks",
    ];
    NAMES
        .iter()
        .map(|&name| {
            let values = fields
                .iter()
                .filter(|(n, _)| n.split_once('.').is_some_and(|(_, rest)| rest == name))
                .map(|(_, v)| *v);
            let total = if name == "repl_caught_up" {
                values.min().unwrap_or(1)
            } else {
                values.sum()
            };
            (name, total)
        })
        .collect()
}

/// Compares secrets without an early exit on the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
