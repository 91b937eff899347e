//! The real transport on a simulated network (turmoil, `NettyBuilder::simulated`): hosts,
//! links that are partitioned and repaired, a host that crashes, all under a seed. The same
//! seed gives the same run.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rpc_core::{FencedEndpoint, FencingId, RpcEndpoint, RpcError, rpc_gateway};
use rpc_ha::memory::MemoryCoordinator;
use rpc_ha::{Coordinator, LeaderElection, LeaderGateway, LeaderRetrieval, LeadershipEvent};
use rpc_netty::NettyBuilder;

#[rpc_gateway]
pub trait Counter {
    async fn next(&mut self) -> u64;
}

#[derive(Default)]
struct Count(u64);

impl RpcEndpoint for Count {
    rpc_core::serves!(Counter);
}

impl Counter for Count {
    async fn next(&mut self) -> u64 {
        self.0 += 1;
        self.0
    }
}

/// What happened, with the simulated time it happened at.
type Log = Arc<Mutex<Vec<String>>>;

fn note(log: &Log, what: impl Into<String>) {
    let at = turmoil::elapsed().as_millis();
    log.lock()
        .unwrap()
        .push(format!("{at:>6} ms {}", what.into()));
}

/// A server host with a counter, and a client host that calls it, loses it to a partition,
/// and reaches it again once the link is repaired; the run's log.
fn partition_and_repair(seed: u64) -> Vec<String> {
    let mut sim = turmoil::Builder::new()
        .rng_seed(seed)
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(20))
        .simulation_duration(Duration::from_secs(120))
        .build();
    sim.host("server", || async {
        let server = NettyBuilder::new().simulated().bind("0.0.0.0:7000").await?;
        server.start_endpoint("counter", Count::default()).await?;
        std::future::pending::<()>().await;
        Ok(())
    });
    let log: Log = Arc::default();
    let client_log = Arc::clone(&log);
    sim.client("client", async move {
        let log = client_log;
        let client = NettyBuilder::new()
            .simulated()
            .keepalive(Duration::from_secs(1), Duration::from_secs(3))
            .client();
        let counter: CounterClient = client.connect("server:7000", "counter").await?;
        for _ in 0..3 {
            let n = counter.next().await?;
            note(&log, format!("next = {n}"));
        }
        turmoil::partition("client", "server");
        note(&log, "partitioned");
        let cut = counter.next().with_timeout(Duration::from_secs(5)).await;
        note(&log, format!("during the partition: {}", outcome(&cut)));
        assert!(cut.is_err(), "a call across a partition cannot succeed");
        turmoil::repair("client", "server");
        note(&log, "repaired");
        // The dead connection is noticed (keep-alive), and the next call reconnects.
        let mut tries = 0;
        let n = loop {
            tries += 1;
            match counter.next().with_timeout(Duration::from_secs(5)).await {
                Ok(n) => break n,
                Err(error) if tries < 10 => note(&log, format!("retry: {}", error.kind())),
                Err(error) => return Err(error.into()),
            }
        };
        note(&log, format!("after the repair: next = {n}"));
        Ok(())
    });
    sim.run().expect("the simulation ran to the end");
    log.lock().unwrap().clone()
}

fn outcome<T: std::fmt::Debug>(result: &Result<T, RpcError>) -> String {
    match result {
        Ok(value) => format!("{value:?}"),
        Err(error) => error.kind().to_owned(),
    }
}

#[test]
fn a_partition_fails_calls_and_a_repair_lets_them_through_again() {
    let log = partition_and_repair(1);
    assert!(
        log.iter().any(|line| line.ends_with("next = 3")),
        "{log:#?}"
    );
    assert!(
        log.iter()
            .any(|line| line.contains("after the repair: next = ")),
        "{log:#?}"
    );
}

#[test]
fn the_same_seed_gives_the_same_run() {
    let first = partition_and_repair(7);
    let second = partition_and_repair(7);
    assert_eq!(first, second);
}

#[test]
fn twenty_seeds_all_pass() {
    for seed in 0..20 {
        let log = partition_and_repair(seed);
        assert!(
            log.iter().any(|line| line.contains("after the repair")),
            "seed {seed}: {log:#?}"
        );
    }
}

/// The resource manager the task executor registers with: answers with its name.
#[rpc_gateway(fenced)]
pub trait ResourceManager {
    async fn register(&mut self, executor: String) -> String;
}

struct Rm(&'static str);

impl FencedEndpoint for Rm {
    type Token = FencingId;
}

impl RpcEndpoint for Rm {
    rpc_core::serves!(ResourceManager);
}

impl ResourceManager for Rm {
    async fn register(&mut self, _executor: String) -> String {
        self.0.to_owned()
    }
}

/// Flink's failover on the simulator: two resource managers contend (in-process leader
/// election); a task executor follows the leader. The leader is partitioned from the task
/// executor and loses its leadership (as its lease would when cut off from the coordination
/// service); the standby wins with a new token, the task executor follows it, and calls with
/// the deposed leader's token are refused by both, the new leader and the old one once the
/// link is repaired. The run's log.
fn failover(seed: u64) -> Vec<String> {
    let mut sim = turmoil::Builder::new()
        .rng_seed(seed)
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(20))
        .simulation_duration(Duration::from_secs(120))
        .build();
    let coordinator = Arc::new(MemoryCoordinator::default());
    let log: Log = Arc::default();
    for name in ["rm-a", "rm-b"] {
        let (coordinator, log) = (Arc::clone(&coordinator), Arc::clone(&log));
        sim.host(name, move || {
            let coordinator: Arc<dyn Coordinator> = coordinator.clone();
            let log = Arc::clone(&log);
            async move {
                let service = NettyBuilder::new().simulated().bind("0.0.0.0:6123").await?;
                let rm = service.start_endpoint("rm", Rm(name)).await?;
                let mut election =
                    LeaderElection::start(coordinator, "rm", format!("{name}:6123"), "rm");
                while let Some(event) = election.apply(&rm).await {
                    match event {
                        LeadershipEvent::Granted(_) => note(&log, format!("{name} leads")),
                        LeadershipEvent::Revoked(_) => note(&log, format!("{name} deposed")),
                    }
                }
                Ok(())
            }
        });
    }
    let te_log = Arc::clone(&log);
    let te_coordinator = Arc::clone(&coordinator);
    sim.client("te-1", async move {
        let (log, coordinator) = (te_log, te_coordinator);
        let service = NettyBuilder::new()
            .simulated()
            .keepalive(Duration::from_secs(1), Duration::from_secs(3))
            .client();
        let retrieval = LeaderRetrieval::start(coordinator.clone(), "rm");
        let leaders =
            LeaderGateway::<ResourceManagerClient>::new(service.clone(), retrieval.subscribe());
        let mut deposed: Option<(String, FencingId)> = None;
        loop {
            let rm = leaders.get().await?;
            match rm
                .register("te-1".into())
                .with_timeout(Duration::from_secs(2))
                .await
            {
                Ok(leader) => {
                    note(&log, format!("te-1 registered with {leader}"));
                    match &deposed {
                        None => {
                            let info = leaders.leader().ok_or("a leader")?;
                            deposed = Some((info.address.clone(), info.token));
                            turmoil::partition("te-1", leader.as_str());
                            coordinator.expire("rm");
                            note(&log, format!("{leader} partitioned and its lease expired"));
                        }
                        Some((old, _)) if !old.starts_with(&leader) => break,
                        Some(_) => {}
                    }
                }
                Err(error) => note(&log, format!("te-1: {}", error.kind())),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (old, token) = deposed.ok_or("a first leader")?;
        let new = leaders.leader().ok_or("a new leader")?;
        assert_ne!(new.token, token, "a new leadership, a new token");
        // The deposed leader's token, at the new leader and (repaired) at the old one.
        let host = |address: &str| address.split(':').next().unwrap_or_default().to_owned();
        turmoil::repair("te-1", host(&old).as_str());
        for address in [new.address.clone(), old.clone()] {
            let stale: ResourceManagerClient = service
                .connect_fenced(address.as_str(), "rm", token)
                .await?;
            let refused = stale.register("te-1".into()).await;
            note(
                &log,
                format!(
                    "the deposed token at {}: {}",
                    host(&address),
                    outcome(&refused)
                ),
            );
            assert!(
                matches!(refused, Err(RpcError::FencingTokenMismatch { .. })),
                "{address}: {refused:?}"
            );
        }
        Ok(())
    });
    sim.run().expect("the simulation ran to the end");
    log.lock().unwrap().clone()
}

#[test]
fn a_partitioned_leader_is_replaced_and_its_token_refused_under_a_hundred_seeds() {
    for seed in 0..100 {
        let log = failover(seed);
        assert!(
            log.iter()
                .any(|line| line.ends_with("te-1 registered with rm-b")),
            "seed {seed}: {log:#?}"
        );
    }
}

#[test]
fn a_failover_replayed_with_its_seed_gives_the_identical_event_log() {
    let first = failover(42);
    assert_eq!(first, failover(42));
    assert!(
        first.iter().any(|line| line.contains("rm-a deposed")),
        "{first:#?}"
    );
}

/// What a slow call does: waits `millis` of simulated time, then answers.
#[rpc_gateway]
pub trait Slow {
    async fn wait(&mut self, millis: u64) -> u64;
}

struct Sleeper;

impl RpcEndpoint for Sleeper {
    rpc_core::serves!(Slow, Counter);
}

impl Slow for Sleeper {
    async fn wait(&mut self, millis: u64) -> u64 {
        tokio::time::sleep(Duration::from_millis(millis)).await;
        millis
    }
}

impl Counter for Sleeper {
    async fn next(&mut self) -> u64 {
        1
    }
}

/// A simulation with the `Sleeper` on host `server` (a new incarnation each time the host
/// boots) and keep-alive at 1 s / 3 s on both sides.
fn sleeper_sim<'a>(seed: u64) -> turmoil::Sim<'a> {
    let mut sim = turmoil::Builder::new()
        .rng_seed(seed)
        .simulation_duration(Duration::from_secs(120))
        .build();
    sim.host("server", || async {
        let server = NettyBuilder::new()
            .simulated()
            .keepalive(Duration::from_secs(1), Duration::from_secs(3))
            .bind("0.0.0.0:7000")
            .await?;
        server.start_endpoint("sleeper", Sleeper).await?;
        std::future::pending::<()>().await;
        Ok(())
    });
    sim
}

fn client() -> rpc_core::RpcService {
    NettyBuilder::new()
        .simulated()
        .keepalive(Duration::from_secs(1), Duration::from_secs(3))
        .default_timeout(Duration::from_secs(60))
        .client()
}

#[test]
fn a_link_cut_mid_call_fails_the_call_within_the_keepalive_timeout() {
    let mut sim = sleeper_sim(1);
    sim.client("client", async {
        let slow: SlowClient = client().connect("server:7000", "sleeper").await?;
        let call = tokio::spawn(slow.wait(30_000).into_future());
        tokio::time::sleep(Duration::from_millis(100)).await;
        turmoil::partition("client", "server");
        let started = tokio::time::Instant::now();
        let outcome = call.await?;
        assert!(
            matches!(outcome, Err(RpcError::Disconnected { .. })),
            "{outcome:?}"
        );
        let waited = started.elapsed();
        assert!(waited <= Duration::from_secs(5), "noticed after {waited:?}");
        Ok(())
    });
    sim.run().expect("ran");
}

#[test]
fn held_messages_expire_the_keepalive_and_released_ones_do_not_revive_it() {
    let mut sim = sleeper_sim(2);
    sim.client("client", async {
        let service = client();
        let counter: CounterClient = service.connect("server:7000", "sleeper").await?;
        assert_eq!(counter.next().await?, 1);
        turmoil::hold("client", "server");
        let held = counter.next().await;
        assert!(
            matches!(held, Err(RpcError::Disconnected { .. })),
            "{held:?}"
        );
        turmoil::release("client", "server");
        // A new connection, the same endpoint.
        assert_eq!(counter.next().await?, 1);
        Ok(())
    });
    sim.run().expect("ran");
}

#[test]
fn a_crashed_server_fails_the_call_and_a_restarted_one_is_a_new_incarnation() {
    let mut sim = sleeper_sim(3);
    let (in_call, mut calling) = tokio::sync::watch::channel(false);
    let (restarted, ready) = tokio::sync::watch::channel(false);
    sim.client("client", async move {
        let service = client();
        let slow: SlowClient = service.connect("server:7000", "sleeper").await?;
        let call = tokio::spawn(slow.wait(30_000).into_future());
        in_call.send_replace(true);
        let outcome = call.await?;
        assert!(
            matches!(outcome, Err(RpcError::Disconnected { .. })),
            "{outcome:?}"
        );
        let mut ready = ready;
        ready.wait_for(|up| *up).await?;
        // The old proxy was bound to the crashed run: it does not silently reach the new one.
        let stale = slow.wait(1).await;
        assert!(
            matches!(stale, Err(RpcError::EndpointStopped { .. })),
            "{stale:?}"
        );
        let fresh: SlowClient = service.connect("server:7000", "sleeper").await?;
        assert_eq!(fresh.wait(1).await?, 1);
        Ok(())
    });
    // Step until the call is in flight, crash the server, then bring it back.
    while !*calling.borrow_and_update() {
        sim.step().expect("step");
    }
    for _ in 0..100 {
        sim.step().expect("step");
    }
    sim.crash("server");
    for _ in 0..5_000 {
        sim.step().expect("step");
    }
    sim.bounce("server");
    restarted.send_replace(true);
    sim.run().expect("ran");
}

/// A fake on a simulated host records the calls the code under test made over the
/// simulated network, decoded.
#[test]
fn a_fake_on_a_simulated_host_records_what_it_was_sent() {
    let mut sim = turmoil::Builder::new().rng_seed(9).build();
    let host: Arc<Mutex<Option<rpc_core::RpcService>>> = Arc::default();
    let slot = Arc::clone(&host);
    sim.host("fake", move || {
        let slot = Arc::clone(&slot);
        async move {
            let fake = NettyBuilder::new()
                .simulated()
                .record_calls(true)
                .bind("0.0.0.0:7000")
                .await?;
            fake.start_endpoint("sleeper", Sleeper).await?;
            *slot.lock().unwrap() = Some(fake);
            std::future::pending::<()>().await;
            Ok(())
        }
    });
    sim.client("code-under-test", async {
        let service = client();
        let slow: SlowClient = service.connect("fake:7000", "sleeper").await?;
        for millis in [3, 1, 2] {
            slow.wait(millis).await?;
        }
        Ok(())
    });
    sim.run().expect("ran");
    let fake = host.lock().unwrap().clone().expect("the fake started");
    let waits: Vec<u64> = rpc_core::testing::calls::<SlowClient>(&fake, "sleeper")
        .into_iter()
        .map(|call| match call.invocation {
            SlowInvocation::wait { millis } => millis,
        })
        .collect();
    assert_eq!(waits, [3, 1, 2]);
}
/// A caller's timeout runs on the simulation's clock: a 1 s timeout ends a call to a handler
/// that takes 30 s after one simulated second.
#[test]
fn a_timeout_counts_simulated_time() {
    let mut sim = sleeper_sim(4);
    sim.client("client", async {
        let slow: SlowClient = client().connect("server:7000", "sleeper").await?;
        let started = tokio::time::Instant::now();
        let outcome = slow.wait(30_000).with_timeout(Duration::from_secs(1)).await;
        assert!(
            matches!(outcome, Err(RpcError::Timeout { .. })),
            "{outcome:?}"
        );
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_secs(1) && waited < Duration::from_secs(2),
            "{waited:?}"
        );
        Ok(())
    });
    sim.run().expect("ran");
}
