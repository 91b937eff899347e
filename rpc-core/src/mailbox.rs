//! The mailbox and the main loop: how an endpoint runs its invocations one at a time.
//!
//! Everything that touches an endpoint's state goes through its mailbox as an [`Envelope`]:
//! invocations from proxies, `run_async` closures and the stop request. One task (or, for an
//! isolated endpoint, one OS thread) owns the endpoint and takes envelopes in arrival order,
//! awaiting each to completion before taking the next. That task is the endpoint's *main
//! thread*.

use std::any::Any;
use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use bytes::Bytes;

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::sync::oneshot;
use tracing::Instrument;

use crate::call::{Handled, ReplyMode, ReplyTo, ReplyValue};
use crate::caller::Caller;
use crate::codec;
use crate::context::{EndpointCell, RpcContext};
use crate::control::{self, CallControl};
use crate::endpoint::RpcEndpoint;
use crate::error::RpcError;
use crate::fencing::Stale;
use crate::gateway::{Dispatch, Gateway, MethodInfo};
use crate::trace::{self, TraceContext};
use crate::transport::Charge;

/// The endpoint whose main thread the current task is.
struct MainThread {
    /// Its id: lets a proxy see that an ask would wait on the very thread that has to answer
    /// it.
    id: u64,
    /// Its `RpcContext<E>`, for [`RpcContext::current`].
    context: Box<dyn Any + Send>,
}

tokio::task_local! {
    static MAIN_THREAD: MainThread;
}

/// Whether the current task is the main thread of endpoint `id`.
pub(crate) fn on_main_thread_of(id: u64) -> bool {
    MAIN_THREAD
        .try_with(|current| current.id == id)
        .unwrap_or(false)
}

/// The context of the endpoint of type `E` whose main thread the current task is.
pub(crate) fn current_context<E: RpcEndpoint>() -> Option<RpcContext<E>> {
    MAIN_THREAD
        .try_with(|current| current.context.downcast_ref::<RpcContext<E>>().cloned())
        .ok()
        .flatten()
}

/// One item in an endpoint's mailbox.
pub(crate) enum Envelope<E> {
    /// An invocation of a gateway method.
    Invoke(Box<dyn Invoke<E>>),
    /// A closure from `run_async`, `call_async` or `schedule_run_async`, with the fencing
    /// epoch it was queued at (`None`: it runs whatever the token). It is called with the
    /// endpoint, or, if the endpoint's fencing token changed since, with why it may not run.
    Run(Closure<E>, Option<u64>),
    /// Stop once everything queued before this has run.
    Stop,
}

/// A closure for the main thread: given the endpoint, or told it is stale.
pub(crate) type Closure<E> = Box<dyn FnOnce(Result<&mut E, Stale>) + Send>;

/// A type-erased invocation of some gateway `G` that endpoint `E` serves.
pub(crate) trait Invoke<E>: Send {
    /// Runs the method on the main thread and delivers the reply.
    fn run<'a>(
        self: Box<Self>,
        endpoint: &'a mut E,
        cell: &'a EndpointCell<E>,
    ) -> BoxFuture<'a, ()>;

    /// Answers the caller with `error` without running the method.
    fn reject(self: Box<Self>, error: RpcError);

    /// The encoded bytes this invocation holds in the mailbox (0 if it is not encoded).
    fn size(&self) -> usize {
        0
    }
}

/// An ask's reply slot and its control (deadline, cancellation); a tell has neither.
pub(crate) type Ask = Option<(ReplyTo, Arc<CallControl>)>;

/// An invocation of gateway `G` with its reply slot (and fencing token).
pub(crate) struct Invocation<G: Gateway> {
    invocation: G::Invocation,
    method: &'static MethodInfo,
    token: Option<G::Token>,
    /// The caller's trace context, which the handler's span continues.
    trace: Option<TraceContext>,
    reply: Ask,
    /// Whether the reply must be encoded (remote caller or forced serialization).
    encoded: bool,
}

impl<G: Gateway> Invocation<G> {
    pub(crate) fn new(
        invocation: G::Invocation,
        method: &'static MethodInfo,
        token: Option<G::Token>,
        trace: Option<TraceContext>,
        reply: Ask,
        encoded: bool,
    ) -> Self {
        Invocation {
            invocation,
            method,
            token,
            trace,
            reply,
            encoded,
        }
    }
}

impl<E: RpcEndpoint, G: Dispatch<E>> Invoke<E> for Invocation<G> {
    fn run<'a>(
        self: Box<Self>,
        endpoint: &'a mut E,
        cell: &'a EndpointCell<E>,
    ) -> BoxFuture<'a, ()> {
        let Invocation {
            invocation,
            method,
            token,
            trace,
            reply,
            encoded,
        } = *self;
        let Some(reply) = settle_stale(reply, cell, method.gateway) else {
            return Box::pin(std::future::ready(()));
        };
        let Some(reply) = admit::<E, G>(reply, token.as_ref(), cell, method) else {
            return Box::pin(std::future::ready(()));
        };
        Box::pin(run_decoded::<E, G>(
            endpoint,
            cell,
            invocation,
            method,
            reply,
            encoded,
            Caller::Local,
            trace,
        ))
    }

    fn reject(self: Box<Self>, error: RpcError) {
        match self.reply {
            Some((reply, _)) => reply.send(Err(error)),
            None => tracing::warn!(
                gateway = self.method.gateway,
                method = self.method.name,
                "dropped a tell: {error}"
            ),
        }
    }
}

/// A remote invocation of gateway `G`, queued as it arrived: its encoded bytes, decoded on
/// the main thread when its turn comes. Queued memory is wire bytes, whatever the decoded
/// value would take, and decoding costs the endpoint's time only for work it runs.
pub(crate) struct EncodedInvocation<G> {
    payload: Payload,
    reply: Ask,
    /// The connection's share of mailbox bytes, given back when this leaves the mailbox.
    charge: Charge,
    _gateway: PhantomData<fn() -> G>,
}

/// Payloads up to this many bytes are kept inside the queued invocation itself.
const INLINE: usize = 64;

/// An invocation's bytes, copied out of the buffer they arrived in: that buffer may be far
/// larger and shared with other frames, and a queued invocation must hold only the bytes it
/// is charged for. Small ones (most calls) live inline, costing no allocation. A large one
/// (from [`codec::SHARE_AT_LEAST`] bytes on) is kept where it arrived: its frame then takes up
/// most of that buffer, and its byte strings are decoded without a copy (the bulk lane).
enum Payload {
    Inline { bytes: [u8; INLINE], len: u8 },
    Heap(Bytes),
}

impl Payload {
    fn of(bytes: &Bytes) -> Payload {
        match u8::try_from(bytes.len()) {
            Ok(len) if bytes.len() <= INLINE => {
                let mut inline = [0; INLINE];
                inline[..bytes.len()].copy_from_slice(bytes);
                Payload::Inline { bytes: inline, len }
            }
            _ if bytes.len() >= codec::SHARE_AT_LEAST => Payload::Heap(bytes.clone()),
            _ => Payload::Heap(Bytes::copy_from_slice(bytes)),
        }
    }

    fn as_slice(&self) -> &[u8] {
        match self {
            Payload::Inline { bytes, len } => &bytes[..usize::from(*len)],
            Payload::Heap(bytes) => bytes,
        }
    }

    /// Decodes the payload, sharing its large byte strings when it is on the heap.
    fn decode<T: serde::de::DeserializeOwned>(
        &self,
        max_depth: usize,
        context: impl FnOnce() -> String,
    ) -> Result<T, RpcError> {
        match self {
            Payload::Inline { .. } => codec::decode(self.as_slice(), max_depth, context),
            Payload::Heap(bytes) => codec::decode_shared(bytes, max_depth, context),
        }
    }
}

impl<G> EncodedInvocation<G> {
    /// Queues `payload` (see [`Payload`]).
    pub(crate) fn new(payload: &Bytes, reply: Ask, charge: Charge) -> Self {
        EncodedInvocation {
            payload: Payload::of(payload),
            reply,
            charge,
            _gateway: PhantomData,
        }
    }
}

impl<E: RpcEndpoint, G: Dispatch<E>> Invoke<E> for EncodedInvocation<G> {
    fn size(&self) -> usize {
        self.payload.as_slice().len()
    }

    fn run<'a>(
        self: Box<Self>,
        endpoint: &'a mut E,
        cell: &'a EndpointCell<E>,
    ) -> BoxFuture<'a, ()> {
        let EncodedInvocation {
            payload,
            reply,
            charge,
            ..
        } = *self;
        let Some(reply) = settle_stale(reply, cell, G::NAME) else {
            return Box::pin(std::future::ready(()));
        };
        // Decoded here, not in the future: the future then holds the invocation alone, not
        // its bytes and their charge besides (a smaller allocation for every call).
        let depth = cell.shared.max_decode_depth;
        let what = || format!("decoding an invocation of gateway `{}`", G::NAME);
        // The header (trace context, relayed session) comes first, then (a fenced gateway's)
        // the token.
        type Trace = Option<TraceContext>;
        type Relayed = crate::reference::RelayedHeader;
        // The references inside become proxies of this endpoint's service.
        let decoded = crate::reference::decoding_from(
            &cell.service,
            charge.carrier(),
            Some(charge.peer_address()),
            || {
                if G::FENCED {
                    payload.decode::<(Trace, Relayed, Option<G::Token>, G::Invocation)>(depth, what)
                } else {
                    payload
                        .decode::<(Trace, Relayed, G::Invocation)>(depth, what)
                        .map(|(trace, session, invocation)| (trace, session, None, invocation))
                }
            },
        );
        let decoded = decoded.and_then(|(trace, session, token, invocation)| {
            let caller = match session.0 {
                Some(session) => charge.relayed_caller(session)?,
                None => charge.caller(),
            };
            Ok((caller, trace, token, invocation))
        });
        drop(charge);
        drop(payload);
        match decoded {
            Ok((caller, trace, token, invocation)) => {
                let method = &G::METHODS[G::method_index(&invocation)];
                // A relay carries one answer per call, not a stream's items: refuse it at once
                // rather than open a stream that would never deliver.
                if method.kind == crate::gateway::MethodKind::Stream
                    && matches!(caller, Caller::Relayed { .. })
                {
                    let error = RpcError::Relay {
                        endpoint: cell.address.name().to_owned(),
                        reason: format!(
                            "`{}::{}` returns a stream, and streams are not relayed: call it on \
                             a gateway the player reaches directly",
                            method.gateway, method.name
                        ),
                    };
                    cell.meters.refused(method.gateway, method.name, &error);
                    if let Some((reply, _)) = reply {
                        reply.send(Err(error));
                    }
                    return Box::pin(std::future::ready(()));
                }
                let Some(reply) = admit::<E, G>(reply, token.as_ref(), cell, method) else {
                    return Box::pin(std::future::ready(()));
                };
                Box::pin(run_decoded::<E, G>(
                    endpoint, cell, invocation, method, reply, true, caller, trace,
                ))
            }
            Err(error) => {
                tracing::warn!(endpoint = cell.address.name(), "{error}");
                cell.meters.refused(G::NAME, "?", &error);
                if let Some((reply, _)) = reply {
                    reply.send(Err(error));
                }
                Box::pin(std::future::ready(()))
            }
        }
    }

    fn reject(self: Box<Self>, error: RpcError) {
        match self.reply {
            Some((reply, _)) => reply.send(Err(error)),
            None => tracing::warn!(gateway = G::NAME, "dropped a tell: {error}"),
        }
    }
}

/// Lets an invocation through (`Some`) if it is a tell, or an ask its caller still waits
/// for. An ask that was cancelled, or whose deadline has passed, is abandoned instead (its
/// caller has given up, or is about to see its own `Timeout`) and does not run: `None`.
fn settle_stale<E>(ask: Ask, cell: &EndpointCell<E>, gateway: &str) -> Option<Ask> {
    match ask {
        Some((reply, control)) if control.is_cancelled() || control.is_expired() => {
            tracing::debug!(
                endpoint = cell.address.name(),
                gateway,
                "skipped a call nobody waits for any more"
            );
            reply.abandon();
            None
        }
        ask => Some(ask),
    }
}

/// Lets a call to a fenced gateway through (`Some`) if it carries the endpoint's current
/// fencing token; otherwise answers it (an ask) or drops it with a warning (a tell): `None`.
/// Calls to a gateway that is not fenced always pass.
fn admit<E: RpcEndpoint, G: Dispatch<E>>(
    ask: Ask,
    token: Option<&G::Token>,
    cell: &EndpointCell<E>,
    method: &'static MethodInfo,
) -> Option<Ask> {
    if !G::FENCED {
        return Some(ask);
    }
    match cell.fence.admit(token, cell.address.name(), method) {
        Ok(()) => Some(ask),
        Err(error) => {
            cell.meters.refused(method.gateway, method.name, &error);
            match ask {
                Some((reply, _)) => reply.send(Err(error)),
                None => tracing::warn!(endpoint = cell.address.name(), "dropped a tell: {error}"),
            }
            None
        }
    }
}

/// Runs one decoded invocation on the main thread and delivers its reply.
#[allow(clippy::too_many_arguments)]
async fn run_decoded<E: RpcEndpoint, G: Dispatch<E>>(
    endpoint: &mut E,
    cell: &EndpointCell<E>,
    invocation: G::Invocation,
    method: &'static MethodInfo,
    ask: Ask,
    encoded: bool,
    caller: Caller,
    trace: Option<TraceContext>,
) {
    let (reply, control) = match ask {
        Some((reply, control)) => (Some(reply), Some(control)),
        None => (None, None),
    };
    let mode = ReplyMode::new(encoded, method);
    // The handler runs in this span, so that its own events say which call they belong to.
    let span = tracing::info_span!(
        "rpc.call",
        side = "server",
        gateway = method.gateway,
        method = method.name,
        endpoint = cell.address.name(),
        request_id = control.as_ref().and_then(|c| c.request_id()),
        caller = %caller,
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
        parent_span_id = tracing::field::Empty,
    );
    // The handler's trace: the caller's continued, so that its own calls carry it on.
    let trace = trace::continue_trace(trace, &span, trace::Parent::Carried);
    let meter = cell.meters.start(method);
    let dispatch = AssertUnwindSafe(G::dispatch(endpoint, invocation, mode)).catch_unwind();
    let (outcome, control) = control::scoped(control, caller.clone(), trace, dispatch)
        .instrument(span.clone())
        .await;
    match outcome {
        Ok(Handled::Reply(mut result)) => {
            if let Ok(ReplyValue::Stream(stream)) = &mut result {
                stream.set_endpoint(Arc::clone(cell.address.shared_name()));
            }
            meter.finish(result.as_ref().err());
            if let Some(reply) = reply {
                reply.send(result);
            }
        }
        Ok(Handled::Deferred(future)) => {
            let name = cell.address.name().to_owned();
            cell.shared.runtime.spawn(async move {
                let run = AssertUnwindSafe(future).catch_unwind();
                let run = async { control::scoped(control.clone(), caller, trace, run).await.0 }
                    .instrument(span);
                let result = match &control {
                    // Dropped, not finished, once nobody waits for it.
                    Some(control) => tokio::select! {
                        biased;
                        result = run => result,
                        () = control.finished() => {
                            tracing::debug!(
                                endpoint = %name,
                                method = method.name,
                                "dropped a Deferred reply nobody waits for"
                            );
                            if let Some(reply) = reply {
                                reply.abandon();
                            }
                            return;
                        }
                    },
                    None => run.await,
                };
                let result = result.unwrap_or_else(|panic| Err(panicked(&name, method, &*panic)));
                meter.finish(result.as_ref().err());
                if let Some(reply) = reply {
                    reply.send(result);
                }
            });
        }
        Ok(Handled::NoReply) => {
            // Only a remote peer can ask a tell; it still gets an answer.
            match reply {
                Some(reply) => {
                    let error = RpcError::Serialization {
                        context: format!("calling `{}::{}`", method.gateway, method.name),
                        reason: "the method is a tell: it has no reply to ask for".to_owned(),
                    };
                    meter.finish(Some(&error));
                    reply.send(Err(error));
                }
                None => meter.finish(None),
            }
        }
        Err(panic) => {
            let error = panicked(cell.address.name(), method, &*panic);
            meter.finish(Some(&error));
            if let Some(reply) = reply {
                reply.send(Err(error));
            }
        }
    }
}

/// Logs a handler panic (or its `Deferred`'s, or its stream's) and turns it into the error
/// its caller receives.
pub(crate) fn panicked(endpoint: &str, method: &MethodInfo, panic: &(dyn Any + Send)) -> RpcError {
    let message = panic_message(panic);
    tracing::error!(
        endpoint,
        gateway = method.gateway,
        method = method.name,
        "handler panicked: {message}; the endpoint keeps serving"
    );
    RpcError::HandlerPanicked {
        endpoint: endpoint.to_owned(),
        gateway: method.gateway.to_owned(),
        method: method.name.to_owned(),
        message,
    }
}

pub(crate) fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(message) = panic.downcast_ref::<&str>() {
        (*message).to_owned()
    } else if let Some(message) = panic.downcast_ref::<String>() {
        message.clone()
    } else {
        "the panic payload is not a string".to_owned()
    }
}

/// An `on_start` that panicked, as an error.
#[derive(Debug, thiserror::Error)]
#[error("on_start panicked: {0}")]
struct StartPanicked(String);

/// An `on_stop` that panicked, as an error.
#[derive(Debug, thiserror::Error)]
#[error("on_stop panicked: {0}")]
struct StopPanicked(String);

/// The main thread of one endpoint, from `on_start` to termination.
pub(crate) async fn run<E: RpcEndpoint>(
    endpoint: E,
    cell: Arc<EndpointCell<E>>,
    mailbox: crate::inbox::Receiver<Envelope<E>>,
    started: oneshot::Sender<Result<(), RpcError>>,
) {
    let main_thread = MainThread {
        id: cell.id,
        context: Box::new(RpcContext::from_cell(Arc::clone(&cell))),
    };
    MAIN_THREAD
        .scope(main_thread, main_loop(endpoint, cell, mailbox, started))
        .await;
}

async fn main_loop<E: RpcEndpoint>(
    mut endpoint: E,
    cell: Arc<EndpointCell<E>>,
    mut mailbox: crate::inbox::Receiver<Envelope<E>>,
    started: oneshot::Sender<Result<(), RpcError>>,
) {
    let name = cell.address.name().to_owned();
    let start = AssertUnwindSafe(endpoint.on_start(RpcContext::from_cell(Arc::clone(&cell))))
        .catch_unwind()
        .await;
    let start = match start {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(RpcError::StartFailed {
            endpoint: name.clone(),
            source: Arc::from(error),
        }),
        Err(panic) => Err(RpcError::StartFailed {
            endpoint: name.clone(),
            source: Arc::new(StartPanicked(panic_message(&*panic))),
        }),
    };
    if let Err(error) = start {
        tracing::warn!(endpoint = %name, "{error}");
        cell.stopping.cancel();
        mailbox.close();
        reject_all(&mut mailbox, &name);
        drop(endpoint);
        cell.unregister();
        cell.terminated.cancel();
        let _ = started.send(Err(error));
        return;
    }
    let _ = started.send(Ok(()));
    tracing::debug!(endpoint = %name, "endpoint started");

    while let Some(envelope) = mailbox.recv().await {
        match envelope {
            Envelope::Invoke(invocation) => {
                cell.release(invocation.size());
                invocation.run(&mut endpoint, &cell).await
            }
            Envelope::Run(closure, epoch) => {
                let admitted = match epoch.map(|epoch| cell.fence.admit_closure(epoch)) {
                    Some(Err(stale)) => Err(stale),
                    _ => Ok(&mut endpoint),
                };
                if let Err(panic) = std::panic::catch_unwind(AssertUnwindSafe(|| closure(admitted)))
                {
                    tracing::error!(
                        endpoint = %name,
                        "run_async closure panicked: {}; the endpoint keeps serving",
                        panic_message(&*panic)
                    );
                }
            }
            Envelope::Stop => break,
        }
    }

    // Stopping: nothing new gets in, on_stop runs once, and whatever was queued behind the
    // stop is answered, not dropped.
    cell.stopping.cancel();
    mailbox.close();
    let outcome = match AssertUnwindSafe(endpoint.on_stop()).catch_unwind().await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(RpcError::StopFailed {
            endpoint: name.clone(),
            source: Arc::from(error),
        }),
        Err(panic) => Err(RpcError::StopFailed {
            endpoint: name.clone(),
            source: Arc::new(StopPanicked(panic_message(&*panic))),
        }),
    };
    if let Err(error) = &outcome {
        tracing::error!(endpoint = %name, "{error}");
    }
    let _ = cell.outcome.set(outcome);
    reject_all(&mut mailbox, &name);
    drop(endpoint);
    cell.unregister();
    cell.terminated.cancel();
    tracing::debug!(endpoint = %name, "endpoint stopped");
}

/// Answers every envelope left in a closed mailbox with `EndpointStopped`.
fn reject_all<E>(mailbox: &mut crate::inbox::Receiver<Envelope<E>>, name: &str) {
    while let Some(envelope) = mailbox.try_recv() {
        if let Envelope::Invoke(invocation) = envelope {
            invocation.reject(RpcError::EndpointStopped {
                endpoint: name.to_owned(),
            });
        }
        // Closures are dropped unrun; a `call_async` caller sees its reply slot closed and
        // reports `EndpointStopped`.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A large payload is queued where it arrived; a small one is copied out, so that it does
    /// not pin the buffer it arrived in.
    #[test]
    fn large_payloads_are_shared_and_small_ones_copied() {
        let frame = Bytes::from(vec![1u8; codec::SHARE_AT_LEAST + 100]);
        let large = frame.slice(100..);
        let Payload::Heap(kept) = Payload::of(&large) else {
            panic!("a large payload lives on the heap");
        };
        assert_eq!(kept.as_ptr(), large.as_ptr(), "shared, not copied");
        let medium = frame.slice(..1000);
        let Payload::Heap(copied) = Payload::of(&medium) else {
            panic!("a medium payload lives on the heap");
        };
        assert_ne!(copied.as_ptr(), medium.as_ptr(), "copied out");
        assert!(matches!(
            Payload::of(&frame.slice(..10)),
            Payload::Inline { len: 10, .. }
        ));
    }
}
