//! The control protocol between nodes, clients and the balancer: the bodies of the control
//! frames (`ringcache_proto::control`), as bincode blobs. Pure data, no sockets.

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::map::{ClusterMap, MemberId};
use crate::ring::GroupId;

/// A member's heartbeat.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// Who is alive.
    pub member: MemberId,
    /// Its replication position.
    pub applied: u64,
    /// Whether it is caught up with its primary (primaries always are).
    pub ready: bool,
    /// The last range move every core of it finished streaming (0: none).
    pub moved: u64,
    /// Its main port (the balancer checks the id still names this node).
    pub main_port: u16,
    /// The map epoch it holds (the balancer answers a newer map).
    pub epoch: u64,
}

/// The balancer's answer to a control request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControlReply {
    /// Joined: the member's id, its group, and the current map.
    Welcome {
        /// The id to heartbeat with.
        member: MemberId,
        /// Its group, if it has one yet.
        group: Option<GroupId>,
        /// The map.
        map: ClusterMap,
    },
    /// Refused, with the reason.
    Reject {
        /// Why.
        reason: String,
    },
    /// The current map when it is newer than the asker's (heartbeat), or always (map request).
    Map(Option<ClusterMap>),
    /// The balancer does not know this member (declared dead): join again.
    Rejoin,
    /// An operator removed this member: it stops.
    Removed,
}

/// An operator's request to remove a member (see `ringcache cli cluster remove`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoveRequest {
    /// The member to remove.
    pub member: MemberId,
    /// The cluster secret, when the balancer has one.
    pub secret: Option<String>,
}

/// Whether `given` opens a cluster whose secret is `expected` (any, when it has none); the
/// comparison takes the same time wherever the first differing byte is.
pub fn secret_matches(expected: Option<&str>, given: Option<&str>) -> bool {
    match expected {
        None => true,
        Some(e) => given.is_some_and(|g| {
            let (a, b) = (e.as_bytes(), g.as_bytes());
            a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
        }),
    }
}

/// Serialises a control body.
pub fn encode_body<T: Serialize>(v: &T) -> Vec<u8> {
    bincode::serialize(v).unwrap_or_default()
}

/// Most bytes a control body may take.
pub const MAX_CONTROL_BODY: u64 = 64 << 20;

/// Deserialises a control body (bounded; never panics on bad input).
pub fn decode_body<T: DeserializeOwned>(b: &[u8]) -> Result<T, String> {
    use bincode::Options;
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .allow_trailing_bytes()
        .with_limit(MAX_CONTROL_BODY)
        .deserialize(b)
        .map_err(|e| format!("bad control message: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::map::Role;
    use crate::membership::{Event, JoinRequest, Membership, MembershipConfig};

    #[test]
    fn bodies_round_trip_and_bad_input_is_an_error() {
        let mut m = Membership::new(MembershipConfig::default());
        let join = JoinRequest {
            host: "127.0.0.1".into(),
            main_port: 1,
            core_ports: vec![2, 3],
            role: Role::Primary,
            group: None,
            secret: Some("s3cret".into()),
            previous: None,
        };
        let b = encode_body(&join);
        let back: JoinRequest = decode_body(&b).unwrap();
        assert_eq!(back, join);
        m.handle(Event::Join(back), 0);
        let r = ControlReply::Map(Some(m.map().clone()));
        let back: ControlReply = decode_body(&encode_body(&r)).unwrap();
        assert_eq!(back, r);
        assert!(decode_body::<ControlReply>(&[0xff; 3]).is_err());
        assert!(secret_matches(None, None));
        assert!(secret_matches(None, Some("x")));
        assert!(secret_matches(Some("s3cret"), Some("s3cret")));
        assert!(!secret_matches(Some("s3cret"), Some("s3creT")));
        assert!(!secret_matches(Some("s3cret"), Some("s3cre")));
        assert!(!secret_matches(Some("s3cret"), None));
        assert!(decode_body::<Heartbeat>(&[]).is_err());
    }
}
