//! `connect` with a retry policy waits for a server that is not up yet; without one it fails
//! at once; a server that answers and refuses ends the connect with its refusal.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::bounded;
use rpc_core::{ConnectRetry, RpcEndpoint, RpcError, rpc_gateway};
use rpc_netty::NettyBuilder;
use tokio::sync::mpsc;

#[rpc_gateway]
pub trait Ping {
    async fn ping(&mut self) -> u32;
}

struct Pong;

impl RpcEndpoint for Pong {
    rpc_core::serves!(Ping);
}

impl Ping for Pong {
    async fn ping(&mut self) -> u32 {
        7
    }
}

/// Reports every failed connection attempt of its service.
struct Attempts(mpsc::UnboundedSender<SocketAddr>);

impl RpcEndpoint for Attempts {
    fn on_network_error(&mut self, peer: SocketAddr, _error: &RpcError) {
        let _ = self.0.send(peer);
    }
}

/// A loopback port nothing listens on (for the moment).
fn free_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

fn patient() -> ConnectRetry {
    ConnectRetry::backoff(200, Duration::from_millis(10), Duration::from_millis(50))
}

#[tokio::test]
async fn a_client_started_before_its_server_waits_for_it() {
    bounded(async {
        let address = free_port();
        let client = NettyBuilder::new().connect_retry(patient()).client();
        let (failed, mut failures) = mpsc::unbounded_channel();
        client
            .start_endpoint("attempts", Attempts(failed))
            .await
            .unwrap();
        let connecting = tokio::spawn({
            let client = client.clone();
            async move { client.connect::<PingClient>(address, "ping").await }
        });
        // The first attempt found nobody; only then does the server come up.
        assert_eq!(failures.recv().await, Some(address));
        let server = rpc_netty::bind(address).await.unwrap();
        server.start_endpoint("ping", Pong).await.unwrap();
        let ping = connecting
            .await
            .unwrap()
            .expect("connected once the server was up");
        assert_eq!(ping.ping().await.unwrap(), 7);
        client.shutdown().await.unwrap();
        server.shutdown().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn without_a_policy_an_absent_server_fails_at_once() {
    bounded(async {
        let client = rpc_netty::client();
        let outcome = client.connect::<PingClient>(free_port(), "ping").await;
        assert!(
            matches!(outcome, Err(RpcError::ConnectFailed { .. })),
            "{outcome:?}"
        );
        // The per-call override tries again, and gives up after its attempts.
        let (failed, mut failures) = mpsc::unbounded_channel();
        client
            .start_endpoint("attempts", Attempts(failed))
            .await
            .unwrap();
        let retry = ConnectRetry::backoff(3, Duration::from_millis(1), Duration::from_millis(1));
        let outcome = client
            .connect_with_retry::<PingClient>(free_port(), "ping", retry)
            .await;
        assert!(
            matches!(outcome, Err(RpcError::ConnectFailed { .. })),
            "{outcome:?}"
        );
        for _ in 0..3 {
            assert!(failures.recv().await.is_some());
        }
        client.shutdown().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_refusal_ends_the_connect_with_its_own_error() {
    bounded(async {
        let server = rpc_netty::bind("127.0.0.1:0").await.unwrap();
        let client = NettyBuilder::new().connect_retry(patient()).client();
        // The server answered: its refusal is the outcome, not a `ConnectFailed` after the
        // policy's attempts.
        let outcome = client
            .connect::<PingClient>(server.local_address().unwrap(), "absent")
            .await;
        assert!(
            matches!(outcome, Err(RpcError::EndpointNotFound { .. })),
            "{outcome:?}"
        );
        client.shutdown().await.unwrap();
        server.shutdown().await.unwrap();
    })
    .await;
}
