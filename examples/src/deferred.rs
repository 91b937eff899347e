//! Replying later with `Deferred` (Flink's `CompletableFuture` return): a dispatcher accepts
//! a job, asks the resource manager for a slot, and answers the submission once the slot is
//! granted, without holding its own main thread meanwhile.
//!
//! Both endpoints reply with `Deferred`. The resource manager keeps slot requests waiting
//! until a task executor offers a slot, and completes them from that later invocation. The
//! dispatcher's `submit` records the job and sends the slot request on its main thread, then
//! returns a future that awaits the slot beside the main thread, so the dispatcher answers
//! other calls in the meantime. Once the slot is granted, the future goes back to the main
//! thread with `RpcContext::call_async` to move the job from pending to running, and
//! replies; if no slot can be had, it drops the job there with `RpcContext::run_async`.
//!
//! A `Deferred` future is first polled after its handler has returned, possibly after the
//! endpoint has handled later calls: a call that must be in line before them is made in the
//! handler, as `submit` does, and only awaited in the future.

use std::collections::{BTreeMap, VecDeque};

use rpc_core::{Deferred, RpcContext, RpcEndpoint, rpc_gateway};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

/// Why a slot request failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
pub enum SlotError {
    /// The resource manager stopped before a slot was offered.
    #[error("the resource manager stopped before a slot was offered")]
    Withdrawn,
}

/// What task executors and dispatchers may ask of the resource manager.
#[rpc_gateway]
pub trait ResourceManagerGateway {
    /// Grants a slot to `job`: at once if one is free, otherwise once one is offered.
    fn request_slot(&mut self, job: String) -> Deferred<Result<u32, SlotError>>;
    /// One-way, from a task executor: `slot` is free.
    fn offer_slot(&mut self, slot: u32);
}

/// The resource manager: free slots, and the requests waiting for one.
#[derive(Debug, Default)]
pub struct ResourceManager {
    /// Slots offered and not granted yet.
    free: VecDeque<u32>,
    /// Requests waiting for a slot, oldest first.
    waiting: VecDeque<(String, oneshot::Sender<u32>)>,
}

impl RpcEndpoint for ResourceManager {
    rpc_core::serves!(ResourceManagerGateway);
}

impl ResourceManagerGateway for ResourceManager {
    fn request_slot(&mut self, job: String) -> Deferred<Result<u32, SlotError>> {
        if let Some(slot) = self.free.pop_front() {
            println!("resource manager: slot {slot} is free, granted to {job} at once");
            return Deferred::ready(Ok(slot));
        }
        println!("resource manager: no free slot, {job} waits");
        let (grant, granted) = oneshot::channel();
        self.waiting.push_back((job, grant));
        // Completed by a later `offer_slot`; the sender is dropped if the endpoint stops.
        Deferred::new(async move { granted.await.map_err(|_| SlotError::Withdrawn) })
    }

    fn offer_slot(&mut self, slot: u32) {
        while let Some((job, grant)) = self.waiting.pop_front() {
            // A request whose caller gave up has dropped its receiver: try the next one.
            if grant.send(slot).is_ok() {
                println!("resource manager: slot {slot} offered, granted to waiting {job}");
                return;
            }
        }
        println!("resource manager: slot {slot} offered, kept free");
        self.free.push_back(slot);
    }
}

/// Why a submission failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
pub enum SubmitError {
    /// No slot could be had for the job.
    #[error("no slot for the job: {0}")]
    NoSlot(String),
    /// The dispatcher stopped before the job could be started.
    #[error("the dispatcher stopped: {0}")]
    Stopped(String),
}

/// The jobs the dispatcher knows of.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Jobs {
    /// Jobs waiting for a slot, in submission order.
    pub pending: Vec<String>,
    /// Running jobs and their slots.
    pub running: BTreeMap<String, u32>,
}

/// What clients may ask of the dispatcher.
#[rpc_gateway]
pub trait DispatcherGateway {
    /// Runs `job` on a slot from the resource manager; replies with the slot once granted.
    fn submit(&mut self, job: String) -> Deferred<Result<u32, SubmitError>>;
    /// The jobs pending and running now.
    async fn jobs(&mut self) -> Jobs;
}

/// The dispatcher: its jobs, and a proxy to the resource manager.
#[derive(Debug)]
pub struct Dispatcher {
    resource_manager: ResourceManagerGatewayClient,
    jobs: Jobs,
}

impl Dispatcher {
    /// A dispatcher getting its slots from `resource_manager`.
    pub fn new(resource_manager: ResourceManagerGatewayClient) -> Self {
        Dispatcher {
            resource_manager,
            jobs: Jobs::default(),
        }
    }

    /// Drops `job` from the pending ones.
    fn forget(&mut self, job: &str) {
        self.jobs.pending.retain(|pending| pending != job);
    }
}

impl RpcEndpoint for Dispatcher {
    rpc_core::serves!(DispatcherGateway);
}

impl DispatcherGateway for Dispatcher {
    fn submit(&mut self, job: String) -> Deferred<Result<u32, SubmitError>> {
        // On the main thread: record the job, take what the future needs.
        println!("dispatcher: {job} submitted, asking for a slot");
        self.jobs.pending.push(job.clone());
        // The request is queued with the resource manager here, on the main thread, so it is
        // in line before anything this endpoint handles next; the future only awaits it.
        let request = self.resource_manager.request_slot(job.clone());
        let ctx = RpcContext::<Self>::current();
        Deferred::new(async move {
            // Beside the main thread: the dispatcher serves other calls meanwhile.
            let granted = match request.await {
                Ok(granted) => granted.map_err(|error| error.to_string()),
                Err(error) => Err(error.to_string()),
            };
            let slot = match granted {
                Ok(slot) => slot,
                Err(reason) => {
                    // Forget the job on the main thread; nothing needs to wait for that.
                    let _ = ctx.run_async(move |dispatcher| dispatcher.forget(&job));
                    return Err(SubmitError::NoSlot(reason));
                }
            };
            // Back on the main thread to update the state, then reply.
            let moved = ctx.call_async(move |dispatcher: &mut Dispatcher| {
                dispatcher.forget(&job);
                println!("dispatcher: {job} running on slot {slot}");
                dispatcher.jobs.running.insert(job, slot);
            });
            moved
                .await
                .map_err(|error| SubmitError::Stopped(error.to_string()))?;
            Ok(slot)
        })
    }

    async fn jobs(&mut self) -> Jobs {
        self.jobs.clone()
    }
}
