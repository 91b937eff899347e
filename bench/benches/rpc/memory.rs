//! Resident memory per idle connection and per idle endpoint, each measured in a process of
//! its own.

use rpc_core::{RpcEndpoint, RpcService};

use crate::ours::{Echo, EchoBenchClient};

/// The process's resident set, in bytes (Linux `/proc/self/statm`).
fn resident() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Bytes of resident memory each of `n` idle connections adds: a client service per
/// connection, connected and used once, to one server in this process (so both ends count).
pub async fn per_connection(n: usize) -> Option<f64> {
    let server = rpc_netty::bind("127.0.0.1:0").await.ok()?;
    server.start_endpoint("echo", Echo::default()).await.ok()?;
    let address = server.local_address().ok()?.to_string();
    let before = resident()?;
    let mut clients = Vec::with_capacity(n);
    for _ in 0..n {
        let client = rpc_netty::client();
        let proxy: EchoBenchClient = client.connect(&address, "echo").await.ok()?;
        proxy.echo(String::new()).await.ok()?;
        clients.push((client, proxy));
    }
    let after = resident()?;
    for (client, _) in clients {
        client.shutdown().await.ok()?;
    }
    server.shutdown().await.ok()?;
    Some(after.saturating_sub(before) as f64 / n as f64)
}

struct Idle;

impl RpcEndpoint for Idle {}

/// Bytes of resident memory each of `n` idle endpoints adds.
pub async fn per_endpoint(n: usize) -> Option<f64> {
    let service = RpcService::new();
    let before = resident()?;
    for i in 0..n {
        service
            .start_endpoint(format!("idle-{i}"), Idle)
            .await
            .ok()?;
    }
    let after = resident()?;
    service.shutdown().await.ok()?;
    Some(after.saturating_sub(before) as f64 / n as f64)
}

/// A measurement this binary makes when run as `--memory-probe KIND N`: it prints the bytes
/// per item and exits.
pub struct Probe {
    kind: String,
    n: usize,
}

impl Probe {
    pub fn from_args() -> Option<Probe> {
        let args: Vec<String> = std::env::args().collect();
        let at = args.iter().position(|a| a == "--memory-probe")?;
        Some(Probe {
            kind: args.get(at + 1)?.clone(),
            n: args.get(at + 2)?.parse().ok()?,
        })
    }

    pub fn run(self) -> std::io::Result<()> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        let Probe { kind, n } = self;
        let bytes = runtime
            .block_on(async move {
                tokio::spawn(async move {
                    match kind.as_str() {
                        "connections" => per_connection(n).await,
                        "endpoints" => per_endpoint(n).await,
                        _ => None,
                    }
                })
                .await
            })
            .ok()
            .flatten();
        if let Some(bytes) = bytes {
            println!("{bytes}");
        }
        Ok(())
    }
}

/// Runs `--memory-probe kind n` in a fresh process of this binary: bytes per item.
pub fn in_fresh_process(kind: &str, n: usize) -> Option<f64> {
    let output = std::process::Command::new(std::env::current_exe().ok()?)
        .args(["--memory-probe", kind, &n.to_string()])
        .stderr(std::process::Stdio::inherit())
        .output()
        .ok()?;
    String::from_utf8(output.stdout).ok()?.trim().parse().ok()
}
