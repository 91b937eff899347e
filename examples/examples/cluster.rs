//! Leader failover with fencing, across processes, on a real etcd (Flink's shape).
//!
//! ```text
//! cargo run -p rpc-examples --features etcd --example cluster
//! ```
//!
//! Needs the `etcd` binary (Debian: `apt install etcd-server`) and `protoc` to build
//! (`protobuf-compiler`). It starts a local etcd, two resource manager processes contending for
//! leadership, and two task executor processes that register with whichever leads and
//! heartbeat it. Then it kills the leader (SIGKILL): the standby wins with a new token, the task
//! executors follow it through retrieval, and a call carrying the deposed leader's token is
//! rejected by fencing. It prints the failover time: leader killed -> first successful call to
//! the new leader. `CLUSTER_TTL_SECS` sets the lease TTL (default 2).

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use rpc_core::FencingId;
use rpc_examples::cluster::{
    ELECTION, ResourceManagerGatewayClient, resource_manager, task_executor,
};
use rpc_ha::LeaderRetrieval;
use rpc_ha::etcd::{EtcdCoordinator, LocalEtcd};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::time::Instant;

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        [] => drive().await,
        ["rm", name, etcd, ttl] => {
            resource_manager(name, etcd, Duration::from_secs(ttl.parse()?)).await
        }
        ["te", name, etcd] => task_executor(name, etcd, Duration::from_millis(200)).await,
        _ => Err(
            "usage: cluster (runs everything), or cluster rm NAME ETCD TTL | te NAME ETCD".into(),
        ),
    }
}

/// One line a role printed, with when it arrived.
#[derive(Clone)]
struct Line {
    role: String,
    words: Vec<String>,
    at: Instant,
}

/// Runs `role` of this same program, forwarding its `EVENT` lines.
fn spawn(role: &[&str], lines: &mpsc::UnboundedSender<Line>) -> Result<Child, Error> {
    let mut child = Command::new(std::env::current_exe()?)
        .args(role)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let (name, lines) = (role[1].to_owned(), lines.clone());
    tokio::spawn(async move {
        let mut reader = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            if let Some(event) = line.strip_prefix("EVENT ") {
                println!("[{name}] {event}");
                let words = event.split_whitespace().map(str::to_owned).collect();
                let _ = lines.send(Line {
                    role: name.clone(),
                    words,
                    at: Instant::now(),
                });
            }
        }
    });
    Ok(child)
}

/// Waits (up to 60 s) for a line `matches` accepts.
async fn wait_for(
    lines: &mut mpsc::UnboundedReceiver<Line>,
    what: &str,
    matches: impl Fn(&Line) -> bool,
) -> Result<Line, Error> {
    let found = async {
        while let Some(line) = lines.recv().await {
            if matches(&line) {
                return Some(line);
            }
        }
        None
    };
    match tokio::time::timeout(Duration::from_secs(60), found).await {
        Ok(Some(line)) => Ok(line),
        _ => Err(format!("gave up waiting for {what}").into()),
    }
}

async fn drive() -> Result<(), Error> {
    if !LocalEtcd::available() {
        return Err(
            "this example needs the `etcd` binary (Debian: apt install etcd-server)".into(),
        );
    }
    let ttl: u64 = match std::env::var("CLUSTER_TTL_SECS") {
        Ok(ttl) => ttl.parse()?,
        Err(_) => 2,
    };
    let etcd = LocalEtcd::start().await?;
    let at = etcd.client_address().to_owned();
    println!("etcd at {at}; lease TTL {ttl} s");
    let (sender, mut lines) = mpsc::unbounded_channel();
    let ttl_arg = ttl.to_string();
    let mut managers = vec![
        ("rm-a", spawn(&["rm", "rm-a", &at, &ttl_arg], &sender)?),
        ("rm-b", spawn(&["rm", "rm-b", &at, &ttl_arg], &sender)?),
    ];
    let _executors = [
        spawn(&["te", "te-1", &at], &sender)?,
        spawn(&["te", "te-2", &at], &sender)?,
    ];

    // Who leads, and both executors registered with it under its token. The processes' lines
    // arrive in any order: an executor may report its registration before the leader reports
    // its election.
    let mut leading: Option<Line> = None;
    let mut registrations: Vec<(String, String)> = Vec::new();
    let first = loop {
        let line = wait_for(&mut lines, "a leader with both executors registered", |l| {
            l.words[0] == "LEADER" || l.words[0] == "REGISTERED"
        })
        .await?;
        if line.words[0] == "LEADER" {
            leading = Some(line);
        } else {
            registrations.push((line.role.clone(), line.words[3].clone()));
        }
        if let Some(leader) = &leading {
            let token = &leader.words[2];
            let registered = |executor: &str| {
                registrations
                    .iter()
                    .any(|(role, with)| role == executor && with == token)
            };
            if registered("te-1") && registered("te-2") {
                break leader.clone();
            }
        }
    };
    let (leader, old_token) = (first.role.clone(), first.words[2].clone());

    println!("killing the leader {leader} (SIGKILL)");
    let index = managers
        .iter()
        .position(|(name, _)| *name == leader)
        .ok_or("the leader is not one of ours")?;
    let (_, mut killed) = managers.swap_remove(index);
    let when = Instant::now();
    killed.kill().await?;

    let second = wait_for(&mut lines, "a new leader", |l| l.words[0] == "LEADER").await?;
    let new_token = second.words[2].clone();
    println!(
        "{} leads after {:?}, with a new token",
        second.role,
        second.at - when
    );
    let registered = wait_for(&mut lines, "an executor at the new leader", |l| {
        l.words[0] == "REGISTERED" && l.words[3] == new_token
    })
    .await?;
    let failover = registered.at - when;
    println!("failover: {failover:?} (leader killed -> first successful call to the new leader)");

    // A message from the deposed leader's time: the old token, to the new leader.
    let coordinator = Arc::new(EtcdCoordinator::connect(&[&at], Duration::from_secs(ttl)).await?);
    let retrieval = LeaderRetrieval::start(coordinator, ELECTION);
    let mut leaders = retrieval.subscribe();
    let info = leaders
        .wait_for(|l| l.as_ref().is_some_and(|l| l.token.to_string() == new_token))
        .await?
        .clone()
        .ok_or("no leader")?;
    let stale_token: FencingId = old_token.parse()?;
    let client = rpc_netty::client();
    let stale: ResourceManagerGatewayClient = client
        .connect_fenced(&info.address, &info.endpoint, stale_token)
        .await?;
    let rejected = match stale.register_task_executor("impostor".into()).await {
        Err(error @ rpc_core::RpcError::FencingTokenMismatch { .. }) => {
            println!("a call with the deposed leader's token was rejected: {error}");
            true
        }
        other => {
            println!("a call with the deposed leader's token was NOT rejected: {other:?}");
            false
        }
    };
    println!(
        "RESULT failover_ms={} ttl_ms={} stale_rejected={rejected}",
        failover.as_millis(),
        ttl * 1000
    );
    client.shutdown().await?;
    Ok(())
}
