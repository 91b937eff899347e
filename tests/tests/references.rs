//! Gateway references: a proxy sent inside an argument, a return value or a stream item
//! arrives as a working proxy to the same endpoint incarnation, reached through the receiving
//! service's transport (its handshake, secret and fingerprint checks included); one to an
//! incarnation that has stopped fails with `EndpointStopped`.

mod common;

use std::time::Duration;

use common::{Harness, Mode};
use futures::StreamExt;
use rpc_core::{RpcEndpoint, RpcError, RpcService, RpcStream, rpc_gateway};
use rpc_netty::NettyBuilder;

/// A worker: something a registry calls back.
#[rpc_gateway]
pub trait Worker {
    async fn work(&mut self, task: u64) -> String;
}

struct WorkerEndpoint {
    name: String,
}

impl RpcEndpoint for WorkerEndpoint {
    rpc_core::serves!(Worker);
}

impl Worker for WorkerEndpoint {
    async fn work(&mut self, task: u64) -> String {
        format!("{} did task {task}", self.name)
    }
}

/// A registry of workers, which it receives as references and hands out again.
#[rpc_gateway]
pub trait Registry {
    /// Keeps `worker`; how many are registered.
    async fn register(&mut self, worker: WorkerClient) -> usize;
    /// Calls every registered worker with `task`.
    fn dispatch(&mut self, task: u64) -> rpc_core::Deferred<Vec<Result<String, String>>>;
    /// The registered workers, as references in a reply.
    async fn workers(&mut self) -> Vec<WorkerClient>;
    /// The registered workers, as references in stream items.
    fn each_worker(&mut self) -> RpcStream<WorkerClient>;
}

#[derive(Default)]
struct RegistryEndpoint {
    workers: Vec<WorkerClient>,
}

impl RpcEndpoint for RegistryEndpoint {
    rpc_core::serves!(Registry);
}

impl Registry for RegistryEndpoint {
    async fn register(&mut self, worker: WorkerClient) -> usize {
        self.workers.push(worker);
        self.workers.len()
    }

    fn dispatch(&mut self, task: u64) -> rpc_core::Deferred<Vec<Result<String, String>>> {
        let calls: Vec<_> = self.workers.iter().map(|w| w.work(task)).collect();
        rpc_core::Deferred::new(async move {
            let mut results = Vec::new();
            for call in calls {
                results.push(call.await.map_err(|e| e.kind().to_owned()));
            }
            results
        })
    }

    async fn workers(&mut self) -> Vec<WorkerClient> {
        self.workers.clone()
    }

    fn each_worker(&mut self) -> RpcStream<WorkerClient> {
        RpcStream::iter(self.workers.clone())
    }
}

/// The registry and a worker in the harness's server; the proxy to the worker is sent to the
/// registry, which calls it back. In process it moves; serialized, it is encoded and decoded
/// in process; over TCP, the server decodes a reference to its own endpoint (a local proxy).
async fn a_reference_in_an_argument_is_callable(mode: Mode) {
    let harness = Harness::new(mode).await;
    harness
        .server
        .start_endpoint("registry", RegistryEndpoint::default())
        .await
        .unwrap();
    harness
        .server
        .start_endpoint("w1", WorkerEndpoint { name: "w1".into() })
        .await
        .unwrap();
    let registry: RegistryClient = harness.gateway("registry").await.unwrap();
    let worker: WorkerClient = harness.gateway("w1").await.unwrap();
    assert_eq!(registry.register(worker).await.unwrap(), 1);
    assert_eq!(
        registry.dispatch(7).await.unwrap(),
        [Ok("w1 did task 7".to_owned())]
    );
    // In a reply, and in stream items.
    let workers = registry.workers().await.unwrap();
    assert_eq!(workers[0].work(8).await.unwrap(), "w1 did task 8");
    let streamed: Vec<WorkerClient> = registry.each_worker().map(|w| w.unwrap()).collect().await;
    assert_eq!(streamed[0].work(9).await.unwrap(), "w1 did task 9");
    harness.shutdown().await.unwrap();
}

/// A reference to an incarnation that has stopped fails with `EndpointStopped`, even once an
/// endpoint of the same name runs again.
async fn a_stale_reference_fails_with_endpoint_stopped(mode: Mode) {
    let harness = Harness::new(mode).await;
    harness
        .server
        .start_endpoint("registry", RegistryEndpoint::default())
        .await
        .unwrap();
    harness
        .server
        .start_endpoint("w1", WorkerEndpoint { name: "w1".into() })
        .await
        .unwrap();
    let registry: RegistryClient = harness.gateway("registry").await.unwrap();
    let worker: WorkerClient = harness.gateway("w1").await.unwrap();
    registry.register(worker).await.unwrap();
    harness.server.stop_endpoint("w1").await.unwrap();
    harness
        .server
        .start_endpoint("w1", WorkerEndpoint { name: "new".into() })
        .await
        .unwrap();
    assert_eq!(
        registry.dispatch(1).await.unwrap(),
        [Err("endpoint_stopped".to_owned())]
    );
    // A reference made after the stop reaches nothing either.
    let stale = registry.workers().await.unwrap();
    assert!(matches!(
        stale[0].work(2).await,
        Err(RpcError::EndpointStopped { .. })
    ));
    harness.shutdown().await.unwrap();
}

in_every_mode!(
    a_reference_in_an_argument_is_callable,
    a_stale_reference_fails_with_endpoint_stopped,
);

async fn listening(builder: NettyBuilder) -> RpcService {
    builder
        .default_timeout(Duration::from_secs(10))
        .bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port")
}

/// A worker in service A is registered (by reference) with a registry in service B; a third
/// service C asks B for its workers and calls A's worker through the reference it received:
/// a round trip through three services, each reached over its own connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reference_travels_through_three_services() {
    common::bounded(async {
        let a = listening(NettyBuilder::new()).await;
        let b = listening(NettyBuilder::new()).await;
        let c = listening(NettyBuilder::new()).await;
        a.start_endpoint("worker", WorkerEndpoint { name: "a".into() })
            .await
            .unwrap();
        b.start_endpoint("registry", RegistryEndpoint::default())
            .await
            .unwrap();
        let b_address = b.local_address().unwrap().to_string();
        // A registers its own worker with B.
        let registry_from_a: RegistryClient = a.connect(&b_address, "registry").await.unwrap();
        let own_worker: WorkerClient = a.gateway("worker").unwrap();
        registry_from_a.register(own_worker).await.unwrap();
        // B calls it back over its own connection to A.
        assert_eq!(
            registry_from_a.dispatch(1).await.unwrap(),
            [Ok("a did task 1".to_owned())]
        );
        // C receives the reference from B and calls A directly.
        let registry_from_c: RegistryClient = c.connect(&b_address, "registry").await.unwrap();
        let workers = registry_from_c.workers().await.unwrap();
        assert_eq!(
            workers[0].endpoint().address(),
            Some(a.local_address().unwrap())
        );
        assert_eq!(workers[0].work(2).await.unwrap(), "a did task 2");
        // C sends it back to B inside another call: still the same worker.
        registry_from_c.register(workers[0].clone()).await.unwrap();
        assert_eq!(
            registry_from_c.dispatch(3).await.unwrap(),
            [Ok("a did task 3".to_owned()), Ok("a did task 3".to_owned())]
        );
        // A stops its worker: every holder's reference is stale.
        a.stop_endpoint("worker").await.unwrap();
        assert!(matches!(
            workers[0].work(4).await,
            Err(RpcError::EndpointStopped { .. })
        ));
        assert_eq!(
            registry_from_c.dispatch(5).await.unwrap(),
            [
                Err("endpoint_stopped".to_owned()),
                Err("endpoint_stopped".to_owned())
            ]
        );
        for service in [a, b, c] {
            service.shutdown().await.unwrap();
        }
    })
    .await
}

/// Calls through a received reference go through the receiving service's own transport, with
/// its handshake: a service without the shared secret cannot call a worker of services that
/// have it, however it learned of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_received_reference_is_checked_like_connect() {
    common::bounded(async {
        const SECRET: &str = "the cluster's secret";
        let a = listening(NettyBuilder::new().shared_secret(SECRET)).await;
        let b = listening(NettyBuilder::new().shared_secret(SECRET)).await;
        // An outsider without the secret, listening without it.
        let outsider = listening(NettyBuilder::new()).await;
        a.start_endpoint("worker", WorkerEndpoint { name: "a".into() })
            .await
            .unwrap();
        b.start_endpoint("registry", RegistryEndpoint::default())
            .await
            .unwrap();
        outsider
            .start_endpoint("registry", RegistryEndpoint::default())
            .await
            .unwrap();
        // A registers its worker with B (both hold the secret); B's copy works.
        let registry: RegistryClient = a
            .connect(&b.local_address().unwrap().to_string(), "registry")
            .await
            .unwrap();
        registry
            .register(a.gateway("worker").unwrap())
            .await
            .unwrap();
        let on_b = registry.workers().await.unwrap();
        assert_eq!(on_b[0].work(1).await.unwrap(), "a did task 1");
        // The outsider receives the same reference (a reference carries no secret) and calls
        // through its own transport, which cannot complete the handshake with A.
        let received = received_by(&outsider, &on_b[0]).await;
        let error = received.work(2).await.unwrap_err();
        assert!(
            matches!(
                error,
                RpcError::Unauthenticated { .. } | RpcError::ConnectFailed { .. }
            ),
            "{error:?}"
        );
        for service in [a, b, outsider] {
            service.shutdown().await.unwrap();
        }
    })
    .await
}

/// `worker` as `service` receives it inside a message: sent to its registry by a client over
/// TCP, then read back from the registry in process.
async fn received_by(service: &RpcService, worker: &WorkerClient) -> WorkerClient {
    let client = NettyBuilder::new().client();
    let registry: RegistryClient = client
        .connect(&service.local_address().unwrap().to_string(), "registry")
        .await
        .unwrap();
    registry.register(worker.clone()).await.unwrap();
    client.shutdown().await.unwrap();
    let local: RegistryClient = service.gateway("registry").unwrap();
    let held = local.workers().await.unwrap();
    held.into_iter().last().unwrap()
}

/// A service bound to every interface (`0.0.0.0`) sends references naming `0.0.0.0`; the
/// receiver takes that to mean the host the reference came from. (The test connects over
/// loopback only.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reference_from_a_service_bound_to_every_interface_names_its_host() {
    common::bounded(async {
        let everywhere = NettyBuilder::new().bind("0.0.0.0:0").await.unwrap();
        assert!(everywhere.local_address().unwrap().ip().is_unspecified());
        everywhere
            .start_endpoint("worker", WorkerEndpoint { name: "w".into() })
            .await
            .unwrap();
        let registry_service = listening(NettyBuilder::new()).await;
        registry_service
            .start_endpoint("registry", RegistryEndpoint::default())
            .await
            .unwrap();
        let registry: RegistryClient = everywhere
            .connect(
                &registry_service.local_address().unwrap().to_string(),
                "registry",
            )
            .await
            .unwrap();
        registry
            .register(everywhere.gateway("worker").unwrap())
            .await
            .unwrap();
        // The registry calls back 127.0.0.1, where the registration came from.
        assert_eq!(
            registry.dispatch(1).await.unwrap(),
            [Ok("w did task 1".to_owned())]
        );
        // Sent back home, it is recognised as the service's own endpoint: a local proxy.
        let held = registry.workers().await.unwrap();
        assert_eq!(held[0].endpoint().address(), None);
        assert_eq!(held[0].work(2).await.unwrap(), "w did task 2");
        registry_service.shutdown().await.unwrap();
        everywhere.shutdown().await.unwrap();
    })
    .await
}
