//! Listening sockets: one port shared by every core (SO_REUSEPORT), bound again at once after a
//! restart (SO_REUSEADDR), and a wait for a port a just-killed process still holds.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::time::{Duration, Instant};

use glommio::net::TcpListener;

/// How long a taken port is retried before giving up: a process killed a moment ago keeps its
/// listening sockets until the kernel has torn down its io_uring instances, after it is reaped.
pub const PORT_FREE_WAIT: Duration = Duration::from_secs(3);

/// Whether `addr` can be listened on, trying again for [`PORT_FREE_WAIT`] while it is in use.
pub fn wait_port_free(addr: SocketAddr) -> std::io::Result<()> {
    let end = Instant::now() + PORT_FREE_WAIT;
    loop {
        match StdListener::bind(addr) {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && Instant::now() < end => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(e),
        }
    }
}

/// A listening socket shared by every core (SO_REUSEPORT) that can be bound again at once after
/// a restart even while the previous process's connections linger (SO_REUSEADDR).
pub fn bind_listener(addr: SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    use std::os::fd::{FromRawFd, IntoRawFd};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    let fd = socket.into_raw_fd();
    // SAFETY: `fd` is a bound, listening TCP socket we own; ownership moves to the listener.
    Ok(unsafe { TcpListener::from_raw_fd(fd) })
}
