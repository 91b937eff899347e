//! The framework's metrics, scraped in the Prometheus text format: a Hello server and client
//! on loopback make a few calls (one of them failing), the process serves `/metrics` over
//! HTTP, and the example scrapes it once and prints what it got.
//!
//! ```text
//! cargo run -p rpc-examples --features metrics --example metrics
//! cargo run -p rpc-examples --features metrics --example metrics -- serve   # keep serving
//! ```
//!
//! With `serve`, it keeps serving `/metrics` (and calling once a second) until Ctrl-C, for a
//! Prometheus server or `curl` to scrape.

use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use rpc_core::RpcError;
use rpc_examples::hello::{Hello, HelloGatewayClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The recorder first: metrics registered before it is installed go nowhere.
    let handle = PrometheusBuilder::new().install_recorder()?;

    let server = rpc_netty::bind("127.0.0.1:0").await?;
    server.start_endpoint("hello", Hello::default()).await?;
    server.start_endpoint("retired", Hello::default()).await?;
    let client = rpc_netty::client();
    let hello: HelloGatewayClient = client.connect(server.local_address()?, "hello").await?;
    let retired: HelloGatewayClient = client.connect(server.local_address()?, "retired").await?;
    server.stop_endpoint("retired").await?;
    calls(&hello, &retired).await?;

    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(serve_metrics(listener, handle));
    println!("metrics on http://{address}/metrics");

    let scraped = scrape(address).await?;
    println!("scraped {} bytes; the rpc metrics:", scraped.len());
    for line in scraped.lines().filter(|line| line.starts_with("rpc_")) {
        println!("  {line}");
    }
    for expected in [
        r#"rpc_client_calls_total{gateway="HelloGateway",method="say_hi",kind="ask"} 2"#,
        r#"rpc_client_calls_total{gateway="HelloGateway",method="heartbeat",kind="tell"} 1"#,
        r#"rpc_client_errors_total{gateway="HelloGateway",method="say_hi",error="endpoint_stopped"} 1"#,
        r#"rpc_connections_open{direction="inbound"} 1"#,
        "rpc_server_call_duration_seconds",
        "rpc_mailbox_depth",
    ] {
        assert!(
            scraped.contains(expected),
            "the scrape lacks `{expected}`:\n{scraped}"
        );
    }

    if std::env::args().nth(1).as_deref() == Some("serve") {
        println!("serving until Ctrl-C");
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                () = tokio::time::sleep(Duration::from_secs(1)) => {
                    hello.say_hi("prometheus".into()).await?;
                }
            }
        }
    }
    client.shutdown().await?;
    server.shutdown().await?;
    Ok(())
}

/// A few calls: a greeting, a heartbeat, and a greeting to an endpoint that has stopped.
async fn calls(hello: &HelloGatewayClient, retired: &HelloGatewayClient) -> Result<(), RpcError> {
    hello.say_hi("neo".into()).await?;
    hello.heartbeat("exec-1".into())?;
    let refused = retired.say_hi("trinity".into()).await;
    assert!(
        matches!(refused, Err(RpcError::EndpointStopped { .. })),
        "{refused:?}"
    );
    Ok(())
}

/// Answers every request on `listener` with the current metrics: the smallest HTTP server
/// that a Prometheus scraper is content with.
async fn serve_metrics(listener: TcpListener, handle: PrometheusHandle) {
    while let Ok((mut stream, _)) = listener.accept().await {
        let handle = handle.clone();
        tokio::spawn(async move {
            // The request itself does not matter: read its head (bounded), answer, close.
            let mut request = [0; 4096];
            let _ = stream.read(&mut request).await;
            handle.run_upkeep();
            let body = handle.render();
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\n\
                 content-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(body.as_bytes()).await;
        });
    }
}

/// `GET /metrics` as a scraper sends it; returns the body.
async fn scrape(address: std::net::SocketAddr) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(address).await?;
    stream
        .write_all(format!("GET /metrics HTTP/1.1\r\nhost: {address}\r\n\r\n").as_bytes())
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    Ok(body)
}
