//! What only the network adds: the checked connect, connections and their failures, frame
//! limits, and graceful shutdown.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rpc_core::{BoxError, Deferred, RpcContext, RpcEndpoint, RpcError, RpcService, rpc_gateway};
use rpc_netty::NettyBuilder;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc};

#[rpc_gateway]
pub trait Echo {
    async fn echo(&mut self, n: u64) -> u64;
    async fn size(&mut self, data: Vec<u8>) -> usize;
    async fn blob(&mut self, len: usize) -> Vec<u8>;
    fn never(&mut self) -> Deferred<u32>;
    /// Holds the main thread until released.
    async fn hold(&mut self) -> u32;
}

#[rpc_gateway]
pub trait Other {
    async fn other(&mut self) -> u32;
}

#[derive(Default)]
struct EchoServer {
    release: Arc<Notify>,
    events: Option<mpsc::UnboundedSender<String>>,
    ctx: Option<RpcContext<Self>>,
}

impl RpcEndpoint for EchoServer {
    rpc_core::serves!(Echo);

    async fn on_start(&mut self, ctx: RpcContext<Self>) -> Result<(), BoxError> {
        self.ctx = Some(ctx);
        Ok(())
    }

    fn on_connected(&mut self, connection: &rpc_core::Connection) {
        if let Some(events) = &self.events {
            let _ = events.send(format!(
                "connected {} {:?}",
                connection.peer.address.ip(),
                connection.direction
            ));
        }
    }

    fn on_disconnected(&mut self, connection: &rpc_core::Connection) {
        if let Some(events) = &self.events {
            let _ = events.send(format!(
                "disconnected {} {:?}",
                connection.peer.address.ip(),
                connection.direction
            ));
        }
    }
}

impl Echo for EchoServer {
    async fn echo(&mut self, n: u64) -> u64 {
        n
    }
    async fn size(&mut self, data: Vec<u8>) -> usize {
        data.len()
    }
    async fn blob(&mut self, len: usize) -> Vec<u8> {
        vec![7; len]
    }
    fn never(&mut self) -> Deferred<u32> {
        Deferred::new(std::future::pending())
    }
    async fn hold(&mut self) -> u32 {
        self.release.notified().await;
        1
    }
}

async fn echo_server(name: &str, endpoint: EchoServer) -> (RpcService, String) {
    echo_server_with(NettyBuilder::new(), name, endpoint).await
}

async fn echo_server_with(
    builder: NettyBuilder,
    name: &str,
    endpoint: EchoServer,
) -> (RpcService, String) {
    let server = builder.bind("127.0.0.1:0").await.unwrap();
    server.start_endpoint(name, endpoint).await.unwrap();
    let address = server.local_address().unwrap().to_string();
    (server, address)
}

// ---------------------------------------------------------------------------------------------
// The checked connect.

mod v1 {
    #[rpc_core::rpc_gateway(name = "Versioned")]
    pub trait Versioned {
        async fn get(&mut self) -> u32;
    }
}

mod v2 {
    // Same name, another signature: another fingerprint.
    #[rpc_core::rpc_gateway(name = "Versioned")]
    pub trait Versioned {
        async fn get(&mut self) -> u64;
    }
}

struct V1;

impl RpcEndpoint for V1 {
    rpc_core::serves!(v1::Versioned);
}

impl v1::Versioned for V1 {
    async fn get(&mut self) -> u32 {
        1
    }
}

#[tokio::test]
async fn connect_checks_endpoint_gateway_and_fingerprint() {
    common::init_tracing();
    let server = rpc_netty::bind("127.0.0.1:0").await.unwrap();
    server.start_endpoint("versioned", V1).await.unwrap();
    let address = server.local_address().unwrap();
    let client = rpc_netty::client();
    let at = address.to_string();

    match client.connect::<v1::VersionedClient>(&at, "nobody").await {
        Err(RpcError::EndpointNotFound {
            endpoint,
            address: Some(a),
        }) => assert_eq!((endpoint.as_str(), a), ("nobody", address)),
        other => panic!("wrong endpoint: {other:?}"),
    }
    match client.connect::<OtherClient>(&at, "versioned").await {
        Err(error @ RpcError::IncompatibleGateway { .. }) => {
            let text = error.to_string();
            assert!(
                text.contains("`Other`") && text.contains("Versioned"),
                "{text}"
            );
        }
        other => panic!("wrong gateway: {other:?}"),
    }
    match client
        .connect::<v2::VersionedClient>(&at, "versioned")
        .await
    {
        Err(error @ RpcError::FingerprintMismatch { client, server, .. }) => {
            use rpc_core::Gateway;
            assert_eq!(client, v2::VersionedClient::FINGERPRINT);
            assert_eq!(server, v1::VersionedClient::FINGERPRINT);
            assert_ne!(client, server);
            let text = error.to_string();
            assert!(
                text.contains("Versioned")
                    && text.contains(&format!("{client:#018x}"))
                    && text.contains(&format!("{server:#018x}")),
                "{text}"
            );
        }
        other => panic!("changed fingerprint: {other:?}"),
    }
    // The same connection still serves a correct connect.
    let good: v1::VersionedClient = client.connect(&at, "versioned").await.unwrap();
    assert_eq!(good.get().await.unwrap(), 1);
    assert_eq!(good.endpoint().address(), Some(address));
    client.shutdown().await.unwrap();
    server.shutdown().await.unwrap();
}

async fn read_frame(stream: &mut TcpStream) -> Vec<u8> {
    let mut length = [0; 4];
    stream.read_exact(&mut length).await.unwrap();
    let mut rest = vec![0; u32::from_be_bytes(length) as usize];
    stream.read_exact(&mut rest).await.unwrap();
    rest
}

/// Reads until the peer closes: the connection was dropped.
async fn expect_closed(stream: &mut TcpStream) {
    let mut sink = vec![0; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut sink)).await {
            Ok(Ok(0) | Err(_)) => return,
            Ok(Ok(_)) => {}
            Err(_) => panic!("the server did not close the connection"),
        }
    }
}

#[tokio::test]
async fn server_refuses_another_protocol_version() {
    common::init_tracing();
    let (server, address) = echo_server("echo", EchoServer::default()).await;
    let mut raw = TcpStream::connect(&address).await.unwrap();
    // A handshake from version 99, byte by byte.
    raw.write_all(&common::handshake_bytes(99)).await.unwrap();
    let hello = read_frame(&mut raw).await;
    assert_eq!(hello[0], 0x01, "the server's Hello comes first");
    let reject = read_frame(&mut raw).await;
    assert_eq!(reject[0], 0x03, "a HandshakeReject frame");
    assert_eq!(
        &reject[9..11],
        &rpc_netty::protocol::PROTOCOL_VERSION.to_be_bytes(),
        "carrying the server's version"
    );
    assert_eq!(reject[11], 1, "with reason code 1: version");
    let reason = String::from_utf8_lossy(&reject[12..]);
    assert!(reason.contains("99"), "{reason}");
    expect_closed(&mut raw).await;
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn client_reports_a_server_of_another_version() {
    common::init_tracing();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let fake_server = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let _handshake = read_frame(&mut stream).await;
        // HandshakeReject from version 9, code 1 (version).
        stream
            .write_all(&[0, 0, 0, 12, 0x03, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9, 1])
            .await
            .unwrap();
    });
    let client = rpc_netty::client();
    match client
        .connect::<EchoClient>(&address.to_string(), "echo")
        .await
    {
        Err(error @ RpcError::VersionMismatch { ours, theirs, .. }) => {
            assert_eq!((ours, theirs), (rpc_netty::protocol::PROTOCOL_VERSION, 9));
            assert!(error.to_string().contains("version 9"), "{error}");
        }
        other => panic!("expected VersionMismatch, got {other:?}"),
    }
    fake_server.await.unwrap();
    client.shutdown().await.unwrap();
}

#[tokio::test]
async fn connect_to_a_dead_address_fails_fast() {
    common::init_tracing();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    drop(listener);
    let client = rpc_netty::client();
    match client.connect::<EchoClient>(&address, "echo").await {
        Err(error @ RpcError::ConnectFailed { .. }) => {
            assert!(error.to_string().contains(&address), "{error}");
        }
        other => panic!("expected ConnectFailed, got {other:?}"),
    }
    client.shutdown().await.unwrap();
}

#[tokio::test]
async fn in_process_service_cannot_connect_out() {
    let service = RpcService::new();
    match service.connect::<EchoClient>("127.0.0.1:1", "echo").await {
        Err(error @ RpcError::ConnectFailed { .. }) => {
            assert!(error.to_string().contains("rpc_netty"), "{error}");
        }
        other => panic!("expected ConnectFailed, got {other:?}"),
    }
}

#[tokio::test]
async fn connecting_to_its_own_address_skips_the_network() {
    common::init_tracing();
    let (server, address) = echo_server("echo", EchoServer::default()).await;
    let local: EchoClient = server.connect(&address, "echo").await.unwrap();
    assert_eq!(local.endpoint().address(), None, "a local proxy");
    assert_eq!(local.echo(5).await.unwrap(), 5);
    server.shutdown().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Connections.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_server_fails_pending_calls_at_once_and_a_new_connect_reaches_its_successor() {
    common::init_tracing();
    let (server, address) = echo_server("echo", EchoServer::default()).await;
    let client = rpc_netty::client();
    let echo: EchoClient = client.connect(&address, "echo").await.unwrap();
    assert_eq!(echo.echo(1).await.unwrap(), 1);

    let pending = echo.never().with_timeout(Duration::from_secs(3600));
    // Wait until the server has it, then take the server down.
    assert_eq!(echo.echo(2).await.unwrap(), 2);
    server.shutdown().await.unwrap();
    match tokio::time::timeout(Duration::from_secs(10), pending).await {
        Ok(Err(RpcError::Disconnected { address: a, .. })) => assert_eq!(a.to_string(), address),
        other => panic!("expected Disconnected long before the timeout, got {other:?}"),
    }

    // A new server on the same port: the proxy reconnects, but its endpoint (that run of
    // it) is gone; a new connect reaches the new one.
    let again = NettyBuilder::new().bind(&address).await.unwrap();
    again
        .start_endpoint("echo", EchoServer::default())
        .await
        .unwrap();
    match echo.echo(3).await {
        Err(RpcError::EndpointStopped { endpoint }) => assert_eq!(endpoint, "echo"),
        other => panic!("expected EndpointStopped for the old incarnation, got {other:?}"),
    }
    let echo: EchoClient = client.connect(&address, "echo").await.unwrap();
    assert_eq!(echo.echo(3).await.unwrap(), 3);
    client.shutdown().await.unwrap();
    again.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_tasks_share_one_connection_and_every_reply_matches() {
    common::init_tracing();
    let (server, address) = echo_server("echo", EchoServer::default()).await;
    let client = rpc_netty::client();
    let echo: EchoClient = client.connect(&address, "echo").await.unwrap();
    let tasks: Vec<_> = (0..100u64)
        .map(|task| {
            let echo = echo.clone();
            tokio::spawn(async move {
                for i in 0..1_000u64 {
                    let n = task * 1_000_000 + i;
                    assert_eq!(
                        echo.echo(n).await.unwrap(),
                        n,
                        "a reply for another request"
                    );
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    client.shutdown().await.unwrap();
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn endpoints_see_connections_come_and_go() {
    common::init_tracing();
    let (events, mut seen) = mpsc::unbounded_channel();
    let endpoint = EchoServer {
        events: Some(events),
        ..EchoServer::default()
    };
    let (server, address) = echo_server("echo", endpoint).await;
    let client = rpc_netty::client();
    // An endpoint of the client's service hears of its outbound connection.
    let (client_events, mut client_seen) = mpsc::unbounded_channel();
    client
        .start_endpoint(
            "watcher",
            EchoServer {
                events: Some(client_events),
                ..EchoServer::default()
            },
        )
        .await
        .unwrap();
    let echo: EchoClient = client.connect(&address, "echo").await.unwrap();
    assert_eq!(seen.recv().await.unwrap(), "connected 127.0.0.1 Inbound");
    assert_eq!(
        client_seen.recv().await.unwrap(),
        "connected 127.0.0.1 Outbound"
    );
    assert_eq!(echo.echo(1).await.unwrap(), 1);
    client.shutdown().await.unwrap();
    assert_eq!(seen.recv().await.unwrap(), "disconnected 127.0.0.1 Inbound");
    server.shutdown().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Remote failures.

mod sender {
    #[derive(serde::Serialize, serde::Deserialize)]
    pub struct Payload {
        pub text: String,
    }

    #[rpc_core::rpc_gateway(name = "Shared")]
    pub trait Shared {
        async fn put(&mut self, payload: Payload) -> u32;
    }
}

mod receiver {
    // The same type name, so the same fingerprint, but a body that decodes differently.
    #[derive(serde::Serialize, serde::Deserialize)]
    pub struct Payload {
        pub flag: bool,
        pub count: u64,
    }

    #[rpc_core::rpc_gateway(name = "Shared")]
    pub trait Shared {
        async fn put(&mut self, payload: Payload) -> u32;
    }
}

struct Receiver;

impl RpcEndpoint for Receiver {
    rpc_core::serves!(receiver::Shared);
}

impl receiver::Shared for Receiver {
    async fn put(&mut self, payload: receiver::Payload) -> u32 {
        u32::from(payload.flag) + payload.count as u32
    }
}

#[tokio::test]
async fn undecodable_invocation_fails_that_call_only() {
    common::init_tracing();
    let server = rpc_netty::bind("127.0.0.1:0").await.unwrap();
    server.start_endpoint("shared", Receiver).await.unwrap();
    server
        .start_endpoint("echo", EchoServer::default())
        .await
        .unwrap();
    let address = server.local_address().unwrap().to_string();
    let client = rpc_netty::client();
    let shared: sender::SharedClient = client.connect(&address, "shared").await.unwrap();
    let echo: EchoClient = client.connect(&address, "echo").await.unwrap();

    let bad = sender::Payload {
        text: "definitely not a bool".into(),
    };
    match shared.put(bad).await {
        Err(RpcError::Serialization { context, .. }) => {
            assert!(context.contains("Shared"), "{context}");
        }
        other => panic!("expected a serialization error, got {other:?}"),
    }
    // Same connection, other calls unaffected.
    assert_eq!(echo.echo(9).await.unwrap(), 9);
    client.shutdown().await.unwrap();
    server.shutdown().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Frame limits.

#[tokio::test]
async fn sender_refuses_an_oversized_invocation_before_writing_it() {
    common::init_tracing();
    let (server, address) = echo_server("echo", EchoServer::default()).await;
    let client = NettyBuilder::new().max_frame_size(1024).client();
    let echo: EchoClient = client.connect(&address, "echo").await.unwrap();
    match echo.size(vec![0; 4096]).await {
        Err(RpcError::FrameTooLarge { size, max }) => {
            assert!(size > 4096);
            assert_eq!(max, 1024);
        }
        other => panic!("expected FrameTooLarge, got {other:?}"),
    }
    // Nothing was written: the connection is intact.
    assert_eq!(echo.size(vec![0; 100]).await.unwrap(), 100);
    client.shutdown().await.unwrap();
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn oversized_reply_fails_that_call_only() {
    common::init_tracing();
    let limited = NettyBuilder::new().max_frame_size(1024);
    let (server, address) = echo_server_with(limited, "echo", EchoServer::default()).await;
    let client = rpc_netty::client();
    let echo: EchoClient = client.connect(&address, "echo").await.unwrap();
    match echo.blob(4096).await {
        Err(RpcError::FrameTooLarge { max: 1024, .. }) => {}
        other => panic!("expected FrameTooLarge, got {other:?}"),
    }
    assert_eq!(echo.blob(10).await.unwrap(), vec![7; 10]);
    client.shutdown().await.unwrap();
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn receiver_drops_a_peer_sending_frames_over_its_limit() {
    common::init_tracing();
    let limited = NettyBuilder::new().max_frame_size(1024);
    let (server, address) = echo_server_with(limited, "echo", EchoServer::default()).await;
    // This client allows large frames; the server does not.
    let client = rpc_netty::client();
    let echo: EchoClient = client.connect(&address, "echo").await.unwrap();
    match echo.size(vec![0; 4096]).await {
        Err(RpcError::Disconnected { .. }) => {}
        other => panic!("expected Disconnected, got {other:?}"),
    }
    // The next call reconnects.
    assert_eq!(echo.size(vec![0; 10]).await.unwrap(), 10);
    client.shutdown().await.unwrap();
    server.shutdown().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Graceful shutdown.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_answers_queued_calls_and_disconnects_the_rest() {
    common::init_tracing();
    let release = Arc::new(Notify::new());
    let endpoint = EchoServer {
        release: Arc::clone(&release),
        ..EchoServer::default()
    };
    let server = rpc_netty::bind("127.0.0.1:0").await.unwrap();
    let ctx = server.start_endpoint("echo", endpoint).await.unwrap();
    server
        .start_endpoint("barrier", EchoServer::default())
        .await
        .unwrap();
    let address = server.local_address().unwrap().to_string();
    let client = rpc_netty::client();
    let echo: EchoClient = client.connect(&address, "echo").await.unwrap();
    let barrier: EchoClient = client.connect(&address, "barrier").await.unwrap();

    let never = echo.never(); // replied off the main thread: never
    let held = echo.hold(); // occupies the main thread until released
    let queued = echo.echo(1); // waits in the mailbox behind it
    // The server handles one connection's frames in order: once the barrier answers, the
    // calls above are in the echo endpoint's mailbox.
    assert_eq!(barrier.echo(0).await.unwrap(), 0);
    ctx.stop();
    let late = echo.echo(3); // arrives after the stop
    release.notify_one();

    assert_eq!(held.await.unwrap(), 1);
    assert_eq!(queued.await.unwrap(), 1, "queued before the stop: answered");
    match late.await {
        Err(RpcError::EndpointStopped { endpoint }) => assert_eq!(endpoint, "echo"),
        other => panic!("arrived after the stop: expected EndpointStopped, got {other:?}"),
    }
    server.shutdown().await.unwrap();
    match never.await {
        Err(RpcError::Disconnected { .. }) => {}
        other => panic!("never answered: expected Disconnected, got {other:?}"),
    }
    client.shutdown().await.unwrap();
}

/// A server that answers anything with an HTTP error, as a web server would.
async fn http_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut request = [0; 64];
            let _ = stream.read(&mut request).await;
            let _ = stream
                .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                .await;
        }
    });
    address
}

#[tokio::test]
async fn connecting_to_an_http_server_says_so() {
    common::init_tracing();
    let address = http_server().await;
    let client = NettyBuilder::new()
        .connect_timeout(Duration::from_secs(5))
        .client();
    let outcome = tokio::time::timeout(
        Duration::from_secs(5),
        client.connect::<EchoClient>(&address.to_string(), "echo"),
    )
    .await
    .expect("answered within the connect timeout");
    match outcome {
        Err(RpcError::ConnectFailed { reason, .. }) => {
            assert!(reason.contains("HTTP server"), "{reason}");
            assert!(reason.contains("400 Bad Request"), "{reason}");
        }
        other => panic!("expected ConnectFailed, got {other:?}"),
    }
    client.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_silent_peer_fails_the_connect_at_the_connect_timeout() {
    common::init_tracing();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    // Accepts, reads, never says a word.
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut sink = vec![0; 1024];
        while stream.read(&mut sink).await.is_ok_and(|n| n > 0) {}
    });
    let timeout = Duration::from_millis(300);
    let client = NettyBuilder::new().connect_timeout(timeout).client();
    let outcome = tokio::time::timeout(
        Duration::from_secs(10),
        client.connect::<EchoClient>(&address.to_string(), "echo"),
    )
    .await
    .expect("the connect timeout ended the attempt");
    match outcome {
        Err(RpcError::ConnectFailed { reason, .. }) => {
            assert!(reason.contains("connect_timeout"), "{reason}");
            assert!(
                reason.contains("hello"),
                "says what it waited for: {reason}"
            );
        }
        other => panic!("expected ConnectFailed, got {other:?}"),
    }
    client.shutdown().await.unwrap();
}
