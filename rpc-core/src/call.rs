//! One call in flight: [`RpcCall`] on the caller's side, [`ReplyTo`] / [`ReplyMode`] on the
//! endpoint's side, and the erased reply value between them.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use serde::Serialize;
use tokio::sync::oneshot;
use tokio::time::{Instant, Sleep};

use crate::codec;
use crate::control::CallControl;
use crate::deferred::Deferred;
use crate::error::{RpcError, TimeoutSource};
use crate::gateway::{EndpointAddress, MethodInfo};
use crate::metrics::ClientCall;
use crate::stream::{EncodedStream, RpcStream, StreamReply};
use crate::wire::{Owned, Plain, Via, WireDecode, WireEncode};
use futures::StreamExt;

/// A reply on its way back to the caller: the value itself for a local call, its postcard
/// encoding when it crossed (or, with forced serialization, pretended to cross) a wire.
pub enum ReplyValue {
    /// The reply value, moved as it is.
    Local(Box<dyn Any + Send>),
    /// The reply value's postcard encoding.
    Encoded(bytes::Bytes),
    /// A streaming method's items, each encoded: for a transport to send as the consumer
    /// grants credit (or, with forced serialization, for an in-process caller to decode).
    Stream(EncodedStream),
}

/// The outcome of one invocation as the caller receives it.
pub type ReplyResult = Result<ReplyValue, RpcError>;

/// Where the reply of one ask goes. Answered exactly once.
pub enum ReplyTo {
    /// A caller in this process awaiting an [`RpcCall`].
    Caller(oneshot::Sender<ReplyResult>),
    /// Anything else.
    Callback(Box<dyn FnOnce(ReplyResult) + Send>),
    /// A transport's route for the reply to request `.1`, for example its connection.
    Route(std::sync::Arc<dyn crate::transport::ReplyRoute>, u64),
    /// The caller of a streaming method: the opening goes to the caller, a remote stream's
    /// items to its sink.
    Stream(StreamReply),
}

impl ReplyTo {
    /// A reply slot and the receiver an [`RpcCall`] awaits.
    pub fn channel() -> (ReplyTo, oneshot::Receiver<ReplyResult>) {
        let (sender, receiver) = oneshot::channel();
        (ReplyTo::Caller(sender), receiver)
    }

    /// Delivers the outcome. A caller that has gone away (timed out, dropped its call) is not
    /// an error: the reply is discarded.
    pub fn send(self, result: ReplyResult) {
        match self {
            ReplyTo::Caller(sender) => {
                let _ = sender.send(result);
            }
            ReplyTo::Callback(callback) => callback(result),
            ReplyTo::Route(route, request_id) => route.reply(request_id, result),
            ReplyTo::Stream(stream) => {
                let _ = stream.open.send(result);
            }
        }
    }

    /// Gives up on replying because the caller cancelled the call: nobody waits any more.
    pub fn abandon(self) {
        match self {
            ReplyTo::Caller(_) | ReplyTo::Callback(_) | ReplyTo::Stream(_) => {}
            ReplyTo::Route(route, request_id) => route.abandon(request_id),
        }
    }
}

/// How a dispatcher hands back a method's return value: moved as it is, or encoded because the
/// caller is on the other side of a wire (or forced serialization is on).
#[derive(Clone, Copy)]
pub struct ReplyMode {
    encoded: bool,
    method: &'static MethodInfo,
}

impl ReplyMode {
    pub(crate) fn new(encoded: bool, method: &'static MethodInfo) -> Self {
        ReplyMode { encoded, method }
    }

    /// The reply of an ask that returned `value`.
    pub fn value<T: Serialize + Send + 'static>(self, value: T) -> Handled {
        self.value_as::<T, Plain>(value)
    }

    /// The reply of a method that returned a [`Deferred`].
    pub fn deferred<T: Serialize + Send + 'static>(self, deferred: Deferred<T>) -> Handled {
        self.deferred_as::<T, Plain>(deferred)
    }

    /// [`ReplyMode::value`], written on the wire in format `F`.
    pub fn value_as<T: Send + 'static, F: WireEncode<T>>(self, value: T) -> Handled {
        Handled::Reply(self.encode::<T, F>(value))
    }

    /// [`ReplyMode::deferred`], written on the wire in format `F`.
    pub fn deferred_as<T: Send + 'static, F: WireEncode<T>>(
        self,
        deferred: Deferred<T>,
    ) -> Handled {
        Handled::Deferred(Box::pin(async move { self.encode::<T, F>(deferred.await) }))
    }

    /// The reply of a method that returned an [`RpcStream`], its items written on the wire
    /// in format `F`: the stream itself for a caller in process, its items encoded one by
    /// one for a remote one.
    pub fn stream_as<T: Send + 'static, F: WireEncode<T>>(self, stream: RpcStream<T>) -> Handled {
        if !self.encoded {
            return Handled::Reply(Ok(ReplyValue::Local(Box::new(stream))));
        }
        let method = self.method;
        // Taken here, in the call's scope: the items are encoded outside it.
        let replies_over = crate::control::current_replies_over();
        let items = stream.map(move |item| {
            item.and_then(|value| {
                let encode = || {
                    codec::encode(&Via::<F, T>::new(&value), || {
                        format!(
                            "encoding an item of the stream of `{}::{}`",
                            method.gateway, method.name
                        )
                    })
                };
                match &replies_over {
                    Some(carrier) => crate::reference::sending_over(Arc::clone(carrier), encode),
                    None => encode(),
                }
            })
        });
        Handled::Reply(Ok(ReplyValue::Stream(EncodedStream::new(
            items.boxed(),
            method,
        ))))
    }

    fn encode<T: Send + 'static, F: WireEncode<T>>(self, value: T) -> ReplyResult {
        if !self.encoded {
            return Ok(ReplyValue::Local(Box::new(value)));
        }
        let method = self.method;
        let encode = || {
            codec::encode(&Via::<F, T>::new(&value), || {
                format!(
                    "encoding the reply of `{}::{}`",
                    method.gateway, method.name
                )
            })
        };
        match crate::control::current_replies_over() {
            Some(carrier) => crate::reference::sending_over(carrier, encode),
            None => encode(),
        }
        .map(ReplyValue::Encoded)
    }
}

/// What running one invocation produced.
pub enum Handled {
    /// The reply, ready now.
    Reply(ReplyResult),
    /// A reply that a future finishes off the main thread.
    Deferred(BoxFuture<'static, ReplyResult>),
    /// A tell: nothing to send back.
    NoReply,
}

pin_project_lite::pin_project! {
    /// An ask in flight: a future resolving to the method's return value, or to an
    /// [`RpcError`].
    ///
    /// The invocation is queued when the proxy method is called, not when this future is first
    /// polled: calls made one after another from one task run in that order even if their
    /// futures are awaited in another order.
    ///
    /// Every ask ends once, and its end reaches the endpoint. The caller's deadline (the call
    /// time plus its timeout) travels with the invocation: one still queued when its deadline
    /// passes is not run. When the timeout fires, or the call is dropped before its reply or
    /// [aborted](RpcCall::abort_handle), the call is *cancelled*: a remote call frees its place
    /// on the connection at once and tells the server; the invocation is skipped if it has not
    /// started, a `Deferred` reply still running is dropped, and a running handler sees it in
    /// its [`CallContext`](crate::CallContext). A reply that arrives later is discarded.
    ///
    /// The timeout counts from the call. Override the proxy's timeout for this one call with
    /// [`RpcCall::with_timeout`].
    #[must_use = "the reply arrives only if the call is awaited; dropping it cancels the call"]
    pub struct RpcCall<T> {
        receiver: Option<oneshot::Receiver<ReplyResult>>,
        error: Option<RpcError>,
        method: &'static MethodInfo,
        endpoint: Option<Arc<EndpointAddress>>,
        control: Option<Arc<CallControl>>,
        started: Instant,
        timeout: Duration,
        source: TimeoutSource,
        max_depth: usize,
        #[pin]
        sleep: Option<Sleep>,
        // Turns the reply back into a `T`, reading an encoded one in the method's wire format.
        decode: fn(ReplyValue, &MethodInfo, usize) -> Result<T, RpcError>,
        // The caller's span of this call, entered while it is polled.
        span: tracing::Span,
        // Its metrics, until it completes.
        meter: Option<ClientCall>,
    }

    impl<T> PinnedDrop for RpcCall<T> {
        fn drop(this: Pin<&mut Self>) {
            // Dropped before its reply: nobody waits for it any more.
            if this.receiver.is_some() {
                if let Some(control) = &this.control {
                    control.cancel();
                }
            }
        }
    }
}

impl<T: 'static> RpcCall<T> {
    /// An ask on its way, whose reply `decode` turns back into a `T`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn pending_with(
        decode: fn(ReplyValue, &MethodInfo, usize) -> Result<T, RpcError>,
        span: tracing::Span,
        meter: ClientCall,
        receiver: oneshot::Receiver<ReplyResult>,
        control: Arc<CallControl>,
        method: &'static MethodInfo,
        endpoint: Arc<EndpointAddress>,
        started: Instant,
        timeout: Duration,
        source: TimeoutSource,
        max_depth: usize,
    ) -> Self {
        RpcCall {
            receiver: Some(receiver),
            error: None,
            method,
            endpoint: Some(endpoint),
            control: Some(control),
            started,
            timeout,
            source,
            max_depth,
            sleep: None,
            decode,
            span,
            meter: Some(meter),
        }
    }

    pub(crate) fn failed(error: RpcError, method: &'static MethodInfo) -> Self {
        RpcCall {
            receiver: None,
            error: Some(error),
            method,
            endpoint: None,
            control: None,
            started: Instant::now(),
            timeout: Duration::ZERO,
            source: TimeoutSource::Call,
            max_depth: 0,
            sleep: None,
            decode: never_decoded,
            span: tracing::Span::none(),
            meter: None,
        }
    }

    /// Gives this call its own timeout, counted from when the call was made. The endpoint
    /// learns of the new deadline too (a remote one by a `Deadline` frame, when it is later
    /// than the one the call was sent with).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self.source = TimeoutSource::Call;
        self.sleep = None;
        if let Some(control) = &self.control {
            control.set_deadline(self.started.checked_add(timeout));
        }
        self
    }

    /// A handle that aborts this call from anywhere (Spark's `askAbortable`): the call then
    /// completes with [`RpcError::Cancelled`] and is cancelled like a dropped one.
    pub fn abort_handle(&self) -> AbortHandle {
        if let Some(control) = &self.control {
            control.make_abortable();
        }
        AbortHandle {
            control: self.control.clone(),
        }
    }

    /// Cancels the call now: the same as dropping it, said explicitly.
    pub fn abort(self) {
        drop(self);
    }
}

/// Aborts one [`RpcCall`] from any task: see [`RpcCall::abort_handle`].
///
/// ```
/// use rpc_core::{CallContext, RpcEndpoint, RpcError, RpcService, rpc_gateway};
///
/// #[rpc_gateway]
/// pub trait Export {
///     async fn export(&mut self, table: String) -> bool;
/// }
///
/// struct Exporter;
/// impl RpcEndpoint for Exporter { rpc_core::serves!(Export); }
/// impl Export for Exporter {
///     async fn export(&mut self, _table: String) -> bool {
///         CallContext::current().cancelled().await; // long work, until the caller gives up
///         false
///     }
/// }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), RpcError> {
/// # let service = RpcService::new();
/// # service.start_endpoint("exporter", Exporter).await?;
/// let exporter: ExportClient = service.gateway("exporter")?;
/// let call = exporter.export("orders".into());
/// let abort = call.abort_handle();
/// let button = abort.clone();
/// tokio::spawn(async move { button.abort() }); // a cancel button, in another task
/// assert!(matches!(call.await, Err(RpcError::Cancelled { method: "export", .. })));
/// assert!(abort.is_aborted());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct AbortHandle {
    control: Option<Arc<CallControl>>,
}

impl AbortHandle {
    /// Aborts the call, unless it has already completed: it completes with
    /// [`RpcError::Cancelled`], and the endpoint skips or drops its work.
    pub fn abort(&self) {
        if let Some(control) = &self.control {
            control.cancel();
        }
    }

    /// Whether the call was cancelled (aborted, dropped or timed out).
    pub fn is_aborted(&self) -> bool {
        self.control.as_ref().is_some_and(|c| c.is_cancelled())
    }
}

impl<T: 'static> Future for RpcCall<T> {
    type Output = Result<T, RpcError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let outcome = std::task::ready!(self.as_mut().poll_outcome(cx));
        if let Some(meter) = self.project().meter.take() {
            meter.finish(outcome.as_ref().err());
        }
        Poll::Ready(outcome)
    }
}

impl<T: 'static> RpcCall<T> {
    /// The call's outcome, once there is one: the reply, or why there is none.
    fn poll_outcome(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T, RpcError>> {
        let mut this = self.project();
        let _entered = this.span.enter();
        if let Some(error) = this.error.take() {
            return Poll::Ready(Err(error));
        }
        let Some(receiver) = this.receiver.as_mut() else {
            panic!("RpcCall polled after it completed");
        };
        let cancelled = || RpcError::Cancelled {
            gateway: this.method.gateway,
            method: this.method.name,
            endpoint: endpoint_of(this.endpoint),
        };
        let timed_out = || RpcError::Timeout {
            gateway: this.method.gateway,
            method: this.method.name,
            endpoint: endpoint_of(this.endpoint),
            timeout: *this.timeout,
            origin: *this.source,
        };
        // Aborted: that wins over a reply arriving at the same time.
        if let Some(control) = this.control.as_ref() {
            control.register_caller(cx.waker());
            if control.is_cancelled() {
                *this.receiver = None;
                return Poll::Ready(Err(cancelled()));
            }
        }
        if let Poll::Ready(outcome) = Pin::new(receiver).poll(cx) {
            *this.receiver = None;
            return Poll::Ready(match outcome {
                Ok(Ok(value)) => match this.endpoint.as_deref() {
                    // The references inside become proxies of the caller's service.
                    Some(endpoint) => crate::reference::decoding_from(
                        endpoint.service(),
                        endpoint.carrier(),
                        endpoint.address(),
                        || (this.decode)(value, this.method, *this.max_depth),
                    ),
                    None => (this.decode)(value, this.method, *this.max_depth),
                },
                Ok(Err(error)) => Err(error),
                // The reply slot was dropped: the endpoint gave up on the call at its deadline
                // (a moment before this side's timer), or it stopped.
                Err(_) if this.control.as_ref().is_some_and(|c| c.is_expired()) => Err(timed_out()),
                Err(_) => Err(RpcError::EndpointStopped {
                    endpoint: this
                        .endpoint
                        .as_deref()
                        .map(|e| e.name().to_owned())
                        .unwrap_or_default(),
                }),
            });
        }
        if this.sleep.is_none() {
            if let Some(deadline) = this.started.checked_add(*this.timeout) {
                this.sleep.set(Some(tokio::time::sleep_until(deadline)));
            }
        }
        if let Some(sleep) = this.sleep.as_mut().as_pin_mut() {
            if sleep.poll(cx).is_ready() {
                *this.receiver = None;
                if let Some(control) = this.control.as_ref() {
                    control.cancel();
                }
                return Poll::Ready(Err(timed_out()));
            }
        }
        Poll::Pending
    }
}

fn endpoint_of(endpoint: &Option<Arc<EndpointAddress>>) -> EndpointAddress {
    endpoint
        .as_deref()
        .cloned()
        .unwrap_or_else(|| EndpointAddress::new("", None))
}

/// Turns a reply back into the method's return type, read in format `F` if it is encoded.
pub(crate) fn decode<T: 'static, F: WireDecode<T>>(
    value: ReplyValue,
    method: &MethodInfo,
    max_depth: usize,
) -> Result<T, RpcError> {
    let context = || {
        format!(
            "decoding the reply of `{}::{}`",
            method.gateway, method.name
        )
    };
    match value {
        ReplyValue::Local(value) => {
            value
                .downcast::<T>()
                .map(|v| *v)
                .map_err(|_| RpcError::Serialization {
                    context: context(),
                    reason: "the reply has another type than the proxy expects".to_owned(),
                })
        }
        ReplyValue::Encoded(bytes) => {
            codec::decode_shared::<Owned<F, T>>(&bytes, max_depth, context).map(|owned| owned.0)
        }
        ReplyValue::Stream(_) => Err(RpcError::Serialization {
            context: context(),
            reason: "the endpoint answered with a stream, the proxy expects one value".to_owned(),
        }),
    }
}

/// The decoder of a call that failed before it was sent: it never has a reply.
fn never_decoded<T>(_: ReplyValue, method: &MethodInfo, _: usize) -> Result<T, RpcError> {
    Err(RpcError::Serialization {
        context: format!(
            "decoding the reply of `{}::{}`",
            method.gateway, method.name
        ),
        reason: "the call failed before it was sent, so it has no reply".to_owned(),
    })
}

impl std::fmt::Debug for ReplyValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReplyValue::Local(_) => f.write_str("Local(..)"),
            ReplyValue::Encoded(bytes) => write!(f, "Encoded({} bytes)", bytes.len()),
            ReplyValue::Stream(_) => f.write_str("Stream(..)"),
        }
    }
}

impl std::fmt::Debug for ReplyTo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReplyTo::Caller(_) => f.write_str("Caller"),
            ReplyTo::Callback(_) => f.write_str("Callback"),
            ReplyTo::Route(_, request_id) => write!(f, "Route(request {request_id})"),
            ReplyTo::Stream(_) => f.write_str("Stream"),
        }
    }
}

impl std::fmt::Debug for ReplyMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplyMode")
            .field("encoded", &self.encoded)
            .field("method", &self.method.name)
            .finish()
    }
}

impl std::fmt::Debug for Handled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Handled::Reply(result) => f.debug_tuple("Reply").field(result).finish(),
            Handled::Deferred(_) => f.write_str("Deferred(..)"),
            Handled::NoReply => f.write_str("NoReply"),
        }
    }
}

impl<T> std::fmt::Debug for RpcCall<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcCall")
            .field("gateway", &self.method.gateway)
            .field("method", &self.method.name)
            .field("endpoint", &self.endpoint)
            .field("timeout", &self.timeout)
            .field("pending", &self.receiver.is_some())
            .finish_non_exhaustive()
    }
}
