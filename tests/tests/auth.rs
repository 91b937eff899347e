//! Mutual authentication with a shared secret: only peers that know it get in, both sides
//! prove it, and the secret itself never crosses the wire.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rpc_core::{RpcEndpoint, RpcError, RpcService, rpc_gateway};
use rpc_netty::NettyBuilder;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SECRET: &[u8] = b"correct horse battery staple 42";

#[rpc_gateway]
pub trait Vault {
    async fn open(&mut self, n: u64) -> u64;
    fn knock(&mut self);
}

struct Safe {
    calls: Arc<AtomicUsize>,
}

impl RpcEndpoint for Safe {
    rpc_core::serves!(Vault);
}

impl Vault for Safe {
    async fn open(&mut self, n: u64) -> u64 {
        self.calls.fetch_add(1, Ordering::SeqCst);
        n
    }
    fn knock(&mut self) {
        self.calls.fetch_add(1, Ordering::SeqCst);
    }
}

/// A server, with `secret` if given, whose endpoint counts the calls that reach it.
async fn server(secret: Option<&[u8]>) -> (RpcService, String, Arc<AtomicUsize>) {
    common::init_tracing();
    let mut builder = NettyBuilder::new();
    if let Some(secret) = secret {
        builder = builder.shared_secret(secret);
    }
    let server = builder.bind("127.0.0.1:0").await.unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    server
        .start_endpoint(
            "vault",
            Safe {
                calls: Arc::clone(&calls),
            },
        )
        .await
        .unwrap();
    let address = server.local_address().unwrap().to_string();
    (server, address, calls)
}

fn expect_unauthenticated<T: std::fmt::Debug>(result: Result<T, RpcError>, says: &str) {
    match result {
        Err(error @ RpcError::Unauthenticated { .. }) => {
            let text = error.to_string();
            assert!(text.contains(says), "{text}");
        }
        other => panic!("expected Unauthenticated ({says}), got {other:?}"),
    }
}

#[tokio::test]
async fn peers_with_the_same_secret_talk() {
    let (server, address, calls) = server(Some(SECRET)).await;
    let client = NettyBuilder::new().shared_secret(SECRET).client();
    let vault: VaultClient = client.connect(&address, "vault").await.unwrap();
    assert_eq!(vault.open(7).await.unwrap(), 7);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    client.shutdown().await.unwrap();
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_client_without_the_secret_is_refused_and_reaches_nothing() {
    let (server, address, calls) = server(Some(SECRET)).await;
    let client = rpc_netty::client();
    let refused = client.connect::<VaultClient>(&address, "vault").await;
    expect_unauthenticated(refused, "requires a shared secret");
    assert_eq!(calls.load(Ordering::SeqCst), 0, "no endpoint saw a call");
    client.shutdown().await.unwrap();
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_wrong_secret_is_refused_both_ways() {
    let (server, address, calls) = server(Some(SECRET)).await;
    let client = NettyBuilder::new().shared_secret("a guess").client();
    let refused = client.connect::<VaultClient>(&address, "vault").await;
    expect_unauthenticated(refused, "does not match");
    assert_eq!(calls.load(Ordering::SeqCst), 0, "no endpoint saw a call");
    client.shutdown().await.unwrap();
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_client_with_a_secret_refuses_a_server_without_one() {
    let (server, address, calls) = server(None).await;
    let client = NettyBuilder::new().shared_secret(SECRET).client();
    let refused = client.connect::<VaultClient>(&address, "vault").await;
    expect_unauthenticated(refused, "does not authenticate");
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    client.shutdown().await.unwrap();
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_raw_client_skipping_the_proof_is_disconnected_before_any_call() {
    let (server, address, calls) = server(Some(SECRET)).await;
    let mut raw = TcpStream::connect(&address).await.unwrap();
    // The server's Hello announces that it requires the secret (mode 1).
    let mut hello = [0; 20];
    raw.read_exact(&mut hello).await.unwrap();
    assert_eq!(
        (hello[4], hello[19]),
        (0x01, 1),
        "a Hello requiring a secret"
    );
    // Claim a secret too, then skip the key exchange: bind and knock right away.
    let mut claim = common::handshake_bytes(rpc_netty::protocol::PROTOCOL_VERSION);
    *claim.last_mut().unwrap() = 1;
    raw.write_all(&claim).await.unwrap();
    let mut bind = vec![0, 0, 0, 18, 0x04, 0, 0, 0, 0, 0, 0, 0, 1];
    bind.extend_from_slice(&[1, 5, b'v', b'a', b'u', b'l', b't', 0, 0]);
    raw.write_all(&bind).await.unwrap();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), raw.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "the server kept the connection open");
    assert_eq!(rest.get(4), Some(&0x03), "a HandshakeReject");
    assert_eq!(
        rest.get(15),
        Some(&2),
        "with reason code 2: unauthenticated"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0, "no endpoint saw a call");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_secret_never_crosses_the_wire() {
    let (server, address, _) = server(Some(SECRET)).await;
    let (proxy, recorded) = common::recording_proxy(address.parse().unwrap()).await;
    let client = NettyBuilder::new().shared_secret(SECRET).client();
    let vault: VaultClient = client.connect(&proxy.to_string(), "vault").await.unwrap();
    assert_eq!(vault.open(1).await.unwrap(), 1);
    vault.knock().unwrap();
    assert_eq!(vault.open(2).await.unwrap(), 2);
    let tape = recorded.lock().unwrap().clone();
    assert!(tape.len() > 100, "the proxy saw the traffic");
    assert!(
        !tape.windows(SECRET.len()).any(|w| w == SECRET),
        "the secret appeared on the wire"
    );
    client.shutdown().await.unwrap();
    server.shutdown().await.unwrap();
}
