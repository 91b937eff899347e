//! Outer and inner networks (the game-server split): a service listens on an inner address
//! for other servers and an outer one for players; a gateway marked `#[rpc_gateway(inner)]`
//! is served only on the inner one. A bind to it over the outer listener is refused at
//! connect time with `InnerGateway`, and nothing reaches the endpoint.

mod common;

use rpc_core::{RpcEndpoint, RpcError, rpc_gateway};
use rpc_netty::NettyBuilder;

/// What only other servers may call: moving units between maps.
#[rpc_gateway(inner)]
pub trait MapAdmin {
    async fn migrate(&mut self, unit: u64) -> u64;
    async fn calls(&mut self) -> u64;
}

/// What players call.
#[rpc_gateway(outer)]
pub trait Play {
    async fn act(&mut self, action: String) -> String;
}

/// Unmarked: served on every listener.
#[rpc_gateway]
pub trait Info {
    async fn version(&mut self) -> u32;
}

#[derive(Default)]
struct Map {
    calls: u64,
}

impl RpcEndpoint for Map {
    rpc_core::serves!(MapAdmin, Play, Info);
}

impl MapAdmin for Map {
    async fn migrate(&mut self, unit: u64) -> u64 {
        self.calls += 1;
        unit
    }
    async fn calls(&mut self) -> u64 {
        self.calls
    }
}

impl Play for Map {
    async fn act(&mut self, action: String) -> String {
        self.calls += 1;
        format!("did {action}")
    }
}

impl Info for Map {
    async fn version(&mut self) -> u32 {
        7
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outer_listener_refuses_inner_gateways() {
    common::bounded(async {
        let gate = NettyBuilder::new()
            .outer("127.0.0.1:0")
            .bind("127.0.0.1:0")
            .await
            .unwrap();
        gate.start_endpoint("map", Map::default()).await.unwrap();
        let inner = gate.local_address().unwrap().to_string();
        let outer = gate.outer_address().unwrap().to_string();
        assert_ne!(inner, outer);

        // A player, on the outer network.
        let player = rpc_netty::client();
        let refused = player.connect::<MapAdminClient>(&outer, "map").await;
        match refused {
            Err(error @ RpcError::InnerGateway { .. }) => {
                let text = error.to_string();
                assert!(
                    text.contains("`MapAdmin`") && text.contains("inner network only"),
                    "{text}"
                );
            }
            other => panic!("expected InnerGateway, got {other:?}"),
        }
        // What players may call works there, marked or not.
        let play: PlayClient = player.connect(&outer, "map").await.unwrap();
        assert_eq!(play.act("jump".into()).await.unwrap(), "did jump");
        let info: InfoClient = player.connect(&outer, "map").await.unwrap();
        assert_eq!(info.version().await.unwrap(), 7);

        // Another server, on the inner network: everything.
        let server = rpc_netty::client();
        let admin: MapAdminClient = server.connect(&inner, "map").await.unwrap();
        assert_eq!(admin.migrate(42).await.unwrap(), 42);
        let play: PlayClient = server.connect(&inner, "map").await.unwrap();
        assert_eq!(play.act("walk".into()).await.unwrap(), "did walk");
        // Nothing of the refused bind reached the endpoint: two acts and one migrate ran.
        assert_eq!(admin.calls().await.unwrap(), 3);

        player.shutdown().await.unwrap();
        server.shutdown().await.unwrap();
        gate.shutdown().await.unwrap();
    })
    .await
}

#[tokio::test]
async fn a_service_without_an_outer_listener_says_so() {
    let server = rpc_netty::bind("127.0.0.1:0").await.unwrap();
    assert!(matches!(
        server.outer_address(),
        Err(RpcError::NotListening)
    ));
    server.shutdown().await.unwrap();
}

/// Authentication per hop: the Gate's inner network (its inner listener, and its calls to the
/// Map) runs on the servers' secret, while players on its outer listener need none; a player's
/// call through the relay crosses both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outer_listener_asks_players_for_no_secret_while_the_servers_keep_theirs() {
    common::bounded(async {
        const SECRET: &str = "the servers' secret";
        let map = NettyBuilder::new()
            .shared_secret(SECRET)
            .bind("127.0.0.1:0")
            .await
            .unwrap();
        map.start_endpoint("map", Map::default()).await.unwrap();
        let map_address = map.local_address().unwrap();
        let gate = NettyBuilder::new()
            .shared_secret(SECRET)
            .outer("127.0.0.1:0")
            .outer_without_secret()
            .bind("127.0.0.1:0")
            .await
            .unwrap();
        gate.start_endpoint("login", rpc_tests::relay_gate::Logins)
            .await
            .unwrap();
        gate.start_relay("play", move |_: rpc_core::RouteRequest<'_>| async move {
            Ok(rpc_core::Hop {
                address: map_address,
                endpoint: "map".to_owned(),
                incarnation: None,
            })
        })
        .unwrap();
        let outer = gate.outer_address().unwrap();
        let inner = gate.local_address().unwrap();

        // A player without the secret: served on the outer listener, relayed with it.
        let player = rpc_netty::client();
        let login: rpc_tests::relay_gate::LoginClient =
            player.connect(outer, "login").await.unwrap();
        login.login("kim".into()).await.unwrap().unwrap();
        let play: PlayClient = player.connect(outer, "play").await.unwrap();
        assert_eq!(play.act("jump".into()).await.unwrap(), "did jump");

        // Without the secret, the inner listener and the Map refuse it.
        for address in [inner, map_address] {
            let refused = player.connect::<InfoClient>(address, "map").await;
            assert!(
                matches!(refused, Err(RpcError::Unauthenticated { .. })),
                "{address}: {refused:?}"
            );
        }
    })
    .await;
}
