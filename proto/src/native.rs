//! Native codec: request and response bodies (bincode, fixed-width little-endian integers).
//!
//! The header opcode names the command or reply kind; the body holds that variant's fields only.
//! Encoders write straight into a caller-owned `BytesMut`; decoders borrow from the frame body.

use std::borrow::Cow;

use bincode::Options;
use bytes::{BufMut, BytesMut};
use serde::Serialize;

use crate::command::{Command, Credentials, Expiry, SetCond};
use crate::error::{EncodeError, ProtoError, TooLarge};
use crate::frame::{Epoch, Header, FLAG_RESPONSE, HEADER_LEN, VERSION};
use crate::limits::Limits;
use crate::opcode::{Opcode, ReplyCode};
use crate::response::{ErrorKind, Response, Topology, ValueRef};

/// The bincode configuration of every body: fixint, little-endian, bounded, no trailing bytes.
fn opts(limit: usize) -> impl Options + Copy {
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .with_little_endian()
        .reject_trailing_bytes()
        .with_limit(limit as u64)
}

/// Appends header + body to `out`; on failure `out` is left as it was.
fn write_frame<F>(
    out: &mut BytesMut,
    opcode: u8,
    flags: u16,
    request_id: u64,
    epoch: Epoch,
    body: F,
) -> Result<(), EncodeError>
where
    F: FnOnce(&mut BytesMut) -> Result<(), EncodeError>,
{
    let start = out.len();
    out.put_slice(&[0u8; HEADER_LEN]);
    let res = body(out).and_then(|()| {
        let len = out.len() - start - HEADER_LEN;
        u32::try_from(len).map_err(|_| EncodeError::BodyTooLarge(len))
    });
    match res {
        Ok(body_len) => {
            let header = Header {
                version: VERSION,
                opcode,
                flags,
                request_id,
                epoch,
                body_len,
            };
            if let Some(dst) = out.get_mut(start..start + HEADER_LEN) {
                dst.copy_from_slice(&header.to_bytes());
            }
            Ok(())
        }
        Err(e) => {
            out.truncate(start);
            Err(e)
        }
    }
}

/// Serialises byte slices as bincode bytes (length + raw copy) rather than as a sequence of
/// single bytes; the wire format is the same, the encoding is one `memcpy`.
fn b(x: &[u8]) -> &serde_bytes::Bytes {
    serde_bytes::Bytes::new(x)
}

/// A list of byte slices serialised as bincode bytes each.
struct SliceList<'s, 'a>(&'s [&'a [u8]]);

impl Serialize for SliceList<'_, '_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|x| b(x)))
    }
}

/// A list of byte-slice pairs serialised as bincode bytes each.
struct PairList<'s, 'a>(&'s [(&'a [u8], &'a [u8])]);

impl Serialize for PairList<'_, '_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|(k, v)| (b(k), b(v))))
    }
}

/// Serialises `value` as a body, reserving its exact size first.
fn ser<T: Serialize + ?Sized>(out: &mut BytesMut, value: &T) -> Result<(), EncodeError> {
    let o = opts(usize::MAX);
    let size = o.serialized_size(value)?;
    let size = usize::try_from(size).map_err(|_| EncodeError::BodyTooLarge(usize::MAX))?;
    if size > u32::MAX as usize {
        return Err(EncodeError::BodyTooLarge(size));
    }
    out.reserve(size);
    o.serialize_into(out.writer(), value)?;
    Ok(())
}

/// Appends one request frame for `cmd` to `out`.
pub fn encode_request(
    out: &mut BytesMut,
    request_id: u64,
    epoch: Epoch,
    cmd: &Command<'_>,
) -> Result<(), EncodeError> {
    write_frame(out, cmd.opcode().into(), 0, request_id, epoch, |out| {
        encode_request_body(out, cmd)
    })
}

fn creds_tuple<'a>(c: &Credentials<'a>) -> (Option<&'a [u8]>, &'a [u8]) {
    (c.username, c.password)
}

fn encode_request_body(out: &mut BytesMut, cmd: &Command<'_>) -> Result<(), EncodeError> {
    match cmd {
        Command::Get { key }
        | Command::GetVersion { key }
        | Command::Persist { key }
        | Command::InvalidatePrefix { prefix: key }
        | Command::InvalidateTag { tag: key }
        | Command::ConfigGet { pattern: key }
        | Command::ClientSetName { name: key } => ser(out, b(key)),
        Command::Set {
            key,
            value,
            expiry,
            cond,
            if_version,
            tags,
            get_version,
        } => ser(
            out,
            &(
                b(key),
                b(value),
                expiry,
                cond,
                if_version,
                SliceList(tags),
                get_version,
            ),
        ),
        Command::Del { keys }
        | Command::Exists { keys }
        | Command::Touch { keys }
        | Command::MGet { keys } => ser(out, &SliceList(keys)),
        Command::Expire { key, ms } => ser(out, &(b(key), ms)),
        Command::Ttl { key, millis } => ser(out, &(b(key), millis)),
        Command::MSet { pairs } | Command::MSetNx { pairs } => ser(out, &PairList(pairs)),
        Command::Key { key, op } => ser(out, &(b(key), op)),
        Command::Type { key } | Command::Keys { pattern: key } => ser(out, b(key)),
        Command::Scan {
            cursor,
            pattern,
            count,
            kind,
        } => ser(out, &(cursor, pattern.map(b), count, kind.map(b))),
        Command::IncrBy { key, delta } => ser(out, &(b(key), delta)),
        Command::Ping { msg } => ser(out, &msg.map(b)),
        Command::Hello { version, auth } => ser(out, &(version, auth.as_ref().map(creds_tuple))),
        Command::Auth { creds } => ser(out, &creds_tuple(creds)),
        Command::Select { db } => ser(out, db),
        Command::Flush
        | Command::Stats
        | Command::Digest
        | Command::Topology
        | Command::CommandDocs
        | Command::Quit
        | Command::DbSize
        | Command::ClientSetInfo => Ok(()),
    }
}

/// Decodes a request body; keys and values borrow from `body`.
pub fn decode_request<'a>(
    header: &Header,
    body: &'a [u8],
    limits: &Limits,
) -> Result<Command<'a>, ProtoError> {
    let op = Opcode::from_u8(header.opcode).ok_or(ProtoError::UnknownOpcode(header.opcode))?;
    let o = opts(limits.max_frame);
    match op {
        Opcode::Del | Opcode::Exists | Opcode::Touch | Opcode::MGet => {
            check_seq_len(body, 8, limits)?
        }
        Opcode::MSet | Opcode::MSetNx => check_seq_len(body, 16, limits)?,
        _ => {}
    }
    let cmd = match op {
        Opcode::Get => Command::Get {
            key: o.deserialize(body)?,
        },
        Opcode::GetVersion => Command::GetVersion {
            key: o.deserialize(body)?,
        },
        Opcode::Persist => Command::Persist {
            key: o.deserialize(body)?,
        },
        Opcode::InvalidatePrefix => Command::InvalidatePrefix {
            prefix: o.deserialize(body)?,
        },
        Opcode::InvalidateTag => Command::InvalidateTag {
            tag: o.deserialize(body)?,
        },
        Opcode::ConfigGet => Command::ConfigGet {
            pattern: o.deserialize(body)?,
        },
        Opcode::ClientSetName => Command::ClientSetName {
            name: o.deserialize(body)?,
        },
        Opcode::Set => {
            type SetBody<'b> = (
                &'b [u8],
                &'b [u8],
                Expiry,
                SetCond,
                Option<u64>,
                Vec<&'b [u8]>,
                bool,
            );
            let (key, value, expiry, cond, if_version, tags, get_version): SetBody<'a> =
                o.deserialize(body)?;
            Command::Set {
                key,
                value,
                expiry,
                cond,
                if_version,
                tags,
                get_version,
            }
        }
        Opcode::Del => Command::Del {
            keys: o.deserialize(body)?,
        },
        Opcode::Exists => Command::Exists {
            keys: o.deserialize(body)?,
        },
        Opcode::Touch => Command::Touch {
            keys: o.deserialize(body)?,
        },
        Opcode::MGet => Command::MGet {
            keys: o.deserialize(body)?,
        },
        Opcode::Expire => {
            let (key, ms) = o.deserialize(body)?;
            Command::Expire { key, ms }
        }
        Opcode::Ttl => {
            let (key, millis) = o.deserialize(body)?;
            Command::Ttl { key, millis }
        }
        Opcode::MSet => Command::MSet {
            pairs: o.deserialize(body)?,
        },
        Opcode::MSetNx => Command::MSetNx {
            pairs: o.deserialize(body)?,
        },
        Opcode::Key => {
            let (key, op) = o.deserialize(body)?;
            Command::Key { key, op }
        }
        Opcode::Type => Command::Type {
            key: o.deserialize(body)?,
        },
        Opcode::DbSize => unit(o, body, Command::DbSize)?,
        Opcode::Keys => Command::Keys {
            pattern: o.deserialize(body)?,
        },
        Opcode::Scan => {
            type ScanBody<'b> = (u64, Option<&'b [u8]>, u64, Option<&'b [u8]>);
            let (cursor, pattern, count, kind): ScanBody<'a> = o.deserialize(body)?;
            Command::Scan {
                cursor,
                pattern,
                count,
                kind,
            }
        }
        Opcode::IncrBy => {
            let (key, delta) = o.deserialize(body)?;
            Command::IncrBy { key, delta }
        }
        Opcode::Ping => Command::Ping {
            msg: o.deserialize(body)?,
        },
        Opcode::Hello => {
            type HelloBody<'b> = (Option<u8>, Option<(Option<&'b [u8]>, &'b [u8])>);
            let (version, auth): HelloBody<'a> = o.deserialize(body)?;
            Command::Hello {
                version,
                auth: auth.map(|(username, password)| Credentials { username, password }),
            }
        }
        Opcode::Auth => {
            let (username, password) = o.deserialize(body)?;
            Command::Auth {
                creds: Credentials { username, password },
            }
        }
        Opcode::Select => Command::Select {
            db: o.deserialize(body)?,
        },
        Opcode::Flush => unit(o, body, Command::Flush)?,
        Opcode::Stats => unit(o, body, Command::Stats)?,
        Opcode::Digest => unit(o, body, Command::Digest)?,
        Opcode::Topology => unit(o, body, Command::Topology)?,
        Opcode::CommandDocs => unit(o, body, Command::CommandDocs)?,
        Opcode::Quit => unit(o, body, Command::Quit)?,
        Opcode::ClientSetInfo => unit(o, body, Command::ClientSetInfo)?,
    };
    cmd.check_limits(limits)?;
    Ok(cmd)
}

/// Rejects a body-leading sequence length that exceeds `max_args` or cannot fit in the body
/// (each element takes at least `min_elem` bytes), before anything is allocated for it.
fn check_seq_len(body: &[u8], min_elem: usize, limits: &Limits) -> Result<(), ProtoError> {
    let Some(prefix) = body.get(..8) else {
        return Ok(()); // too short: bincode reports it
    };
    let mut b = [0u8; 8];
    b.copy_from_slice(prefix);
    let len = usize::try_from(u64::from_le_bytes(b)).unwrap_or(usize::MAX);
    if len > limits.max_args {
        return Err(TooLarge {
            what: "argument count",
            len,
            max: limits.max_args,
        }
        .into());
    }
    if len > (body.len() - 8) / min_elem {
        return Err(ProtoError::Invalid("sequence longer than the body"));
    }
    Ok(())
}

/// Checks that a body-less message has an empty body, then yields `v`.
fn unit<T>(o: impl Options, body: &[u8], v: T) -> Result<T, ProtoError> {
    o.deserialize::<()>(body)?;
    Ok(v)
}

/// Appends one response frame for `resp` to `out`.
pub fn encode_response(
    out: &mut BytesMut,
    request_id: u64,
    epoch: Epoch,
    resp: &Response<'_>,
) -> Result<(), EncodeError> {
    write_frame(
        out,
        reply_code(resp).into(),
        FLAG_RESPONSE,
        request_id,
        epoch,
        |out| match resp {
            Response::Ok | Response::Nil | Response::Pong => Ok(()),
            Response::Value {
                value,
                version,
                ttl_ms,
            } => {
                put_value_body(out, value, *version, *ttl_ms);
                Ok(())
            }
            Response::Int(i) => ser(out, i),
            Response::Bool(b) => ser(out, b),
            Response::Values(v) => ser(out, v),
            Response::Bulk(x) => ser(out, b(x)),
            Response::Stats(s) => ser(out, s),
            Response::Topology(t) => ser(out, t),
            Response::Pairs(p) => ser(out, &PairList(p)),
            Response::Hello { proto, id } => ser(out, &(proto, id)),
            Response::Error { kind, message } => ser(out, &(kind, message)),
        },
    )
}

/// The reply code naming a response's variant.
pub fn reply_code(resp: &Response<'_>) -> ReplyCode {
    match resp {
        Response::Ok => ReplyCode::Ok,
        Response::Nil => ReplyCode::Nil,
        Response::Value { .. } => ReplyCode::Value,
        Response::Int(_) => ReplyCode::Int,
        Response::Bool(_) => ReplyCode::Bool,
        Response::Values(_) => ReplyCode::Values,
        Response::Bulk(_) => ReplyCode::Bulk,
        Response::Pong => ReplyCode::Pong,
        Response::Stats(_) => ReplyCode::Stats,
        Response::Topology(_) => ReplyCode::Topology,
        Response::Pairs(_) => ReplyCode::Pairs,
        Response::Hello { .. } => ReplyCode::Hello,
        Response::Error { .. } => ReplyCode::Error,
    }
}

/// Writes the `Value` body by hand, byte-identical to bincode's `(value, version, ttl_ms)`.
fn put_value_body(out: &mut BytesMut, value: &[u8], version: u64, ttl_ms: Option<u64>) {
    out.reserve(8 + value.len() + 8 + 9);
    out.put_u64_le(value.len() as u64);
    out.put_slice(value);
    out.put_u64_le(version);
    match ttl_ms {
        None => out.put_u8(0),
        Some(t) => {
            out.put_u8(1);
            out.put_u64_le(t);
        }
    }
}

/// Fast path for a GET hit: appends a `Response::Value` frame without building a `Response`.
pub fn encode_value_reply(
    out: &mut BytesMut,
    request_id: u64,
    epoch: Epoch,
    value: &[u8],
    version: u64,
    ttl_ms: Option<u64>,
) -> Result<(), EncodeError> {
    write_frame(
        out,
        ReplyCode::Value.into(),
        FLAG_RESPONSE,
        request_id,
        epoch,
        |out| {
            put_value_body(out, value, version, ttl_ms);
            Ok(())
        },
    )
}

/// Decodes a response body; values borrow from `body`.
pub fn decode_response<'a>(
    header: &Header,
    body: &'a [u8],
    limits: &Limits,
) -> Result<Response<'a>, ProtoError> {
    let code = ReplyCode::from_u8(header.opcode).ok_or(ProtoError::UnknownOpcode(header.opcode))?;
    let o = opts(limits.max_frame);
    Ok(match code {
        ReplyCode::Ok => unit(o, body, Response::Ok)?,
        ReplyCode::Nil => unit(o, body, Response::Nil)?,
        ReplyCode::Pong => unit(o, body, Response::Pong)?,
        ReplyCode::Value => {
            let (value, version, ttl_ms) = o.deserialize(body)?;
            Response::Value {
                value,
                version,
                ttl_ms,
            }
        }
        ReplyCode::Int => Response::Int(o.deserialize(body)?),
        ReplyCode::Bool => Response::Bool(o.deserialize(body)?),
        ReplyCode::Values => {
            let v: Vec<Option<ValueRef<'a>>> = o.deserialize(body)?;
            if v.len() > limits.max_args {
                return Err(TooLarge {
                    what: "argument count",
                    len: v.len(),
                    max: limits.max_args,
                }
                .into());
            }
            Response::Values(v)
        }
        ReplyCode::Bulk => Response::Bulk(o.deserialize(body)?),
        ReplyCode::Stats => {
            let s: Vec<(&'a str, u64)> = o.deserialize(body)?;
            Response::Stats(s.into_iter().map(|(k, v)| (Cow::Borrowed(k), v)).collect())
        }
        ReplyCode::Topology => Response::Topology(o.deserialize::<Topology>(body)?),
        ReplyCode::Pairs => Response::Pairs(o.deserialize(body)?),
        ReplyCode::Hello => {
            let (proto, id) = o.deserialize(body)?;
            Response::Hello { proto, id }
        }
        ReplyCode::Error => {
            let (kind, message): (ErrorKind, &'a str) = o.deserialize(body)?;
            Response::Error {
                kind,
                message: Cow::Borrowed(message),
            }
        }
    })
}

#[cfg(test)]
mod tests;
