//! Spark's executor registration: an executor process that does not listen registers with
//! the driver by sending its own reference; the driver calls it back over the connection the
//! executor opened, launching tasks whose results the executor streams back.
//!
//! The driver listens (`rpc_netty::bind`); each executor is a pure client
//! (`rpc_netty::client()`): it has no port, and the driver still reaches it, because a
//! reference to an endpoint of a service that does not listen is served over the connection
//! that carried it.

use std::time::Duration;

use futures::StreamExt;
use rpc_core::{RpcEndpoint, RpcError, RpcService, RpcStream, rpc_gateway};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

/// One unit of work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    /// The task's id.
    pub id: u64,
    /// What to compute: the sum of the squares of `1..=n`.
    pub n: u64,
}

/// A finished task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskResult {
    /// The task it answers.
    pub task: u64,
    /// Which executor ran it.
    pub executor: String,
    /// The sum of the squares of `1..=n`.
    pub sum_of_squares: u64,
}

impl Task {
    /// What its result must be.
    pub fn expected(&self) -> u64 {
        (1..=self.n).map(|i| i * i).sum()
    }
}

/// What the driver calls on an executor.
#[rpc_gateway]
pub trait ExecutorGateway {
    /// Runs `tasks`, streaming each result as it finishes.
    fn launch(&mut self, tasks: Vec<Task>) -> RpcStream<TaskResult>;
    /// The application is done: the executor exits.
    fn stop(&mut self);
}

/// What an executor calls on the driver.
#[rpc_gateway]
pub trait DriverGateway {
    /// Registers an executor: its id, its cores, and a reference to itself. Returns how many
    /// executors are registered.
    async fn register(
        &mut self,
        id: String,
        cores: u32,
        executor: ExecutorGatewayClient,
    ) -> Result<usize, String>;
}

/// An executor's endpoint.
pub struct Executor {
    id: String,
    stopped: Option<oneshot::Sender<()>>,
}

impl Executor {
    /// Executor `id`; `stopped` fires when the driver stops it.
    pub fn new(id: impl Into<String>, stopped: oneshot::Sender<()>) -> Executor {
        Executor {
            id: id.into(),
            stopped: Some(stopped),
        }
    }
}

impl RpcEndpoint for Executor {
    rpc_core::serves!(ExecutorGateway);
}

impl ExecutorGateway for Executor {
    fn launch(&mut self, tasks: Vec<Task>) -> RpcStream<TaskResult> {
        let executor = self.id.clone();
        // Off the main thread: each result is sent as soon as it is computed.
        RpcStream::new(futures::stream::iter(tasks).then(move |task| {
            let executor = executor.clone();
            async move {
                tokio::task::yield_now().await;
                TaskResult {
                    task: task.id,
                    executor,
                    sum_of_squares: task.expected(),
                }
            }
        }))
    }

    fn stop(&mut self) {
        if let Some(stopped) = self.stopped.take() {
            let _ = stopped.send(());
        }
    }
}

/// The driver's endpoint: records registrations and hands each new executor's proxy to the
/// application.
pub struct Driver {
    registered: Vec<String>,
    executors: mpsc::UnboundedSender<(String, ExecutorGatewayClient)>,
}

impl Driver {
    /// A driver that passes each executor that registers to `executors`.
    pub fn new(executors: mpsc::UnboundedSender<(String, ExecutorGatewayClient)>) -> Driver {
        Driver {
            registered: Vec::new(),
            executors,
        }
    }
}

impl RpcEndpoint for Driver {
    rpc_core::serves!(DriverGateway);
}

impl DriverGateway for Driver {
    async fn register(
        &mut self,
        id: String,
        cores: u32,
        executor: ExecutorGatewayClient,
    ) -> Result<usize, String> {
        if self.registered.contains(&id) {
            return Err(format!("an executor named {id} is registered already"));
        }
        println!(
            "driver: executor {id} registered ({cores} cores, reached at {})",
            executor.endpoint()
        );
        self.registered.push(id.clone());
        let _ = self.executors.send((id, executor));
        Ok(self.registered.len())
    }
}

/// The driver's application: waits for `count` executors, gives each `tasks_each` tasks,
/// reads their streamed results, checks every one, and stops the executors. Returns how many
/// results arrived.
pub async fn run_driver(
    driver: &RpcService,
    count: usize,
    tasks_each: u64,
) -> Result<usize, RpcError> {
    let (sender, mut registrations) = mpsc::unbounded_channel();
    driver.start_endpoint("driver", Driver::new(sender)).await?;
    println!("driver: listening on {}", driver.local_address()?);
    let mut executors = Vec::new();
    while executors.len() < count {
        match tokio::time::timeout(Duration::from_secs(30), registrations.recv()).await {
            Ok(Some(executor)) => executors.push(executor),
            _ => {
                return Err(RpcError::Remote {
                    address: driver.local_address()?,
                    message: format!("only {} of {count} executors registered", executors.len()),
                });
            }
        }
    }
    // Launch on every executor at once, each over the connection it opened.
    let mut launched = Vec::new();
    for (index, (id, executor)) in executors.iter().enumerate() {
        let first = index as u64 * tasks_each;
        let tasks: Vec<Task> = (first..first + tasks_each)
            .map(|id| Task { id, n: 1 + id % 50 })
            .collect();
        launched.push((id.clone(), tasks.clone(), executor.launch(tasks)));
    }
    let mut results = 0;
    for (id, tasks, mut stream) in launched {
        let mut seen = 0;
        while let Some(result) = stream.next().await {
            let result = result?;
            let task = tasks[seen];
            assert_eq!(result.task, task.id, "results arrive in the order launched");
            assert_eq!(result.sum_of_squares, task.expected(), "a wrong result");
            assert_eq!(result.executor, id);
            seen += 1;
        }
        println!("driver: {seen} results streamed back from executor {id}");
        assert_eq!(seen, tasks.len());
        results += seen;
    }
    for (_, executor) in &executors {
        executor.stop()?;
    }
    Ok(results)
}

/// An executor's process: a client only, with no port. Connects to the driver at `address`,
/// registers by sending its own reference, and serves the driver's calls until stopped.
pub async fn run_executor(address: &str, id: &str) -> Result<(), RpcError> {
    let service = rpc_netty::client();
    let (stopped, stop) = oneshot::channel();
    service
        .start_endpoint(id, Executor::new(id, stopped))
        .await?;
    let driver: DriverGatewayClient = service.connect(address, "driver").await?;
    let me: ExecutorGatewayClient = service.gateway(id)?;
    match driver.register(id.to_owned(), 4, me).await? {
        Ok(registered) => println!("executor {id}: registered ({registered} so far)"),
        Err(refused) => {
            println!("executor {id}: refused: {refused}");
            return service.shutdown().await;
        }
    }
    // The driver's calls arrive over the connection just opened.
    let _ = tokio::time::timeout(Duration::from_secs(60), stop).await;
    println!("executor {id}: stopped by the driver");
    service.shutdown().await
}
