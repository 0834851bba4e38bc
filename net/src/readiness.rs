//! Read readiness of a core's client sockets from one edge-triggered epoll instance, in place of
//! glommio's one-shot io_uring poll re-armed after every read. Each socket is registered once;
//! the sender's side of the kernel marks it ready; the core collects every ready socket with one
//! `epoll_wait` per round and wakes their tasks: the per-read poll arming and its completion
//! work go away (measured in tuning.md, W1).

use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Duration;

use futures_lite::AsyncReadExt;
use tracing::debug;

/// Events taken per `epoll_wait`.
const EVENTS: usize = 256;
/// Pause before trying again when the epoll descriptor cannot be waited on (descriptors exhausted).
const RETRY: Duration = Duration::from_millis(1);

/// One core's epoll instance and the tasks reading from its sockets.
pub(crate) struct Readiness {
    epfd: OwnedFd,
    slots: RefCell<Slots>,
}

#[derive(Default)]
struct Slots {
    slots: Vec<Slot>,
    free: Vec<usize>,
}

/// One registered socket.
#[derive(Default)]
struct Slot {
    /// The task waiting for the socket to become readable.
    waker: Option<Waker>,
    /// An edge arrived since a read last found the socket drained.
    ready: bool,
    /// The peer closed or the socket failed: reads go on until they see it.
    closed: bool,
}

/// A socket's registration, removed on drop (which must come before the socket closes).
pub(crate) struct Registered {
    readiness: Rc<Readiness>,
    fd: RawFd,
    slot: usize,
}

impl Readiness {
    /// A new epoll instance.
    pub fn new() -> io::Result<Rc<Self>> {
        // SAFETY: a plain syscall; its result is checked before use.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Rc::new(Self {
            // SAFETY: `fd` was just returned by epoll_create1 and nothing else owns it.
            epfd: unsafe { OwnedFd::from_raw_fd(fd) },
            slots: RefCell::default(),
        }))
    }

    /// Registers socket `fd` (edge-triggered) until the returned guard drops.
    pub fn register(self: &Rc<Self>, fd: RawFd) -> io::Result<Registered> {
        let slot = {
            let mut s = self.slots.borrow_mut();
            let slot = match s.free.pop() {
                Some(i) => i,
                None => {
                    s.slots.push(Slot::default());
                    s.slots.len() - 1
                }
            };
            // Data may have arrived before the registration: the first read looks.
            s.slots[slot] = Slot {
                waker: None,
                ready: true,
                closed: false,
            };
            slot
        };
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLET) as u32,
            u64: slot as u64,
        };
        // SAFETY: `ev` is a valid epoll_event that the kernel copies.
        let rc =
            unsafe { libc::epoll_ctl(self.epfd.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            self.slots.borrow_mut().free.push(slot);
            return Err(e);
        }
        Ok(Registered {
            readiness: self.clone(),
            fd,
            slot,
        })
    }

    /// Wakes the tasks of ready sockets for as long as the core runs (one such task per core).
    pub async fn dispatch(self: Rc<Self>) {
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; EVENTS];
        loop {
            if let Err(e) = wait_readable(self.epfd.as_raw_fd()).await {
                debug!(error = %e, "cannot wait on the epoll descriptor; polling it instead");
                glommio::timer::sleep(RETRY).await;
            }
            while self.collect(&mut events) == EVENTS {}
        }
    }

    /// Takes the ready sockets off the epoll instance without blocking and wakes their tasks;
    /// returns how many were taken.
    fn collect(&self, events: &mut [libc::epoll_event]) -> usize {
        let room = i32::try_from(events.len()).unwrap_or(i32::MAX);
        // SAFETY: `events` has room for `room` entries.
        let n = unsafe { libc::epoll_wait(self.epfd.as_raw_fd(), events.as_mut_ptr(), room, 0) };
        let Ok(n) = usize::try_from(n) else {
            return 0;
        };
        let mut s = self.slots.borrow_mut();
        for ev in &events[..n] {
            if let Some(slot) = usize::try_from(ev.u64)
                .ok()
                .and_then(|i| s.slots.get_mut(i))
            {
                slot.ready = true;
                // The close may have come with the data this edge announces; a short read of
                // that data must not be taken for "drained", or the end would go unseen.
                let hangup = (libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32;
                slot.closed |= ev.events & hangup != 0;
                if let Some(w) = slot.waker.take() {
                    w.wake();
                }
            }
        }
        n
    }
}

/// Waits until `fd`, a pollable descriptor that is not a socket (the epoll instance), is
/// readable, on the current glommio executor.
///
/// glommio 0.9 offers no public way to wait for an arbitrary descriptor, but one of its streams
/// arms a readability poll on its descriptor when it is created, and its first read waits for
/// that poll and then attempts `recv`, which fails at once on a descriptor that is not a socket.
/// So a stream made over a duplicate of `fd` (it closes what it owns) is such a wait; the test
/// below checks that it neither returns early nor misses readiness.
async fn wait_readable(fd: RawFd) -> io::Result<()> {
    // SAFETY: duplicating a descriptor this module owns; the result is checked.
    let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if dup < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `dup` is a fresh descriptor that only this stream owns (and closes).
    let mut stream = unsafe { glommio::net::UnixStream::from_raw_fd(dup) };
    let _ = stream.read(&mut [0u8; 1]).await;
    Ok(())
}

impl Registered {
    /// Reads what the socket holds into `buf`, first waiting for data if a read found it drained.
    pub async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        poll_fn(|cx| loop {
            {
                let mut s = self.readiness.slots.borrow_mut();
                let slot = &mut s.slots[self.slot];
                if !slot.ready {
                    slot.waker = Some(cx.waker().clone());
                    return Poll::Pending;
                }
            }
            // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
            let n = unsafe {
                libc::recv(
                    self.fd,
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if let Ok(n) = usize::try_from(n) {
                if n < buf.len() {
                    // Drained: the next arrival raises a new edge (unless the end is pending).
                    let mut s = self.readiness.slots.borrow_mut();
                    let slot = &mut s.slots[self.slot];
                    slot.ready = slot.closed;
                }
                return Poll::Ready(Ok(n));
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => {
                    self.readiness.slots.borrow_mut().slots[self.slot].ready = false;
                }
                _ => return Poll::Ready(Err(e)),
            }
        })
        .await
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        // SAFETY: removes a descriptor this guard registered and that is still open.
        unsafe {
            libc::epoll_ctl(
                self.readiness.epfd.as_raw_fd(),
                libc::EPOLL_CTL_DEL,
                self.fd,
                std::ptr::null_mut(),
            )
        };
        let mut s = self.readiness.slots.borrow_mut();
        s.slots[self.slot] = Slot::default();
        s.free.push(self.slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use glommio::{spawn_local, timer::sleep, LocalExecutorBuilder, Placement};
    use std::future::Future;
    use std::io::Write;
    use std::os::unix::net::UnixStream;
    use std::time::Instant;

    /// Runs `f`'s future on a fresh glommio executor and returns its output.
    fn on_executor<T, F>(f: impl FnOnce() -> F + Send + 'static) -> T
    where
        T: Send + 'static,
        F: Future<Output = T> + 'static,
    {
        LocalExecutorBuilder::new(Placement::Unbound)
            .spawn(f)
            .expect("executor starts")
            .join()
            .expect("executor finishes")
    }

    #[test]
    fn a_read_waits_for_data_then_sees_the_end() {
        let (first, end, waited) = on_executor(|| async {
            let (mut tx, rx) = UnixStream::pair().expect("socketpair");
            rx.set_nonblocking(true).expect("nonblocking");
            let readiness = Readiness::new().expect("epoll");
            let reg = readiness.register(rx.as_raw_fd()).expect("register");
            let _dispatcher = spawn_local(readiness.clone().dispatch());
            let t0 = Instant::now();
            let reader = spawn_local(async move {
                let mut buf = [0u8; 16];
                let n = reg.read(&mut buf).await.expect("read");
                let waited = t0.elapsed();
                let first = buf[..n].to_vec();
                let end = reg.read(&mut buf).await.expect("read to the end");
                (first, end, waited)
            });
            sleep(Duration::from_millis(50)).await;
            tx.write_all(b"hello").expect("write");
            drop(tx);
            reader.await
        });
        assert_eq!(first, b"hello");
        assert_eq!(end, 0, "the peer's close reads as end of stream");
        assert!(
            waited >= Duration::from_millis(50),
            "read returned after {waited:?}, before data"
        );
    }

    #[test]
    fn data_and_close_sent_before_registration_are_both_seen() {
        let (first, end) = on_executor(|| async {
            let (mut tx, rx) = UnixStream::pair().expect("socketpair");
            rx.set_nonblocking(true).expect("nonblocking");
            tx.write_all(b"bye").expect("write");
            drop(tx);
            let readiness = Readiness::new().expect("epoll");
            let reg = readiness.register(rx.as_raw_fd()).expect("register");
            let _dispatcher = spawn_local(readiness.clone().dispatch());
            let mut buf = [0u8; 16];
            let n = reg.read(&mut buf).await.expect("read");
            let end = reg.read(&mut buf).await.expect("read to the end");
            (buf[..n].to_vec(), end)
        });
        assert_eq!((first.as_slice(), end), (&b"bye"[..], 0));
    }

    #[test]
    fn the_epoll_descriptor_is_waited_on_until_a_socket_is_ready() {
        let waited = on_executor(|| async {
            let (mut tx, rx) = UnixStream::pair().expect("socketpair");
            let readiness = Readiness::new().expect("epoll");
            let _reg = readiness.register(rx.as_raw_fd()).expect("register");
            let t0 = Instant::now();
            let epfd = readiness.epfd.as_raw_fd();
            let waiter = spawn_local(async move {
                wait_readable(epfd).await.expect("wait");
                t0.elapsed()
            });
            sleep(Duration::from_millis(50)).await;
            tx.write_all(b"x").expect("write");
            waiter.await
        });
        assert!(
            waited >= Duration::from_millis(50),
            "returned after {waited:?}, before data"
        );
    }

    #[test]
    fn slots_are_reused_after_deregistration() {
        on_executor(|| async {
            let readiness = Readiness::new().expect("epoll");
            let (a, _pa) = UnixStream::pair().expect("socketpair");
            let (b, _pb) = UnixStream::pair().expect("socketpair");
            let ra = readiness.register(a.as_raw_fd()).expect("register");
            let slot = ra.slot;
            drop(ra);
            let rb = readiness.register(b.as_raw_fd()).expect("register");
            assert_eq!(rb.slot, slot);
            assert_eq!(readiness.slots.borrow().slots.len(), 1);
        });
    }
}
