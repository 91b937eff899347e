//! [`RpcContext`]: an endpoint's handle to its own main thread (Flink's
//! `MainThreadExecutable`), and the shared cell behind it.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::{Notify, oneshot};
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;

use crate::call::ReplyTo;
use crate::control::CallControl;
use crate::endpoint::RpcEndpoint;
use crate::error::{RpcError, TimeoutSource};
use crate::fencing::{Fence, FencedEndpoint, Stale};
use crate::gateway::MethodInfo;
use crate::gateway::{Dispatch, EndpointAddress, GatewayHandle, Incarnation};
use crate::mailbox::{Envelope, Invocation, Invoke, on_main_thread_of, panic_message};
use crate::metrics::EndpointMeters;
use crate::service::{RpcService, ServiceInner};
use crate::target::LocalTarget;
use crate::trace::TraceContext;

/// Settings every endpoint of one service shares.
pub(crate) struct Shared {
    /// Where `Deferred` replies and scheduled runs are spawned, also for isolated endpoints.
    pub(crate) runtime: Handle,
    /// The ask timeout proxies start with.
    pub(crate) default_timeout: Duration,
    /// Whether local calls encode and decode their invocations and replies.
    pub(crate) force_serialization: bool,
    /// How deeply a decoded invocation or reply may nest.
    pub(crate) max_decode_depth: usize,
}

/// Everything about one running endpoint except its state, which only the main loop holds.
pub(crate) struct EndpointCell<E> {
    /// Unique within the process; tells a self-call apart.
    pub(crate) id: u64,
    /// This run of the endpoint, as proxies are bound to it.
    pub(crate) incarnation: Incarnation,
    pub(crate) address: Arc<EndpointAddress>,
    pub(crate) mailbox: crate::inbox::Sender<Envelope<E>>,
    /// Cancelled when the stop is processed: ends pending `schedule_run_async` timers.
    pub(crate) stopping: CancellationToken,
    /// Cancelled once `on_stop` has finished and the endpoint's state is dropped.
    pub(crate) terminated: CancellationToken,
    /// Set by the first stop request: from then on nothing new is queued.
    pub(crate) stop_requested: AtomicBool,
    /// How `on_stop` ended, set before `terminated` is cancelled.
    pub(crate) outcome: OnceLock<Result<(), RpcError>>,
    pub(crate) shared: Arc<Shared>,
    /// Weak, so that endpoints do not keep their service alive.
    pub(crate) service: Weak<ServiceInner>,
    /// Invocations in the mailbox, not yet taken by the main loop.
    pub(crate) queued: AtomicUsize,
    /// The most invocations the mailbox may hold.
    pub(crate) capacity: usize,
    /// Encoded bytes of the remote invocations in the mailbox.
    pub(crate) queued_bytes: AtomicUsize,
    /// The most encoded bytes the mailbox may hold (one invocation always fits).
    pub(crate) max_bytes: usize,
    /// Someone was refused room since the last wake-up: the next release signals `room`.
    pub(crate) starved: AtomicBool,
    /// Signalled when an invocation leaves a mailbox that was full: there is room again.
    pub(crate) room: Arc<Notify>,
    /// The current fencing token (of a fenced endpoint) and its epoch.
    pub(crate) fence: Fence,
    /// Its metrics (mailbox depth, calls), with the `metrics` feature.
    pub(crate) meters: EndpointMeters,
}

impl<E: RpcEndpoint> EndpointCell<E> {
    /// Queues an invocation of gateway `G` (with the reply slot and control of an ask). If
    /// the mailbox is full or the endpoint has stopped, the caller is answered through the
    /// reply slot and the same error is returned.
    pub(crate) fn deliver<G: Dispatch<E>>(
        &self,
        invocation: G::Invocation,
        method: &'static MethodInfo,
        token: Option<G::Token>,
        trace: Option<TraceContext>,
        reply: Option<(ReplyTo, Arc<CallControl>)>,
        encoded: bool,
    ) -> Result<(), RpcError> {
        if !self.reserve(0) {
            let full = self.full();
            if let Some((reply, _)) = reply {
                reply.send(Err(full.clone()));
            }
            return Err(full);
        }
        let invocation = Invocation::<G>::new(invocation, method, token, trace, reply, encoded);
        self.send_invoke(Box::new(invocation))
    }

    /// Queues an invocation for which [`EndpointCell::reserve`] made room, or answers it with
    /// `EndpointStopped`.
    pub(crate) fn send_invoke(&self, invocation: Box<dyn Invoke<E>>) -> Result<(), RpcError> {
        let size = invocation.size();
        match self.send(Envelope::Invoke(invocation)) {
            Ok(()) => Ok(()),
            Err(rejected) => {
                self.release(size);
                let stopped = RpcError::EndpointStopped {
                    endpoint: self.address.name().to_owned(),
                };
                if let Envelope::Invoke(invocation) = rejected {
                    invocation.reject(stopped.clone());
                }
                Err(stopped)
            }
        }
    }
}

impl<E> EndpointCell<E> {
    /// Takes a place in the mailbox for one invocation of `bytes` encoded bytes (0 for one
    /// that is not encoded), or says it is full: it holds `capacity` invocations, or adding
    /// these bytes to those queued would pass `max_bytes`. An invocation larger than
    /// `max_bytes` gets in when no encoded bytes are queued, so every frame can be served.
    pub(crate) fn reserve(&self, bytes: usize) -> bool {
        if self.try_reserve(bytes) {
            return true;
        }
        // Say so before looking again, so that a release between the two attempts wakes
        // whoever waits for room (see `release`).
        self.starved.store(true, Ordering::SeqCst);
        self.try_reserve(bytes)
    }

    fn try_reserve(&self, bytes: usize) -> bool {
        if self.queued.fetch_add(1, Ordering::SeqCst) >= self.capacity {
            self.queued.fetch_sub(1, Ordering::SeqCst);
            return false;
        }
        if bytes > 0 {
            let before = self.queued_bytes.fetch_add(bytes, Ordering::SeqCst);
            if before > 0 && before + bytes > self.max_bytes {
                self.queued_bytes.fetch_sub(bytes, Ordering::SeqCst);
                self.queued.fetch_sub(1, Ordering::SeqCst);
                return false;
            }
        }
        self.meters.queued();
        true
    }

    /// Gives back the place of an invocation of `bytes` encoded bytes: it left the mailbox,
    /// or a reserved one was not sent. Wakes whoever waits for room if someone was refused.
    pub(crate) fn release(&self, bytes: usize) {
        self.queued.fetch_sub(1, Ordering::SeqCst);
        self.meters.dequeued();
        if bytes > 0 {
            self.queued_bytes.fetch_sub(bytes, Ordering::SeqCst);
        }
        if self.starved.load(Ordering::SeqCst) && self.starved.swap(false, Ordering::SeqCst) {
            self.room.notify_waiters();
        }
    }

    /// The error for a full mailbox.
    pub(crate) fn full(&self) -> RpcError {
        RpcError::MailboxFull {
            endpoint: self.address.name().to_owned(),
            capacity: self.capacity,
        }
    }
}

impl<E> EndpointCell<E> {
    /// Queues `envelope`, unless a stop was requested (only the stop itself gets in then) or
    /// the mailbox is closed: then it comes back.
    pub(crate) fn send(&self, envelope: Envelope<E>) -> Result<(), Envelope<E>> {
        if self.stop_requested.load(Ordering::Acquire) && !matches!(envelope, Envelope::Stop) {
            return Err(envelope);
        }
        self.mailbox.send(envelope)
    }

    /// Stops accepting invocations and queues the stop behind those already queued. Once
    /// is enough; later calls change nothing.
    pub(crate) fn request_stop(&self) {
        if !self.stop_requested.swap(true, Ordering::AcqRel) {
            let _ = self.mailbox.send(Envelope::Stop);
        }
    }

    /// How the endpoint ended: `Err` if `on_stop` failed. `Ok` until it has terminated.
    pub(crate) fn outcome(&self) -> Result<(), RpcError> {
        self.outcome.get().cloned().unwrap_or(Ok(()))
    }

    /// Removes the endpoint's name from its service, so that the name can be reused.
    pub(crate) fn unregister(&self) {
        if let Some(service) = self.service.upgrade() {
            service.unregister(self.address.name(), self.id);
        }
    }
}

/// An endpoint's handle to its own main thread: run closures on it, schedule them, call
/// itself through a typed gateway, stop.
///
/// The endpoint receives one in [`RpcEndpoint::on_start`]; `start_endpoint` returns another.
/// It is cheap to clone and may be used from any task. A handler reaches it with
/// [`RpcContext::current`], so an endpoint need not keep it.
///
/// Here a log endpoint flushes its lines a second after the first of a batch, or at once when
/// three wait, and the code that started it reads its state and stops it:
///
/// ```
/// use std::time::Duration;
/// use rpc_core::{RpcContext, RpcEndpoint, RpcError, RpcService, rpc_gateway};
///
/// #[rpc_gateway]
/// pub trait Log {
///     async fn append(&mut self, line: String) -> usize;
///     fn flush(&mut self);
/// }
///
/// #[derive(Default)]
/// struct Batch { pending: Vec<String>, flushed: usize }
/// impl RpcEndpoint for Batch { rpc_core::serves!(Log); }
/// impl Log for Batch {
///     async fn append(&mut self, line: String) -> usize {
///         let ctx = RpcContext::<Self>::current();
///         if self.pending.is_empty() { // in a second, on this main thread like any handler
///             ctx.schedule_run_async(Duration::from_secs(1), |batch: &mut Batch| batch.flush());
///         }
///         self.pending.push(line);
///         if self.pending.len() == 3 { // a tell to itself, queued behind this call
///             let _ = ctx.self_gateway::<LogClient>().flush();
///         }
///         self.pending.len()
///     }
///     fn flush(&mut self) { self.flushed += self.pending.drain(..).count(); }
/// }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), RpcError> {
/// let service = RpcService::new();
/// let ctx = service.start_endpoint("log", Batch::default()).await?;
/// let log: LogClient = service.gateway("log")?;
/// for line in ["a", "b", "c"] { log.append(line.into()).await?; }
/// // Off the main thread: run a closure on it, after what is queued, and get its result.
/// assert_eq!(ctx.call_async(|batch: &mut Batch| batch.flushed).await?, 3);
/// ctx.stop(); // once what is queued has run; nothing new is queued from now on
/// assert!(matches!(log.append("d".into()).await, Err(RpcError::EndpointStopped { .. })));
/// # Ok(()) }
/// ```
///
/// An ask to itself through `self_gateway`, or a `call_async`, from its own main thread would
/// wait for that thread forever: both fail with [`RpcError::WouldDeadlock`] instead. Use a
/// tell or [`RpcContext::run_async`] there.
pub struct RpcContext<E> {
    cell: Arc<EndpointCell<E>>,
}

impl<E> Clone for RpcContext<E> {
    fn clone(&self) -> Self {
        RpcContext {
            cell: Arc::clone(&self.cell),
        }
    }
}

impl<E> std::fmt::Debug for RpcContext<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcContext")
            .field("endpoint", &self.cell.address.name())
            .finish()
    }
}

impl<E: RpcEndpoint> RpcContext<E> {
    pub(crate) fn from_cell(cell: Arc<EndpointCell<E>>) -> Self {
        RpcContext { cell }
    }

    /// The context of the endpoint whose handler (or hook, or `run_async` closure) is
    /// running: every handler reaches it this way, so an endpoint need not keep the one
    /// `on_start` received.
    ///
    /// # Panics
    ///
    /// Outside the main thread of a running `E` endpoint: in a handler called directly (as a
    /// unit test does), or in the future of a `Deferred` reply, which runs off the main
    /// thread. Use [`RpcContext::try_current`] there, or start the endpoint in an
    /// [`RpcService`](crate::RpcService) to test it with its context.
    ///
    /// ```
    /// use std::time::Duration;
    /// use rpc_core::{RpcContext, RpcEndpoint, RpcService, rpc_gateway};
    ///
    /// #[rpc_gateway]
    /// pub trait Leases {
    ///     /// Grants a lease that expires by itself.
    ///     async fn grant(&mut self, name: String) -> usize;
    /// }
    ///
    /// #[derive(Default)]
    /// struct Table(Vec<String>);
    ///
    /// impl RpcEndpoint for Table {
    ///     rpc_core::serves!(Leases);
    /// }
    ///
    /// impl Leases for Table {
    ///     async fn grant(&mut self, name: String) -> usize {
    ///         let ctx = RpcContext::<Self>::current();
    ///         let expired = name.clone();
    ///         // Runs on this endpoint's main thread later, like every handler.
    ///         let _ = ctx.schedule_run_async(Duration::from_secs(60), move |table: &mut Table| {
    ///             table.0.retain(|n| *n != expired);
    ///         });
    ///         self.0.push(name);
    ///         self.0.len()
    ///     }
    /// }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// let service = RpcService::new();
    /// service.start_endpoint("leases", Table::default()).await?;
    /// let leases: LeasesClient = service.gateway("leases")?;
    /// assert_eq!(leases.grant("a".into()).await?, 1);
    /// # service.shutdown().await?;
    /// # Ok(()) }
    /// ```
    pub fn current() -> RpcContext<E> {
        Self::try_current().unwrap_or_else(|| {
            panic!(
                "RpcContext::<{}>::current() outside the main thread of a running endpoint of \
                 that type: a handler called directly (as in a unit test) has no context; use \
                 RpcContext::try_current, or start the endpoint in an RpcService",
                std::any::type_name::<E>()
            )
        })
    }

    /// The context of the running `E` endpoint whose main thread the current task is, or
    /// `None` elsewhere (a direct call, a `Deferred` future, another endpoint's thread).
    pub fn try_current() -> Option<RpcContext<E>> {
        crate::mailbox::current_context::<E>()
    }

    /// The endpoint's name.
    pub fn name(&self) -> &str {
        self.cell.address.name()
    }

    /// This run of the endpoint: new at every start, also under the same name.
    pub fn incarnation(&self) -> Incarnation {
        self.cell.incarnation
    }

    /// Queues `f` to run on the main thread, after everything already queued.
    ///
    /// Returns [`RpcError::EndpointStopped`] if the endpoint has stopped; `f` is then dropped.
    /// On a fenced endpoint `f` is also dropped (with a debug log) if the fencing token
    /// changes before its turn; [`RpcContext::run_async_unfenced`] runs regardless.
    pub fn run_async(&self, f: impl FnOnce(&mut E) + Send + 'static) -> Result<(), RpcError> {
        self.queue_run(f, Some(self.cell.fence.epoch()))
    }

    /// [`RpcContext::run_async`] whatever the fencing token is when `f`'s turn comes (Flink's
    /// `runAsyncWithoutFencing`): for work such as taking or giving up leadership.
    pub fn run_async_unfenced(
        &self,
        f: impl FnOnce(&mut E) + Send + 'static,
    ) -> Result<(), RpcError> {
        self.queue_run(f, None)
    }

    fn queue_run(
        &self,
        f: impl FnOnce(&mut E) + Send + 'static,
        epoch: Option<u64>,
    ) -> Result<(), RpcError> {
        let name = Arc::clone(&self.cell.address);
        let closure = move |endpoint: Result<&mut E, Stale>| match endpoint {
            Ok(endpoint) => f(endpoint),
            Err(_) => tracing::debug!(
                endpoint = name.name(),
                "dropped a run_async closure queued under an earlier fencing token"
            ),
        };
        self.cell
            .send(Envelope::Run(Box::new(closure), epoch))
            .map_err(|_| self.stopped())
    }

    /// Queues `f` to run on the main thread and returns its result.
    ///
    /// Fails with [`RpcError::EndpointStopped`] if the endpoint stops before running it,
    /// [`RpcError::HandlerPanicked`] if `f` panics, and [`RpcError::WouldDeadlock`] when
    /// issued from this endpoint's own main thread (which could never run it while waiting).
    /// Dropping the returned future before `f` has started cancels it: `f` does not run.
    ///
    /// On a fenced endpoint, if the fencing token changes before `f`'s turn, `f` does not run
    /// and the call fails with [`RpcError::FencingTokenMismatch`];
    /// [`RpcContext::call_async_unfenced`] runs regardless.
    ///
    /// It is how code off the main thread reads or changes the endpoint's state: a test, a
    /// spawned task, or the future of a [`Deferred`](crate::Deferred) reply (whose example
    /// shows that use).
    ///
    /// ```
    /// use rpc_core::{RpcEndpoint, RpcError, RpcService};
    ///
    /// #[derive(Default)]
    /// struct Count(u64);
    /// impl RpcEndpoint for Count {}
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), RpcError> {
    /// let service = RpcService::new();
    /// let ctx = service.start_endpoint("count", Count::default()).await?;
    /// ctx.run_async(|count| count.0 += 2)?;
    /// // Runs after the closure queued before it, and hands back what it returns.
    /// assert_eq!(ctx.call_async(|count: &mut Count| count.0).await?, 2);
    ///
    /// service.stop_endpoint("count").await?;
    /// let late = ctx.call_async(|count: &mut Count| count.0).await;
    /// assert!(matches!(late, Err(RpcError::EndpointStopped { .. })));
    /// # Ok(()) }
    /// ```
    pub fn call_async<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut E) -> R + Send + 'static,
    ) -> impl Future<Output = Result<R, RpcError>> + Send + 'static {
        let queued = self.queue_call("call_async", f, Some(self.cell.fence.epoch()));
        let name = self.name().to_owned();
        async move { finish_call(queued?.await, name, "call_async") }
    }

    /// [`RpcContext::call_async`] whatever the fencing token is when `f`'s turn comes (Flink's
    /// `callAsyncWithoutFencing`).
    pub fn call_async_unfenced<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut E) -> R + Send + 'static,
    ) -> impl Future<Output = Result<R, RpcError>> + Send + 'static {
        let queued = self.queue_call("call_async_unfenced", f, None);
        let name = self.name().to_owned();
        async move { finish_call(queued?.await, name, "call_async_unfenced") }
    }

    /// [`RpcContext::call_async`] with a timeout (Flink's `callAsync(callable, timeout)`): if
    /// `f` has not returned within `timeout`, the call fails with [`RpcError::Timeout`], and
    /// `f` never runs if it had not started.
    pub fn call_async_timeout<R: Send + 'static>(
        &self,
        timeout: Duration,
        f: impl FnOnce(&mut E) -> R + Send + 'static,
    ) -> impl Future<Output = Result<R, RpcError>> + Send + 'static {
        let queued = self.queue_call("call_async_timeout", f, Some(self.cell.fence.epoch()));
        let name = self.name().to_owned();
        let endpoint = (*self.cell.address).clone();
        async move {
            // Dropping the receiver on timeout is what keeps `f` from running.
            match tokio::time::timeout(timeout, queued?).await {
                Ok(outcome) => finish_call(outcome, name, "call_async_timeout"),
                Err(_) => Err(RpcError::Timeout {
                    gateway: "RpcContext",
                    method: "call_async_timeout",
                    endpoint,
                    timeout,
                    origin: TimeoutSource::CallAsync,
                }),
            }
        }
    }

    /// Queues `f` for the main thread (stamped with fencing `epoch`), to run only if its
    /// result is still awaited then.
    fn queue_call<R: Send + 'static>(
        &self,
        method: &'static str,
        f: impl FnOnce(&mut E) -> R + Send + 'static,
        epoch: Option<u64>,
    ) -> Result<oneshot::Receiver<Ran<R>>, RpcError> {
        if on_main_thread_of(self.cell.id) {
            return Err(RpcError::WouldDeadlock {
                endpoint: self.name().to_owned(),
                gateway: "RpcContext",
                method,
            });
        }
        let (sender, receiver) = oneshot::channel();
        let closure = move |endpoint: Result<&mut E, Stale>| {
            if sender.is_closed() {
                return; // cancelled: nobody waits for the result
            }
            let _ = sender.send(run_closure(endpoint, f));
        };
        self.cell
            .send(Envelope::Run(Box::new(closure), epoch))
            .map(|()| receiver)
            .map_err(|_| self.stopped())
    }

    /// Runs `f` on the main thread once `delay` has passed, unless the endpoint stops first:
    /// a scheduled closure never runs after the stop. Dropping the returned handle does not
    /// cancel the run; [`ScheduledRun::cancel`] does.
    ///
    /// ```
    /// use std::time::Duration;
    /// use rpc_core::{RpcEndpoint, RpcService};
    ///
    /// #[derive(Default)]
    /// struct Sessions(Vec<&'static str>);
    /// impl RpcEndpoint for Sessions {}
    ///
    /// // This example runs on a paused tokio clock: its sleep takes no real time.
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// let service = RpcService::new();
    /// let ctx = service.start_endpoint("sessions", Sessions::default()).await?;
    /// ctx.run_async(|sessions| sessions.0.push("a"))?;
    /// ctx.schedule_run_async(Duration::from_secs(20), |sessions| sessions.0.clear());
    /// let reopen = ctx.schedule_run_async(Duration::from_secs(30), |sessions| sessions.0.push("b"));
    /// reopen.cancel(); // it will not run
    ///
    /// tokio::time::sleep(Duration::from_secs(31)).await;
    /// assert!(ctx.call_async(|sessions: &mut Sessions| sessions.0.is_empty()).await?);
    /// # Ok(()) }
    /// ```
    pub fn schedule_run_async(
        &self,
        delay: Duration,
        f: impl FnOnce(&mut E) + Send + 'static,
    ) -> ScheduledRun {
        self.schedule(delay, move |endpoint: Result<&mut E, Stale>| {
            if let Ok(endpoint) = endpoint {
                f(endpoint);
            }
        })
    }

    /// Queues `closure` (stamped with the fencing epoch of now) once `delay` has passed.
    fn schedule(
        &self,
        delay: Duration,
        closure: impl FnOnce(Result<&mut E, Stale>) + Send + 'static,
    ) -> ScheduledRun {
        let cancelled = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&cancelled);
        let cell = Arc::clone(&self.cell);
        let epoch = self.cell.fence.epoch();
        let task = self.cell.shared.runtime.spawn(async move {
            tokio::select! {
                () = tokio::time::sleep(delay) => {
                    let closure = move |endpoint: Result<&mut E, Stale>| {
                        if !flag.load(Ordering::Acquire) {
                            closure(endpoint);
                        }
                    };
                    let _ = cell.send(Envelope::Run(Box::new(closure), Some(epoch)));
                }
                () = cell.stopping.cancelled() => {}
            }
        });
        ScheduledRun {
            cancelled,
            task: task.abort_handle(),
        }
    }

    /// Runs `f` on the main thread once `delay` has passed and returns its result (Flink's
    /// `scheduleRunAsync` with a value): await the [`ScheduledCall`], or
    /// [cancel](ScheduledCall::cancel) it. It never runs after a cancel, after the endpoint
    /// stops, or (on a fenced endpoint) after the fencing token changed since it was
    /// scheduled; the call then fails with [`RpcError::Cancelled`],
    /// [`RpcError::EndpointStopped`] or [`RpcError::FencingTokenMismatch`]. Dropping the
    /// `ScheduledCall` does not cancel the run.
    pub fn schedule_call_async<R: Send + 'static>(
        &self,
        delay: Duration,
        f: impl FnOnce(&mut E) -> R + Send + 'static,
    ) -> ScheduledCall<R> {
        let (sender, receiver) = oneshot::channel();
        let run = self.schedule(delay, move |endpoint| {
            let _ = sender.send(run_closure(endpoint, f));
        });
        ScheduledCall {
            receiver,
            run,
            endpoint: (*self.cell.address).clone(),
        }
    }

    /// A typed proxy to this endpoint itself, for any gateway it implements. Calls through it
    /// are queued like any other caller's; an *ask* issued from the main thread itself fails
    /// with [`RpcError::WouldDeadlock`] (a tell is fine).
    ///
    /// Calls to a fenced gateway through it carry the endpoint's fencing token as it is when
    /// each call is made (none while the endpoint has none: such calls fail with
    /// [`RpcError::FencingTokenMissing`]).
    pub fn self_gateway<G: Dispatch<E>>(&self) -> G {
        let target = Arc::new(LocalTarget::<E, G>::stamping_current(Arc::clone(
            &self.cell,
        )));
        G::from_handle(GatewayHandle::new(target, self.cell.shared.default_timeout))
    }

    /// Asks the endpoint to stop once the invocations queued so far have run. From now on
    /// nothing new is queued: calls (tells too) and `run_async` closures fail with
    /// [`RpcError::EndpointStopped`]. A second stop is a no-op. Await
    /// [`RpcContext::terminated`] to know when `on_stop` has finished.
    pub fn stop(&self) {
        self.cell.request_stop();
    }

    /// Completes when the endpoint has stopped: `on_stop` has finished and its state is
    /// dropped (also when `on_start` failed).
    pub fn terminated(&self) -> impl Future<Output = ()> + Send + 'static {
        self.cell.terminated.clone().cancelled_owned()
    }

    /// Whether the endpoint has begun stopping.
    pub fn is_stopped(&self) -> bool {
        self.cell.stopping.is_cancelled()
    }

    /// The service running this endpoint, while it exists.
    pub fn service(&self) -> Option<RpcService> {
        self.cell.service.upgrade().map(RpcService::from_inner)
    }

    fn stopped(&self) -> RpcError {
        RpcError::EndpointStopped {
            endpoint: self.name().to_owned(),
        }
    }
}

impl<E: FencedEndpoint> RpcContext<E> {
    /// The endpoint's current fencing token, if it has one.
    pub fn fencing_token(&self) -> Option<E::Token> {
        self.cell.fence.current::<E::Token>()
    }

    /// Sets the endpoint's fencing token (`None`: it has none, and every fenced call is
    /// refused), as it gains or loses leadership. From then on, calls to its fenced gateways
    /// must carry the new token; calls and closures queued before the change and not yet run
    /// are refused when their turn comes (see [`fencing`](crate::fencing)).
    ///
    /// Only on the endpoint's main thread (in a handler, a hook or a `run_async` closure),
    /// so that no handler sees the token change under it; elsewhere it fails with
    /// [`RpcError::NotOnMainThread`]. From another task, queue it with
    /// [`RpcContext::run_async_unfenced`].
    pub fn set_fencing_token(&self, token: Option<E::Token>) -> Result<(), RpcError> {
        if !on_main_thread_of(self.cell.id) {
            return Err(RpcError::NotOnMainThread {
                endpoint: self.name().to_owned(),
                method: "set_fencing_token",
            });
        }
        self.cell.fence.set(token);
        Ok(())
    }
}

/// What became of a closure queued for the main thread.
#[derive(Debug)]
pub(crate) enum Ran<R> {
    /// It returned this.
    Value(R),
    /// It panicked with this message.
    Panicked(String),
    /// It did not run: the fencing token changed after it was queued.
    Stale(Stale),
}

/// Runs `f` on the endpoint if it may still run, catching a panic.
fn run_closure<E, R>(endpoint: Result<&mut E, Stale>, f: impl FnOnce(&mut E) -> R) -> Ran<R> {
    match endpoint {
        Ok(endpoint) => match std::panic::catch_unwind(AssertUnwindSafe(|| f(endpoint))) {
            Ok(value) => Ran::Value(value),
            Err(panic) => Ran::Panicked(panic_message(&*panic)),
        },
        Err(stale) => Ran::Stale(stale),
    }
}

/// The result of a closure run on the main thread, as its caller sees it.
fn finish_call<R>(
    outcome: Result<Ran<R>, oneshot::error::RecvError>,
    endpoint: String,
    method: &str,
) -> Result<R, RpcError> {
    match outcome {
        Ok(Ran::Value(value)) => Ok(value),
        Ok(Ran::Panicked(message)) => Err(RpcError::HandlerPanicked {
            endpoint,
            gateway: "RpcContext".to_owned(),
            method: method.to_owned(),
            message,
        }),
        Ok(Ran::Stale(stale)) => Err(RpcError::FencingTokenMismatch {
            endpoint,
            gateway: "RpcContext".to_owned(),
            method: method.to_owned(),
            expected: stale.expected,
            received: None,
        }),
        Err(_) => Err(RpcError::EndpointStopped { endpoint }),
    }
}

/// A closure scheduled with [`RpcContext::schedule_call_async`]: a future of its result.
#[derive(Debug)]
#[must_use = "the result arrives only if awaited (the closure runs regardless, unless cancelled)"]
pub struct ScheduledCall<R> {
    receiver: oneshot::Receiver<Ran<R>>,
    run: ScheduledRun,
    endpoint: EndpointAddress,
}

impl<R> ScheduledCall<R> {
    /// Cancels the run: after this returns, the closure does not run (if it has not
    /// already), and the call completes with [`RpcError::Cancelled`].
    pub fn cancel(&self) {
        self.run.cancel();
    }

    /// A handle that cancels the run from elsewhere, also after this future moved away.
    pub fn handle(&self) -> ScheduledRun {
        self.run.clone()
    }
}

impl<R> Future for ScheduledCall<R> {
    type Output = Result<R, RpcError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let outcome = std::task::ready!(std::pin::Pin::new(&mut self.receiver).poll(cx));
        let endpoint = self.endpoint.clone();
        std::task::Poll::Ready(match outcome {
            Err(_) if self.run.is_cancelled() => Err(RpcError::Cancelled {
                gateway: "RpcContext",
                method: "schedule_call_async",
                endpoint,
            }),
            outcome => finish_call(outcome, endpoint.name().to_owned(), "schedule_call_async"),
        })
    }
}

/// A closure scheduled with [`RpcContext::schedule_run_async`].
#[derive(Debug, Clone)]
pub struct ScheduledRun {
    cancelled: Arc<AtomicBool>,
    task: AbortHandle,
}

impl ScheduledRun {
    /// Cancels the run. After this returns, the closure does not run (if it has not already).
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Release);
        self.task.abort();
    }

    /// Whether [`ScheduledRun::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }
}
