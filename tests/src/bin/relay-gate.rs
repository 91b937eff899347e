//! The Gate process of the relay tests (`tests/tests/relay.rs`).
//!
//! ```text
//! relay-gate MAP_ADDRESS ENDPOINT
//!     listens on 127.0.0.1 twice (inner and outer, any ports), prints
//!     "listening INNER OUTER", serves `login` (outer) and the relay `unit`, which forwards
//!     every logged-in player's calls to ENDPOINT at MAP_ADDRESS, until its standard input
//!     closes
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use rpc_core::{Hop, RouteRequest};
use rpc_netty::NettyBuilder;
use rpc_tests::relay_gate::Logins;
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::main]
async fn main() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "error".into()),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(map), Some(endpoint)) = (args.first(), args.get(1)) else {
        eprintln!("usage: relay-gate MAP_ADDRESS ENDPOINT");
        std::process::exit(2);
    };
    let map: SocketAddr = match map.parse() {
        Ok(map) => map,
        Err(error) => {
            eprintln!("relay-gate: {map}: {error}");
            std::process::exit(2);
        }
    };
    let endpoint = endpoint.clone();
    let gate = NettyBuilder::new()
        .default_timeout(Duration::from_secs(10))
        .outer("127.0.0.1:0")
        .bind("127.0.0.1:0")
        .await
        .expect("bind the gate");
    gate.start_endpoint("login", Logins)
        .await
        .expect("start login");
    gate.start_relay("unit", move |_: RouteRequest<'_>| {
        let hop = Hop {
            address: map,
            endpoint: endpoint.clone(),
            incarnation: None,
        };
        async move { Ok(hop) }
    })
    .expect("start the relay");
    let inner = gate.local_address().expect("inner address");
    let outer = gate.outer_address().expect("outer address");
    println!("listening {inner} {outer}");
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(_)) = stdin.next_line().await {}
    gate.shutdown().await.expect("shut down");
}
