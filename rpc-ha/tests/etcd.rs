//! Leader election and retrieval against a real etcd server (started by the test, on
//! loopback). Needs the `etcd` feature (`protoc` to build) and the `etcd` binary:
//! `cargo test -p rpc-ha --features etcd`.

#![cfg(feature = "etcd")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{etcd_available, init_tracing};
use rpc_ha::etcd::{EtcdCoordinator, LocalEtcd};
use rpc_ha::{Coordinator, LeaderElection, LeaderInfo, LeaderRetrieval, LeadershipEvent};
use tokio::time::Instant;

/// The lease TTL of these tests' leaderships.
const TTL: Duration = Duration::from_secs(2);

async fn coordinator(etcd: &LocalEtcd) -> Arc<dyn Coordinator> {
    let connected = EtcdCoordinator::connect(&[etcd.client_address()], TTL)
        .await
        .expect("connect to etcd");
    Arc::new(connected)
}

async fn next(election: &mut LeaderElection) -> LeadershipEvent {
    tokio::time::timeout(Duration::from_secs(30), election.next())
        .await
        .expect("a leadership event within 30 s")
        .expect("still campaigning")
}

async fn granted(election: &mut LeaderElection) -> LeaderInfo {
    match next(election).await {
        LeadershipEvent::Granted(info) => info,
        other => panic!("expected the leadership, got {other:?}"),
    }
}

/// Waits until retrieval reports `expected`.
async fn retrieved(leaders: &mut LeaderRetrieval, expected: &LeaderInfo) {
    let seen = async {
        while leaders.current().as_ref() != Some(expected) {
            leaders.changed().await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), seen)
        .await
        .unwrap_or_else(|_| panic!("retrieval never reported {expected:?}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_takes_over_within_two_ttls_when_the_leader_vanishes() {
    if !etcd_available("a_standby_takes_over_within_two_ttls_when_the_leader_vanishes") {
        return;
    }
    init_tracing();
    let etcd = LocalEtcd::start().await.expect("start etcd");
    let mut first = LeaderElection::start(coordinator(&etcd).await, "rm", "10.0.0.1:1", "rm");
    let one = granted(&mut first).await;
    let mut second = LeaderElection::start(coordinator(&etcd).await, "rm", "10.0.0.2:1", "rm");
    let mut leaders = LeaderRetrieval::start(coordinator(&etcd).await, "rm");
    retrieved(&mut leaders, &one).await;

    // The leader vanishes without resigning (as a killed process: its lease runs out).
    let vanished = Instant::now();
    drop(first);
    let two = granted(&mut second).await;
    let failover = vanished.elapsed();
    eprintln!("failover after the leader vanished: {failover:?} (lease TTL {TTL:?})");
    assert_eq!(two.address, "10.0.0.2:1");
    assert_ne!(two.token, one.token, "a new leadership, a new token");
    assert!(
        failover < 2 * TTL,
        "failover took {failover:?}, more than two lease TTLs ({TTL:?} each)"
    );
    retrieved(&mut leaders, &two).await;
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resigning_leader_hands_over_at_once_and_campaigns_again() {
    if !etcd_available("a_resigning_leader_hands_over_at_once_and_campaigns_again") {
        return;
    }
    init_tracing();
    let etcd = LocalEtcd::start().await.expect("start etcd");
    let mut first = LeaderElection::start(coordinator(&etcd).await, "jm", "a:1", "jm");
    let one = granted(&mut first).await;
    let mut second = LeaderElection::start(coordinator(&etcd).await, "jm", "b:1", "jm");
    let mut leaders = LeaderRetrieval::start(coordinator(&etcd).await, "jm");
    retrieved(&mut leaders, &one).await;
    let resigned = Instant::now();
    first.stop().await;
    let two = granted(&mut second).await;
    assert!(
        resigned.elapsed() < TTL,
        "a resignation hands over without waiting for the lease"
    );
    retrieved(&mut leaders, &two).await;
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contenders_and_retrieval_recover_after_etcd_restarts() {
    if !etcd_available("contenders_and_retrieval_recover_after_etcd_restarts") {
        return;
    }
    init_tracing();
    let mut etcd = LocalEtcd::start().await.expect("start etcd");
    let mut first = LeaderElection::start(coordinator(&etcd).await, "rm", "a:1", "rm");
    let one = granted(&mut first).await;
    let mut second = LeaderElection::start(coordinator(&etcd).await, "rm", "b:1", "rm");
    let mut leaders = LeaderRetrieval::start(coordinator(&etcd).await, "rm");
    retrieved(&mut leaders, &one).await;

    etcd.restart().await.expect("restart etcd");

    // Whoever leads after the restart, retrieval reports it: either the first kept its
    // leadership (its lease survived the restart), or it lost it and someone won anew.
    let leader = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            tokio::select! {
                event = first.next() => match event {
                    Some(LeadershipEvent::Granted(info)) => return info,
                    Some(LeadershipEvent::Revoked(_)) => continue,
                    None => panic!("the first contender stopped"),
                },
                event = second.next() => match event {
                    Some(LeadershipEvent::Granted(info)) => return info,
                    Some(LeadershipEvent::Revoked(_)) => continue,
                    None => panic!("the second contender stopped"),
                },
                () = tokio::time::sleep(3 * TTL) => return one.clone(),
            }
        }
    })
    .await
    .expect("a leader after the restart");
    retrieved(&mut leaders, &leader).await;
    // And the election still works: the leader resigns, the other takes over.
    let (leading, mut other) = if leader.address == "a:1" {
        (first, second)
    } else {
        (second, first)
    };
    leading.stop().await;
    let next_leader = granted(&mut other).await;
    assert_ne!(next_leader.address, leader.address);
    retrieved(&mut leaders, &next_leader).await;
    other.stop().await;
}
