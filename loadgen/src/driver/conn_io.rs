//! Socket I/O of one connection: reading and parsing replies, matching each to its request in
//! flight and counting it, and flushing the gathered writes (waiting for `EPOLLOUT` when the
//! socket is full).

use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;

use super::stats::Phase;
use super::worker::{Fail, Worker};
use crate::protocol::{parse_reply, Outcome, Reply};
use crate::sys::{self, now_ns};

impl Worker<'_> {
    pub(super) fn on_readable(&mut self, ci: usize) {
        loop {
            let c = &mut self.conns[ci];
            let Some(stream) = c.stream.as_mut() else {
                return;
            };
            if c.rstart == c.rend {
                c.rstart = 0;
                c.rend = 0;
            } else if c.rend == c.rbuf.len() {
                if c.rstart > 0 {
                    c.rbuf.copy_within(c.rstart..c.rend, 0);
                    c.rend -= c.rstart;
                    c.rstart = 0;
                } else {
                    let len = c.rbuf.len();
                    c.rbuf.resize(len * 2, 0);
                }
            }
            let room = c.rbuf.len() - c.rend;
            match stream.read(&mut c.rbuf[c.rend..]) {
                Ok(0) => {
                    self.fail(ci, Fail::Connection, "connection closed by the server");
                    return;
                }
                Ok(n) => {
                    c.rend += n;
                    let now = now_ns();
                    if !self.parse_replies(ci, now) {
                        return;
                    }
                    let slot = self.conns[ci].slot;
                    self.refill(slot, now);
                    if n < room {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.fail(ci, Fail::Connection, &format!("read: {e}"));
                    return;
                }
            }
        }
    }

    /// Handles every complete reply in the read buffer; false if the connection failed.
    fn parse_replies(&mut self, ci: usize, now: u64) -> bool {
        loop {
            let c = &self.conns[ci];
            let parsed = parse_reply(self.cfg.target, &c.rbuf[c.rstart..c.rend]);
            match parsed {
                Ok(Some(reply)) => {
                    self.conns[ci].rstart += reply.used;
                    if !self.complete(ci, reply, now) {
                        return false;
                    }
                }
                Ok(None) => return true,
                Err(e) => {
                    self.fail(ci, Fail::Protocol, &e.to_string());
                    return false;
                }
            }
        }
    }

    fn complete(&mut self, ci: usize, reply: Reply, now: u64) -> bool {
        let c = &mut self.conns[ci];
        let flight = match reply.id {
            None => c.inflight.pop_front(),
            Some(id) => match c.inflight.front() {
                Some(f) if f.id == id => c.inflight.pop_front(),
                _ => c
                    .inflight
                    .iter()
                    .position(|f| f.id == id)
                    .and_then(|i| c.inflight.remove(i)),
            },
        };
        let Some(f) = flight else {
            self.fail(ci, Fail::Protocol, "reply to no request in flight");
            return false;
        };
        let slot = c.slot;
        self.slots[slot].inflight -= 1;
        self.inflight -= 1;
        self.pub_replies += 1;
        self.last_reply = now;
        if self.prefill.is_some() {
            self.stats.prefill_ops += 1;
            match &reply.outcome {
                Outcome::ServerError(k) => self.stats.prefill_errors.server_error(k),
                Outcome::Redirect => self.stats.prefill_errors.redirects += 1,
                _ => {}
            }
            return true;
        }
        match &reply.outcome {
            Outcome::ServerError(k) => self.stats.errors.server_error(k),
            Outcome::Redirect => self.stats.errors.redirects += 1,
            _ => {}
        }
        if self.phase != Phase::Measure || now < self.measure_start {
            return true;
        }
        let st = &mut self.stats;
        st.ops += 1;
        st.hist.record_since(f.intended, now);
        self.pub_hist.record_since(f.intended, now);
        self.pub_measured += 1;
        if f.get {
            st.gets += 1;
            self.pub_gets += 1;
            if reply.outcome == Outcome::Hit {
                st.hits += 1;
                self.pub_hits += 1;
            }
        } else {
            st.sets += 1;
        }
        true
    }

    pub(super) fn flush_dirty(&mut self) {
        while let Some(ci) = self.dirty.pop() {
            self.flush(ci);
        }
    }

    pub(super) fn flush(&mut self, ci: usize) {
        let c = &mut self.conns[ci];
        c.dirty = false;
        let Some(stream) = c.stream.as_mut() else {
            return;
        };
        while c.wpos < c.wbuf.len() {
            match stream.write(&c.wbuf[c.wpos..]) {
                Ok(0) => {
                    self.fail(ci, Fail::Connection, "write returned 0");
                    return;
                }
                Ok(n) => c.wpos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !c.want_out {
                        c.want_out = true;
                        let fd = stream.as_raw_fd();
                        let _ = self.ep.modify(fd, sys::IN | sys::OUT, ci as u64);
                    }
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.fail(ci, Fail::Connection, &format!("write: {e}"));
                    return;
                }
            }
        }
        c.wbuf.clear();
        c.wpos = 0;
        if c.want_out {
            c.want_out = false;
            let fd = stream.as_raw_fd();
            let _ = self.ep.modify(fd, sys::IN, ci as u64);
        }
    }
}
