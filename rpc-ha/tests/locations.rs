//! Actor-id addressing: an actor registered in a location service, called through a proxy
//! that follows it while it migrates between two servers under load. Run on the in-process
//! locations and, with the `etcd` feature, on a real etcd server.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rpc_core::{RpcContext, RpcEndpoint, RpcError, RpcService, rpc_gateway};
use rpc_ha::{LocationService, Locations, MemoryLocations};
use tokio::sync::{mpsc, oneshot};

/// What the migrating actor serves.
#[rpc_gateway]
pub trait Unit {
    /// Records `sequence` and returns how many calls this actor has applied, wherever it ran.
    async fn apply(&mut self, sequence: u64) -> u64;
}

/// The actor: its state moves with it.
struct Counter {
    applied: Vec<u64>,
    /// Where its state goes when it stops (handed to its next host).
    hand_over: Option<oneshot::Sender<Vec<u64>>>,
}

impl RpcEndpoint for Counter {
    rpc_core::serves!(Unit);

    async fn on_stop(&mut self) -> Result<(), rpc_core::BoxError> {
        // Every call queued before the stop has run: the state is final.
        if let Some(hand_over) = self.hand_over.take() {
            let _ = hand_over.send(std::mem::take(&mut self.applied));
        }
        Ok(())
    }
}

impl Unit for Counter {
    async fn apply(&mut self, sequence: u64) -> u64 {
        self.applied.push(sequence);
        self.applied.len() as u64
    }
}

const ACTOR: &str = "unit-1";

/// A Gate's login, for the players of the relayed run.
#[rpc_gateway(outer)]
pub trait Login {
    async fn login(&mut self, player: String) -> bool;
}

struct Logins;

impl RpcEndpoint for Logins {
    rpc_core::serves!(Login);
}

impl Login for Logins {
    async fn login(&mut self, player: String) -> bool {
        let context = rpc_core::CallContext::current();
        context
            .caller()
            .peer()
            .is_some_and(|peer| peer.open_session(player).is_ok())
    }
}

/// How the callers reach the actor.
#[derive(Clone, Copy, Debug)]
enum Through {
    /// A proxy following it through the location service.
    Follower,
    /// As players through a Gate's relay, whose router looks the actor up.
    Relay,
}

/// A Gate (in this process) whose relay `unit` routes every player to the actor.
async fn gate(locations: &Locations) -> RpcService {
    let gate = rpc_netty::NettyBuilder::new()
        .outer("127.0.0.1:0")
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    gate.start_endpoint("login", Logins).await.unwrap();
    gate.start_relay("unit", locations.router(|_| ACTOR.to_owned()))
        .unwrap();
    gate
}

/// A caller's proxy to the actor, and the service it calls from.
async fn caller(
    through: Through,
    locations: &Locations,
    gate: Option<std::net::SocketAddr>,
    name: String,
) -> (RpcService, UnitClient) {
    let service = rpc_netty::client();
    let unit = match (through, gate) {
        (Through::Relay, Some(gate)) => {
            let login: LoginClient = service.connect(gate, "login").await.unwrap();
            assert!(login.login(name).await.unwrap(), "logged in");
            service.connect(gate, "unit").await.unwrap()
        }
        _ => locations.follow(&service, &ACTOR),
    };
    (service, unit)
}

/// Starts the actor on `host` with `applied`, and registers it there.
async fn host(
    locations: &Locations,
    host: &RpcService,
    applied: Vec<u64>,
) -> (RpcContext<Counter>, oneshot::Receiver<Vec<u64>>) {
    let (hand_over, handed) = oneshot::channel();
    let counter = Counter {
        applied,
        hand_over: Some(hand_over),
    };
    let context = host.start_endpoint(ACTOR, counter).await.unwrap();
    locations
        .register(
            &ACTOR,
            host.local_address().unwrap(),
            ACTOR,
            Some(context.incarnation()),
        )
        .await
        .unwrap();
    (context, handed)
}

/// 4 callers call the actor (through following proxies, or as players through a Gate's
/// relay) while it moves between two servers
/// 100 times; every call succeeds, and the actor's final state holds each exactly once.
async fn migrations_under_load(store: Arc<dyn LocationService>, through: Through) {
    let locations = Locations::new(store);
    let gate = match through {
        Through::Relay => Some(gate(&locations).await),
        Through::Follower => None,
    };
    let gate_address = gate.as_ref().map(|gate| gate.outer_address().unwrap());
    let servers = [
        rpc_netty::bind("127.0.0.1:0").await.unwrap(),
        rpc_netty::bind("127.0.0.1:0").await.unwrap(),
    ];
    let (mut context, mut handed) = host(&locations, &servers[0], Vec::new()).await;

    let moving = Arc::new(AtomicBool::new(true));
    // How many calls have succeeded: each move waits for a few more, so that every move
    // happens with calls going on.
    let (succeeded, progress) = tokio::sync::watch::channel(0u64);
    let succeeded = Arc::new(succeeded);
    let (done, mut finished) = mpsc::unbounded_channel();
    let caller_of = caller;
    let callers: Vec<_> = (0..4u64)
        .map(|caller| {
            let locations = locations.clone();
            let moving = Arc::clone(&moving);
            let done = done.clone();
            let succeeded = Arc::clone(&succeeded);
            tokio::spawn(async move {
                let name = format!("player-{caller}");
                let (_service, unit) = caller_of(through, &locations, gate_address, name).await;
                let mut sent = Vec::new();
                let mut sequence = caller * 1_000_000;
                // At least 50 calls each, and on until the moves are over.
                while moving.load(Ordering::Acquire) || sent.len() < 50 {
                    sequence += 1;
                    let applied: Result<u64, RpcError> = unit.apply(sequence).await;
                    applied.unwrap_or_else(|error| panic!("call {sequence} failed: {error}"));
                    sent.push(sequence);
                    succeeded.send_modify(|n| *n += 1);
                }
                let _ = done.send(());
                sent
            })
        })
        .collect();
    drop(done);

    let mut progress = progress;
    for migration in 0..100u64 {
        progress
            .wait_for(|n| *n >= 4 * (migration + 1))
            .await
            .expect("the callers run");
        let next = &servers[(migration + 1) as usize % 2];
        context.stop();
        let applied = tokio::time::timeout(Duration::from_secs(10), handed)
            .await
            .expect("the actor stopped within 10 s")
            .expect("the actor handed its state over");
        context.terminated().await;
        (context, handed) = host(&locations, next, applied).await;
    }
    moving.store(false, Ordering::Release);
    while finished.recv().await.is_some() {}

    let mut sent = BTreeSet::new();
    let mut count = 0;
    for caller in callers {
        let calls = caller.await.expect("a caller panicked");
        count += calls.len();
        sent.extend(calls);
    }
    context.stop();
    let applied = handed.await.expect("the final state");
    assert_eq!(
        applied.len(),
        count,
        "every call applied once: none lost, none twice"
    );
    assert_eq!(applied.iter().copied().collect::<BTreeSet<_>>(), sent);
    assert!(count >= 400, "{count} calls");
    println!("{count} calls ({through:?}) across 100 migrations, each applied once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_following_proxy_survives_a_hundred_migrations_in_memory() {
    common::init_tracing();
    tokio::time::timeout(
        Duration::from_secs(120),
        migrations_under_load(Arc::new(MemoryLocations::default()), Through::Follower),
    )
    .await
    .expect("finished within 120 s");
}

#[cfg(feature = "etcd")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_following_proxy_survives_a_hundred_migrations_on_etcd() {
    if !common::etcd_available("a_following_proxy_survives_a_hundred_migrations_on_etcd") {
        return;
    }
    common::init_tracing();
    let etcd = rpc_ha::etcd::LocalEtcd::start().await.expect("start etcd");
    let store = rpc_ha::etcd::EtcdLocations::connect(&[etcd.client_address()], "/test/units/")
        .await
        .expect("connect to etcd");
    tokio::time::timeout(
        Duration::from_secs(120),
        migrations_under_load(Arc::new(store), Through::Follower),
    )
    .await
    .expect("finished within 120 s");
    // The same through a Gate's relay, which looks the actor up on etcd.
    let store = rpc_ha::etcd::EtcdLocations::connect(&[etcd.client_address()], "/test/relayed/")
        .await
        .expect("connect to etcd");
    tokio::time::timeout(
        Duration::from_secs(120),
        migrations_under_load(Arc::new(store), Through::Relay),
    )
    .await
    .expect("finished within 120 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn players_through_a_relay_survive_a_hundred_migrations_in_memory() {
    common::init_tracing();
    tokio::time::timeout(
        Duration::from_secs(120),
        migrations_under_load(Arc::new(MemoryLocations::default()), Through::Relay),
    )
    .await
    .expect("finished within 120 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_actor_is_not_found() {
    let locations = Locations::new(Arc::new(MemoryLocations::default()));
    let caller = rpc_netty::client();
    let unit: UnitClient = locations.follow(&caller, &"nobody");
    let outcome = tokio::time::timeout(Duration::from_secs(30), unit.apply(1))
        .await
        .expect("answered within 30 s");
    match outcome {
        Err(RpcError::EndpointNotFound { endpoint, .. }) => assert_eq!(endpoint, "nobody"),
        other => panic!("expected EndpointNotFound, got {other:?}"),
    }
}
