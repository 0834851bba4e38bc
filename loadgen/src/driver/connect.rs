//! Opening sockets: the nonblocking, `TCP_NODELAY` connection the loops use, and the blocking
//! TOPOLOGY request that turns a ringcache node's address into one address per core.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{ensure, Context};
use bytes::BytesMut;

/// Sets up the connections of `addrs` for the loop.
pub fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_nodelay(true)?;
    s.set_nonblocking(true)?;
    Ok(s)
}

/// Asks the node on `addr` for its cores and returns one address per core, in core order.
pub fn fetch_core_addrs(addr: SocketAddr) -> anyhow::Result<Vec<SocketAddr>> {
    let ctx = || format!("fetching TOPOLOGY from {addr} (is a ringcache node listening there?)");
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).with_context(ctx)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .with_context(ctx)?;
    let mut req = BytesMut::new();
    crate::protocol::native::encode_topology(&mut req, 1);
    s.write_all(&req).with_context(ctx)?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let topo = loop {
        if let Some((_, t)) = crate::protocol::native::parse_topology(&buf).with_context(ctx)? {
            break t;
        }
        let n = match s.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(anyhow::anyhow!("no answer to TOPOLOGY within 5 s")).with_context(ctx)
            }
            Err(e) => return Err(e).with_context(ctx),
        };
        if n == 0 {
            return Err(anyhow::anyhow!("the server closed the connection")).with_context(ctx);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let mut cores = topo.cores.clone();
    cores.sort_by_key(|c| c.core);
    ensure!(!cores.is_empty(), "{addr}: the node reports no cores");
    for (i, c) in cores.iter().enumerate() {
        ensure!(
            c.core as usize == i,
            "{addr}: core numbers are not 0..{}: {:?}",
            cores.len(),
            topo.cores
        );
    }
    Ok(cores
        .iter()
        .map(|c| SocketAddr::new(addr.ip(), c.port))
        .collect())
}
