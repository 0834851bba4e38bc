//! One TCP connection speaking native frames, with buffers reused across requests.
//!
//! Requests are encoded into a write buffer and sent in one write; replies are read into a
//! read buffer that only grows for a reply larger than any before, and is compacted in place.
//! A batch of several frames is written in non-blocking mode while taking replies off the
//! socket, so a batch larger than the socket buffers cannot deadlock against a server that
//! waits for its replies to be read.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use ringcache_proto::{Command, Header, Limits, HEADER_LEN};

use crate::codec::{
    auth_command, decode_reply, encode_checked, frame_status, next_request_id, FrameStatus,
};
use crate::config::ClientConfig;
use crate::error::ClientError;
use crate::reply::Reply;

/// Initial size of each buffer.
const INITIAL_BUF: usize = 16 * 1024;
/// Least free space offered to one read.
const MIN_READ: usize = 4 * 1024;
/// A buffer grown past this by one big reply or batch is given back once it is empty.
const SHRINK_ABOVE: usize = 4 << 20;

/// An open connection to one port of a node.
pub(crate) struct Conn {
    stream: TcpStream,
    addr: SocketAddr,
    /// Encoded requests not yet written.
    wbuf: BytesMut,
    /// Frames in `wbuf`.
    queued: usize,
    /// Received bytes; `rbuf[start..end]` is not consumed yet.
    rbuf: Vec<u8>,
    start: usize,
    end: usize,
    next_id: u64,
    last_used: Instant,
    read_timeout: Duration,
    write_timeout: Duration,
    /// Cluster map epoch sent in every request (0: the client does not track a map).
    pub(crate) epoch: u32,
}

impl Conn {
    /// Connects, sets timeouts and authenticates when a password is configured.
    pub(crate) fn open(
        addr: SocketAddr,
        cfg: &ClientConfig,
        reply_limits: &Limits,
    ) -> Result<Conn, ClientError> {
        let connect_err = |source| ClientError::Connect {
            addr: addr.to_string(),
            source,
        };
        let stream = TcpStream::connect_timeout(&addr, cfg.connect_timeout).map_err(connect_err)?;
        stream.set_nodelay(true).map_err(connect_err)?;
        stream
            .set_read_timeout(Some(cfg.read_timeout))
            .map_err(connect_err)?;
        stream
            .set_write_timeout(Some(cfg.write_timeout))
            .map_err(connect_err)?;
        let mut conn = Conn {
            stream,
            addr,
            wbuf: BytesMut::with_capacity(INITIAL_BUF),
            queued: 0,
            rbuf: vec![0; INITIAL_BUF],
            start: 0,
            end: 0,
            next_id: 1,
            last_used: Instant::now(),
            read_timeout: cfg.read_timeout,
            write_timeout: cfg.write_timeout,
            epoch: 0,
        };
        if let Some(cmd) = auth_command(cfg) {
            conn.call(&cmd, &cfg.limits, reply_limits)?.into_ok()?;
        }
        Ok(conn)
    }

    /// The peer address.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sends one control frame (`ringcache_proto::control`) and answers the reply's body.
    pub(crate) fn control(
        &mut self,
        opcode: ringcache_proto::ClusterOp,
        body: &[u8],
        limits: &Limits,
    ) -> Result<Vec<u8>, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        ringcache_proto::control::encode_control(&mut self.wbuf, opcode, false, id, 0, body);
        self.queued += 1;
        self.flush()?;
        let h = self.read_frame(limits)?;
        let len = h.frame_len();
        let body = self.rbuf[self.start + HEADER_LEN..self.start + len].to_vec();
        self.start += len;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        if h.request_id != id || h.opcode != u8::from(ringcache_proto::ClusterOp::Reply) {
            return Err(ClientError::Protocol(format!(
                "{} did not answer the cluster request (is it a ringcache balancer?)",
                self.addr
            )));
        }
        Ok(body)
    }

    /// Sends one request and reads its reply.
    pub(crate) fn call(
        &mut self,
        cmd: &Command<'_>,
        limits: &Limits,
        reply_limits: &Limits,
    ) -> Result<Reply, ClientError> {
        let id = self.queue(cmd, limits)?;
        self.flush()?;
        let (rid, reply) = self.recv(reply_limits)?;
        if rid != id {
            return Err(ClientError::Protocol(format!(
                "reply for request {rid} while waiting for request {id}"
            )));
        }
        reply
    }

    /// Encodes one request into the write buffer; answers its request id. On error nothing
    /// is queued.
    pub(crate) fn queue(&mut self, cmd: &Command<'_>, limits: &Limits) -> Result<u64, ClientError> {
        let id = self.next_id;
        encode_checked(&mut self.wbuf, id, self.epoch, cmd, limits)?;
        self.next_id = next_request_id(id);
        self.queued += 1;
        Ok(id)
    }

    fn io_err(&self, e: io::Error, after: Duration) -> ClientError {
        ClientError::from_io(self.addr, e, after)
    }

    fn closed_err(&self) -> ClientError {
        ClientError::Io {
            addr: self.addr.to_string(),
            source: io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed by the server",
            ),
        }
    }

    /// Writes every queued request in one write.
    pub(crate) fn flush(&mut self) -> Result<(), ClientError> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        let res = if self.queued <= 1 {
            // One request has one reply: the server reads it whole before answering, so a
            // blocking write cannot deadlock.
            self.stream
                .write_all(&self.wbuf)
                .map_err(|e| self.io_err(e, self.write_timeout))
        } else {
            self.flush_interleaved()
        };
        self.wbuf.clear();
        self.queued = 0;
        if self.wbuf.capacity() > SHRINK_ABOVE {
            self.wbuf = BytesMut::with_capacity(INITIAL_BUF);
        }
        self.last_used = Instant::now();
        res
    }

    fn flush_interleaved(&mut self) -> Result<(), ClientError> {
        self.stream
            .set_nonblocking(true)
            .map_err(|e| self.io_err(e, self.write_timeout))?;
        let res = self.write_while_reading();
        let back = self.stream.set_nonblocking(false);
        res?;
        back.map_err(|e| self.io_err(e, self.write_timeout))
    }

    /// Writes the whole write buffer; whenever the socket takes no more, takes replies off it
    /// instead (the server may be waiting for that before it reads on).
    fn write_while_reading(&mut self) -> Result<(), ClientError> {
        const FIRST_PAUSE: Duration = Duration::from_micros(20);
        let mut off = 0;
        let mut stalled_since: Option<Instant> = None;
        let mut pause = FIRST_PAUSE;
        while off < self.wbuf.len() {
            let mut progress = false;
            match self.stream.write(&self.wbuf[off..]) {
                Ok(0) => {
                    let e = io::Error::new(io::ErrorKind::WriteZero, "the socket took no bytes");
                    return Err(self.io_err(e, self.write_timeout));
                }
                Ok(n) => {
                    off += n;
                    progress = true;
                }
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock) => {}
                Err(e) if matches!(e.kind(), io::ErrorKind::Interrupted) => continue,
                Err(e) => return Err(self.io_err(e, self.write_timeout)),
            }
            if !progress {
                self.make_room(0);
                match self.stream.read(&mut self.rbuf[self.end..]) {
                    Ok(0) => return Err(self.closed_err()),
                    Ok(n) => {
                        self.end += n;
                        progress = true;
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                        ) => {}
                    Err(e) => return Err(self.io_err(e, self.read_timeout)),
                }
            }
            if progress {
                stalled_since = None;
                pause = FIRST_PAUSE;
            } else {
                let since = *stalled_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= self.write_timeout {
                    let e = io::Error::from(io::ErrorKind::TimedOut);
                    return Err(self.io_err(e, self.write_timeout));
                }
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(1));
            }
        }
        Ok(())
    }

    /// Makes sure `rbuf[start..]` can hold `need` bytes and offers at least `MIN_READ` free.
    fn make_room(&mut self, need: usize) {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        let have = self.end - self.start;
        let want = need.max(have + MIN_READ);
        if self.rbuf.len() - self.start >= want {
            return;
        }
        if self.start > 0 {
            self.rbuf.copy_within(self.start..self.end, 0);
            self.start = 0;
            self.end = have;
        }
        if self.rbuf.len() < want {
            let len = want.max(self.rbuf.len() * 2);
            self.rbuf.resize(len, 0);
        }
    }

    /// Reads until a whole frame is buffered; answers its header.
    fn read_frame(&mut self, limits: &Limits) -> Result<Header, ClientError> {
        loop {
            let avail = &self.rbuf[self.start..self.end];
            let need = match frame_status(avail, limits, &self.addr)? {
                FrameStatus::Whole(h) => return Ok(h),
                FrameStatus::Need(n) => n,
            };
            self.make_room(need);
            match self.stream.read(&mut self.rbuf[self.end..]) {
                Ok(0) => return Err(self.closed_err()),
                Ok(n) => self.end += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.io_err(e, self.read_timeout)),
            }
        }
    }

    /// Reads the next reply: its request id and the reply or the server's error for it.
    /// The outer error means the connection is unusable.
    pub(crate) fn recv(
        &mut self,
        limits: &Limits,
    ) -> Result<(u64, Result<Reply, ClientError>), ClientError> {
        let h = self.read_frame(limits)?;
        let len = h.frame_len();
        let body = &self.rbuf[self.start + HEADER_LEN..self.start + len];
        let decoded = decode_reply(&h, body, limits, &self.addr);
        self.start += len;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if self.rbuf.len() > SHRINK_ABOVE {
                self.rbuf = vec![0; INITIAL_BUF];
            }
        }
        self.last_used = Instant::now();
        decoded
    }

    /// Whether a connection idle for `idle_check` or longer was closed by the server (or has
    /// unexpected bytes pending). Cheap for a connection in use: no system call.
    pub(crate) fn is_stale(&mut self, idle_check: Duration) -> bool {
        if self.last_used.elapsed() < idle_check {
            return false;
        }
        if self.start != self.end || self.stream.set_nonblocking(true).is_err() {
            return true;
        }
        let mut b = [0u8; 1];
        let stale = match self.stream.peek(&mut b) {
            Ok(_) => true, // 0: closed; 1: bytes nobody asked for
            Err(e) => e.kind() != io::ErrorKind::WouldBlock,
        };
        stale || self.stream.set_nonblocking(false).is_err()
    }
}

/// Matches the replies of one batch on one connection to its requests by request id.
///
/// The ids of a batch are consecutive, so the usual lookup is one subtraction; replies may
/// come in any order, and an id that is unknown or answered twice is a protocol error.
pub(crate) struct ReplySlots {
    /// (request id, index of the caller's request) in send order.
    ids: Vec<(u64, usize)>,
    filled: Vec<bool>,
    left: usize,
}

impl ReplySlots {
    /// Slots for requests sent with these ids, in send order.
    pub(crate) fn new(ids: Vec<(u64, usize)>) -> Self {
        let n = ids.len();
        ReplySlots {
            ids,
            filled: vec![false; n],
            left: n,
        }
    }

    /// Replies still expected.
    pub(crate) fn left(&self) -> usize {
        self.left
    }

    /// The caller's index for a reply with id `rid`; errors for an unknown or repeated id.
    pub(crate) fn take(&mut self, rid: u64) -> Result<usize, ClientError> {
        let first = self.ids.first().map_or(0, |(id, _)| *id);
        let guess = rid.wrapping_sub(first) as usize;
        let pos = match self.ids.get(guess) {
            Some((id, _)) if *id == rid => Some(guess),
            _ => self.ids.iter().position(|(id, _)| *id == rid),
        };
        match pos {
            Some(i) if !self.filled[i] => {
                self.filled[i] = true;
                self.left -= 1;
                Ok(self.ids[i].1)
            }
            Some(_) => Err(ClientError::Protocol(format!(
                "a second reply for request {rid}"
            ))),
            None => Err(ClientError::Protocol(format!(
                "a reply for request {rid}, which was not sent"
            ))),
        }
    }

    /// The caller's indexes of the requests still without a reply.
    pub(crate) fn unanswered(&self) -> impl Iterator<Item = usize> + '_ {
        self.ids
            .iter()
            .zip(&self.filled)
            .filter(|(_, f)| !**f)
            .map(|((_, i), _)| *i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_match_by_id_in_any_order() {
        let mut s = ReplySlots::new(vec![(10, 4), (11, 7), (12, 9)]);
        assert_eq!(s.take(12).unwrap(), 9);
        assert_eq!(s.take(10).unwrap(), 4);
        assert_eq!(s.left(), 1);
        assert_eq!(s.unanswered().collect::<Vec<_>>(), vec![7]);
        assert!(matches!(s.take(10), Err(ClientError::Protocol(_))));
        assert!(matches!(s.take(99), Err(ClientError::Protocol(_))));
        assert_eq!(s.take(11).unwrap(), 7);
        assert_eq!(s.left(), 0);
    }

    #[test]
    fn ids_that_wrap_still_match() {
        let mut s = ReplySlots::new(vec![(u64::MAX, 0), (1, 1), (2, 2)]);
        assert_eq!(s.take(2).unwrap(), 2);
        assert_eq!(s.take(u64::MAX).unwrap(), 0);
        assert_eq!(s.take(1).unwrap(), 1);
    }
}
