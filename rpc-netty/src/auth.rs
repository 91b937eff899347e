//! Mutual authentication with a shared secret: HMAC-SHA256 challenge-response over fresh
//! random nonces, in the handshake, before any call is accepted.
//!
//! Each side sends a nonce it drew from the operating system's random source, and proves it
//! knows the secret by sending HMAC-SHA256(secret, role ‖ nonce of the peer ‖ own nonce),
//! where the role label differs for server and client so that one side's proof can never be
//! replayed as the other's. Proofs are compared in constant time. The secret itself never
//! crosses the wire; fresh nonces make a recorded handshake useless for another connection.

use std::fmt;
use std::sync::Arc;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Bytes of a nonce.
pub const NONCE_LEN: usize = 32;
/// Bytes of a proof (an HMAC-SHA256 tag).
pub const PROOF_LEN: usize = 32;

/// Which side of the handshake computes a proof.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Role {
    Server,
    Client,
}

impl Role {
    fn label(self) -> &'static [u8] {
        match self {
            Role::Server => b"rpc server proof",
            Role::Client => b"rpc client proof",
        }
    }
}

/// A shared secret. Its `Debug` never shows it.
#[derive(Clone)]
pub struct Secret(Arc<[u8]>);

impl Secret {
    /// A secret made of these bytes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Secret {
        Secret(bytes.into().into())
    }

    /// The proof that `role` knows this secret, bound to both nonces: `theirs` (the peer's)
    /// and `ours`.
    pub(crate) fn proof(&self, role: Role, theirs: &[u8], ours: &[u8]) -> [u8; PROOF_LEN] {
        self.mac(role, theirs, ours).finalize().into_bytes().into()
    }

    /// Whether `proof` is `role`'s proof for these nonces; constant time.
    pub(crate) fn verify(&self, role: Role, theirs: &[u8], ours: &[u8], proof: &[u8]) -> bool {
        self.mac(role, theirs, ours).verify_slice(proof).is_ok()
    }

    fn mac(&self, role: Role, theirs: &[u8], ours: &[u8]) -> Hmac<Sha256> {
        // HMAC takes keys of any length, so this cannot fail.
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        mac.update(role.label());
        mac.update(theirs);
        mac.update(ours);
        mac
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// A fresh nonce from the operating system's random source.
pub(crate) fn nonce() -> std::io::Result<[u8; NONCE_LEN]> {
    let mut nonce = [0; NONCE_LEN];
    getrandom::fill(&mut nonce).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(nonce)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_verify_only_with_the_same_secret_role_and_nonces() {
        let secret = Secret::new("s3cret");
        let (a, b) = ([1; NONCE_LEN], [2; NONCE_LEN]);
        let proof = secret.proof(Role::Server, &a, &b);
        assert!(secret.verify(Role::Server, &a, &b, &proof));
        assert!(!secret.verify(Role::Client, &a, &b, &proof), "roles differ");
        assert!(
            !secret.verify(Role::Server, &b, &a, &proof),
            "nonces are ordered"
        );
        assert!(!Secret::new("other").verify(Role::Server, &a, &b, &proof));
        assert!(!secret.verify(Role::Server, &a, &b, &proof[..31]));
        assert_ne!(nonce().unwrap(), nonce().unwrap());
        assert_eq!(format!("{secret:?}"), "Secret(..)");
    }
}
