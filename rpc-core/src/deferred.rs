//! [`Deferred`]: a reply the handler finishes later, off the endpoint's main thread.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// A reply that completes later, off the endpoint's main thread (Flink's
/// `CompletableFuture` return type).
///
/// A gateway method declared `fn m(&mut self, ..) -> Deferred<T>` reads and updates the
/// endpoint's state synchronously on its main thread, then returns a future that the framework
/// runs *beside* the main thread; the caller receives `T` when that future completes. The main
/// thread is free to run the next invocation in the meantime. This is how a handler calls
/// another endpoint and replies with the outcome without blocking its own mailbox. To touch
/// the endpoint's state again once the call returns, go back to the main thread with
/// [`RpcContext::call_async`](crate::RpcContext::call_async).
///
/// The future is first polled after the handler has returned, possibly after the main thread
/// has run later invocations. A call that must be queued in order, before anything this
/// endpoint handles next, is made in the handler's body and only awaited in the future (an
/// ask is sent when it is made, not when it is first awaited).
///
/// The macro recognises the return type by its last path segment, `Deferred`.
///
/// ```
/// use rpc_core::{Deferred, RpcContext, RpcEndpoint, rpc_gateway};
///
/// #[rpc_gateway]
/// pub trait Lookup {
///     async fn find(&mut self, key: String) -> Option<String>;
/// }
///
/// #[rpc_gateway]
/// pub trait Front {
///     /// Answers from the cache, or asks the backend without blocking this endpoint.
///     fn get(&mut self, key: String) -> Deferred<Option<String>>;
/// }
///
/// struct Cache {
///     backend: LookupClient,
///     entries: std::collections::HashMap<String, String>,
/// }
///
/// impl RpcEndpoint for Cache {
///     rpc_core::serves!(Front);
/// }
///
/// impl Front for Cache {
///     fn get(&mut self, key: String) -> Deferred<Option<String>> {
///         // On the main thread: answer from the cache if we can.
///         if let Some(value) = self.entries.get(&key) {
///             return Deferred::ready(Some(value.clone()));
///         }
///         let backend = self.backend.clone();
///         // Taken on the main thread: the Deferred future runs off it.
///         let ctx = RpcContext::<Self>::current();
///         Deferred::new(async move {
///             // Off the main thread: other invocations run meanwhile.
///             let value = backend.find(key.clone()).await.ok().flatten();
///             if let Some(v) = value.clone() {
///                 // Back on the main thread to remember the answer.
///                 let _ = ctx.call_async(move |cache| cache.entries.insert(key, v)).await;
///             }
///             value
///         })
///     }
/// }
/// ```
#[must_use = "a Deferred does nothing unless returned or awaited"]
pub struct Deferred<T> {
    future: Pin<Box<dyn Future<Output = T> + Send + 'static>>,
}

impl<T> Deferred<T> {
    /// Wraps a future that produces the reply.
    pub fn new(future: impl Future<Output = T> + Send + 'static) -> Self {
        Deferred {
            future: Box::pin(future),
        }
    }

    /// A reply that is already known.
    pub fn ready(value: T) -> Self
    where
        T: Send + 'static,
    {
        Deferred::new(std::future::ready(value))
    }
}

impl<T> Future for Deferred<T> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        self.future.as_mut().poll(cx)
    }
}

impl<T> fmt::Debug for Deferred<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Deferred { .. }")
    }
}
