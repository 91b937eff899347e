//! Shared-secret authentication on loopback: a client with the server's secret calls it; a
//! client with another secret and one with none are refused at `connect`.
//!
//! ```text
//! cargo run -p rpc-examples --example secret
//! ```

use rpc_core::RpcError;
use rpc_examples::secret::{Vault, VaultGatewayClient};
use rpc_netty::NettyBuilder;

/// The deployment's secret. A real one is long and random, and comes from the environment
/// or a file, not from the source code.
const SECRET: &str = "correct horse battery staple, but longer and random";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    rpc_examples::init_tracing();

    let server = NettyBuilder::new()
        .shared_secret(SECRET)
        .bind("127.0.0.1:0")
        .await?;
    server.start_endpoint("vault", Vault::default()).await?;
    let address = server.local_address()?;
    println!("vault serving on {address}, shared secret required");

    // The same secret: the key exchange succeeds and calls go through, encrypted.
    let trusted = NettyBuilder::new().shared_secret(SECRET).client();
    let vault: VaultGatewayClient = trusted.connect(address, "vault").await?;
    let caller = vault.open().await?;
    println!("client with the secret: opened, the handler saw {caller}");
    assert!(caller.ends_with("(shared secret)"), "{caller}");

    // Another secret: refused before any frame reaches the endpoint.
    let guesser = NettyBuilder::new().shared_secret("a guess").client();
    match guesser
        .connect::<VaultGatewayClient>(address, "vault")
        .await
    {
        Err(error @ RpcError::Unauthenticated { .. }) => {
            println!("client with a wrong secret refused: {error}");
        }
        other => return Err(format!("expected Unauthenticated, got {other:?}").into()),
    }

    // No secret at all: refused the same way.
    let anonymous = rpc_netty::client();
    match anonymous
        .connect::<VaultGatewayClient>(address, "vault")
        .await
    {
        Err(error @ RpcError::Unauthenticated { .. }) => {
            println!("client without a secret refused: {error}");
        }
        other => return Err(format!("expected Unauthenticated, got {other:?}").into()),
    }

    // Only the trusted client's call reached the endpoint.
    let local: VaultGatewayClient = server.gateway("vault")?;
    let openings = local.openings().await?;
    println!("vault opened {openings} time(s)");
    assert_eq!(openings, 1);

    anonymous.shutdown().await?;
    guesser.shutdown().await?;
    trusted.shutdown().await?;
    server.shutdown().await?;
    Ok(())
}
