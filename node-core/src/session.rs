//! Session commands, answered by the connection itself without touching the cache: PING,
//! HELLO (protocol switch), AUTH, TOPOLOGY, CONFIG GET, SELECT, QUIT and the like; and the
//! rule that nothing else runs before a connection has authenticated.

use ringcache_proto::resp_encode::RespVersion;
use ringcache_proto::{Command, ErrorKind, Response, Topology, Wire};

/// One connection's session: its protocol, whether it authenticated, its client id.
#[derive(Debug, Clone)]
pub struct Session {
    /// The protocol, once the first bytes told it.
    pub wire: Option<Wire>,
    /// Whether the connection may run commands (no password set, or AUTH succeeded).
    pub authed: bool,
    /// The id HELLO reports.
    pub client_id: u64,
}

/// What a session command answers.
#[derive(Debug)]
pub struct SessionReply<'a> {
    /// The protocol to encode the reply in (HELLO answers in the protocol it switched to).
    pub wire: Wire,
    /// The reply.
    pub resp: Response<'a>,
    /// Close the connection after the reply (QUIT).
    pub close: bool,
}

/// The answer to a HELLO or AUTH with the wrong password (Redis's wording).
fn wrong_pass() -> Response<'static> {
    Response::error(
        ErrorKind::WrongPass,
        "invalid username-password pair or user is disabled.",
    )
}

/// Compares secrets without an early exit on the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Session {
    /// A new connection's session; it must authenticate first when `password_required`.
    pub fn new(client_id: u64, password_required: bool) -> Session {
        Session {
            wire: None,
            authed: !password_required,
            client_id,
        }
    }

    /// The refusal owed to `cmd` on a connection that has not authenticated, if any.
    pub fn refuses(&self, cmd: &Command<'_>) -> Option<Response<'static>> {
        let allowed = matches!(
            cmd,
            Command::Auth { .. } | Command::Hello { .. } | Command::Quit
        );
        (!self.authed && !allowed)
            .then(|| Response::error(ErrorKind::NoAuth, "Authentication required."))
    }

    /// Answers the session command `cmd` (`password`: the one clients must give, if any).
    pub fn run<'a>(
        &mut self,
        cmd: &Command<'a>,
        password: Option<&str>,
        topology: &Topology,
    ) -> SessionReply<'a> {
        let wire = self.wire.unwrap_or(Wire::Resp(RespVersion::V2));
        let reply = |resp| SessionReply {
            wire,
            resp,
            close: false,
        };
        let matches =
            |given: &[u8]| password.is_some_and(|p| constant_time_eq(p.as_bytes(), given));
        match cmd {
            Command::Ping { msg: None } => reply(Response::Pong),
            Command::Ping { msg: Some(m) } => reply(Response::Bulk(m)),
            Command::Hello { version, auth } => {
                if let Some(creds) = auth {
                    if !matches(creds.password) {
                        return reply(wrong_pass());
                    }
                    self.authed = true;
                }
                if !self.authed {
                    return reply(Response::error(
                        ErrorKind::NoAuth,
                        "HELLO must be called with the client's credentials (AUTH)",
                    ));
                }
                let new_wire = match (wire, version) {
                    (Wire::Native, _) => Wire::Native,
                    (_, None) => wire,
                    (_, Some(2)) => Wire::Resp(RespVersion::V2),
                    (_, Some(3)) => Wire::Resp(RespVersion::V3),
                    (_, Some(_)) => {
                        return reply(Response::error(
                            ErrorKind::NoProto,
                            "unsupported protocol version",
                        ))
                    }
                };
                self.wire = Some(new_wire);
                let proto = match new_wire {
                    Wire::Resp(v) => v.number(),
                    Wire::Native => 0,
                };
                SessionReply {
                    wire: new_wire,
                    resp: Response::Hello {
                        proto,
                        id: self.client_id,
                    },
                    close: false,
                }
            }
            Command::Auth { creds } => {
                if password.is_none() {
                    reply(Response::error(
                        ErrorKind::Unsupported,
                        "AUTH <password> called without any password configured for the default user.",
                    ))
                } else if matches(creds.password) {
                    self.authed = true;
                    reply(Response::Ok)
                } else {
                    reply(wrong_pass())
                }
            }
            Command::Topology => reply(Response::Topology(topology.clone())),
            Command::ConfigGet { pattern } => {
                // redis-benchmark asks for these; a cache persists nothing.
                let pairs: Vec<(&[u8], &[u8])> = match pattern.to_ascii_lowercase().as_slice() {
                    b"save" => vec![(b"save", b"")],
                    b"appendonly" => vec![(b"appendonly", b"no")],
                    _ => Vec::new(),
                };
                reply(Response::Pairs(pairs))
            }
            Command::CommandDocs => reply(Response::Values(Vec::new())),
            Command::Select { db: 0 } | Command::ClientSetInfo | Command::ClientSetName { .. } => {
                reply(Response::Ok)
            }
            Command::Select { .. } => reply(Response::error(
                ErrorKind::Unsupported,
                "DB index is out of range",
            )),
            Command::Quit => SessionReply {
                wire,
                resp: Response::Ok,
                close: true,
            },
            other => reply(Response::error(
                ErrorKind::Unsupported,
                format!("{:?} is not supported here", other.opcode()),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringcache_proto::Credentials;

    fn topo() -> Topology {
        Topology {
            node_id: 1,
            main_port: 1,
            cores: Vec::new(),
        }
    }

    #[test]
    fn a_password_gates_everything_but_auth_hello_and_quit() {
        let mut s = Session::new(7, true);
        assert!(s.refuses(&Command::Get { key: b"k" }).is_some());
        assert!(s.refuses(&Command::Quit).is_none());
        let bad = Command::Auth {
            creds: Credentials {
                username: None,
                password: b"nope",
            },
        };
        assert!(matches!(
            s.run(&bad, Some("pw"), &topo()).resp,
            Response::Error { .. }
        ));
        assert!(!s.authed);
        let good = Command::Auth {
            creds: Credentials {
                username: None,
                password: b"pw",
            },
        };
        assert!(matches!(
            s.run(&good, Some("pw"), &topo()).resp,
            Response::Ok
        ));
        assert!(s.refuses(&Command::Get { key: b"k" }).is_none());
    }

    #[test]
    fn hello_switches_resp_versions_and_quit_closes() {
        let mut s = Session::new(7, false);
        s.wire = Some(Wire::Resp(RespVersion::V2));
        let r = s.run(
            &Command::Hello {
                version: Some(3),
                auth: None,
            },
            None,
            &topo(),
        );
        assert_eq!(r.wire, Wire::Resp(RespVersion::V3));
        assert!(matches!(r.resp, Response::Hello { proto: 3, id: 7 }));
        let r = s.run(
            &Command::Hello {
                version: Some(4),
                auth: None,
            },
            None,
            &topo(),
        );
        assert!(matches!(r.resp, Response::Error { .. }));
        assert!(s.run(&Command::Quit, None, &topo()).close);
        assert!(!s.run(&Command::Ping { msg: None }, None, &topo()).close);
    }
}
