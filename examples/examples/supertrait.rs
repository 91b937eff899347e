//! Supertrait gateways over loopback TCP: a store written through its own gateway and read
//! through the base gateway it extends, a dashboard polling two kinds of endpoints through
//! that base gateway, and a connect with a gateway an endpoint does not serve, refused.
//!
//! ```text
//! cargo run -p rpc-examples --example supertrait
//! ```

use rpc_core::RpcError;
use rpc_examples::supertrait::{
    Journal, JournalGatewayClient, StatusGatewayClient, Store, StoreGatewayClient, dashboard,
};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    rpc_examples::init_tracing();

    let server = rpc_netty::bind("127.0.0.1:0").await?;
    server.start_endpoint("store", Store::default()).await?;
    server.start_endpoint("journal", Journal::default()).await?;
    let address = server.local_address()?;

    let client = rpc_netty::client();
    // Two proxies of different gateway types to one endpoint.
    let store: StoreGatewayClient = client.connect(address, "store").await?;
    let store_status: StatusGatewayClient = client.connect(address, "store").await?;

    store.put("alpha".into(), "1".into()).await?;
    store.put("beta".into(), "2".into()).await?;
    let alpha = store.get("alpha".into()).await?;
    println!("through StoreGateway: put alpha and beta, got alpha = {alpha:?}");
    assert_eq!(alpha.as_deref(), Some("1"));

    // The base gateway's proxy reaches the same state: both entries, all four calls.
    let status = store_status.status().await?;
    println!("through StatusGateway, the same store: {status:?}");
    assert_eq!((status.items, status.calls), (2, 4));

    let journal: JournalGatewayClient = client.connect(address, "journal").await?;
    journal.append("store started".into()).await?;

    // A dashboard needs only the base gateway, whatever else each endpoint serves.
    for (name, status) in dashboard(&client, address, &["store", "journal"]).await? {
        println!("dashboard: {name}: {status:?}");
        match name.as_str() {
            "store" => assert_eq!((status.items, status.calls), (2, 5)),
            _ => assert_eq!((status.items, status.calls), (1, 2)),
        }
    }

    // The journal is no store: the connect is refused, naming what it does serve.
    let refused = client
        .connect::<StoreGatewayClient>(address, "journal")
        .await;
    match &refused {
        Err(error @ RpcError::IncompatibleGateway { served, .. }) => {
            println!("connect with StoreGateway to the journal refused: {error}");
            assert!(served.iter().any(|gateway| gateway == "JournalGateway"));
            assert!(served.iter().any(|gateway| gateway == "StatusGateway"));
        }
        other => return Err(format!("expected IncompatibleGateway, got {other:?}").into()),
    }

    client.shutdown().await?;
    server.shutdown().await?;
    Ok(())
}
