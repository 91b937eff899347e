//! A peer process for the multi-host fault tests (`tests/tests/netns.rs`), run inside a
//! network namespace with `ip netns exec`. It speaks to the test through lines on standard
//! input and output.
//!
//! ```text
//! netns-peer server ADDR   prints "listening", then "disconnected PEER" for each lost client
//! netns-peer client ADDR   reads commands: "echo N" -> "ok N" or "error ..."; "slow" -> "pending",
//!                          later "slow ok" or "slow error ..."; "quit"
//! ```
//!
//! Both sides use a short keep-alive (100 ms probe, 600 ms timeout) so that a cut link is
//! noticed quickly.

use std::time::Duration;

use rpc_core::{Deferred, RpcEndpoint, RpcService, rpc_gateway};
use rpc_netty::NettyBuilder;
use tokio::io::{AsyncBufReadExt, BufReader};

#[rpc_gateway]
pub trait Peer {
    async fn echo(&mut self, n: u64) -> u64;
    /// Never answers (off the main thread): a call that stays in flight.
    fn slow(&mut self) -> Deferred<u64>;
}

struct Server;

impl RpcEndpoint for Server {
    rpc_core::serves!(Peer);

    fn on_disconnected(&mut self, connection: &rpc_core::Connection) {
        println!("disconnected {}", connection.peer.address);
    }
}

impl Peer for Server {
    async fn echo(&mut self, n: u64) -> u64 {
        n
    }

    fn slow(&mut self) -> Deferred<u64> {
        Deferred::new(std::future::pending())
    }
}

fn builder() -> NettyBuilder {
    NettyBuilder::new()
        .keepalive(Duration::from_millis(100), Duration::from_millis(600))
        .connect_timeout(Duration::from_secs(2))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["server", address] => server(address).await,
        ["client", address] => client(address).await,
        _ => Err("usage: netns-peer server ADDR | client ADDR".into()),
    }
}

async fn server(address: &str) -> Result<(), Box<dyn std::error::Error>> {
    let service = builder().bind(address).await?;
    service.start_endpoint("peer", Server).await?;
    println!("listening");
    // Serve until the test closes our standard input (or kills us).
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while lines.next_line().await?.is_some() {}
    service.shutdown().await?;
    Ok(())
}

async fn client(address: &str) -> Result<(), Box<dyn std::error::Error>> {
    let service: RpcService = builder().client();
    let peer: PeerClient = service
        .connect::<PeerClient>(address, "peer")
        .await?
        .with_timeout(Duration::from_secs(60));
    println!("connected");
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["echo", n] => match peer.echo(n.parse()?).await {
                Ok(n) => println!("ok {n}"),
                Err(error) => println!("error {error:?}"),
            },
            ["slow"] => {
                let call = peer.slow();
                println!("pending");
                tokio::spawn(async move {
                    match call.await {
                        Ok(n) => println!("slow ok {n}"),
                        Err(error) => println!("slow error {error:?}"),
                    }
                });
            }
            ["quit"] => break,
            _ => println!("unknown command {line}"),
        }
    }
    service.shutdown().await?;
    Ok(())
}
