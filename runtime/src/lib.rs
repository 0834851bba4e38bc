//! What ringcache's node and balancer share at run time: the stop flag every core watches, the
//! CPUs a process may use, listening sockets shared by cores, port waits, and the connection
//! read buffer. No decisions live here; it only carries out what the other crates decide.

#![warn(missing_docs)]

mod cpus;
mod listener;
mod read_buf;
mod stop;

pub use cpus::{allowed_cpus, raise_memlock};
pub use listener::{bind_listener, wait_port_free, PORT_FREE_WAIT};
pub use read_buf::ReadBuf;
pub use stop::StopFlag;
