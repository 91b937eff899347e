//! Client mode: a service that does not listen (`rpc_netty::client()`) sends a reference to
//! its own endpoint; the server calls it back over the connection that carried it (the
//! reverse calls), streams included. The server reaches only what was exported to it, a
//! stale reference fails with `EndpointStopped`, and a closed connection with `Disconnected`.

mod common;

use std::time::Duration;

use bytes::BytesMut;
use futures::StreamExt;
use rpc_core::transport::Binding;
use rpc_core::{Deferred, Gateway, RpcEndpoint, RpcError, RpcStream, rpc_gateway};
use rpc_netty::frame::{Frame, FrameCodec, FrameKind};
use rpc_netty::protocol;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::codec::{Decoder, Encoder};

/// What the driver calls on an executor.
#[rpc_gateway]
pub trait Executor {
    /// Runs `task`.
    async fn run(&mut self, task: u64) -> String;
    /// The results of `count` tasks, as they finish.
    fn results(&mut self, count: u64) -> RpcStream<String>;
    /// Another executor of the same process, as a reference in a reply.
    async fn sibling(&mut self) -> Option<ExecutorClient>;
    /// The same, as stream items.
    fn siblings(&mut self) -> RpcStream<ExecutorClient>;
}

struct ExecutorEndpoint {
    id: String,
    sibling: Option<ExecutorClient>,
}

impl ExecutorEndpoint {
    fn new(id: &str) -> ExecutorEndpoint {
        ExecutorEndpoint {
            id: id.to_owned(),
            sibling: None,
        }
    }
}

impl RpcEndpoint for ExecutorEndpoint {
    rpc_core::serves!(Executor);
}

impl Executor for ExecutorEndpoint {
    async fn run(&mut self, task: u64) -> String {
        format!("{} ran task {task}", self.id)
    }

    fn results(&mut self, count: u64) -> RpcStream<String> {
        let id = self.id.clone();
        RpcStream::iter((0..count).map(move |task| format!("{id}: result of task {task}")))
    }

    async fn sibling(&mut self) -> Option<ExecutorClient> {
        self.sibling.clone()
    }

    fn siblings(&mut self) -> RpcStream<ExecutorClient> {
        RpcStream::iter(self.sibling.clone())
    }
}

/// The driver: keeps the executors that register, calls them back.
#[rpc_gateway]
pub trait Driver {
    async fn register(&mut self, executor: ExecutorClient) -> usize;
    fn run_everywhere(&mut self, task: u64) -> Deferred<Vec<Result<String, String>>>;
    fn collect(&mut self, count: u64) -> Deferred<Result<Vec<String>, String>>;
    /// Asks the first executor for its sibling (in a reply and in a stream) and runs `task`
    /// on it both ways.
    fn via_sibling(&mut self, task: u64) -> Deferred<Result<Vec<String>, String>>;
}

#[derive(Default)]
struct DriverEndpoint {
    executors: Vec<ExecutorClient>,
}

impl RpcEndpoint for DriverEndpoint {
    rpc_core::serves!(Driver);
}

impl Driver for DriverEndpoint {
    async fn register(&mut self, executor: ExecutorClient) -> usize {
        self.executors.push(executor);
        self.executors.len()
    }

    fn run_everywhere(&mut self, task: u64) -> Deferred<Vec<Result<String, String>>> {
        let calls: Vec<_> = self.executors.iter().map(|e| e.run(task)).collect();
        Deferred::new(async move {
            let mut results = Vec::new();
            for call in calls {
                results.push(call.await.map_err(|e| e.kind().to_owned()));
            }
            results
        })
    }

    fn collect(&mut self, count: u64) -> Deferred<Result<Vec<String>, String>> {
        let streams: Vec<_> = self.executors.iter().map(|e| e.results(count)).collect();
        Deferred::new(async move {
            let mut all = Vec::new();
            for mut stream in streams {
                while let Some(item) = stream.next().await {
                    all.push(item.map_err(|e| e.to_string())?);
                }
            }
            Ok(all)
        })
    }

    fn via_sibling(&mut self, task: u64) -> Deferred<Result<Vec<String>, String>> {
        let first = self.executors[0].clone();
        Deferred::new(async move {
            let failed = |e: RpcError| e.to_string();
            let from_reply = first.sibling().await.map_err(failed)?.ok_or("no sibling")?;
            let mut stream = first.siblings();
            let from_stream = stream.next().await.ok_or("no item")?.map_err(failed)?;
            Ok(vec![
                from_reply.run(task).await.map_err(failed)?,
                from_stream.run(task + 1).await.map_err(failed)?,
            ])
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_listening_client_is_called_back_over_its_connection() {
    common::bounded(async {
        let driver_service = rpc_netty::bind("127.0.0.1:0").await.unwrap();
        driver_service
            .start_endpoint("driver", DriverEndpoint::default())
            .await
            .unwrap();
        let address = driver_service.local_address().unwrap().to_string();

        // The executor's process: a client only, with no port of its own.
        let executor_service = rpc_netty::client();
        assert!(executor_service.local_address().is_err());
        executor_service
            .start_endpoint("executor-1", ExecutorEndpoint::new("e1"))
            .await
            .unwrap();
        let driver: DriverClient = executor_service.connect(&address, "driver").await.unwrap();
        let me: ExecutorClient = executor_service.gateway("executor-1").unwrap();
        assert_eq!(driver.register(me).await.unwrap(), 1);

        // The driver calls the executor back, over the connection the executor opened.
        assert_eq!(
            driver.run_everywhere(7).await.unwrap(),
            [Ok("e1 ran task 7".to_owned())]
        );
        // And reads a stream from it.
        let results = driver.collect(500).await.unwrap().unwrap();
        assert_eq!(results.len(), 500);
        assert_eq!(results[499], "e1: result of task 499");

        // A stale reference: the executor stops its endpoint.
        executor_service.stop_endpoint("executor-1").await.unwrap();
        assert_eq!(
            driver.run_everywhere(8).await.unwrap(),
            [Err("endpoint_stopped".to_owned())]
        );

        // A new incarnation registers again; then the connection goes away with the client.
        executor_service
            .start_endpoint("executor-1", ExecutorEndpoint::new("e1b"))
            .await
            .unwrap();
        let again: ExecutorClient = executor_service.gateway("executor-1").unwrap();
        assert_eq!(driver.register(again).await.unwrap(), 2);
        assert_eq!(
            driver.run_everywhere(9).await.unwrap(),
            [
                Err("endpoint_stopped".to_owned()),
                Ok("e1b ran task 9".to_owned())
            ]
        );
        executor_service.shutdown().await.unwrap();
        // Once the driver has seen the connection close, its references fail.
        let local: DriverClient = driver_service.gateway("driver").unwrap();
        let outcome = loop {
            let outcome = local.run_everywhere(10).await.unwrap();
            if outcome[1] != Ok("e1b ran task 10".to_owned()) {
                break outcome;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(outcome[1], Err("disconnected".to_owned()), "{outcome:?}");
        driver_service.shutdown().await.unwrap();
    })
    .await
}

fn wire(frame: Frame) -> Vec<u8> {
    let mut bytes = BytesMut::new();
    FrameCodec::new(1 << 20).encode(frame, &mut bytes).unwrap();
    bytes.to_vec()
}

/// A server that binds, over the reverse calls, an endpoint of the client that the client
/// never exported is refused: a client's endpoints are not open to every server it connects
/// to. One it did export (by sending a reference) can be bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_reaches_only_the_endpoints_a_client_exported() {
    common::bounded(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let client = rpc_netty::client();
        client
            .start_endpoint("private", ExecutorEndpoint::new("p"))
            .await
            .unwrap();
        // A hand-written server: hello, then a reverse bind of `private`, by name and with a
        // made-up incarnation.
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            socket.write_all(&common::SERVER_HELLO).await.unwrap();
            let mut buffer = BytesMut::new();
            let mut codec = FrameCodec::new(1 << 20);
            let mut next = async |socket: &mut tokio::net::TcpStream| loop {
                if let Some(frame) = codec.decode(&mut buffer).unwrap() {
                    return frame;
                }
                assert!(socket.read_buf(&mut buffer).await.unwrap() > 0, "closed");
            };
            assert_eq!(next(&mut socket).await.kind, FrameKind::Hello);
            for incarnation in [None, Some(rpc_core::Incarnation::from_bytes([9; 16]))] {
                let binding = Binding {
                    endpoint: "private".into(),
                    gateway: ExecutorClient::NAME.into(),
                    fingerprint: ExecutorClient::FINGERPRINT,
                    incarnation,
                    session: None,
                };
                socket
                    .write_all(&wire(protocol::bind(3, 1, &binding).reversed(true)))
                    .await
                    .unwrap();
                let answer = loop {
                    let frame = next(&mut socket).await;
                    if frame.reverse {
                        break frame;
                    }
                };
                assert_eq!((answer.kind, answer.request_id), (FrameKind::Failure, 3));
                let error = protocol::WireError::decode(&answer.body, address);
                assert!(
                    matches!(error, RpcError::EndpointNotFound { ref endpoint, .. } if endpoint == "private"),
                    "{error:?}"
                );
            }
        });
        // Any call opens the connection; the client's endpoint stays out of reach.
        let probe = client
            .connect::<DriverClient>(&address.to_string(), "driver")
            .await;
        assert!(probe.is_err(), "the fake server answers no bind");
        server.await.unwrap();
        client.shutdown().await.unwrap();
    })
    .await
}

/// Sees the driver's connections close.
struct Watch(tokio::sync::mpsc::UnboundedSender<()>);

impl RpcEndpoint for Watch {
    fn on_disconnected(&mut self, _connection: &rpc_core::Connection) {
        let _ = self.0.send(());
    }
}

/// A connection over which a client exported an endpoint is not closed as idle: that would
/// break the references the server holds. A connection without exports, idle as long, is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exported_endpoints_keep_their_connection_open() {
    common::bounded(async {
        let idle = |builder: rpc_netty::NettyBuilder| {
            builder
                .keepalive(Duration::from_millis(20), Duration::from_secs(10))
                .idle_timeout(Some(Duration::from_millis(150)))
        };
        let driver_service = idle(rpc_netty::NettyBuilder::new())
            .bind("127.0.0.1:0")
            .await
            .unwrap();
        driver_service
            .start_endpoint("driver", DriverEndpoint::default())
            .await
            .unwrap();
        let (closed, mut closes) = tokio::sync::mpsc::unbounded_channel();
        driver_service
            .start_endpoint("watch", Watch(closed))
            .await
            .unwrap();
        let address = driver_service.local_address().unwrap().to_string();

        let executor_service = idle(rpc_netty::NettyBuilder::new()).client();
        executor_service
            .start_endpoint("executor-1", ExecutorEndpoint::new("e1"))
            .await
            .unwrap();
        let driver: DriverClient = executor_service.connect(&address, "driver").await.unwrap();
        driver
            .register(executor_service.gateway("executor-1").unwrap())
            .await
            .unwrap();

        // Another client, which exports nothing, makes one call and goes idle.
        let other = idle(rpc_netty::NettyBuilder::new()).client();
        let from_other: DriverClient = other.connect(&address, "driver").await.unwrap();
        from_other.run_everywhere(1).await.unwrap();
        // The first connection to close as idle is the other client's, although the
        // executor's has been idle longer.
        closes.recv().await.expect("a connection closed");
        // (Asked in the driver's own process: the other client may not have noticed its
        // connection closing yet.)
        let local: DriverClient = driver_service.gateway("driver").unwrap();
        assert_eq!(
            local.run_everywhere(2).await.unwrap(),
            [Ok("e1 ran task 2".to_owned())],
            "the executor's connection is still open"
        );
        assert!(closes.try_recv().is_err(), "only one connection closed");
        drop(from_other);
        for service in [other, executor_service, driver_service] {
            service.shutdown().await.unwrap();
        }
    })
    .await
}

/// A client's endpoint answers a call from the server with references to another of the
/// client's endpoints, in a reply and in a stream item: those are exported over the same
/// connection, and the server calls them back there too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn references_in_a_clients_replies_are_called_back_too() {
    common::bounded(async {
        let driver_service = rpc_netty::bind("127.0.0.1:0").await.unwrap();
        driver_service
            .start_endpoint("driver", DriverEndpoint::default())
            .await
            .unwrap();
        let address = driver_service.local_address().unwrap().to_string();
        let executor_service = rpc_netty::client();
        executor_service
            .start_endpoint("e-b", ExecutorEndpoint::new("b"))
            .await
            .unwrap();
        let mut first = ExecutorEndpoint::new("a");
        first.sibling = Some(executor_service.gateway("e-b").unwrap());
        executor_service.start_endpoint("e-a", first).await.unwrap();
        let driver: DriverClient = executor_service.connect(&address, "driver").await.unwrap();
        driver
            .register(executor_service.gateway("e-a").unwrap())
            .await
            .unwrap();
        assert_eq!(
            driver.via_sibling(5).await.unwrap(),
            Ok(vec!["b ran task 5".to_owned(), "b ran task 6".to_owned()])
        );
        executor_service.shutdown().await.unwrap();
        driver_service.shutdown().await.unwrap();
    })
    .await
}
