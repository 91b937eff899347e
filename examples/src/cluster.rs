//! Flink's high-availability shape: resource managers contending for leadership on etcd,
//! task executors that register with whichever leads and heartbeat it, and fencing that
//! keeps a deposed leader from being obeyed.
//!
//! Each role runs in its own process (`cargo run -p rpc-examples --features etcd --example
//! cluster` starts them all); this module holds the gateway, the endpoint and the roles.
//! Roles report what happens as lines on standard output (`EVENT ...`), which the example's
//! driver reads.

use std::sync::Arc;
use std::time::Duration;

use rpc_core::{BoxError, FencedEndpoint, FencingId, RpcEndpoint, RpcError, rpc_gateway};
use rpc_ha::etcd::EtcdCoordinator;
use rpc_ha::{LeaderElection, LeaderGateway, LeaderRetrieval, LeadershipEvent};

/// The election the resource managers contend in.
pub const ELECTION: &str = "cluster/resource-manager";

/// The resource manager's gateway: fenced, so only the current leader's token is obeyed.
#[rpc_gateway(fenced)]
pub trait ResourceManagerGateway {
    /// A task executor joins; the answer names the resource manager that took it.
    async fn register_task_executor(&mut self, executor: String) -> String;
    /// A task executor is alive; false if it is not registered here (register again).
    async fn heartbeat(&mut self, executor: String) -> bool;
}

/// A resource manager: the task executors registered with it while it leads.
pub struct ResourceManager {
    name: String,
    executors: Vec<String>,
}

impl ResourceManager {
    /// A resource manager called `name`.
    pub fn new(name: impl Into<String>) -> Self {
        ResourceManager {
            name: name.into(),
            executors: Vec::new(),
        }
    }
}

impl RpcEndpoint for ResourceManager {
    rpc_core::serves!(ResourceManagerGateway);
}

impl FencedEndpoint for ResourceManager {
    type Token = FencingId;
}

impl ResourceManagerGateway for ResourceManager {
    async fn register_task_executor(&mut self, executor: String) -> String {
        if !self.executors.contains(&executor) {
            self.executors.push(executor);
        }
        self.name.clone()
    }

    async fn heartbeat(&mut self, executor: String) -> bool {
        self.executors.contains(&executor)
    }
}

/// Prints one event line for the driver (and for a person watching).
pub fn event(line: impl std::fmt::Display) {
    println!("EVENT {line}");
}

/// Runs a resource manager process: serves on loopback, campaigns on etcd at `etcd` with
/// lease `ttl`, and applies each leadership change to its fencing token. Runs until killed.
pub async fn resource_manager(name: &str, etcd: &str, ttl: Duration) -> Result<(), BoxError> {
    let service = rpc_netty::bind("127.0.0.1:0").await?;
    let ctx = service
        .start_endpoint("resource-manager", ResourceManager::new(name))
        .await?;
    let address = service.local_address()?.to_string();
    let coordinator = Arc::new(EtcdCoordinator::connect(&[etcd], ttl).await?);
    let mut election = LeaderElection::start(coordinator, ELECTION, address, "resource-manager");
    event(format!("STARTED {name}"));
    while let Some(change) = election.apply(&ctx).await {
        match change {
            LeadershipEvent::Granted(info) => event(format!("LEADER {name} {}", info.token)),
            LeadershipEvent::Revoked(reason) => event(format!("REVOKED {name} {reason}")),
        }
    }
    Ok(())
}

/// Runs a task executor process: follows the leader through etcd, registers with each new
/// one, and heartbeats every `every`. Runs until killed.
pub async fn task_executor(name: &str, etcd: &str, every: Duration) -> Result<(), BoxError> {
    let service = rpc_netty::client();
    let coordinator = Arc::new(EtcdCoordinator::connect(&[etcd], Duration::from_secs(2)).await?);
    let leaders = LeaderRetrieval::start(coordinator, ELECTION);
    let gateway: LeaderGateway<ResourceManagerGatewayClient> =
        LeaderGateway::new(service, leaders.subscribe());
    loop {
        let registered = async {
            let leader = gateway.get().await?;
            let taken_by = leader.register_task_executor(name.to_owned()).await?;
            let token = leader.fencing_token().copied();
            Ok::<_, RpcError>((leader, taken_by, token))
        };
        let (leader, taken_by, token) = match registered.await {
            Ok(registered) => registered,
            Err(error) => {
                // The leader changed or is unreachable: follow retrieval and try again.
                tracing::debug!("registering failed: {error}");
                tokio::time::sleep(every).await;
                continue;
            }
        };
        if let Some(token) = token {
            event(format!("REGISTERED {name} {taken_by} {token}"));
        }
        // Heartbeat until the leader stops answering or no longer knows this executor.
        loop {
            tokio::time::sleep(every).await;
            match leader.heartbeat(name.to_owned()).await {
                Ok(true) => {}
                Ok(false) => break,
                Err(error) => {
                    event(format!("LOST {name} {taken_by}: {error}"));
                    break;
                }
            }
        }
    }
}
