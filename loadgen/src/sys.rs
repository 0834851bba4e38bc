//! Thin wrappers over the Linux calls the I/O loop needs: the monotonic clock, epoll with
//! nanosecond timeouts, timer slack, per-thread CPU time and CPU pinning.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Nanoseconds of CLOCK_MONOTONIC.
#[inline]
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// An epoll instance; events carry a caller-chosen `u64` token.
pub struct Epoll {
    fd: OwnedFd,
}

/// Readable.
pub const IN: u32 = libc::EPOLLIN as u32;
/// Writable.
pub const OUT: u32 = libc::EPOLLOUT as u32;

impl Epoll {
    /// A new epoll instance (close-on-exec).
    pub fn new() -> io::Result<Self> {
        // SAFETY: plain syscall; the returned descriptor is owned from here on.
        let fd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Epoll { fd })
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: token };
        // SAFETY: `ev` is valid for the call; the kernel copies it.
        cvt(unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), op, fd, &mut ev) })?;
        Ok(())
    }

    /// Watches `fd` for `events` (level-triggered).
    pub fn add(&self, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, events, token)
    }

    /// Changes the events watched on `fd`.
    pub fn modify(&self, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd, events, token)
    }

    /// Stops watching `fd`.
    pub fn delete(&self, fd: RawFd) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_DEL, fd, 0, 0)
    }

    /// Waits up to `timeout_ns` (`None`: until an event) and returns how many entries of
    /// `out` were filled. Uses epoll_pwait2 for a nanosecond timeout; on kernels without it,
    /// falls back to epoll_wait with the timeout rounded up to a millisecond.
    pub fn wait(
        &self,
        out: &mut [libc::epoll_event],
        timeout_ns: Option<u64>,
    ) -> io::Result<usize> {
        use std::sync::atomic::{AtomicBool, Ordering};
        static NO_PWAIT2: AtomicBool = AtomicBool::new(false);
        let len = out.len().min(i32::MAX as usize) as i32;
        let mut n = -1;
        let mut done = false;
        if !NO_PWAIT2.load(Ordering::Relaxed) {
            let ts = timeout_ns.map(|t| libc::timespec {
                tv_sec: (t / 1_000_000_000) as libc::time_t,
                tv_nsec: (t % 1_000_000_000) as libc::c_long,
            });
            let tsp = ts
                .as_ref()
                .map_or(std::ptr::null(), |t| t as *const libc::timespec);
            // SAFETY: `out` is a valid, writable buffer of `len` events; `tsp` is null or
            // points at a timespec that outlives the call; a null sigmask is allowed.
            n = unsafe {
                libc::epoll_pwait2(
                    self.fd.as_raw_fd(),
                    out.as_mut_ptr(),
                    len,
                    tsp,
                    std::ptr::null(),
                )
            };
            if n < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS) {
                NO_PWAIT2.store(true, Ordering::Relaxed);
            } else {
                done = true;
            }
        }
        if !done {
            let ms = timeout_ns.map_or(-1, |t| t.div_ceil(1_000_000).min(i32::MAX as u64) as i32);
            // SAFETY: as above.
            n = unsafe { libc::epoll_wait(self.fd.as_raw_fd(), out.as_mut_ptr(), len, ms) };
        }
        match cvt(n) {
            Ok(n) => Ok(n as usize),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(0),
            Err(e) => Err(e),
        }
    }
}

/// Makes the calling thread's timed sleeps wake on time (the default slack is 50 µs), so
/// open-loop requests leave when they are due.
pub fn tight_timer_slack() {
    // SAFETY: PR_SET_TIMERSLACK takes a plain integer; it only affects the calling thread.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0) };
}

/// CPU time (user + system) the calling thread has used, in nanoseconds.
pub fn thread_cpu_ns() -> u64 {
    // SAFETY: an all-zero rusage is a valid value to be overwritten.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage.
    let r = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    if r != 0 {
        return 0;
    }
    let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1000;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Pins the calling thread to `cpu`.
pub fn pin_to_cpu(cpu: usize) -> io::Result<()> {
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("CPU {cpu} is out of range"),
        ));
    }
    // SAFETY: an all-zero cpu_set_t is the empty set; CPU_SET stays within it (checked above).
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        cvt(libc::sched_setaffinity(
            0,
            std::mem::size_of::<libc::cpu_set_t>(),
            &set,
        ))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_and_cpu_time_advance() {
        let a = now_ns();
        let c0 = thread_cpu_ns();
        let mut x = 0u64;
        while now_ns() - a < 20_000_000 {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        assert!(x > 0);
        assert!(thread_cpu_ns() > c0);
    }

    #[test]
    fn wait_honours_a_sub_millisecond_timeout() {
        tight_timer_slack();
        let ep = Epoll::new().unwrap();
        let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 4];
        let start = now_ns();
        assert_eq!(ep.wait(&mut evs, Some(200_000)).unwrap(), 0);
        let took = now_ns() - start;
        assert!(took >= 200_000, "woke after {took} ns");
        assert_eq!(ep.wait(&mut evs, Some(0)).unwrap(), 0);
    }
}
