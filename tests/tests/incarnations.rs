//! Endpoint incarnations: a proxy is bound to the run of the endpoint it reached. After that
//! endpoint stops and another starts under the same name, the old proxy fails with
//! `EndpointStopped` in process, over the live connection, and after the connection was
//! closed and reopened; a new `connect` reaches the new endpoint.

mod common;

use std::time::Duration;

use rpc_core::{RpcContext, RpcEndpoint, RpcError, RpcService, rpc_gateway};
use rpc_netty::NettyBuilder;
use tokio::sync::mpsc;

#[rpc_gateway]
pub trait Counter {
    async fn next(&mut self) -> u64;
}

/// Counts from `start`, so that two runs answer differently.
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

/// Reports the server's connection events.
struct Watcher(mpsc::UnboundedSender<&'static str>);

#[rpc_gateway]
pub trait Idle {}

impl Idle for Watcher {}

impl RpcEndpoint for Watcher {
    rpc_core::serves!(Idle);

    fn on_connected(&mut self, _connection: &rpc_core::Connection) {
        let _ = self.0.send("connected");
    }

    fn on_disconnected(&mut self, _connection: &rpc_core::Connection) {
        let _ = self.0.send("disconnected");
    }
}

/// Stops endpoint `name` and starts a new one under the same name; both incarnations.
async fn restart(service: &RpcService, name: &str, old: RpcContext<Count>) -> RpcContext<Count> {
    service.stop_endpoint(name).await.unwrap();
    let new = service.start_endpoint(name, Count(100)).await.unwrap();
    assert_ne!(old.incarnation(), new.incarnation(), "a new run, a new id");
    new
}

/// A server running `counter` and a watcher of its connections, and a client whose unused
/// connections close quickly.
struct Watched {
    server: RpcService,
    first: RpcContext<Count>,
    address: String,
    seen: mpsc::UnboundedReceiver<&'static str>,
    client: RpcService,
}

async fn watched() -> Watched {
    common::init_tracing();
    let (events, seen) = mpsc::unbounded_channel();
    let server = rpc_netty::bind("127.0.0.1:0").await.unwrap();
    server
        .start_endpoint("watcher", Watcher(events))
        .await
        .unwrap();
    let first = server.start_endpoint("counter", Count(0)).await.unwrap();
    let address = server.local_address().unwrap().to_string();
    let client = NettyBuilder::new()
        .keepalive(Duration::from_millis(20), Duration::from_secs(10))
        .idle_timeout(Some(Duration::from_millis(100)))
        .client();
    Watched {
        server,
        first,
        address,
        seen,
        client,
    }
}

/// The next connection event the watcher saw, within a bound.
async fn next(seen: &mut mpsc::UnboundedReceiver<&'static str>) -> Option<&'static str> {
    tokio::time::timeout(Duration::from_secs(20), seen.recv())
        .await
        .expect("a connection event")
}

fn assert_stopped(result: Result<u64, RpcError>) {
    match result {
        Err(RpcError::EndpointStopped { endpoint }) => assert_eq!(endpoint, "counter"),
        other => panic!("expected EndpointStopped, got {other:?}"),
    }
}

#[tokio::test]
async fn a_local_proxy_stays_bound_to_the_run_it_reached() {
    common::init_tracing();
    let service = RpcService::new();
    let first = service.start_endpoint("counter", Count(0)).await.unwrap();
    let old: CounterClient = service.gateway("counter").unwrap();
    assert_eq!(old.next().await.unwrap(), 1);
    restart(&service, "counter", first).await;
    assert_stopped(old.next().await);
    let new: CounterClient = service.gateway("counter").unwrap();
    assert_eq!(new.next().await.unwrap(), 101);
    assert_stopped(old.next().await);
    service.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_remote_proxy_stays_bound_over_its_live_connection() {
    common::init_tracing();
    let server = rpc_netty::bind("127.0.0.1:0").await.unwrap();
    let first = server.start_endpoint("counter", Count(0)).await.unwrap();
    let address = server.local_address().unwrap().to_string();
    let client = rpc_netty::client();
    let old: CounterClient = client.connect(&address, "counter").await.unwrap();
    assert_eq!(old.next().await.unwrap(), 1);
    restart(&server, "counter", first).await;
    assert_stopped(old.next().await);
    let new: CounterClient = client.connect(&address, "counter").await.unwrap();
    assert_eq!(new.next().await.unwrap(), 101);
    assert_stopped(old.next().await);
    client.shutdown().await.unwrap();
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_remote_proxy_stays_bound_after_its_connection_is_reopened() {
    let Watched {
        server,
        first,
        address,
        mut seen,
        client,
    } = watched().await;
    let old: CounterClient = client.connect(&address, "counter").await.unwrap();
    assert_eq!(old.next().await.unwrap(), 1);
    assert_eq!(next(&mut seen).await, Some("connected"));
    restart(&server, "counter", first).await;
    assert_eq!(
        next(&mut seen).await,
        Some("disconnected"),
        "closed when idle"
    );

    // The old proxy opens a new connection and binds there again: to its own incarnation,
    // which has stopped.
    assert_stopped(old.next().await);
    assert_eq!(next(&mut seen).await, Some("connected"), "a new connection");
    assert_stopped(old.next().await);
    let new: CounterClient = client.connect(&address, "counter").await.unwrap();
    assert_eq!(new.next().await.unwrap(), 101);
    client.shutdown().await.unwrap();
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_proxy_bound_to_an_endpoint_that_is_gone_gets_endpoint_stopped_not_not_found() {
    let Watched {
        server,
        address,
        mut seen,
        client,
        ..
    } = watched().await;
    let old: CounterClient = client.connect(&address, "counter").await.unwrap();
    assert_eq!(old.next().await.unwrap(), 1);
    server.stop_endpoint("counter").await.unwrap();
    assert_stopped(old.next().await);
    assert_eq!(next(&mut seen).await, Some("connected"));
    assert_eq!(
        next(&mut seen).await,
        Some("disconnected"),
        "closed when idle"
    );
    // On a new connection no endpoint of that name runs at all: still the same answer.
    assert_stopped(old.next().await);
    client.shutdown().await.unwrap();
    server.shutdown().await.unwrap();
}

/// A connection's slots count live bindings only: a client retires (and unbinds) a slot whose
/// incarnation stopped, so an endpoint restarted far more often than the server's slot limit
/// (4,096 per connection) is still reached over the one connection it started on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_restarted_past_the_slot_limit_is_reached_over_one_connection() {
    common::bounded(async {
        let server = rpc_netty::bind("127.0.0.1:0").await.unwrap();
        let address = server.local_address().unwrap();
        let (connected, mut connections) = mpsc::unbounded_channel();
        server
            .start_endpoint("watcher", Watcher(connected))
            .await
            .unwrap();
        let client = rpc_netty::client();
        // Follows the endpoint's current incarnation, as a location service would.
        let (current, incarnation) = tokio::sync::watch::channel(None);
        let router = move |_: rpc_core::RouteRequest<'_>| {
            let incarnation = *incarnation.borrow();
            async move {
                Ok(rpc_core::Hop {
                    address,
                    endpoint: "counter".to_owned(),
                    incarnation,
                })
            }
        };
        let counter: CounterClient = client.follow("counter", router);
        for run in 0..4_200u64 {
            let context = server
                .start_endpoint("counter", Count(run * 10))
                .await
                .unwrap();
            current.send_replace(Some(context.incarnation()));
            assert_eq!(counter.next().await.unwrap(), run * 10 + 1, "run {run}");
            context.stop();
            context.terminated().await;
        }
        assert_eq!(connections.recv().await, Some("connected"));
        assert!(
            connections.try_recv().is_err(),
            "one connection throughout: {:?}",
            connections.try_recv()
        );
    })
    .await;
}

#[rpc_gateway]
pub trait Stall {
    async fn ping(&mut self) -> u64;
    /// Answers once its caller has given up.
    async fn stall(&mut self) -> u64;
}

struct Staller {
    run: u64,
    events: mpsc::UnboundedSender<String>,
}

impl RpcEndpoint for Staller {
    rpc_core::serves!(Stall);
}

impl Stall for Staller {
    async fn ping(&mut self) -> u64 {
        self.run
    }

    async fn stall(&mut self) -> u64 {
        let _ = self.events.send(format!("run {} stalls", self.run));
        rpc_core::CallContext::current().cancelled().await;
        let _ = self.events.send(format!("run {} cancelled", self.run));
        0
    }
}

/// A call re-sent to an endpoint's new run (its first attempt met the stopped one) is
/// cancelled there when its caller gives up: the cancel follows the call to where it went.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_resent_after_a_move_is_cancelled_at_its_new_place() {
    common::bounded(async {
        let server = rpc_netty::bind("127.0.0.1:0").await.unwrap();
        let address = server.local_address().unwrap();
        let (events, mut seen) = mpsc::unbounded_channel();
        let first = server
            .start_endpoint(
                "staller",
                Staller {
                    run: 1,
                    events: events.clone(),
                },
            )
            .await
            .unwrap();
        let (current, incarnation) = tokio::sync::watch::channel(Some(first.incarnation()));
        let router = move |_: rpc_core::RouteRequest<'_>| {
            let incarnation = *incarnation.borrow();
            async move {
                Ok(rpc_core::Hop {
                    address,
                    endpoint: "staller".to_owned(),
                    incarnation,
                })
            }
        };
        let client = rpc_netty::client();
        let staller: StallClient = client.follow("staller", router);
        assert_eq!(staller.ping().await.unwrap(), 1);
        first.stop();
        first.terminated().await;
        let second = server
            .start_endpoint("staller", Staller { run: 2, events })
            .await
            .unwrap();
        current.send_replace(Some(second.incarnation()));

        // Sent to run 1 (stopped), re-sent to run 2, then dropped by its caller (well before
        // its 10 s deadline, which would end it at run 2 anyway).
        let call = tokio::spawn(staller.stall().into_future());
        assert_eq!(next_event(&mut seen).await.as_deref(), Some("run 2 stalls"));
        call.abort();
        assert_eq!(
            next_event(&mut seen).await.as_deref(),
            Some("run 2 cancelled")
        );
    })
    .await;
}

/// The next event, within 5 s.
async fn next_event(seen: &mut mpsc::UnboundedReceiver<String>) -> Option<String> {
    tokio::time::timeout(Duration::from_secs(5), seen.recv())
        .await
        .expect("an event within 5 s")
}
