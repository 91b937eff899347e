//! Flink-style failover in one process, on the in-process coordinator and real TCP services:
//! two resource managers contend, task executors call whoever leads through a
//! `LeaderGateway`, the leader's session expires, the standby takes over with a new token,
//! callers follow, and the deposed leader (still running) refuses calls with its old token.

mod common;

use std::sync::Arc;
use std::time::Duration;

use rpc_core::{
    FencedEndpoint, FencingId, RpcContext, RpcEndpoint, RpcError, RpcService, rpc_gateway,
};
use rpc_ha::memory::MemoryCoordinator;
use rpc_ha::{LeaderElection, LeaderGateway, LeaderRetrieval, LeadershipEvent};

#[rpc_gateway(fenced)]
pub trait ResourceManager {
    async fn register(&mut self, executor: String) -> String;
}

struct Rm {
    name: &'static str,
}

impl RpcEndpoint for Rm {
    rpc_core::serves!(ResourceManager);
}

impl FencedEndpoint for Rm {
    type Token = FencingId;
}

impl ResourceManager for Rm {
    async fn register(&mut self, executor: String) -> String {
        format!("{executor} registered with {}", self.name)
    }
}

/// A resource manager's service, its endpoint, and its campaign applied to the endpoint.
async fn resource_manager(
    coordinator: &Arc<MemoryCoordinator>,
    name: &'static str,
) -> (
    RpcService,
    RpcContext<Rm>,
    tokio::sync::mpsc::UnboundedReceiver<LeadershipEvent>,
) {
    let service = rpc_netty::bind("127.0.0.1:0").await.unwrap();
    let ctx = service.start_endpoint("rm", Rm { name }).await.unwrap();
    let address = service.local_address().unwrap().to_string();
    let mut election = LeaderElection::start(coordinator.clone(), "rm", address, "rm");
    let (events, seen) = tokio::sync::mpsc::unbounded_channel();
    let applied = ctx.clone();
    tokio::spawn(async move {
        while let Some(event) = election.apply(&applied).await {
            let _ = events.send(event);
        }
    });
    (service, ctx, seen)
}

async fn next(seen: &mut tokio::sync::mpsc::UnboundedReceiver<LeadershipEvent>) -> LeadershipEvent {
    tokio::time::timeout(Duration::from_secs(10), seen.recv())
        .await
        .expect("a leadership event")
        .expect("still campaigning")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_follow_the_leader_and_the_deposed_one_refuses_its_old_token() {
    common::init_tracing();
    let coordinator = Arc::new(MemoryCoordinator::default());
    let (one, one_ctx, mut one_events) = resource_manager(&coordinator, "one").await;
    let LeadershipEvent::Granted(first) = next(&mut one_events).await else {
        panic!("the first resource manager leads");
    };
    assert_eq!(
        one_ctx.fencing_token(),
        Some(first.token),
        "applied to the endpoint"
    );
    let (two, two_ctx, mut two_events) = resource_manager(&coordinator, "two").await;

    let executor = rpc_netty::client();
    let retrieval = LeaderRetrieval::start(coordinator.clone(), "rm");
    let rm: LeaderGateway<ResourceManagerClient> =
        LeaderGateway::new(executor.clone(), retrieval.subscribe());
    let old = rm.get().await.unwrap();
    assert_eq!(
        old.register("te-1".into()).await.unwrap(),
        "te-1 registered with one"
    );

    // The leader's session expires: it is deposed but keeps running.
    coordinator.expire("rm");
    assert!(matches!(
        next(&mut one_events).await,
        LeadershipEvent::Revoked(_)
    ));
    assert_eq!(one_ctx.fencing_token(), None);
    let LeadershipEvent::Granted(second) = next(&mut two_events).await else {
        panic!("the second resource manager leads");
    };
    assert_eq!(two_ctx.fencing_token(), Some(second.token));

    // A call with the old token to the deposed leader is refused before its handler.
    match old.register("te-2".into()).await {
        Err(RpcError::FencingTokenMismatch { expected: None, .. }) => {}
        other => panic!("expected FencingTokenMismatch, got {other:?}"),
    }
    // Once retrieval has seen the new leader, the gateway follows it, with its token.
    let mut leaders = retrieval.subscribe();
    tokio::time::timeout(
        Duration::from_secs(10),
        leaders.wait_for(|leader| leader.as_ref() == Some(&second)),
    )
    .await
    .expect("retrieval sees the new leader")
    .expect("retrieval runs");
    let followed = rm.get().await.unwrap();
    assert_eq!(followed.fencing_token(), Some(&second.token));
    assert_eq!(
        followed.register("te-2".into()).await.unwrap(),
        "te-2 registered with two"
    );
    // The deposed leader's old token is refused by the new leader too.
    let stale = followed.with_fencing_token(first.token);
    assert!(matches!(
        stale.register("te-3".into()).await,
        Err(RpcError::FencingTokenMismatch { .. })
    ));
    executor.shutdown().await.unwrap();
    one.shutdown().await.unwrap();
    two.shutdown().await.unwrap();
}
