//! Session commands, answered by the connection itself without touching the cache: PING,
//! HELLO (protocol switch), AUTH, TOPOLOGY, CONFIG GET, SELECT, QUIT and the like.

use bytes::BytesMut;
use ringcache_proto::resp_encode::RespVersion;
use ringcache_proto::{Command, ErrorKind, Response};

use crate::connection::{After, Conn, ConnContext};
use crate::handover::{ReplyTo, Wire};

/// The answer to a HELLO or AUTH with the wrong password (Redis's wording).
fn wrong_pass() -> Response<'static> {
    Response::error(
        ErrorKind::WrongPass,
        "invalid username-password pair or user is disabled.",
    )
}

impl Conn {
    /// Answers a session command; `After::Close` for QUIT.
    pub(crate) fn run_session(
        &mut self,
        cmd: &Command<'_>,
        ctx: &ConnContext,
        out: &mut BytesMut,
        to: ReplyTo,
    ) -> After {
        let wire = to.wire;
        let reply = |out: &mut BytesMut, w: Wire, resp: &Response<'_>| {
            ReplyTo { wire: w, ..to }.encode(out, resp)
        };
        match cmd {
            Command::Ping { msg: None } => reply(out, wire, &Response::Pong),
            Command::Ping { msg: Some(m) } => reply(out, wire, &Response::Bulk(m)),
            Command::Hello { version, auth } => {
                if let Some(creds) = auth {
                    if !self.check_password(ctx, creds.password) {
                        reply(out, wire, &wrong_pass());
                        return After::Continue;
                    }
                    self.authed = true;
                }
                if !self.authed {
                    reply(
                        out,
                        wire,
                        &Response::error(
                            ErrorKind::NoAuth,
                            "HELLO must be called with the client's credentials (AUTH)",
                        ),
                    );
                    return After::Continue;
                }
                let new_wire = match (wire, version) {
                    (Wire::Native, _) => Wire::Native,
                    (_, None) => wire,
                    (_, Some(2)) => Wire::Resp(RespVersion::V2),
                    (_, Some(3)) => Wire::Resp(RespVersion::V3),
                    (_, Some(_)) => {
                        reply(
                            out,
                            wire,
                            &Response::error(ErrorKind::NoProto, "unsupported protocol version"),
                        );
                        return After::Continue;
                    }
                };
                self.wire = Some(new_wire);
                let proto = match new_wire {
                    Wire::Resp(v) => v.number(),
                    Wire::Native => 0,
                };
                reply(
                    out,
                    new_wire,
                    &Response::Hello {
                        proto,
                        id: self.client_id,
                    },
                );
            }
            Command::Auth { creds } => {
                if ctx.cfg.password.is_none() {
                    reply(out, wire, &Response::error(ErrorKind::Unsupported, "AUTH <password> called without any password configured for the default user."));
                } else if self.check_password(ctx, creds.password) {
                    self.authed = true;
                    reply(out, wire, &Response::Ok);
                } else {
                    reply(out, wire, &wrong_pass());
                }
            }
            Command::Topology => {
                let t = ctx.core.borrow().topology.clone();
                reply(out, wire, &Response::Topology(t));
            }
            Command::ConfigGet { pattern } => {
                // redis-benchmark asks for these; a cache persists nothing.
                let pairs: Vec<(&[u8], &[u8])> = match pattern.to_ascii_lowercase().as_slice() {
                    b"save" => vec![(b"save", b"")],
                    b"appendonly" => vec![(b"appendonly", b"no")],
                    _ => Vec::new(),
                };
                reply(out, wire, &Response::Pairs(pairs));
            }
            Command::CommandDocs => reply(out, wire, &Response::Values(Vec::new())),
            Command::Select { db: 0 } | Command::ClientSetInfo | Command::ClientSetName { .. } => {
                reply(out, wire, &Response::Ok)
            }
            Command::Select { .. } => reply(
                out,
                wire,
                &Response::error(ErrorKind::Unsupported, "DB index is out of range"),
            ),
            Command::Quit => {
                reply(out, wire, &Response::Ok);
                return After::Close;
            }
            other => reply(
                out,
                wire,
                &Response::error(
                    ErrorKind::Unsupported,
                    format!("{:?} is not supported here", other.opcode()),
                ),
            ),
        }
        After::Continue
    }

    fn check_password(&self, ctx: &ConnContext, given: &[u8]) -> bool {
        ctx.cfg
            .password
            .as_ref()
            .is_some_and(|p| constant_time_eq(p.as_bytes(), given))
    }
}

/// Compares secrets without an early exit on the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
