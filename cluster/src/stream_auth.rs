//! The cluster secret's challenge-response on replication and range-move streams: the receiver
//! sends a fresh random nonce, the sender answers HMAC-SHA256(secret, label || nonce || hello),
//! where `hello` is the stream hello's body exactly as sent. The secret never crosses the wire,
//! a proof is good for one connection only (the nonce is new each time), and the proof binds
//! every field of the hello, so it cannot be moved onto another stream's hello.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// Bytes of a challenge nonce.
pub const NONCE_LEN: usize = 32;
/// Bytes of a proof (an HMAC-SHA256 tag).
pub const MAC_LEN: usize = 32;

/// Separates this use of the secret from any other MAC made with it.
const LABEL: &[u8] = b"ringcache stream hello v1\0";

/// The receiver's challenge (body of `REPL_CHALLENGE`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamChallenge {
    /// Fresh from the receiver's CSPRNG for this connection.
    pub nonce: [u8; NONCE_LEN],
}

/// The sender's answer (body of `REPL_PROOF`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamProof {
    /// HMAC-SHA256(secret, label || nonce || hello body).
    pub mac: [u8; MAC_LEN],
}

fn keyed(secret: &str, nonce: &[u8; NONCE_LEN], hello_body: &[u8]) -> Hmac<Sha256> {
    // HMAC takes a key of any length: `new_from_slice` cannot fail for it.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC accepts keys of every length"),
    };
    mac.update(LABEL);
    mac.update(nonce);
    mac.update(hello_body);
    mac
}

/// The proof a sender holding `secret` gives for `hello_body` under `nonce`.
pub fn stream_proof(secret: &str, nonce: &[u8; NONCE_LEN], hello_body: &[u8]) -> StreamProof {
    StreamProof {
        mac: keyed(secret, nonce, hello_body)
            .finalize()
            .into_bytes()
            .into(),
    }
}

/// Whether `proof` was made with `secret` for `hello_body` under `nonce` (compared in constant
/// time).
pub fn proof_matches(
    secret: &str,
    nonce: &[u8; NONCE_LEN],
    hello_body: &[u8],
    proof: &StreamProof,
) -> bool {
    keyed(secret, nonce, hello_body)
        .verify_slice(&proof.mac)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proof_holds_only_for_its_secret_nonce_and_hello() {
        let nonce = [7u8; NONCE_LEN];
        let p = stream_proof("s3cret", &nonce, b"hello");
        assert!(proof_matches("s3cret", &nonce, b"hello", &p));
        assert!(!proof_matches("s3creT", &nonce, b"hello", &p));
        assert!(!proof_matches("s3cret", &[8u8; NONCE_LEN], b"hello", &p));
        assert!(!proof_matches("s3cret", &nonce, b"hellp", &p));
        let mut bad = p.clone();
        bad.mac[31] ^= 1;
        assert!(!proof_matches("s3cret", &nonce, b"hello", &bad));
        // RFC 4231 test case 2 checks the primitive itself (no label, nonce or hello there).
        let mut m = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
        m.update(b"what do ya want for nothing?");
        let tag: [u8; 32] = m.finalize().into_bytes().into();
        assert_eq!(tag[..4], [0x5b, 0xdc, 0xc1, 0x46]);
    }
}
