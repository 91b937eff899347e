//! Keep-alive and idle connections: a peer that vanishes without closing its connection is
//! noticed within the keep-alive timeout, and an unused connection is closed and reopened.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use rpc_core::{RpcEndpoint, RpcError, rpc_gateway};
use rpc_netty::NettyBuilder;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

#[rpc_gateway]
pub trait Echo {
    async fn echo(&mut self, n: u64) -> u64;
}

#[derive(Default)]
struct Server {
    events: Option<mpsc::UnboundedSender<&'static str>>,
}

impl RpcEndpoint for Server {
    rpc_core::serves!(Echo);

    fn on_connected(&mut self, _connection: &rpc_core::Connection) {
        if let Some(events) = &self.events {
            let _ = events.send("connected");
        }
    }

    fn on_disconnected(&mut self, _connection: &rpc_core::Connection) {
        if let Some(events) = &self.events {
            let _ = events.send("disconnected");
        }
    }
}

impl Echo for Server {
    async fn echo(&mut self, n: u64) -> u64 {
        n
    }
}

/// Reads one frame: (kind, request id).
async fn read_frame(stream: &mut TcpStream) -> Option<(u8, [u8; 8])> {
    let length = stream.read_u32().await.ok()?;
    let mut rest = vec![0; length as usize];
    stream.read_exact(&mut rest).await.ok()?;
    Some((rest[0], rest[1..9].try_into().ok()?))
}

/// A peer that completes the handshake and answers binds, then never writes again, never
/// closes, and reads (and drops) whatever arrives: a host that vanished from the network.
async fn vanishing_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        while let Some((kind, id)) = read_frame(&mut stream).await {
            match kind {
                // Hello -> Hello, no authentication.
                0x01 => stream.write_all(&common::SERVER_HELLO).await.unwrap(),
                // Bind -> Bound.
                0x04 => {
                    // Bound to incarnation 0x11...: 16 bytes.
                    let mut bound = vec![0, 0, 0, 25, 0x05];
                    bound.extend_from_slice(&id);
                    bound.extend_from_slice(&[0x11; 16]);
                    stream.write_all(&bound).await.unwrap();
                }
                // Anything else: silence from now on.
                _ => {
                    let mut sink = vec![0; 4096];
                    while stream.read(&mut sink).await.is_ok_and(|n| n > 0) {}
                    return;
                }
            }
        }
    });
    address
}

#[tokio::test]
async fn a_vanished_server_fails_pending_calls_within_the_keepalive_timeout() {
    common::init_tracing();
    let address = vanishing_server().await;
    let client = NettyBuilder::new()
        .keepalive(Duration::from_millis(50), Duration::from_millis(250))
        .client();
    let echo: EchoClient = client.connect(&address.to_string(), "echo").await.unwrap();
    // The call's own timeout is an hour: only the keep-alive can end it.
    let pending = echo.echo(1).with_timeout(Duration::from_secs(3600));
    match tokio::time::timeout(Duration::from_secs(20), pending).await {
        Ok(Err(RpcError::Disconnected { reason, .. })) => {
            assert!(reason.contains("keep-alive"), "{reason}");
        }
        other => panic!("expected Disconnected by keep-alive, got {other:?}"),
    }
    client.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_server_drops_a_client_that_went_silent() {
    common::init_tracing();
    let server = NettyBuilder::new()
        .keepalive(Duration::from_millis(50), Duration::from_millis(250))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let address = server.local_address().unwrap();
    let mut raw = TcpStream::connect(address).await.unwrap();
    raw.write_all(&common::handshake_bytes(
        rpc_netty::protocol::PROTOCOL_VERSION,
    ))
    .await
    .unwrap();
    let mut answer = [0; 20];
    raw.read_exact(&mut answer).await.unwrap();
    assert_eq!(answer, common::SERVER_HELLO, "the server greeted");
    // Read (the handshake answer, then pings) but never answer: the server must give up.
    let mut sink = vec![0; 1024];
    let closed = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match raw.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the server kept a silent peer's connection open"
    );
    server.shutdown().await.unwrap();
}

/// The next connection event, within a bound.
async fn next(seen: &mut mpsc::UnboundedReceiver<&'static str>) -> Option<&'static str> {
    tokio::time::timeout(Duration::from_secs(20), seen.recv())
        .await
        .expect("a connection event")
}

#[tokio::test]
async fn an_idle_connection_is_closed_and_the_next_call_reopens_it() {
    common::init_tracing();
    let (events, mut seen) = mpsc::unbounded_channel();
    let server = rpc_netty::bind("127.0.0.1:0").await.unwrap();
    server
        .start_endpoint(
            "echo",
            Server {
                events: Some(events),
            },
        )
        .await
        .unwrap();
    let address = server.local_address().unwrap().to_string();
    let client = NettyBuilder::new()
        .keepalive(Duration::from_millis(20), Duration::from_secs(10))
        .idle_timeout(Some(Duration::from_millis(100)))
        .client();
    let echo: EchoClient = client.connect(&address, "echo").await.unwrap();
    assert_eq!(echo.echo(1).await.unwrap(), 1);

    assert_eq!(next(&mut seen).await, Some("connected"));
    assert_eq!(
        next(&mut seen).await,
        Some("disconnected"),
        "closed when idle"
    );
    assert_eq!(echo.echo(2).await.unwrap(), 2, "the same proxy reconnects");
    assert_eq!(next(&mut seen).await, Some("connected"));
    client.shutdown().await.unwrap();
    server.shutdown().await.unwrap();
}
