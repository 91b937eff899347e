//! Hostile bytes on a raw socket: each kind of bad input closes that one connection, and a
//! well-behaved client of the same server keeps working throughout.

mod common;

use std::time::Duration;

use bytes::BytesMut;
use rpc_core::transport::Binding;
use rpc_core::{Deferred, Gateway, RpcEndpoint, RpcService, rpc_gateway};
use rpc_netty::frame::{Frame, FrameKind, encode_frame};
use rpc_netty::protocol;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

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

/// An endpoint whose `park` calls never finish: each stays in flight until cancelled. It says
/// when a call has parked and when its reply future is dropped.
#[rpc_gateway]
pub trait Parking {
    fn park(&mut self) -> Deferred<u64>;
}

struct Parker {
    parked: mpsc::UnboundedSender<()>,
    dropped: mpsc::UnboundedSender<()>,
}

impl RpcEndpoint for Parker {
    rpc_core::serves!(Parking);
}

/// Sends on drop.
struct DropSignal(mpsc::UnboundedSender<()>);

impl Drop for DropSignal {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

impl Parking for Parker {
    fn park(&mut self) -> Deferred<u64> {
        let signal = DropSignal(self.dropped.clone());
        let _ = self.parked.send(());
        Deferred::new(async move {
            let _signal = signal;
            std::future::pending::<u64>().await
        })
    }
}

fn wire(frame: &Frame) -> Vec<u8> {
    let mut bytes = BytesMut::new();
    encode_frame(frame, &mut bytes, usize::MAX).expect("encodable");
    bytes.to_vec()
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

    client.shutdown().await.unwrap();
    server.shutdown().await.unwrap();
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
    client.shutdown().await.unwrap();
    server.shutdown().await.unwrap();
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
    client.shutdown().await.unwrap();
    server.shutdown().await.unwrap();
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
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn reusing_a_request_id_in_flight_closes_the_connection_and_cancels_its_calls() {
    let (server, client, counter, address) = setup().await;
    let (parked, mut parked_calls) = mpsc::unbounded_channel();
    let (dropped, mut dropped_calls) = mpsc::unbounded_channel();
    server
        .start_endpoint("parker", Parker { parked, dropped })
        .await
        .unwrap();
    let mut raw = raw_session(&address).await;
    let binding = Binding {
        endpoint: "parker".to_owned(),
        gateway: "Parking".to_owned(),
        fingerprint: ParkingClient::FINGERPRINT,
        incarnation: None,
        session: None,
    };
    // Bind, then `park` as request 5; once it has parked (in flight for good), request 5
    // again.
    let park = wire(&protocol::request(5, 1, protocol::NO_BUDGET, &[0, 0, 0]));
    let mut bytes = wire(&protocol::bind(1, 1, &binding));
    bytes.extend(&park);
    raw.write_all(&bytes).await.unwrap();
    let mut answer = [0; 29];
    raw.read_exact(&mut answer).await.unwrap();
    assert_eq!(
        answer[4],
        FrameKind::Bound as u8,
        "the bind succeeds: {answer:?}"
    );
    tokio::time::timeout(Duration::from_secs(10), parked_calls.recv())
        .await
        .expect("the first request runs")
        .expect("the endpoint is running");
    raw.write_all(&park).await.unwrap();
    expect_closed(&mut raw).await;
    // The connection's call in flight was cancelled with it: its reply future is dropped.
    tokio::time::timeout(Duration::from_secs(10), dropped_calls.recv())
        .await
        .expect("the parked call is cancelled when its connection closes")
        .expect("the endpoint is running");
    still_served(&counter, 3).await;
    client.shutdown().await.unwrap();
    server.shutdown().await.unwrap();
}
