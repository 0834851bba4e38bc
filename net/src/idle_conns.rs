//! Idle client connections, found without a timer per read: each connection counts its reads in
//! a cell that the core's table shares, and the core's tick compares the counts with the previous
//! sweep's. A connection whose count has not moved for the idle timeout is shut down, which ends
//! its pending read. (A timer armed and cancelled around every read cost a clock read and two
//! timer-tree updates per request.)

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// One tracked connection.
struct Tracked {
    fd: RawFd,
    reads: Rc<Cell<u64>>,
    /// `reads` at the sweep that last saw it move.
    seen: u64,
    /// When `reads` was last seen to move (or the connection was accepted).
    quiet_since: Instant,
}

/// A core's open client connections and how long each has been quiet.
#[derive(Default)]
pub(crate) struct IdleConns {
    conns: RefCell<HashMap<u64, Tracked>>,
    last_sweep: Cell<Option<Instant>>,
}

/// Keeps a connection in its core's table while it lives; removes it on drop. Drop it before
/// the connection's socket is closed, so the table never holds a descriptor that was reused.
pub(crate) struct Tracking {
    id: u64,
    table: Rc<IdleConns>,
    reads: Rc<Cell<u64>>,
}

impl Tracking {
    /// Notes that a read returned data.
    #[inline]
    pub fn read_done(&self) {
        self.reads.set(self.reads.get().wrapping_add(1));
    }
}

impl Drop for Tracking {
    fn drop(&mut self) {
        self.table.conns.borrow_mut().remove(&self.id);
    }
}

impl IdleConns {
    /// Starts tracking connection `id` on socket `fd`, quiet from `now`.
    pub fn track(self: &Rc<Self>, id: u64, fd: RawFd, now: Instant) -> Tracking {
        let reads = Rc::new(Cell::new(0));
        self.conns.borrow_mut().insert(
            id,
            Tracked {
                fd,
                reads: reads.clone(),
                seen: 0,
                quiet_since: now,
            },
        );
        Tracking {
            id,
            table: self.clone(),
            reads,
        }
    }

    /// The sockets of connections that read nothing for `timeout`. Sweeps at most every quarter
    /// of the timeout (capped at a second), so a connection is closed between `timeout` and
    /// about 1.25 × `timeout` after its last read; between sweeps it answers nothing.
    pub fn idle(&self, now: Instant, timeout: Duration) -> Vec<RawFd> {
        let every = (timeout / 4).min(Duration::from_secs(1));
        if let Some(last) = self.last_sweep.get() {
            if now.saturating_duration_since(last) < every {
                return Vec::new();
            }
        }
        self.last_sweep.set(Some(now));
        let mut idle = Vec::new();
        for t in self.conns.borrow_mut().values_mut() {
            let reads = t.reads.get();
            if reads != t.seen {
                t.seen = reads;
                t.quiet_since = now;
            } else if now.saturating_duration_since(t.quiet_since) >= timeout {
                idle.push(t.fd);
            }
        }
        idle
    }

    /// The sockets of every tracked connection.
    pub fn all(&self) -> Vec<RawFd> {
        self.conns.borrow().values().map(|t| t.fd).collect()
    }
}

/// Shuts down `how` (`libc::SHUT_RD`, `SHUT_RDWR`) a tracked connection's socket, which wakes
/// its pending read with end of file.
pub(crate) fn shut_down(fd: RawFd, how: libc::c_int) {
    // SAFETY: `shutdown(2)` only reads its integer arguments. `fd` comes from the table, which
    // holds a connection only while its `Tracking` guard lives, and the guard is dropped before
    // the connection's socket is closed (both on this core's thread), so `fd` is still that
    // connection's open socket.
    unsafe {
        libc::shutdown(fd, how);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(4);

    #[test]
    fn a_quiet_connection_is_idle_after_the_timeout_and_a_reading_one_is_not() {
        let table = Rc::new(IdleConns::default());
        let t0 = Instant::now();
        let quiet = table.track(1, 10, t0);
        let busy = table.track(2, 11, t0);
        let mut idle_at = None;
        for step in 1..=20u32 {
            let now = t0 + Duration::from_millis(500) * step;
            busy.read_done();
            let idle = table.idle(now, T);
            assert!(!idle.contains(&11), "a connection that reads is never idle");
            if idle.contains(&10) && idle_at.is_none() {
                idle_at = Some(now - t0);
            }
        }
        let idle_at = idle_at.expect("the quiet connection went idle");
        assert!(
            idle_at >= T && idle_at <= T + T / 4,
            "idle after {idle_at:?}"
        );
        drop(quiet);
        assert_eq!(table.all(), vec![11], "a dropped guard leaves the table");
    }

    #[test]
    fn a_read_restarts_the_quiet_period() {
        let table = Rc::new(IdleConns::default());
        let t0 = Instant::now();
        let c = table.track(1, 10, t0);
        assert!(table.idle(t0 + Duration::from_secs(3), T).is_empty());
        c.read_done();
        // Seen moving at 6 s: quiet from there on.
        assert!(table.idle(t0 + Duration::from_secs(6), T).is_empty());
        assert!(table.idle(t0 + Duration::from_secs(9), T).is_empty());
        assert_eq!(table.idle(t0 + Duration::from_secs(10), T), vec![10]);
    }

    #[test]
    fn sweeps_are_rate_limited() {
        let table = Rc::new(IdleConns::default());
        let t0 = Instant::now();
        let _c = table.track(1, 10, t0);
        assert!(table.idle(t0 + Duration::from_secs(5), T).len() == 1);
        // Within a quarter of the timeout of the last sweep: nothing is looked at.
        assert!(table.idle(t0 + Duration::from_millis(5_500), T).is_empty());
        assert_eq!(table.idle(t0 + Duration::from_secs(6), T), vec![10]);
        assert_eq!(table.all(), vec![10]);
    }
}
