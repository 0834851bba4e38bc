//! One client connection: read, parse every complete request in place, run it here or hand it
//! to its core, batch the replies into one write. Tells RESP from native frames by the first
//! bytes. Bounded: the read buffer never holds more than one largest request plus a read, and
//! replies are flushed every `OUT_FLUSH` bytes, so a client that does not read stalls only
//! itself (and is dropped after the write timeout).

use std::os::fd::AsRawFd;
use std::rc::Rc;

use bytes::BytesMut;
use futures_lite::AsyncWriteExt;
use glommio::net::TcpStream;
use ringcache_proto::resp_encode::RespVersion;
use ringcache_proto::{
    Command, Epoch, ErrorKind, Opcode, ReplFrame, ReplyTo, RequestKind, RequestReader, Response,
    Wire,
};
use tracing::debug;

use ringcache_cluster::core_for_key;
use ringcache_node_core::execute::execute;
use ringcache_node_core::session::Session;
use ringcache_node_core::write_path::replicate;
use ringcache_node_core::{now_ms, plan, Plan, RemoteOp};
use ringcache_runtime::ReadBuf;

use crate::context::ConnContext;
use crate::fan_out::run_spread;
use crate::ordered_replies::{Ordered, Slot};

/// Replies are written out once this many bytes are pending.
const OUT_FLUSH: usize = 256 * 1024;
/// Initial read buffer per connection.
const READ_INITIAL: usize = 16 * 1024;
/// Most requests of a batch whose keys are looked up ahead (see `Conn::look_ahead`).
const PREFETCH_MAX: usize = 32;
/// Most handovers one connection keeps in flight before waiting for their answers.
const MAX_IN_FLIGHT: usize = 256;

/// Whether to go on reading after a batch.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum After {
    Continue,
    Close,
    /// A primary opened a replication stream on this connection.
    Replication,
}

/// The time requests of a batch run at: read from the clock once, and again only after something
/// that may have waited (a drain, a write, a request that crossed cores), instead of per request.
#[derive(Default)]
struct BatchClock(Option<u64>);

impl BatchClock {
    fn now(&mut self) -> u64 {
        *self.0.get_or_insert_with(now_ms)
    }

    /// Time may have passed: the next `now` reads the clock.
    fn waited(&mut self) {
        self.0 = None;
    }
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

/// One connection's state: its session (protocol, authentication), its parsers, and the
/// replies waiting for their turn.
pub(crate) struct Conn {
    session: Session,
    reader: RequestReader,
    /// A second reader for looking ahead without disturbing `reader`'s progress.
    scan: RequestReader,
    ordered: Ordered,
}

/// Serves one connection until the client leaves, errs, idles out or the node shuts down.
pub(crate) async fn serve(mut stream: TcpStream, ctx: Rc<ConnContext>) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(ctx.cfg.write_timeout));
    let id = ctx.next_client_id.get();
    ctx.next_client_id.set(id + 1);
    // A local: dropped before the `stream` parameter, so before the socket is closed.
    let tracking = ctx
        .idle
        .track(id, stream.as_raw_fd(), std::time::Instant::now());
    let reg = match ctx.readiness.register(stream.as_raw_fd()) {
        Ok(r) => r,
        Err(e) => {
            debug!(error = %e, "cannot watch the connection; closing it");
            return;
        }
    };
    let mut conn = Conn {
        session: Session::new(id, ctx.cfg.password.is_some()),
        reader: RequestReader::new(),
        scan: RequestReader::new(),
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
            // A replication stream is not a client: it leaves the idle table.
            drop(tracking);
            // From here glommio's own reads serve the stream.
            drop(reg);
            return crate::repl_receiver::serve(stream, rbuf, &ctx).await;
        }
        if after == After::Close || ctx.shutdown.get() {
            return;
        }
        rbuf.shrink_if_idle();
        if rbuf.data().len() > max_pending {
            return;
        }
        let spare = rbuf.spare(READ_INITIAL);
        match reg.read(spare).await {
            Ok(0) => return,
            Ok(n) => {
                tracking.read_done();
                rbuf.filled(n);
                if let Some(hash) = conn.look_ahead(rbuf.data(), &ctx) {
                    ctx.lone.look_up_together(hash, &ctx.core).await;
                }
            }
            Err(e) => {
                debug!(error = %e, "read ended");
                return;
            }
        }
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
        let Some(wire) = self.session.wire else {
            return Ok(None);
        };
        let Some(req) = self.reader.next(wire, buf, &ctx.cfg.limits)? else {
            return Ok(None);
        };
        let cmd = match req.kind {
            RequestKind::Command(cmd) => cmd,
            RequestKind::Control(h, _) if h.opcode == u8::from(ReplFrame::Hello) => {
                return Ok(Some(Parsed {
                    cmd: Ok(Command::Quit),
                    len: 0,
                    request_id: 0,
                    epoch: 0,
                    replication: true,
                }))
            }
            RequestKind::Control(h, _) => {
                return Err(Response::error(
                    ErrorKind::Unsupported,
                    format!(
                        "control frame 0x{:02x} is not served on a node port",
                        h.opcode
                    ),
                ))
            }
        };
        Ok(Some(Parsed {
            cmd,
            len: req.len,
            request_id: req.request_id,
            epoch: req.epoch,
            replication: false,
        }))
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
    /// follows finds its entries in cache. A lone request's key has nothing to overlap with here;
    /// its hash is returned, to be looked up with other connections' (see `LoneLookups`).
    fn look_ahead(&mut self, buf: &[u8], ctx: &ConnContext) -> Option<u64> {
        let wire = self.session.wire?;
        let limits = &ctx.cfg.limits;
        let mut keys: [&[u8]; PREFETCH_MAX] = [&[]; PREFETCH_MAX];
        let (mut n, mut at) = (0, 0);
        while n < PREFETCH_MAX && at < buf.len() {
            let rest = &buf[at..];
            self.scan.reset();
            let (len, key) = match self.scan.next(wire, rest, limits) {
                Ok(Some(req)) => match req.kind {
                    RequestKind::Command(Ok(cmd)) => (req.len, cmd.key()),
                    _ => (req.len, None),
                },
                _ => break,
            };
            if let Some(k) = key {
                keys[n] = k;
                n += 1;
            }
            at += len;
        }
        let core = ctx.core.borrow();
        let local = |k: &[u8]| core_for_key(k, core.cores) == core.id;
        match &keys[..n] {
            [k] if at == buf.len() => local(k).then(|| core.shard.key_hash(k)),
            [_] | [] => None,
            batch => {
                core.shard
                    .prefetch_keys(batch.iter().copied().filter(|k| local(k)));
                None
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
        let mut clock = BatchClock::default();
        loop {
            if self.session.wire.is_none() {
                self.session.wire = Wire::detect(rbuf.data());
                if self.session.wire.is_none() {
                    return After::Continue;
                }
            }
            let wire = self.session.wire.unwrap_or(Wire::Resp(RespVersion::V2));
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
            let after = self.run(parsed, buf, wire, out, ctx, &mut clock).await;
            rbuf.consume(len);
            if after == After::Close {
                return After::Close;
            }
            if self.ordered.slots.len() >= MAX_IN_FLIGHT || self.ordered.side.len() >= OUT_FLUSH {
                self.ordered.drain(out).await;
                clock.waited();
            }
            if out.len() >= OUT_FLUSH {
                if stream.write_all(out).await.is_err() {
                    return After::Close;
                }
                out.clear();
                clock.waited();
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
        clock: &mut BatchClock,
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
        if let Some(resp) = self.session.refuses(&cmd) {
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
            clock.waited();
        }
        match plan {
            Plan::Local => {
                let now = clock.now();
                let mut core = ctx.core.borrow_mut();
                if core.repl.is_active() && cmd.is_write() {
                    // The reply may have to wait for replica acks: it goes behind the pending
                    // replies, in the side buffer.
                    let before = self.ordered.side.len();
                    to.encode(&mut self.ordered.side, &execute(&mut core, &cmd, now));
                    let len = self.ordered.side.len() - before;
                    let slot = match replicate(&mut core, &cmd, now) {
                        Some(id) => Slot::Gated {
                            gate: ctx.core.gate(id),
                            len,
                            to,
                        },
                        None => Slot::Local(len),
                    };
                    self.ordered.slots.push_back(slot);
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
                clock.waited();
                match sent {
                    Ok(rx) => self.ordered.slots.push_back(Slot::Remote { rx, to }),
                    Err(msg) => {
                        let resp = Response::error(ErrorKind::Internal, msg);
                        self.reply_in_order(out, to, &resp);
                    }
                }
            }
            Plan::Split | Plan::Broadcast => {
                run_spread(&cmd, ctx, out, to, clock.now()).await;
                clock.waited();
            }
            Plan::Session => {
                let r = {
                    let core = ctx.core.borrow();
                    let password = ctx.cfg.password.as_deref();
                    self.session.run(&cmd, password, &core.topology)
                };
                ReplyTo { wire: r.wire, ..to }.encode(out, &r.resp);
                if r.close {
                    return After::Close;
                }
            }
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
}
