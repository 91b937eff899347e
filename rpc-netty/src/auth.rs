//! The shared secret, and the Noise protocol parameters its key exchange uses.
//!
//! With a shared secret, every connection runs the Noise `NNpsk0` handshake
//! (`Noise_NNpsk0_25519_ChaChaPoly_SHA256`, through the `snow` crate): both sides contribute a
//! fresh ephemeral X25519 key, and the pre-shared key (derived from the secret) is mixed in
//! before the first message. Only a peer that knows the secret can complete it, the session
//! keys depend on the secret, both ephemeral keys and the whole transcript (a relay that
//! forwards the handshake learns nothing it can use), and recorded traffic stays sealed even
//! if the secret leaks later (the ephemeral keys are gone). See `channel.rs` for how frames
//! are protected afterwards.

use std::fmt;
use std::sync::Arc;

use sha2::{Digest, Sha256};

/// The Noise protocol name: pattern, Diffie-Hellman function, cipher, hash.
pub(crate) const NOISE_PARAMS: &str = "Noise_NNpsk0_25519_ChaChaPoly_SHA256";

/// Mixed into the Noise prologue, with both `Hello` bodies, so that the version and mode
/// negotiation is authenticated too.
pub(crate) const PROLOGUE_LABEL: &[u8] = b"rpc-netty protocol 3";

/// A shared secret. Its `Debug` never shows it.
#[derive(Clone)]
pub struct Secret(Arc<[u8; 32]>);

impl Secret {
    /// A secret made of these bytes (any length; a long random one is best, since a recorded
    /// handshake lets an attacker test guesses offline).
    pub fn new(bytes: impl Into<Vec<u8>>) -> Secret {
        let mut hash = Sha256::new();
        hash.update(b"rpc-netty pre-shared key\0");
        hash.update(bytes.into());
        Secret(Arc::new(hash.finalize().into()))
    }

    /// The 32-byte Noise pre-shared key.
    pub(crate) fn psk(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}
