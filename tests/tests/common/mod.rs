//! The harness every gateway-semantics test runs on, so that one test body is checked in each
//! mode: in process, in process with forced serialization, and over loopback TCP.

#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rpc_core::{DEFAULT_TIMEOUT, FencedGateway, RpcError, RpcService, UnfencedGateway};
use rpc_netty::NettyBuilder;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How the test reaches its endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Gateways from the same service: values move, nothing is encoded.
    InProcess,
    /// Same, but the service forces every invocation and reply through postcard.
    Serialized,
    /// A server service on 127.0.0.1 and a separate client-only service connecting to it.
    Tcp,
}

/// Where endpoints run and how the test gets gateways to them.
pub struct Harness {
    /// The service running the endpoints under test.
    pub server: RpcService,
    /// The service calls come from: the server itself, or a client-only service over TCP.
    pub client: RpcService,
    pub mode: Mode,
}

impl Harness {
    pub async fn new(mode: Mode) -> Harness {
        Harness::with_timeout(mode, DEFAULT_TIMEOUT).await
    }

    /// A harness whose proxies start with `timeout`.
    pub async fn with_timeout(mode: Mode, timeout: Duration) -> Harness {
        match mode {
            Mode::InProcess | Mode::Serialized => {
                let server = RpcService::builder()
                    .default_timeout(timeout)
                    .force_serialization(mode == Mode::Serialized)
                    .build();
                Harness {
                    client: server.clone(),
                    server,
                    mode,
                }
            }
            Mode::Tcp => {
                let server = NettyBuilder::new()
                    .default_timeout(timeout)
                    .bind("127.0.0.1:0")
                    .await
                    .expect("bind a loopback port");
                let client = NettyBuilder::new().default_timeout(timeout).client();
                Harness {
                    server,
                    client,
                    mode,
                }
            }
        }
    }

    /// A proxy to endpoint `name`, reached the way this mode reaches it.
    pub async fn gateway<G: UnfencedGateway>(&self, name: &str) -> Result<G, RpcError> {
        match self.mode {
            Mode::InProcess | Mode::Serialized => self.server.gateway(name),
            Mode::Tcp => {
                let address = self.server.local_address().expect("the server listens");
                self.client.connect(&address.to_string(), name).await
            }
        }
    }

    /// A proxy to endpoint `name` through fenced gateway `G`, carrying `token`.
    #[allow(dead_code)]
    pub async fn gateway_fenced<G: FencedGateway>(
        &self,
        name: &str,
        token: G::Token,
    ) -> Result<G, RpcError> {
        match self.mode {
            Mode::InProcess | Mode::Serialized => self.server.gateway_fenced(name, token),
            Mode::Tcp => {
                let address = self.server.local_address().expect("the server listens");
                self.client
                    .connect_fenced(&address.to_string(), name, token)
                    .await
            }
        }
    }

    /// Shuts both services down; the first failure of an endpoint's `on_stop`, if any.
    pub async fn shutdown(self) -> Result<(), RpcError> {
        let server = self.server.shutdown().await;
        let client = self.client.shutdown().await;
        server.and(client)
    }
}

/// Logs to the test's captured output; `RUST_LOG=debug` shows the transport's decisions.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// Every test is bounded: a hang fails instead of blocking the suite.
pub async fn bounded<F: Future>(test: F) -> F::Output {
    init_tracing();
    tokio::time::timeout(Duration::from_secs(60), test)
        .await
        .expect("test did not finish within 60 s")
}

/// Instantiates each listed `async fn(Mode)` test once per mode.
#[macro_export]
macro_rules! in_every_mode {
    ($($test:ident),* $(,)?) => {$(
        mod $test {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn in_process() {
                common::bounded(super::$test(common::Mode::InProcess)).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn serialized() {
                common::bounded(super::$test(common::Mode::Serialized)).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn tcp() {
                common::bounded(super::$test(common::Mode::Tcp)).await
            }
        }
    )*};
}

/// A client's `Hello` of protocol `version` without a shared secret, byte by byte: length 16,
/// kind 0x01, request id 0, magic "RPCN", the version, and 0 for "no authentication".
pub fn handshake_bytes(version: u16) -> Vec<u8> {
    let mut frame = vec![
        0, 0, 0, 16, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, b'R', b'P', b'C', b'N',
    ];
    frame.extend_from_slice(&version.to_be_bytes());
    frame.push(0);
    frame
}

/// The `Hello` a server of this protocol version without a shared secret sends as soon as it
/// accepts a connection (and that a fake server sends to a client).
pub const SERVER_HELLO: [u8; 20] = {
    let v = rpc_netty::protocol::PROTOCOL_VERSION.to_be_bytes();
    [
        0, 0, 0, 16, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, b'R', b'P', b'C', b'N', v[0], v[1], 0,
    ]
};

/// Forwards bytes between a client and `target`, recording everything that passes.
pub async fn recording_proxy(target: SocketAddr) -> (SocketAddr, Arc<Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let recorded = Arc::new(Mutex::new(Vec::new()));
    let tape = Arc::clone(&recorded);
    tokio::spawn(async move {
        let (client, _) = listener.accept().await.unwrap();
        let server = TcpStream::connect(target).await.unwrap();
        let (client_read, client_write) = client.into_split();
        let (server_read, server_write) = server.into_split();
        let pump = |mut from: tokio::net::tcp::OwnedReadHalf,
                    mut to: tokio::net::tcp::OwnedWriteHalf,
                    tape: Arc<Mutex<Vec<u8>>>| async move {
            let mut buffer = vec![0; 4096];
            while let Ok(n @ 1..) = from.read(&mut buffer).await {
                tape.lock().unwrap().extend_from_slice(&buffer[..n]);
                if to.write_all(&buffer[..n]).await.is_err() {
                    break;
                }
            }
        };
        let up = tokio::spawn(pump(client_read, server_write, Arc::clone(&tape)));
        let down = tokio::spawn(pump(server_read, client_write, tape));
        let _ = (up.await, down.await);
    });
    (address, recorded)
}
