//! [`CallControl`]: what the two ends of one ask share besides the reply, its deadline and
//! whether it was cancelled; and [`CallContext`], a handler's view of it.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use futures::task::AtomicWaker;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::caller::Caller;
use crate::trace::TraceContext;

/// Where a transport learns that a call it carries was cancelled, or that its deadline moved:
/// the caller's connection, keyed by the request it sent.
pub trait CancelRoute: Send + Sync + 'static {
    /// The caller gave up on request `request_id` (timeout, drop or abort): forget its reply
    /// slot and tell the other side.
    fn cancel(&self, request_id: u64);

    /// The caller now waits until `deadline` for request `request_id`, later than before.
    fn extend(&self, request_id: u64, deadline: Instant);

    /// The consumer of stream `request_id` has consumed `bytes` more of its items: the
    /// producer may send that much more.
    fn credit(&self, request_id: u64, bytes: u32) {
        let _ = (request_id, bytes);
    }
}

/// The state of one ask shared by its caller, the invocation waiting in a mailbox and the
/// handler running it: its deadline and whether the caller gave up. Every ask has one; a
/// tell has none.
///
/// The caller's [`RpcCall`](crate::RpcCall) cancels it on timeout, drop or abort; the
/// endpoint's main loop skips an invocation whose control is cancelled or past its deadline,
/// and drops a `Deferred` reply still running when it is. A transport carries it across:
/// the caller's side registers a [`CancelRoute`] so that a cancel reaches the wire, the
/// callee's side makes a control from the deadline the request carried.
pub struct CallControl {
    /// Nanoseconds after [`epoch`], or [`NO_DEADLINE`].
    deadline: AtomicU64,
    cancelled: AtomicBool,
    /// Woken on cancel and on a deadline change: handlers and `Deferred` replies waiting.
    waiters: Notify,
    /// Whether someone holds an [`AbortHandle`](crate::AbortHandle): the caller's future then
    /// registers in `caller` to learn of an abort.
    abortable: AtomicBool,
    caller: AtomicWaker,
    /// The transport route of a remote call, and its request id.
    route: OnceLock<(Weak<dyn CancelRoute>, u64)>,
    /// The request id of a remote call, on either side.
    request_id: OnceLock<u64>,
}

const NO_DEADLINE: u64 = u64::MAX;

/// The instant deadlines are counted from (the first one asked for in this process).
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn to_nanos(deadline: Option<Instant>) -> u64 {
    match deadline {
        Some(deadline) => {
            let nanos = deadline.saturating_duration_since(epoch()).as_nanos();
            u64::try_from(nanos).unwrap_or(NO_DEADLINE - 1)
        }
        None => NO_DEADLINE,
    }
}

impl std::fmt::Debug for CallControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallControl")
            .field("deadline", &self.deadline())
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

impl CallControl {
    /// A control for an ask that the caller waits for until `deadline` (`None`: forever).
    pub fn new(deadline: Option<Instant>) -> Arc<CallControl> {
        Arc::new(CallControl {
            deadline: AtomicU64::new(to_nanos(deadline)),
            cancelled: AtomicBool::new(false),
            waiters: Notify::new(),
            abortable: AtomicBool::new(false),
            caller: AtomicWaker::new(),
            route: OnceLock::new(),
            request_id: OnceLock::new(),
        })
    }

    /// When the caller stops waiting, if it ever does.
    pub fn deadline(&self) -> Option<Instant> {
        match self.deadline.load(Ordering::Acquire) {
            NO_DEADLINE => None,
            nanos => Some(epoch() + Duration::from_nanos(nanos)),
        }
    }

    /// The time left until the deadline (zero once it has passed), or `None` without one.
    pub fn remaining(&self) -> Option<Duration> {
        self.deadline()
            .map(|deadline| deadline.saturating_duration_since(Instant::now()))
    }

    /// Whether the deadline has passed.
    pub fn is_expired(&self) -> bool {
        self.deadline()
            .is_some_and(|deadline| deadline <= Instant::now())
    }

    /// Whether the caller gave up on the call (timeout, drop or abort).
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }

    /// Moves the deadline. A later one is passed on to the transport route, if there is one.
    pub fn set_deadline(&self, deadline: Option<Instant>) {
        let nanos = to_nanos(deadline);
        let before = self.deadline.swap(nanos, Ordering::AcqRel);
        self.waiters.notify_waiters();
        if let (Some(deadline), Some((route, request_id))) = (deadline, self.route.get()) {
            if nanos > before && !self.is_cancelled() {
                if let Some(route) = route.upgrade() {
                    route.extend(*request_id, deadline);
                }
            }
        }
    }

    /// Cancels the call: the invocation is skipped if it has not started, a `Deferred` reply
    /// still running is dropped, the handler sees it in its [`CallContext`], and the
    /// transport route (if any) is told. Only the first cancel does anything.
    pub fn cancel(&self) {
        if self.cancelled.swap(true, Ordering::AcqRel) {
            return;
        }
        self.waiters.notify_waiters();
        self.caller.wake();
        if let Some((route, request_id)) = self.route.get() {
            if let Some(route) = route.upgrade() {
                route.cancel(*request_id);
            }
        }
    }

    /// Gives a remote stream's producer `bytes` more credit, through the transport route.
    pub(crate) fn grant(&self, bytes: u32) {
        if let Some((route, request_id)) = self.route.get() {
            if let Some(route) = route.upgrade() {
                route.credit(*request_id, bytes);
            }
        }
    }

    /// Registers the transport route that carries this call as request `request_id`. Set
    /// once, by the transport that sends the call.
    pub fn set_route(&self, route: Weak<dyn CancelRoute>, request_id: u64) {
        let _ = self.route.set((route, request_id));
        self.set_request_id(request_id);
    }

    /// Records the request id a transport gave this call (on the callee's side, the id the
    /// request arrived with), for the call's tracing span. Set once.
    pub fn set_request_id(&self, request_id: u64) {
        let _ = self.request_id.set(request_id);
    }

    /// The request id of a remote call, once its transport has given it one.
    pub fn request_id(&self) -> Option<u64> {
        self.request_id.get().copied()
    }

    /// Completes once the call is cancelled (whatever its deadline).
    pub async fn cancelled(&self) {
        loop {
            let notified = self.waiters.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }

    /// Completes once the call is cancelled or its deadline has passed.
    pub async fn finished(&self) {
        loop {
            let notified = self.waiters.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if self.is_cancelled() || self.is_expired() {
                return;
            }
            match self.deadline() {
                Some(deadline) => {
                    tokio::select! {
                        () = notified => {}
                        () = tokio::time::sleep_until(deadline) => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    pub(crate) fn make_abortable(&self) {
        self.abortable.store(true, Ordering::Release);
    }

    /// Lets the caller's future learn of an abort, if the call can be aborted.
    pub(crate) fn register_caller(&self, waker: &std::task::Waker) {
        if self.abortable.load(Ordering::Acquire) {
            self.caller.register(waker);
        }
    }
}

/// What [`CallContext::current`] reads: the running call's control (an ask's), caller and
/// trace context (the server span's: calls made from the handler continue it).
struct Scope {
    control: Option<Arc<CallControl>>,
    caller: Caller,
    trace: Option<TraceContext>,
}

tokio::task_local! {
    static CURRENT: Scope;
}

/// Runs `future` with `control`, `caller` and `trace` as the current call, for
/// [`CallContext::current`]; gives the control back with the output (moved in and out, so
/// that it is not shared once more).
pub(crate) async fn scoped<F: Future>(
    control: Option<Arc<CallControl>>,
    caller: Caller,
    trace: Option<TraceContext>,
    future: F,
) -> (F::Output, Option<Arc<CallControl>>) {
    let scope = Scope {
        control,
        caller,
        trace,
    };
    let mut scope = std::pin::pin!(CURRENT.scope(scope, future));
    let output = scope.as_mut().await;
    (output, scope.take_value().and_then(|scope| scope.control))
}

/// Runs `future` with `trace` as the current trace, keeping the current call's control and
/// caller if there is one (see [`TraceContext::scope`]).
pub(crate) async fn with_trace<F: Future>(trace: TraceContext, future: F) -> F::Output {
    let (control, caller) = CURRENT
        .try_with(|scope| (scope.control.clone(), scope.caller.clone()))
        .unwrap_or((None, Caller::Direct));
    scoped(control, caller, Some(trace), future).await.0
}

/// A handler's view of the call it is running: who made it ([`CallContext::caller`]), its
/// deadline, and whether the caller has given up, so that long work can stop early.
///
/// Get it with [`CallContext::current`] inside a handler (or inside the future of a
/// `Deferred` reply). Outside an ask (a tell, a `run_async` closure, a test calling the
/// method directly) it has no deadline and is never cancelled; a test calling the method
/// directly sees [`Caller::Direct`].
///
/// ```
/// use rpc_core::{CallContext, rpc_gateway};
///
/// #[rpc_gateway]
/// pub trait Search {
///     async fn scan(&mut self, needle: u64) -> Option<u64>;
/// }
///
/// struct Index(Vec<u64>);
///
/// impl Search for Index {
///     async fn scan(&mut self, needle: u64) -> Option<u64> {
///         let call = CallContext::current();
///         for (i, chunk) in self.0.chunks(1024).enumerate() {
///             if call.is_cancelled() {
///                 return None; // nobody waits for the answer any more
///             }
///             if let Some(found) = chunk.iter().position(|v| *v == needle) {
///                 return Some((i * 1024 + found) as u64);
///             }
///             tokio::task::yield_now().await;
///         }
///         None
///     }
/// }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// # assert_eq!(Index((0..5000).collect()).scan(4000).await, Some(4000));
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct CallContext {
    control: Option<Arc<CallControl>>,
    caller: Caller,
    trace: Option<TraceContext>,
}

impl Default for CallContext {
    fn default() -> Self {
        CallContext {
            control: None,
            caller: Caller::Direct,
            trace: None,
        }
    }
}

/// The trace context of the call the current task runs, if it has one: what a call made now
/// continues.
/// The connection the running call's replies travel over, when the call came from a server
/// calling this (non-listening) service back: references in them must name it.
pub(crate) fn current_replies_over() -> Option<Arc<dyn crate::transport::Carrier>> {
    CURRENT
        .try_with(|scope| match &scope.caller {
            Caller::Remote(peer) => peer.replies_over.0.clone(),
            _ => None,
        })
        .ok()
        .flatten()
}

pub(crate) fn current_trace() -> Option<TraceContext> {
    CURRENT.try_with(|scope| scope.trace).ok().flatten()
}

impl CallContext {
    /// The call the current task is running, or a direct call's context outside one.
    pub fn current() -> CallContext {
        CURRENT
            .try_with(|scope| CallContext {
                control: scope.control.clone(),
                caller: scope.caller.clone(),
                trace: scope.trace,
            })
            .unwrap_or_default()
    }

    /// Who made the call: a remote peer (its address, and what its handshake proved), a
    /// proxy in this process, or nobody (a direct call, as in a unit test).
    ///
    /// ```
    /// use rpc_core::{CallContext, Caller, rpc_gateway};
    ///
    /// #[rpc_gateway]
    /// pub trait Registry {
    ///     async fn register(&mut self, name: String) -> String;
    /// }
    ///
    /// struct Members(Vec<(String, Caller)>);
    ///
    /// impl Registry for Members {
    ///     async fn register(&mut self, name: String) -> String {
    ///         let caller = CallContext::current().caller().clone();
    ///         let reply = format!("{name} registered from {caller}");
    ///         self.0.push((name, caller));
    ///         reply
    ///     }
    /// }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// // Called directly, as a unit test does:
    /// let mut members = Members(Vec::new());
    /// assert_eq!(members.register("exec-1".into()).await, "exec-1 registered from a direct call");
    /// # }
    /// ```
    pub fn caller(&self) -> &Caller {
        &self.caller
    }

    /// The player session of a call a Gate's relay forwarded (see
    /// [`RpcService::start_relay`](crate::RpcService::start_relay)): who the player is, as
    /// the Gate vouches. `None` for any other call.
    pub fn session(&self) -> Option<&crate::Session> {
        self.caller.session()
    }

    /// The trace this call belongs to: its trace id and the id of this call's server span
    /// (the `trace_id` and `span_id` fields of its `rpc.call` span), if the call carried a
    /// trace or tracing is on. Calls the handler makes continue it by themselves; this is
    /// for handing the trace to something else (a log line, another system's request).
    pub fn trace(&self) -> Option<TraceContext> {
        self.trace
    }

    /// When the caller stops waiting for the reply, if it does.
    pub fn deadline(&self) -> Option<Instant> {
        self.control.as_ref().and_then(|c| c.deadline())
    }

    /// The time left until the deadline (zero once passed), if there is one.
    pub fn remaining(&self) -> Option<Duration> {
        self.control.as_ref().and_then(|c| c.remaining())
    }

    /// Whether the reply is no longer wanted: the caller cancelled the call (dropped it,
    /// aborted it, or timed out), or its deadline has passed.
    pub fn is_cancelled(&self) -> bool {
        self.control
            .as_ref()
            .is_some_and(|c| c.is_cancelled() || c.is_expired())
    }

    /// Completes when the reply is no longer wanted (see [`CallContext::is_cancelled`]);
    /// never, outside an ask. Race it against long work with `tokio::select!`.
    pub async fn cancelled(&self) {
        match &self.control {
            Some(control) => control.finished().await,
            None => std::future::pending().await,
        }
    }
}
