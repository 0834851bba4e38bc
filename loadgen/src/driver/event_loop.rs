//! The request loop of one thread: the closed-loop and open-loop epoll loops, handing due
//! requests to slots with room, topping slots up to their pipeline depth, and encoding each
//! request into its endpoint's write buffer.

use super::stats::Phase;
use super::worker::{Flight, Worker};
use super::{Refill, HOUSEKEEPING_NS, LATE_NS};
use crate::latency::Schedule;
use crate::protocol::{encode_get, encode_set};
use crate::sys::{self, now_ns};
use crate::workload::OpKind;

impl Worker<'_> {
    pub(super) fn run_closed(&mut self, end: Option<u64>) -> anyhow::Result<()> {
        let now = now_ns();
        self.maybe_start_measuring(now);
        for s in 0..self.slots.len() {
            self.refill(s, now);
        }
        self.flush_dirty();
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
        let mut next_hk = now + HOUSEKEEPING_NS;
        loop {
            let now = now_ns();
            if self.finished(now, end) {
                break;
            }
            self.maybe_start_measuring(now);
            if now >= next_hk {
                self.housekeeping(now)?;
                next_hk = now + HOUSEKEEPING_NS;
                self.flush_dirty();
            }
            let deadline = end.map_or(next_hk, |e| e.min(next_hk));
            let n = self
                .ep
                .wait(&mut events, Some(deadline.saturating_sub(now)))?;
            self.handle_events(&events[..n]);
            self.flush_dirty();
        }
        Ok(())
    }

    pub(super) fn run_open(
        &mut self,
        sched: &mut Schedule,
        end: Option<u64>,
    ) -> anyhow::Result<()> {
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
        let mut next_hk = now_ns() + HOUSEKEEPING_NS;
        loop {
            let now = now_ns();
            if self.finished(now, end) {
                break;
            }
            self.maybe_start_measuring(now);
            if now >= next_hk {
                self.housekeeping(now)?;
                next_hk = now + HOUSEKEEPING_NS;
            }
            let blocked = self.issue_open(sched, now);
            self.flush_dirty();
            let mut deadline = end.map_or(next_hk, |e| e.min(next_hk));
            if !blocked {
                if let Some(due) = sched.next_due() {
                    deadline = deadline.min(due);
                }
            }
            let n = self
                .ep
                .wait(&mut events, Some(deadline.saturating_sub(now_ns())))?;
            self.handle_events(&events[..n]);
            self.flush_dirty();
        }
        Ok(())
    }

    /// Sends every request that is due on slots with room. Returns true when requests are due
    /// but no slot has room (the loop then waits for replies rather than the timer).
    fn issue_open(&mut self, sched: &mut Schedule, now: u64) -> bool {
        let n = self.slots.len();
        loop {
            if sched.next_due().is_none_or(|t| t > now) {
                return false;
            }
            let mut found = None;
            for k in 0..n {
                let s = (self.rr + k) % n;
                let slot = &self.slots[s];
                if slot.down == 0 && slot.inflight < self.depth {
                    found = Some(s);
                    break;
                }
            }
            let Some(s) = found else {
                let backlog = sched.backlog(now);
                self.stats.max_backlog = self.stats.max_backlog.max(backlog);
                return true;
            };
            let Some(due) = sched.take_due(now) else {
                return false;
            };
            self.rr = (s + 1) % n;
            if self.phase == Phase::Measure && now - due > LATE_NS {
                self.stats.late_sends += 1;
            }
            self.issue(s, due, now);
        }
    }

    /// Tops slot `s` up to its depth (closed loop and prefill).
    pub(super) fn refill(&mut self, s: usize, now: u64) {
        if self.cfg.rate.is_some() && self.prefill.is_none() {
            return;
        }
        if self.cfg.refill == Refill::Batch && self.prefill.is_none() && self.slots[s].inflight > 0
        {
            return;
        }
        while self.slots[s].down == 0 && self.slots[s].inflight < self.depth {
            if !self.issue(s, now, now) {
                break;
            }
        }
    }

    /// Encodes the next operation on slot `s`; false when there is nothing left to send.
    fn issue(&mut self, s: usize, intended: u64, now: u64) -> bool {
        let op = match &mut self.prefill {
            Some(range) => match range.next() {
                Some(k) => crate::workload::Op {
                    kind: OpKind::Set,
                    key: k,
                    value_len: self.gen.next_value_len(),
                },
                None => return false,
            },
            None => self.gen.next_op(),
        };
        self.cfg.keyspace.write_key(op.key, &mut self.key);
        let slot = &mut self.slots[s];
        let ep = self.cfg.route.endpoint(&self.key, slot.conns.len());
        let ci = slot.conns[ep.min(slot.conns.len() - 1)];
        slot.inflight += 1;
        self.inflight += 1;
        let c = &mut self.conns[ci];
        let id = self.next_id;
        self.next_id += 1;
        let get = op.kind == OpKind::Get;
        if get {
            encode_get(self.cfg.target, &mut c.wbuf, id, self.cfg.epoch, &self.key);
        } else {
            let v = &self.values[..op.value_len];
            encode_set(
                self.cfg.target,
                &mut c.wbuf,
                id,
                self.cfg.epoch,
                &self.key,
                v,
            );
        }
        c.inflight.push_back(Flight {
            id,
            intended,
            sent: now,
            get,
        });
        if !c.dirty {
            c.dirty = true;
            self.dirty.push(ci);
        }
        true
    }

    fn handle_events(&mut self, events: &[libc::epoll_event]) {
        for ev in events {
            let token = ev.u64;
            let bits = ev.events;
            let ci = token as usize;
            if ci >= self.conns.len() || self.conns[ci].stream.is_none() {
                continue;
            }
            if bits & sys::OUT != 0 {
                self.flush(ci);
            }
            if bits & !sys::OUT != 0 {
                self.on_readable(ci);
            }
        }
    }
}
