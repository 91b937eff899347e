//! Spark's HeartbeatReceiver pattern: executors send one-way heartbeats to a driver endpoint,
//! which expires the executors that go silent. The expiry check runs on the driver's main
//! thread through `schedule_run_async`, rescheduling itself, so the driver's state needs no
//! lock.

use std::collections::BTreeMap;
use std::time::Duration;

use rpc_core::{BoxError, RpcContext, RpcEndpoint, RpcError, rpc_gateway};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// What executors say to the driver.
#[rpc_gateway]
pub trait HeartbeatGateway {
    /// Registers an executor; `false` if it was registered already.
    async fn register(&mut self, executor_id: String) -> bool;
    /// One-way: the executor is alive.
    fn heartbeat(&mut self, executor_id: String);
    /// The executors currently considered alive, sorted.
    async fn live_executors(&mut self) -> Vec<String>;
}

/// The driver's endpoint.
pub struct HeartbeatReceiver {
    /// Silence after which an executor is expired.
    timeout: Duration,
    /// How often the driver looks for silent executors.
    check_interval: Duration,
    /// When each live executor was last heard from.
    last_seen: BTreeMap<String, Instant>,
    /// Where expirations are reported, for whoever wants to watch them.
    expirations: Option<mpsc::UnboundedSender<String>>,
}

impl HeartbeatReceiver {
    /// A driver expiring executors silent for longer than `timeout`, checking every
    /// `check_interval`.
    pub fn new(timeout: Duration, check_interval: Duration) -> Self {
        HeartbeatReceiver {
            timeout,
            check_interval,
            last_seen: BTreeMap::new(),
            expirations: None,
        }
    }

    /// Also sends each expired executor's id to `expirations`.
    pub fn reporting_to(mut self, expirations: mpsc::UnboundedSender<String>) -> Self {
        self.expirations = Some(expirations);
        self
    }

    /// Runs the expiry check once `check_interval` has passed, on the main thread. Called on
    /// the main thread, where the endpoint's context is at hand.
    fn schedule_check(&self) {
        RpcContext::<Self>::current().schedule_run_async(self.check_interval, |driver| {
            driver.expire_silent_executors();
            driver.schedule_check();
        });
    }

    fn expire_silent_executors(&mut self) {
        let now = Instant::now();
        let timeout = self.timeout;
        let mut expired = Vec::new();
        self.last_seen.retain(|id, seen| {
            let silence = now.duration_since(*seen);
            let alive = silence <= timeout;
            if !alive {
                println!("driver: executor {id} expired ({silence:.0?} without a heartbeat)");
                expired.push(id.clone());
            }
            alive
        });
        if let Some(expirations) = &self.expirations {
            for id in expired {
                let _ = expirations.send(id);
            }
        }
    }
}

impl RpcEndpoint for HeartbeatReceiver {
    rpc_core::serves!(HeartbeatGateway);

    async fn on_start(&mut self, _ctx: RpcContext<Self>) -> Result<(), BoxError> {
        self.schedule_check();
        Ok(())
    }
}

impl HeartbeatGateway for HeartbeatReceiver {
    async fn register(&mut self, executor_id: String) -> bool {
        println!("driver: executor {executor_id} registered");
        self.last_seen.insert(executor_id, Instant::now()).is_none()
    }

    fn heartbeat(&mut self, executor_id: String) {
        match self.last_seen.get_mut(&executor_id) {
            Some(seen) => *seen = Instant::now(),
            None => println!("driver: heartbeat from unknown executor {executor_id}, ignored"),
        }
    }

    async fn live_executors(&mut self) -> Vec<String> {
        self.last_seen.keys().cloned().collect()
    }
}

/// An executor: registers, sends `beats` heartbeats one `interval` apart, then goes silent.
pub async fn run_executor(
    driver: HeartbeatGatewayClient,
    executor_id: String,
    interval: Duration,
    beats: usize,
) -> Result<(), RpcError> {
    driver.register(executor_id.clone()).await?;
    let mut ticks = tokio::time::interval(interval);
    for _ in 0..beats {
        ticks.tick().await;
        driver.heartbeat(executor_id.clone())?;
    }
    println!("{executor_id}: going silent after {beats} heartbeats");
    Ok(())
}
