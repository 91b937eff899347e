//! Spark's classic Hello service over TCP.
//!
//! ```text
//! cargo run --example hello                         # server and client in one process, loopback
//! cargo run --example hello -- server 127.0.0.1:7070  # serve until Ctrl-C
//! cargo run --example hello -- client 127.0.0.1:7070  # call a running server
//! ```

use rpc_examples::hello::{Hello, HelloGatewayClient, run_client};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    rpc_examples::init_tracing();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [] => both().await,
        ["server", address] => server(address).await,
        ["client", address] => client(address).await,
        _ => Err("usage: hello [server ADDR | client ADDR]".into()),
    }
}

/// Server and client in one process, talking over loopback TCP.
async fn both() -> Result<(), Box<dyn std::error::Error>> {
    let server = rpc_netty::bind("127.0.0.1:0").await?;
    server
        .start_endpoint("hello-service", Hello::default())
        .await?;
    let address = server.local_address()?;

    let client = rpc_netty::client();
    let hello: HelloGatewayClient = client.connect(address, "hello-service").await?;
    run_client(&hello).await?;

    client.shutdown().await?;
    server.shutdown().await?;
    Ok(())
}

async fn server(address: &str) -> Result<(), Box<dyn std::error::Error>> {
    let server = rpc_netty::bind(address).await?;
    server
        .start_endpoint("hello-service", Hello::default())
        .await?;
    println!("serving hello-service on {}", server.local_address()?);
    tokio::signal::ctrl_c().await?;
    server.shutdown().await?;
    Ok(())
}

async fn client(address: &str) -> Result<(), Box<dyn std::error::Error>> {
    let client = rpc_netty::client();
    let hello: HelloGatewayClient = client.connect(address, "hello-service").await?;
    run_client(&hello).await?;
    client.shutdown().await?;
    Ok(())
}
