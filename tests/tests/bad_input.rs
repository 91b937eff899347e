//! Hostile bytes on a raw socket: each kind of bad input closes that one connection, and a
//! well-behaved client of the same server keeps working throughout.

mod common;

use std::time::Duration;

use rpc_core::{RpcEndpoint, RpcService, rpc_gateway};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[rpc_gateway]
pub trait Counter {
    async fn next(&mut self) -> u64;
}

#[derive(Default)]
struct Count(u64);

impl RpcEndpoint for Count {
    rpc_core::serves!(Counter);
}

impl Counter for Count {
    async fn next(&mut self) -> u64 {
        self.0 += 1;
        self.0
    }
}

/// A server, and a well-behaved client already connected to it.
async fn setup() -> (RpcService, RpcService, CounterClient, String) {
    common::init_tracing();
    let server = rpc_netty::bind("127.0.0.1:0").await.unwrap();
    server
        .start_endpoint("counter", Count::default())
        .await
        .unwrap();
    let address = server.local_address().unwrap().to_string();
    let client = rpc_netty::client();
    let counter: CounterClient = client.connect(&address, "counter").await.unwrap();
    (server, client, counter, address)
}

/// Connects and completes the handshake by hand.
async fn raw_session(address: &str) -> TcpStream {
    let mut raw = TcpStream::connect(address).await.unwrap();
    raw.write_all(&common::handshake_bytes(
        rpc_netty::protocol::PROTOCOL_VERSION,
    ))
    .await
    .unwrap();
    let mut answer = [0; 20];
    raw.read_exact(&mut answer).await.unwrap();
    assert_eq!(answer, common::SERVER_HELLO);
    raw
}

/// The server must close the connection: reads end (EOF or reset) within a bound.
async fn expect_closed(raw: &mut TcpStream) {
    let mut buffer = [0; 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), raw.read(&mut buffer)).await {
            Ok(Ok(0) | Err(_)) => return,
            Ok(Ok(_)) => {}
            Err(_) => panic!("the server kept the connection open"),
        }
    }
}

/// The well-behaved client's calls keep succeeding.
async fn still_served(counter: &CounterClient, calls: u64) {
    for _ in 0..calls {
        counter
            .next()
            .await
            .expect("the well-behaved client is served");
    }
}

#[tokio::test]
async fn garbage_bytes_close_only_that_connection() {
    let (server, client, counter, address) = setup().await;
    still_served(&counter, 3).await;

    // Not a handshake at all.
    let mut raw = TcpStream::connect(&address).await.unwrap();
    raw.write_all(b"GET / HTTP/1.1\r\nHost: example\r\n\r\n")
        .await
        .unwrap();
    expect_closed(&mut raw).await;
    still_served(&counter, 3).await;

    // A correct handshake, then a frame of an unknown kind.
    let mut raw = raw_session(&address).await;
    raw.write_all(&[0, 0, 0, 12, 0x7f, 0, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3])
        .await
        .unwrap();
    expect_closed(&mut raw).await;
    still_served(&counter, 3).await;

    // A correct handshake, then a bind whose body is not a bind.
    let mut raw = raw_session(&address).await;
    raw.write_all(&[0, 0, 0, 12, 0x04, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 0xff])
        .await
        .unwrap();
    expect_closed(&mut raw).await;
    still_served(&counter, 3).await;

    client.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn truncated_frame_closes_only_that_connection() {
    let (server, client, counter, address) = setup().await;
    let mut raw = raw_session(&address).await;
    // Announces 100 bytes, sends 10, then ends its side of the stream.
    raw.write_all(&[0, 0, 0, 100, 0x06, 0, 0, 0, 0, 0, 0, 0, 1, 9])
        .await
        .unwrap();
    raw.shutdown().await.unwrap();
    still_served(&counter, 3).await;
    expect_closed(&mut raw).await;
    still_served(&counter, 3).await;
    client.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn four_gib_length_prefix_is_refused_without_allocating() {
    let (server, client, counter, address) = setup().await;
    let mut raw = raw_session(&address).await;
    // A length of 2^32 - 1: refused from the prefix alone, before any buffer is reserved.
    raw.write_all(&[0xff, 0xff, 0xff, 0xff, 0x06])
        .await
        .unwrap();
    expect_closed(&mut raw).await;
    still_served(&counter, 3).await;

    // Even before the handshake.
    let mut raw = TcpStream::connect(&address).await.unwrap();
    raw.write_all(&[0xff, 0xff, 0xff, 0xff]).await.unwrap();
    expect_closed(&mut raw).await;
    still_served(&counter, 3).await;
    client.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn silent_peer_is_dropped_after_the_handshake_timeout() {
    common::init_tracing();
    let server = rpc_netty::NettyBuilder::new()
        .handshake_timeout(Duration::from_millis(100))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let address = server.local_address().unwrap().to_string();
    let mut raw = TcpStream::connect(&address).await.unwrap();
    expect_closed(&mut raw).await;
    server.shutdown().await;
}
