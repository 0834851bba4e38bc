//! ringcache wire formats: the native binary frames and the RESP2/RESP3 subset.
//!
//! Pure encode/decode, no I/O: decoders borrow from the caller's buffer and never panic on any
//! input; encoders append to a caller-owned `bytes::BytesMut`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod command;
pub mod error;
pub mod frame;
pub mod limits;
pub mod native;
pub mod opcode;
pub mod resp;
pub mod resp_command;
pub mod resp_encode;
pub mod response;

pub use command::{Command, Credentials, Expiry, SetCond};
pub use error::{CommandError, EncodeError, FrameError, ProtoError, RespError, TooLarge};
pub use frame::{decode_frame, Epoch, Frame, Header, FLAG_RESPONSE, HEADER_LEN, MAGIC, VERSION};
pub use limits::Limits;
pub use native::{
    decode_request, decode_response, encode_request, encode_response, encode_value_reply,
};
pub use opcode::{Opcode, ReplyCode};
pub use resp::{RespArgs, RespParser};
pub use resp_command::{parse_command, ArgList};
pub use resp_encode::{write_command, write_response, RespVersion};
pub use response::{CoreInfo, ErrorKind, Response, Topology, ValueRef};
