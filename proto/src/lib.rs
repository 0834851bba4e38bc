//! ringcache wire formats: the native binary frames and the RESP2/RESP3 subset.
//!
//! Pure encode/decode, no I/O: decoders borrow from the caller's buffer and never panic on any
//! input; encoders append to a caller-owned `bytes::BytesMut`.
//!
//! Native server loop (one connection; `rbuf` holds unread bytes, `wbuf` pending replies):
//!
//! ```
//! use bytes::{Buf, BytesMut};
//! use ringcache_proto::*;
//!
//! let limits = Limits::default();
//! let mut rbuf = BytesMut::new();
//! encode_request(&mut rbuf, 7, 1, &Command::Get { key: b"k" }).unwrap();
//! let mut wbuf = BytesMut::new();
//! loop {
//!     let frame = match decode_frame(&rbuf, &limits) {
//!         Ok(Some(f)) => f,
//!         Ok(None) => break, // read more bytes into rbuf, then loop again
//!         Err(e) => {
//!             // Corrupt stream: answer once, then close the connection.
//!             let r = Response::error(e.kind(), e.to_string());
//!             encode_response(&mut wbuf, 0, 1, &r).unwrap();
//!             break;
//!         }
//!     };
//!     let id = frame.header.request_id;
//!     match decode_request(&frame.header, frame.body(&rbuf), &limits) {
//!         Ok(Command::Get { key }) => {
//!             // A hit: the fast path writes the reply without building a Response.
//!             encode_value_reply(&mut wbuf, id, 1, b"value", 42, None).unwrap();
//!         }
//!         Ok(_other) => encode_response(&mut wbuf, id, 1, &Response::Ok).unwrap(),
//!         // Bad body, intact framing: answer the error and keep the connection.
//!         Err(e) => {
//!             let r = Response::error(e.kind(), e.to_string());
//!             encode_response(&mut wbuf, id, 1, &r).unwrap();
//!         }
//!     }
//!     rbuf.advance(frame.len());
//! }
//! assert!(rbuf.is_empty() && !wbuf.is_empty());
//! ```
//!
//! RESP server loop (keep one `RespParser` and the negotiated `RespVersion` per connection):
//!
//! ```
//! use bytes::{Buf, BytesMut};
//! use ringcache_proto::*;
//!
//! let limits = Limits::default();
//! let mut parser = RespParser::new();
//! let mut ver = RespVersion::V2;
//! let mut rbuf = BytesMut::from(&b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\nHELLO 3\r\nFOO\r\n*x\r\n"[..]);
//! let mut wbuf = BytesMut::new();
//! loop {
//!     let used = match parser.parse(&rbuf, &limits) {
//!         Ok(Some(n)) => n,
//!         Ok(None) => break, // append more bytes to rbuf (keep its start), then loop again
//!         Err(e) => {
//!             // `-ERR Protocol error: ...`, then close the connection.
//!             resp_encode::write_error_kind(&mut wbuf, e.kind(), &e.to_string());
//!             break;
//!         }
//!     };
//!     match parse_command(&parser.args(&rbuf), &limits) {
//!         Ok(cmd @ Command::Get { .. }) => {
//!             write_response(&mut wbuf, ver, cmd.opcode(), &Response::Nil);
//!         }
//!         Ok(Command::Hello { version, .. }) => {
//!             if version == Some(3) {
//!                 ver = RespVersion::V3;
//!             }
//!             resp_encode::write_hello(&mut wbuf, ver, ver.number(), 1);
//!         }
//!         Ok(cmd) => write_response(&mut wbuf, ver, cmd.opcode(), &Response::Ok),
//!         Err(e) => resp_encode::write_error_display(&mut wbuf, &e),
//!     }
//!     rbuf.advance(used);
//! }
//! assert!(wbuf.starts_with(b"$-1\r\n%7\r\n"));
//! assert!(wbuf.ends_with(b"-ERR unknown command 'FOO'\r\n-ERR Protocol error: invalid multibulk length\r\n"));
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod command;
pub mod control;
pub mod error;
pub mod frame;
pub mod key_op;
pub mod limits;
pub mod native;
pub mod opcode;
pub mod request;
pub mod resp;
pub mod resp_command;
pub mod resp_encode;
pub mod response;
pub mod wire;

pub use command::{Command, Credentials, Expiry, SetCond};
pub use control::{ClusterOp, ReplFrame};
pub use error::{CommandError, EncodeError, FrameError, ProtoError, RespError, TooLarge};
pub use frame::{decode_frame, Epoch, Frame, Header, FLAG_RESPONSE, HEADER_LEN, MAGIC, VERSION};
pub use key_op::{ExpireCond, KeyOp};
pub use limits::Limits;
pub use native::{
    decode_request, decode_response, encode_request, encode_response, encode_value_reply,
};
pub use opcode::{Opcode, ReplyCode};
pub use request::{Request, RequestKind, RequestReader};
pub use resp::{RespArgs, RespParser};
pub use resp_command::{parse_command, ArgList};
pub use resp_encode::{write_command, write_response, RespVersion};
pub use response::{CoreInfo, ErrorKind, Response, Topology, ValueRef};
pub use wire::{ReplyTo, Wire};
