//! A server and a client over TLS on loopback, with a self-signed certificate made at run
//! time; then a plain client and a client trusting another certificate, both refused.
//!
//! ```text
//! cargo run -p rpc-examples --example tls
//! ```

use rpc_core::RpcError;
use rpc_examples::tls::{Notary, NotaryGatewayClient, SelfSigned};
use rpc_netty::NettyBuilder;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    rpc_examples::init_tracing();

    // The server's certificate must name the address clients connect to.
    let certificate = SelfSigned::generate(&["127.0.0.1"])?;
    println!(
        "made a self-signed certificate for 127.0.0.1 ({} bytes)",
        certificate.certificate.len()
    );

    // A server with an identity accepts TLS connections only.
    let server = NettyBuilder::new()
        .tls(certificate.server_options())?
        .bind("127.0.0.1:0")
        .await?;
    server.start_endpoint("notary", Notary::default()).await?;
    let address = server.local_address()?;
    println!("notary serving TLS on {address}");

    // A client with trust roots connects over TLS and checks the server's certificate.
    let client = NettyBuilder::new()
        .tls(certificate.client_options())?
        .client();
    let notary: NotaryGatewayClient = client.connect(address, "notary").await?;
    let stamp = notary.stamp("the contract".into()).await?;
    println!("over TLS: {:?}, as seen by {}", stamp.text, stamp.caller);
    assert_eq!(stamp.text, "stamped: the contract");
    // The handler saw a TLS connection (`Peer::tls`), from a client without a certificate.
    assert!(stamp.caller.ends_with("(TLS)"), "{}", stamp.caller);

    // A client without TLS cannot talk to a TLS server; the error says why.
    let plain = rpc_netty::client();
    match plain
        .connect::<NotaryGatewayClient>(address, "notary")
        .await
    {
        Err(error @ RpcError::ConnectFailed { .. }) => {
            println!("plain client refused: {error}");
            assert!(error.to_string().contains("TLS"), "the error names TLS");
        }
        other => return Err(format!("expected ConnectFailed, got {other:?}").into()),
    }

    // A TLS client that trusts another certificate refuses this server.
    let stranger = SelfSigned::generate(&["127.0.0.1"])?;
    let wary = NettyBuilder::new().tls(stranger.client_options())?.client();
    match wary.connect::<NotaryGatewayClient>(address, "notary").await {
        Err(error @ RpcError::Unauthenticated { .. }) => {
            println!("client trusting another certificate refused: {error}");
        }
        other => return Err(format!("expected Unauthenticated, got {other:?}").into()),
    }

    // Only the TLS client's call reached the endpoint.
    let local: NotaryGatewayClient = server.gateway("notary")?;
    let stamped = local.stamped().await?;
    println!("documents stamped: {stamped}");
    assert_eq!(stamped, 1);

    wary.shutdown().await?;
    plain.shutdown().await?;
    client.shutdown().await?;
    server.shutdown().await?;
    Ok(())
}
