//! One multiplexed connection of the async client: any number of tasks share it. Callers
//! encode their requests into one shared write buffer and a writer task sends whatever has
//! gathered in one write; a reader task hands each reply to its caller by request id.
//!
//! At most `window` requests are in flight (sent or queued, not yet answered): a caller
//! waits for a permit beyond that (back-pressure). A caller that gives up (its future is
//! dropped) leaves the connection as it was: the reply, when it comes, is read and discarded.
//! Read timeouts are kept by one watchdog task per connection, not a timer per request.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use ringcache_proto::{control, Command, Limits, HEADER_LEN};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::AbortHandle;

use crate::codec::{
    auth_command, decode_reply, encode_checked, frame_status, next_request_id, FrameStatus,
};
use crate::config::ClientConfig;
use crate::error::ClientError;
use crate::reply::{unexpected, Reply};

/// Initial size of the read and write buffers.
const INITIAL_BUF: usize = 16 * 1024;
/// Least free space offered to one read.
const MIN_READ: usize = 8 * 1024;
/// A write buffer grown past this by one big batch is given back after it is written.
const SHRINK_ABOVE: usize = 4 << 20;

/// Locks a mutex; a panic elsewhere while it was held leaves data that is still consistent
/// (every critical section here completes its update or makes none), so the lock is taken.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What a request is answered with.
#[derive(Debug)]
pub(crate) enum Answer {
    /// A command's reply.
    Reply(Reply),
    /// The body of a control reply (cluster map, removal).
    Control(Vec<u8>),
}

impl Answer {
    /// The command reply; a control body where a reply belongs is a protocol error.
    pub(crate) fn into_reply(self) -> Result<Reply, ClientError> {
        match self {
            Answer::Reply(r) => Ok(r),
            Answer::Control(_) => Err(ClientError::Protocol(
                "a control reply where a command reply was expected".into(),
            )),
        }
    }

    /// The control body; a command reply where a control reply belongs is an error.
    pub(crate) fn into_control(self) -> Result<Vec<u8>, ClientError> {
        match self {
            Answer::Control(b) => Ok(b),
            Answer::Reply(r) => Err(unexpected("a cluster request", &r)),
        }
    }
}

/// One request to send.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Req<'r> {
    /// A command.
    Cmd(&'r Command<'r>),
    /// A control frame (`ringcache_proto::control`) with its body.
    Control {
        /// The control opcode.
        opcode: ringcache_proto::ClusterOp,
        /// Its body.
        body: &'r [u8],
    },
}

/// A caller waiting for the reply to one request; holds one permit of the window.
struct Waiter {
    tx: oneshot::Sender<Result<Answer, ClientError>>,
    /// The watchdog tick at which it is answered with a timeout.
    deadline: u64,
    _permit: OwnedSemaphorePermit,
}

/// Hashes request ids (unique, mostly consecutive) with one multiplication.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u64(&mut self, id: u64) {
        self.0 = id.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// Waiters by request id.
type Waiters = HashMap<u64, Waiter, BuildHasherDefault<IdHasher>>;

/// What callers, the writer and the reader share under one lock.
struct Table {
    /// Requests sent or queued and not answered yet, by request id.
    waiters: Waiters,
    /// Encoded requests the writer has not taken yet.
    wbuf: BytesMut,
    /// Frames in `wbuf`.
    queued: u64,
    next_id: u64,
    /// Whether the writer was woken and has not taken `wbuf` yet (no need to wake it again).
    writer_woken: bool,
    /// Watchdog ticks so far: the clock of the waiters' deadlines.
    tick: u64,
    /// Set once the connection is unusable: why.
    dead: Option<ClientError>,
}

/// How the async client's connections wrote: requests that met in one write share it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Writes made (each one `write_all` of everything queued at that moment).
    pub writes: u64,
    /// Request frames written.
    pub frames: u64,
}

struct Shared {
    addr: SocketAddr,
    table: Mutex<Table>,
    /// Wakes the writer when `wbuf` gets bytes.
    wake: Notify,
    alive: AtomicBool,
    born: Instant,
    /// Nanoseconds after `born` when bytes last arrived.
    last_rx: AtomicU64,
    writes: AtomicU64,
    frames: AtomicU64,
    tasks: Mutex<Vec<AbortHandle>>,
}

impl Shared {
    /// Marks the connection unusable: every waiting caller gets `err`, the tasks stop and the
    /// socket is closed. Only the first call has an effect.
    fn die(&self, err: ClientError) {
        let waiters = {
            let mut t = lock(&self.table);
            if t.dead.is_some() {
                return;
            }
            t.dead = Some(err.clone());
            t.wbuf = BytesMut::new();
            std::mem::take(&mut t.waiters)
        };
        self.alive.store(false, Ordering::Release);
        for (_, w) in waiters {
            let _ = w.tx.send(Err(err.clone()));
        }
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
    }

    fn closed_err(&self) -> ClientError {
        ClientError::Io {
            addr: self.addr.to_string(),
            source: std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed by the server",
            ),
        }
    }

    fn since_rx(&self) -> Duration {
        let at = Duration::from_nanos(self.last_rx.load(Ordering::Relaxed));
        self.born.elapsed().saturating_sub(at)
    }
}

/// A request queued on a connection, to be awaited with [`MuxConn::wait`].
#[derive(Debug)]
pub(crate) struct Sent {
    rx: oneshot::Receiver<Result<Answer, ClientError>>,
}

/// An open multiplexed connection to one port of a node.
pub(crate) struct MuxConn {
    shared: Arc<Shared>,
    window: Arc<Semaphore>,
    /// The window's size (permits of one batch).
    window_size: usize,
    limits: Limits,
    write_timeout: Duration,
    /// Watchdog ticks in a read timeout (rounded up, plus one for the tick under way).
    timeout_ticks: u64,
}

/// The watchdog's period for a read timeout: an eighth of it, within 1 ms and 100 ms.
fn watchdog_tick(read_timeout: Duration) -> Duration {
    (read_timeout / 8).clamp(Duration::from_millis(1), Duration::from_millis(100))
}

impl Drop for MuxConn {
    fn drop(&mut self) {
        // The last handle is gone: nobody can wait for a reply any more.
        self.shared.die(self.shared.closed_err());
    }
}

impl MuxConn {
    /// Connects to `addr` (within the connect timeout), starts the writer and reader tasks
    /// on the current tokio runtime, and authenticates when a password is configured.
    pub(crate) async fn open(
        addr: SocketAddr,
        cfg: &ClientConfig,
        reply_limits: Limits,
    ) -> Result<Arc<MuxConn>, ClientError> {
        let connect_err = |source| ClientError::Connect {
            addr: addr.to_string(),
            source,
        };
        let stream = match tokio::time::timeout(cfg.connect_timeout, TcpStream::connect(addr)).await
        {
            Ok(r) => r.map_err(connect_err)?,
            Err(_) => return Err(connect_err(std::io::ErrorKind::TimedOut.into())),
        };
        stream.set_nodelay(true).map_err(connect_err)?;
        let (rd, wr) = stream.into_split();
        let shared = Arc::new(Shared {
            addr,
            table: Mutex::new(Table {
                waiters: Waiters::default(),
                wbuf: BytesMut::with_capacity(INITIAL_BUF),
                queued: 0,
                next_id: 1,
                writer_woken: false,
                tick: 0,
                dead: None,
            }),
            wake: Notify::new(),
            alive: AtomicBool::new(true),
            born: Instant::now(),
            last_rx: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            frames: AtomicU64::new(0),
            tasks: Mutex::new(Vec::new()),
        });
        let writer = tokio::spawn(write_loop(shared.clone(), wr, cfg.write_timeout));
        let reader = tokio::spawn(read_loop(shared.clone(), rd, reply_limits));
        let watchdog = tokio::spawn(watchdog(Arc::downgrade(&shared), cfg.read_timeout));
        lock(&shared.tasks).extend([
            writer.abort_handle(),
            reader.abort_handle(),
            watchdog.abort_handle(),
        ]);
        let window_size = cfg.max_in_flight.max(1);
        let conn = Arc::new(MuxConn {
            shared,
            window: Arc::new(Semaphore::new(window_size)),
            window_size,
            limits: cfg.limits,
            write_timeout: cfg.write_timeout,
            timeout_ticks: {
                let tick = watchdog_tick(cfg.read_timeout).as_nanos().max(1);
                u64::try_from(cfg.read_timeout.as_nanos().div_ceil(tick) + 1).unwrap_or(u64::MAX)
            },
        });
        if let Some(cmd) = auth_command(cfg) {
            conn.call(Req::Cmd(&cmd), 0)
                .await?
                .into_reply()?
                .into_ok()?;
        }
        Ok(conn)
    }

    /// Whether the connection can still be used.
    pub(crate) fn is_alive(&self) -> bool {
        self.shared.alive.load(Ordering::Acquire)
    }

    /// Writes and frames written so far.
    pub(crate) fn stats(&self) -> WriteStats {
        WriteStats {
            writes: self.shared.writes.load(Ordering::Relaxed),
            frames: self.shared.frames.load(Ordering::Relaxed),
        }
    }

    /// Sends one request and waits for its answer (within the read timeout).
    pub(crate) async fn call(&self, req: Req<'_>, epoch: u32) -> Result<Answer, ClientError> {
        let permit = match self.window.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => self.acquire(1).await?,
        };
        let sent = {
            let mut t = lock(&self.shared.table);
            if let Some(e) = &t.dead {
                return Err(e.clone());
            }
            let deadline = t.tick.saturating_add(self.timeout_ticks);
            let sent = self.queue(&mut t, req, epoch, deadline, permit)?;
            self.wake_writer(&mut t);
            sent
        };
        self.wait(sent).await
    }

    /// Waits for `n` permits of the window, at most the write timeout.
    async fn acquire(&self, n: usize) -> Result<OwnedSemaphorePermit, ClientError> {
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        let acquire = self.window.clone().acquire_many_owned(n);
        match tokio::time::timeout(self.write_timeout, acquire).await {
            Ok(Ok(p)) => Ok(p),
            Ok(Err(_)) => Err(self.shared.closed_err()),
            Err(_) => Err(ClientError::Timeout {
                addr: self.shared.addr.to_string(),
                after: self.write_timeout,
            }),
        }
    }

    /// Encodes `req` into the write buffer and registers its waiter (with one permit);
    /// on error nothing is queued and the permit goes back.
    fn queue(
        &self,
        t: &mut Table,
        req: Req<'_>,
        epoch: u32,
        deadline: u64,
        permit: OwnedSemaphorePermit,
    ) -> Result<Sent, ClientError> {
        let id = t.next_id;
        match req {
            Req::Cmd(cmd) => encode_checked(&mut t.wbuf, id, epoch, cmd, &self.limits)?,
            Req::Control { opcode, body } => {
                control::encode_control(&mut t.wbuf, opcode, false, id, epoch, body)
            }
        }
        t.next_id = next_request_id(id);
        t.queued += 1;
        let (tx, rx) = oneshot::channel();
        t.waiters.insert(
            id,
            Waiter {
                tx,
                deadline,
                _permit: permit,
            },
        );
        Ok(Sent { rx })
    }

    /// Queues requests with map epoch `epoch`, each batch of up to the window's size in one
    /// go (so they leave in one write), waiting for room in the window first (at most the
    /// write timeout). One entry per request, in order: its handle, or why it was not sent
    /// (too large, no room in time, connection unusable).
    pub(crate) async fn submit(
        &self,
        reqs: &[Req<'_>],
        epoch: u32,
    ) -> Vec<Result<Sent, ClientError>> {
        let mut out = Vec::with_capacity(reqs.len());
        for chunk in reqs.chunks(self.window_size) {
            let n = u32::try_from(chunk.len()).unwrap_or(u32::MAX);
            let permits = match self.window.clone().try_acquire_many_owned(n) {
                Ok(p) => Ok(p),
                Err(_) => self.acquire(chunk.len()).await,
            };
            let mut permits = match permits {
                Ok(p) => p,
                Err(e) => {
                    out.extend(chunk.iter().map(|_| Err(e.clone())));
                    continue;
                }
            };
            let mut t = lock(&self.shared.table);
            if let Some(e) = &t.dead {
                let e = e.clone();
                drop(t);
                out.extend(chunk.iter().map(|_| Err(e.clone())));
                continue;
            }
            let deadline = t.tick.saturating_add(self.timeout_ticks);
            for req in chunk {
                // One permit per request; those of requests not queued go back with `permits`.
                let Some(permit) = permits.split(1) else {
                    out.push(Err(ClientError::Protocol("no permit left".into())));
                    continue;
                };
                out.push(self.queue(&mut t, *req, epoch, deadline, permit));
            }
            self.wake_writer(&mut t);
        }
        out
    }

    /// Wakes the writer for what was just queued, unless it is woken already.
    fn wake_writer(&self, t: &mut Table) {
        if !t.writer_woken && !t.wbuf.is_empty() {
            t.writer_woken = true;
            self.shared.wake.notify_one();
        }
    }

    /// Waits for the answer to `sent`: the reply, the server's error, a timeout from the
    /// watchdog, or the error that closed the connection.
    pub(crate) async fn wait(&self, sent: Sent) -> Result<Answer, ClientError> {
        match sent.rx.await {
            Ok(answer) => answer,
            Err(_) => Err(self.shared.closed_err()),
        }
    }
}

/// Answers the waiters whose deadline passed with a timeout (their replies will be
/// discarded), every eighth of the read timeout; a connection that received nothing for a
/// whole read timeout while requests waited is closed as dead. Ends with the connection.
async fn watchdog(shared: std::sync::Weak<Shared>, read_timeout: Duration) {
    let tick = watchdog_tick(read_timeout);
    let mut expired = Vec::new();
    loop {
        tokio::time::sleep(tick).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        {
            let mut t = lock(&shared.table);
            if t.dead.is_some() {
                return;
            }
            t.tick += 1;
            let now = t.tick;
            if t.waiters.values().any(|w| w.deadline <= now) {
                let late: Vec<u64> = t
                    .waiters
                    .iter()
                    .filter(|(_, w)| w.deadline <= now)
                    .map(|(id, _)| *id)
                    .collect();
                expired.extend(late.iter().filter_map(|id| t.waiters.remove(id)));
            }
        }
        if expired.is_empty() {
            continue;
        }
        let err = ClientError::Timeout {
            addr: shared.addr.to_string(),
            after: read_timeout,
        };
        for w in expired.drain(..) {
            let _ = w.tx.send(Err(err.clone()));
        }
        if shared.since_rx() >= read_timeout {
            shared.die(err);
        }
    }
}

/// Sends whatever callers queued, in one write per wake-up, until the connection dies.
async fn write_loop(shared: Arc<Shared>, mut wr: OwnedWriteHalf, write_timeout: Duration) {
    let mut out = BytesMut::with_capacity(INITIAL_BUF);
    loop {
        shared.wake.notified().await;
        // Let the tasks already runnable on this worker queue their requests first, so that
        // they leave in this write (on a multi-threaded runtime the writer is otherwise woken
        // by the first request and writes it nearly alone).
        tokio::task::yield_now().await;
        // Each round takes everything queued so far; callers queue more meanwhile.
        loop {
            let frames = {
                let mut t = lock(&shared.table);
                if t.dead.is_some() {
                    return;
                }
                std::mem::swap(&mut t.wbuf, &mut out);
                t.writer_woken = false;
                std::mem::take(&mut t.queued)
            };
            if out.is_empty() {
                break;
            }
            match tokio::time::timeout(write_timeout, wr.write_all(&out)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    return shared.die(ClientError::from_io(shared.addr, e, write_timeout));
                }
                Err(_) => {
                    return shared.die(ClientError::Timeout {
                        addr: shared.addr.to_string(),
                        after: write_timeout,
                    });
                }
            }
            shared.writes.fetch_add(1, Ordering::Relaxed);
            shared.frames.fetch_add(frames, Ordering::Relaxed);
            if out.capacity() > SHRINK_ABOVE {
                out = BytesMut::with_capacity(INITIAL_BUF);
            } else {
                out.clear();
            }
        }
    }
}

/// Reads replies and hands each to its caller, until the connection dies.
async fn read_loop(shared: Arc<Shared>, mut rd: OwnedReadHalf, limits: Limits) {
    let mut rbuf = BytesMut::with_capacity(INITIAL_BUF);
    let mut answers: Vec<(u64, Result<Answer, ClientError>)> = Vec::new();
    let mut ready = Vec::new();
    loop {
        let need = loop {
            match frame_status(&rbuf, &limits, &shared.addr) {
                Ok(FrameStatus::Whole(h)) => {
                    let frame = rbuf.split_to(h.frame_len());
                    let body = &frame[HEADER_LEN..];
                    if h.opcode == u8::from(ringcache_proto::ClusterOp::Reply) {
                        answers.push((h.request_id, Ok(Answer::Control(body.to_vec()))));
                        continue;
                    }
                    match decode_reply(&h, body, &limits, &shared.addr) {
                        Ok((id, reply)) => answers.push((id, reply.map(Answer::Reply))),
                        Err(e) => {
                            deliver(&shared, &mut answers, &mut ready);
                            return shared.die(e);
                        }
                    }
                }
                Ok(FrameStatus::Need(n)) => break n,
                Err(e) => {
                    deliver(&shared, &mut answers, &mut ready);
                    return shared.die(e);
                }
            }
        };
        deliver(&shared, &mut answers, &mut ready);
        rbuf.reserve(need.saturating_sub(rbuf.len()).max(MIN_READ));
        match rd.read_buf(&mut rbuf).await {
            Ok(0) => return shared.die(shared.closed_err()),
            Ok(_) => {
                let now = u64::try_from(shared.born.elapsed().as_nanos()).unwrap_or(u64::MAX);
                shared.last_rx.store(now, Ordering::Relaxed);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return shared.die(ClientError::from_io(shared.addr, e, Duration::ZERO)),
        }
    }
}

/// Hands answers to their callers; an answer nobody waits for (the caller gave up) is
/// dropped, and so is its permit.
fn deliver(
    shared: &Shared,
    answers: &mut Vec<(u64, Result<Answer, ClientError>)>,
    ready: &mut Vec<(Waiter, Result<Answer, ClientError>)>,
) {
    if answers.is_empty() {
        return;
    }
    {
        let mut t = lock(&shared.table);
        for (id, answer) in answers.drain(..) {
            if let Some(w) = t.waiters.remove(&id) {
                ready.push((w, answer));
            }
        }
    }
    for (w, answer) in ready.drain(..) {
        let _ = w.tx.send(answer);
    }
}
