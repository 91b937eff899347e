//! Streamed replies: [`RpcStream`] on the endpoint's side, [`Streaming`] on the caller's.
//!
//! A gateway method declared `fn m(&mut self, ..) -> RpcStream<T>` (or `async fn`) runs on the
//! endpoint's main thread like any other and returns a stream of `T`; the proxy's `m` returns
//! a [`Streaming<T>`], a `Stream` of `Result<T, RpcError>`. In process the caller polls the
//! endpoint's stream itself (nothing is encoded or copied, and nothing runs ahead of the
//! consumer). Over a transport the producer runs beside the endpoint's main thread and sends
//! items as the consumer grants it *credit*: at most [`STREAM_WINDOW`] bytes of items it has
//! not consumed yet (plus the item that crossed the limit), so a slow consumer bounds what
//! the producer's process holds for it.
//!
//! The stream ends when the producer's stream ends; with an error when it yields one
//! ([`RpcStream::try_new`], as [`RpcError::StreamFailed`]) or panics
//! ([`RpcError::HandlerPanicked`]); with [`RpcError::Disconnected`] when the connection is
//! lost. Dropping the [`Streaming`] cancels it: the producer's stream is dropped, remotely
//! as soon as the `Cancel` arrives, so it produces at most one window beyond what was
//! consumed.

use std::fmt;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::stream::{BoxStream, Stream, StreamExt};
use tokio::sync::{mpsc, oneshot};

use crate::call::{ReplyResult, ReplyValue, RpcCall};
use crate::codec;
use crate::control::CallControl;
use crate::error::RpcError;
use crate::gateway::{EndpointAddress, MethodInfo};
use crate::mailbox::panicked;
use crate::wire::{Owned, WireDecode};

/// How many bytes of encoded items a remote producer may have sent beyond what its consumer
/// has consumed (the initial credit of every stream); the consumer gives credit back in
/// batches of a quarter of it.
pub const STREAM_WINDOW: u32 = 256 * 1024;

/// The consumer gives back credit once it has consumed this many bytes since it last did.
const CREDIT_BATCH: u32 = STREAM_WINDOW / 4;

/// The stream a streaming gateway method returns: any `Stream` of `T`, boxed.
///
/// It is itself a `Stream` of `Result<T, RpcError>`, the very item type a caller's
/// [`Streaming`] yields, so a test that calls the method directly reads it as a caller would.
///
/// ```
/// use futures::StreamExt;
/// use rpc_core::{RpcEndpoint, RpcStream, rpc_gateway};
///
/// #[rpc_gateway]
/// pub trait Numbers {
///     /// The first `n` squares.
///     fn squares(&mut self, n: u64) -> RpcStream<u64>;
/// }
///
/// struct Squares;
/// impl RpcEndpoint for Squares { rpc_core::serves!(Numbers); }
/// impl Numbers for Squares {
///     fn squares(&mut self, n: u64) -> RpcStream<u64> {
///         RpcStream::iter((0..n).map(|i| i * i))
///     }
/// }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), rpc_core::RpcError> {
/// // Called directly, as in a unit test:
/// let direct: Vec<u64> = Squares.squares(4).map(Result::unwrap).collect().await;
/// assert_eq!(direct, [0, 1, 4, 9]);
///
/// // Called through a proxy:
/// let service = rpc_core::RpcService::new();
/// service.start_endpoint("squares", Squares).await?;
/// let numbers: NumbersClient = service.gateway("squares")?;
/// let mut stream = numbers.squares(3);
/// let mut seen = Vec::new();
/// while let Some(square) = stream.next().await {
///     seen.push(square?);
/// }
/// assert_eq!(seen, [0, 1, 4]);
/// # Ok(()) }
/// ```
#[must_use = "a stream does nothing unless it is returned to the caller or polled"]
pub struct RpcStream<T> {
    inner: BoxStream<'static, Result<T, RpcError>>,
    /// An error ends the stream: nothing is polled after it.
    ended: bool,
}

impl<T: Send + 'static> RpcStream<T> {
    /// A stream of the items `stream` yields.
    pub fn new(stream: impl Stream<Item = T> + Send + 'static) -> RpcStream<T> {
        RpcStream {
            inner: stream.map(Ok).boxed(),
            ended: false,
        }
    }

    /// A stream of `stream`'s items that ends at its first error, which the caller receives
    /// as [`RpcError::StreamFailed`] carrying the error's text. (To send errors that do not
    /// end the stream, make the item type a `Result`.)
    pub fn try_new<E: fmt::Display>(
        stream: impl Stream<Item = Result<T, E>> + Send + 'static,
    ) -> RpcStream<T> {
        RpcStream {
            inner: stream
                .map(|item| {
                    item.map_err(|error| RpcError::StreamFailed {
                        message: error.to_string(),
                    })
                })
                .boxed(),
            ended: false,
        }
    }

    /// A stream of the items of `items`.
    pub fn iter<I>(items: I) -> RpcStream<T>
    where
        I: IntoIterator<Item = T>,
        I::IntoIter: Send + 'static,
    {
        RpcStream::new(futures::stream::iter(items))
    }

    /// A stream without items.
    pub fn empty() -> RpcStream<T> {
        RpcStream::new(futures::stream::empty())
    }

    /// A stream that fails at once with `error`.
    pub fn failed(error: RpcError) -> RpcStream<T> {
        RpcStream {
            inner: futures::stream::once(async move { Err(error) }).boxed(),
            ended: false,
        }
    }
}

impl<T> Stream for RpcStream<T> {
    type Item = Result<T, RpcError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        let item = std::task::ready!(self.inner.poll_next_unpin(cx));
        if matches!(item, Some(Err(_)) | None) {
            self.ended = true;
        }
        Poll::Ready(item)
    }
}

impl<T> fmt::Debug for RpcStream<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RpcStream")
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

/// A stream's items, encoded, as an endpoint hands them to a transport: each item its
/// postcard encoding, an error the stream's end. A panic while producing an item becomes
/// [`RpcError::HandlerPanicked`].
pub struct EncodedStream {
    inner: BoxStream<'static, Result<Bytes, RpcError>>,
    method: &'static MethodInfo,
    endpoint: Option<Arc<str>>,
    ended: bool,
}

impl EncodedStream {
    pub(crate) fn new(
        inner: BoxStream<'static, Result<Bytes, RpcError>>,
        method: &'static MethodInfo,
    ) -> EncodedStream {
        EncodedStream {
            inner,
            method,
            endpoint: None,
            ended: false,
        }
    }

    /// Names the endpoint producing it, for a panic's error.
    pub(crate) fn set_endpoint(&mut self, endpoint: Arc<str>) {
        self.endpoint = Some(endpoint);
    }
}

impl Stream for EncodedStream {
    type Item = Result<Bytes, RpcError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        let this = &mut *self;
        let polled = std::panic::catch_unwind(AssertUnwindSafe(|| this.inner.poll_next_unpin(cx)));
        let item = match polled {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(item)) => item,
            Err(panic) => Some(Err(panicked(
                this.endpoint.as_deref().unwrap_or(""),
                this.method,
                &*panic,
            ))),
        };
        if matches!(item, Some(Err(_)) | None) {
            this.ended = true;
        }
        Poll::Ready(item)
    }
}

impl fmt::Debug for EncodedStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncodedStream")
            .field("method", &self.method.name)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

/// What a transport delivers to a remote stream's consumer after the stream opened.
#[derive(Debug)]
pub enum StreamEvent {
    /// One item, encoded.
    Item(Bytes),
    /// The end: the producer finished (`Ok`), failed, or the connection was lost.
    End(Result<(), RpcError>),
}

/// Where a transport delivers a remote stream's items: held by the transport from the
/// stream's opening to its end.
#[derive(Debug, Clone)]
pub struct StreamSink(mpsc::UnboundedSender<StreamEvent>);

impl StreamSink {
    /// Delivers one encoded item; `false` if the consumer has gone.
    pub fn item(&self, item: Bytes) -> bool {
        self.0.send(StreamEvent::Item(item)).is_ok()
    }

    /// Ends the stream.
    pub fn end(self, result: Result<(), RpcError>) {
        let _ = self.0.send(StreamEvent::End(result));
    }
}

/// The reply slot of a streaming ask: the stream's opening (the handler's return, or its
/// failure) goes to `open`, the items of a remote stream to `sink`.
pub struct StreamReply {
    /// The opening.
    pub open: oneshot::Sender<ReplyResult>,
    /// The items.
    pub sink: StreamSink,
}

impl fmt::Debug for StreamReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StreamReply")
    }
}

/// How a streaming ask opened, as its caller's opening call decodes it.
pub(crate) enum Opened<T> {
    /// In process: the endpoint's own stream.
    Local(RpcStream<T>),
    /// In process with forced serialization: the items encoded, as the wire would carry them.
    Encoded(EncodedStream),
    /// Over a transport: the items arrive through the sink.
    Remote,
}

/// The opening call's decoder: an in-process stream moves, a remote one is announced.
pub(crate) fn decode_opened<T: 'static>(
    value: ReplyValue,
    method: &MethodInfo,
    _: usize,
) -> Result<Opened<T>, RpcError> {
    match value {
        ReplyValue::Local(value) => value
            .downcast::<RpcStream<T>>()
            .map(|stream| Opened::Local(*stream))
            .map_err(|_| RpcError::Serialization {
                context: format!(
                    "opening the stream of `{}::{}`",
                    method.gateway, method.name
                ),
                reason: "the stream has another item type than the proxy expects".to_owned(),
            }),
        ReplyValue::Stream(stream) => Ok(Opened::Encoded(stream)),
        ReplyValue::Encoded(_) => Ok(Opened::Remote),
    }
}

/// The caller's side of a streaming method: a `Stream` of the items, each
/// `Ok(item)`, and at most one `Err` that ends it.
///
/// The stream opens when the endpoint's handler has returned; the proxy's timeout bounds
/// that (a [`RpcError::Timeout`] item), not the stream's life after it. Items arrive in the
/// order the producer yields them. Dropping it cancels the stream (see the
/// [module docs](crate::RpcStream)). A stream that opened over a transport ends with
/// [`RpcError::Disconnected`] if the connection is lost.
#[must_use = "a stream's items arrive only if it is polled; dropping it cancels the stream"]
pub struct Streaming<T> {
    state: State<T>,
    method: &'static MethodInfo,
    endpoint: Arc<EndpointAddress>,
    control: Option<Arc<CallControl>>,
    max_depth: usize,
    decode: fn(&Bytes, &EndpointAddress, &MethodInfo, usize) -> Result<T, RpcError>,
    /// Bytes consumed since credit was last given back.
    consumed: u32,
}

enum State<T> {
    Opening(
        Pin<Box<RpcCall<Opened<T>>>>,
        mpsc::UnboundedReceiver<StreamEvent>,
    ),
    Local(RpcStream<T>),
    Encoded(EncodedStream),
    Remote(mpsc::UnboundedReceiver<StreamEvent>),
    Done,
}

impl<T: 'static> Streaming<T> {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new<F: WireDecode<T>>(
        opening: RpcCall<Opened<T>>,
        items: mpsc::UnboundedReceiver<StreamEvent>,
        method: &'static MethodInfo,
        endpoint: Arc<EndpointAddress>,
        control: Option<Arc<CallControl>>,
        max_depth: usize,
    ) -> Streaming<T> {
        Streaming {
            state: State::Opening(Box::pin(opening), items),
            method,
            endpoint,
            control,
            max_depth,
            decode: decode_item::<T, F>,
            consumed: 0,
        }
    }

    /// The endpoint streaming to this consumer.
    pub fn endpoint(&self) -> &EndpointAddress {
        &self.endpoint
    }

    /// Decodes a remote item and, past a batch, gives its bytes back as credit.
    fn remote_item(&mut self, bytes: Bytes) -> Result<T, RpcError> {
        let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
        let item = (self.decode)(&bytes, &self.endpoint, self.method, self.max_depth);
        drop(bytes);
        self.consumed = self.consumed.saturating_add(len);
        if self.consumed >= CREDIT_BATCH {
            if let Some(control) = &self.control {
                control.grant(self.consumed);
            }
            self.consumed = 0;
        }
        item
    }
}

/// Decodes one encoded item in format `F`.
fn decode_item<T: 'static, F: WireDecode<T>>(
    bytes: &Bytes,
    endpoint: &EndpointAddress,
    method: &MethodInfo,
    max_depth: usize,
) -> Result<T, RpcError> {
    crate::reference::decoding_from(
        endpoint.service(),
        endpoint.carrier(),
        endpoint.address(),
        || {
            codec::decode_shared::<Owned<F, T>>(bytes, max_depth, || {
                format!(
                    "decoding an item of the stream of `{}::{}`",
                    method.gateway, method.name
                )
            })
        },
    )
    .map(|owned| owned.0)
}

impl<T: 'static> Stream for Streaming<T> {
    type Item = Result<T, RpcError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            let item = match &mut this.state {
                State::Done => return Poll::Ready(None),
                State::Opening(call, _) => {
                    let opened = std::task::ready!(call.as_mut().poll(cx));
                    let State::Opening(_, items) = std::mem::replace(&mut this.state, State::Done)
                    else {
                        unreachable!("the state was just matched");
                    };
                    match opened {
                        Ok(Opened::Local(stream)) => this.state = State::Local(stream),
                        Ok(Opened::Encoded(stream)) => this.state = State::Encoded(stream),
                        Ok(Opened::Remote) => this.state = State::Remote(items),
                        Err(error) => return Poll::Ready(Some(Err(error))),
                    }
                    continue;
                }
                State::Local(stream) => {
                    let polled =
                        std::panic::catch_unwind(AssertUnwindSafe(|| stream.poll_next_unpin(cx)));
                    match polled {
                        Ok(polled) => std::task::ready!(polled),
                        Err(panic) => {
                            Some(Err(panicked(this.endpoint.name(), this.method, &*panic)))
                        }
                    }
                }
                State::Encoded(stream) => match std::task::ready!(stream.poll_next_unpin(cx)) {
                    Some(Ok(bytes)) => Some((this.decode)(
                        &bytes,
                        &this.endpoint,
                        this.method,
                        this.max_depth,
                    )),
                    Some(Err(error)) => Some(Err(error)),
                    None => None,
                },
                State::Remote(items) => match std::task::ready!(items.poll_recv(cx)) {
                    Some(StreamEvent::Item(bytes)) => Some(this.remote_item(bytes)),
                    Some(StreamEvent::End(Ok(()))) => None,
                    Some(StreamEvent::End(Err(error))) => Some(Err(error)),
                    // The transport dropped the sink without an end: its connection is gone.
                    None => Some(Err(RpcError::Disconnected {
                        address: this
                            .endpoint
                            .address()
                            .unwrap_or_else(|| ([0, 0, 0, 0], 0).into()),
                        reason: "the stream's connection ended".to_owned(),
                    })),
                },
            };
            if matches!(item, Some(Err(_)) | None) {
                // Ended: the producer has nothing more to do for it.
                this.state = State::Done;
                this.control = None;
            }
            return Poll::Ready(item);
        }
    }
}

impl<T> Drop for Streaming<T> {
    fn drop(&mut self) {
        // Dropped before its end: the producer stops.
        if let Some(control) = self.control.take() {
            control.cancel();
        }
    }
}

impl<T> fmt::Debug for Streaming<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Opening(..) => "opening",
            State::Local(_) | State::Encoded(_) | State::Remote(_) => "open",
            State::Done => "ended",
        };
        f.debug_struct("Streaming")
            .field("gateway", &self.method.gateway)
            .field("method", &self.method.name)
            .field("endpoint", &self.endpoint)
            .field("state", &state)
            .finish()
    }
}

/// A channel for a remote stream's events: the sink for the transport, the receiver for the
/// consumer.
pub(crate) fn channel() -> (StreamSink, mpsc::UnboundedReceiver<StreamEvent>) {
    let (sender, receiver) = mpsc::unbounded_channel();
    (StreamSink(sender), receiver)
}
