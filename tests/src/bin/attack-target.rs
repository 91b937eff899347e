//! The process the attack tests (`tests/tests/hostile.rs`) aim at, so that a crash or a memory
//! blow-up happens where the test can see it.
//!
//! ```text
//! attack-target serve [--secret S] [--max-connections N] [--handshake-timeout-ms N]
//!                     [--max-handshakes OVERALL,PER_ADDRESS]
//!     listens on 127.0.0.1 (any port), prints "listening ADDR", serves `target` and `gate`
//!     until its standard input closes
//! attack-target call ADDR [--secret S]
//!     connects to the `target` endpoint at ADDR, asks `tree(1)` then `echo("again")` on the
//!     same connection, prints "tree: RESULT" and "echo: RESULT", exits 0
//! ```

use std::time::Duration;

use rpc_netty::NettyBuilder;
use rpc_tests::target::{GateEndpoint, TargetClient, TargetEndpoint};
use tokio::io::{AsyncBufReadExt, BufReader};

fn option(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn builder(args: &[String]) -> NettyBuilder {
    let mut builder = NettyBuilder::new().default_timeout(Duration::from_secs(10));
    if let Some(secret) = option(args, "--secret") {
        builder = builder.shared_secret(secret);
    }
    if let Some(n) = option(args, "--max-connections").and_then(|n| n.parse().ok()) {
        builder = builder.max_connections(n);
    }
    if let Some(ms) = option(args, "--handshake-timeout-ms").and_then(|n| n.parse().ok()) {
        builder = builder.handshake_timeout(Duration::from_millis(ms));
    }
    if let Some(limits) = option(args, "--max-handshakes") {
        let mut parts = limits.split(',').filter_map(|n| n.parse().ok());
        if let (Some(overall), Some(per_address)) = (parts.next(), parts.next()) {
            builder = builder.max_handshakes(overall, per_address);
        }
    }
    builder
}

#[tokio::main]
async fn main() {
    // Its log goes to standard error, which the tests leave attached: errors only, unless
    // RUST_LOG says otherwise (the attacks make the server warn a lot).
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "error".into()),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("serve") => {
            let server = builder(&args)
                .bind("127.0.0.1:0")
                .await
                .expect("bind a loopback port");
            server
                .start_endpoint("target", TargetEndpoint::default())
                .await
                .expect("start the endpoint");
            server
                .start_endpoint("gate", GateEndpoint)
                .await
                .expect("start the gate");
            let address = server.local_address().expect("listening");
            println!("listening {address}");
            let mut lines = BufReader::new(tokio::io::stdin()).lines();
            while let Ok(Some(_)) = lines.next_line().await {}
            server.shutdown().await.expect("shutdown");
        }
        Some("call") => {
            let address = args.get(1).expect("call ADDR");
            let client = builder(&args).client();
            let target: TargetClient = client
                .connect(address, "target")
                .await
                .expect("connect to the target");
            println!("tree: {:?}", target.tree(1).await.map(|t| t.depth()));
            println!("echo: {:?}", target.echo("again".into()).await);
            client.shutdown().await.expect("shutdown");
        }
        _ => {
            eprintln!("usage: attack-target serve [options] | attack-target call ADDR [options]");
            std::process::exit(2);
        }
    }
}
