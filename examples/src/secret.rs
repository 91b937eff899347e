//! Shared-secret authentication: every service of a deployment is given the same secret
//! (`NettyBuilder::shared_secret`), and only peers that prove they hold it get a connection.
//!
//! Each connection then runs a Noise `NNpsk0` key exchange keyed by the secret before any
//! frame reaches an endpoint, and everything after it travels encrypted. A client with
//! another secret, or none, is refused at `connect` with `RpcError::Unauthenticated`; the
//! secret itself never crosses the wire. The README's "Security" section says what this does
//! and does not protect.

use rpc_core::{CallContext, RpcEndpoint, rpc_gateway};

/// What a client may ask of the vault.
#[rpc_gateway]
pub trait VaultGateway {
    /// Opens the vault: answers with the caller as the handler saw it.
    async fn open(&mut self) -> String;
    /// How many times the vault has been opened.
    async fn openings(&mut self) -> u64;
}

/// The endpoint: counts the calls that reach it.
#[derive(Debug, Default)]
pub struct Vault {
    /// Times opened.
    pub openings: u64,
}

impl RpcEndpoint for Vault {
    rpc_core::serves!(VaultGateway);
}

impl VaultGateway for Vault {
    async fn open(&mut self) -> String {
        self.openings += 1;
        // `Caller::Remote` says whether the peer proved the shared secret.
        let caller = CallContext::current().caller().to_string();
        println!("vault: opened for {caller}");
        caller
    }

    async fn openings(&mut self) -> u64 {
        self.openings
    }
}
