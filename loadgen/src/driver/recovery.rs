//! Failure handling of one thread: closing a failed connection and counting what it lost,
//! request timeouts, reconnects, and giving up on a server that stopped answering.

use std::os::fd::AsRawFd;
use std::time::Duration;

use super::connect::connect;
use super::stats::ErrorCounts;
use super::worker::{Fail, Worker};
use super::{RETRY_NS, STALL_NS};
use crate::sys::{self, now_ns};

impl Worker<'_> {
    fn errors_mut(&mut self) -> &mut ErrorCounts {
        if self.prefill.is_some() {
            &mut self.stats.prefill_errors
        } else {
            &mut self.stats.errors
        }
    }

    /// Closes connection `ci`, forgets its requests in flight and schedules a reconnect.
    pub(super) fn fail(&mut self, ci: usize, why: Fail, msg: &str) {
        let c = &mut self.conns[ci];
        let Some(stream) = c.stream.take() else {
            return;
        };
        let _ = self.ep.delete(stream.as_raw_fd());
        drop(stream);
        let lost = c.inflight.len() as u64;
        c.inflight.clear();
        c.rstart = 0;
        c.rend = 0;
        c.wbuf.clear();
        c.wpos = 0;
        c.want_out = false;
        c.retry_at = now_ns() + RETRY_NS;
        let addr = c.addr;
        let slot = &mut self.slots[c.slot];
        slot.inflight -= lost as usize;
        slot.down += 1;
        self.inflight -= lost as usize;
        let e = self.errors_mut();
        match why {
            Fail::Timeout => e.timeouts += lost,
            Fail::Connection => {
                e.connection_errors += 1;
                e.lost_requests += lost;
            }
            Fail::Protocol => {
                e.protocol_errors += 1;
                e.lost_requests += lost;
            }
        }
        if e.first_error.is_none() {
            e.first_error = Some(format!("{addr}: {msg}"));
        }
    }

    /// Timeouts, reconnects, progress publication, and giving up on a server that stopped
    /// answering when the run has no end time.
    pub(super) fn housekeeping(&mut self, now: u64) -> anyhow::Result<()> {
        let bounded_by_time = self.prefill.is_none() && self.cfg.duration_ns.is_some();
        if self.inflight == 0 && self.slots.iter().all(|s| s.down == 0) {
            // Nothing is awaited (a slow open-loop rate): not a stall.
            self.last_reply = now;
        }
        let stall = STALL_NS.max(2 * self.cfg.timeout_ns);
        if !bounded_by_time && now.saturating_sub(self.last_reply) > stall {
            anyhow::bail!(
                "no reply from the server for {} s during {}; giving up (first error: {})",
                stall / 1_000_000_000,
                if self.prefill.is_some() {
                    "prefill"
                } else {
                    "the run"
                },
                self.errors_mut()
                    .first_error
                    .clone()
                    .unwrap_or_else(|| "none".into())
            );
        }
        let timeout = self.cfg.timeout_ns;
        for ci in 0..self.conns.len() {
            let c = &self.conns[ci];
            if c.stream.is_some() {
                if c.inflight.front().is_some_and(|f| now > f.sent + timeout) {
                    self.fail(ci, Fail::Timeout, "no reply within --timeout");
                }
            } else if now >= c.retry_at {
                self.reconnect(ci);
            }
        }
        self.publish();
        Ok(())
    }

    fn reconnect(&mut self, ci: usize) {
        let addr = self.conns[ci].addr;
        match connect(addr, Duration::from_millis(200)) {
            Ok(stream) => {
                if self.ep.add(stream.as_raw_fd(), sys::IN, ci as u64).is_err() {
                    self.conns[ci].retry_at = now_ns() + RETRY_NS;
                    return;
                }
                let c = &mut self.conns[ci];
                c.stream = Some(stream);
                let slot = c.slot;
                self.slots[slot].down -= 1;
                let now = now_ns();
                self.refill(slot, now);
            }
            Err(e) => {
                let err = self.errors_mut();
                err.connect_failures += 1;
                if err.first_error.is_none() {
                    err.first_error = Some(format!("{addr}: connect: {e}"));
                }
                self.conns[ci].retry_at = now_ns() + RETRY_NS;
            }
        }
    }
}
