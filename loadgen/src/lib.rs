//! `ringcache-loadgen` as a library: the workload generator, latency accounting, protocol
//! codecs, I/O driver, report and plot behind the `ringcache-loadgen` binary.
//!
//! One OS thread per `--threads`, each driving its share of the connections with nonblocking
//! sockets on an epoll loop; closed loop by default, open loop with a fixed request rate.

#![warn(missing_docs)]

pub mod driver;
pub mod endpoints;
pub mod latency;
pub mod pixel_font;
pub mod plot;
pub mod protocol;
pub mod report;
pub mod sys;
pub mod workload;
