//! The seam between rpc-core and a network transport (`rpc-netty`).
//!
//! rpc-core does no I/O. A transport moves *encoded* invocations and replies; everything typed
//! stays here:
//!
//! - outbound, [`RpcService::connect`](crate::RpcService::connect) asks the [`Transport`] for a
//!   [`RemoteChannel`] to one endpoint's gateway, and wraps it in a call target that encodes
//!   each invocation with the gateway's types;
//! - inbound, the transport resolves a [`Binding`] through the [`ServiceHandle`] into an
//!   [`InboundSink`], which decodes invocations and queues them in the endpoint's mailbox.
//!
//! Users do not implement these traits; they are public so that a transport crate can.

use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use tokio::sync::Notify;

pub use crate::call::{ReplyResult, ReplyTo, ReplyValue};
use crate::caller::{Caller, Connection, Peer};
use crate::codec;
use crate::context::EndpointCell;
pub use crate::control::{CallControl, CancelRoute};
use crate::endpoint::RpcEndpoint;
use crate::error::RpcError;
use crate::gateway::{CallTarget, Dispatch, EndpointAddress, Gateway, Incarnation, MethodInfo};
use crate::mailbox::EncodedInvocation;
pub use crate::reference::{Location, Reference};
use crate::retry::ConnectRetry;
use crate::service::ServiceInner;
use crate::session::Session;
pub use crate::stream::{EncodedStream, StreamEvent, StreamReply, StreamSink};

/// A stream's event channel: the sink a transport delivers into, the receiver a consumer
/// reads (for a transport's own tests; proxies make theirs).
pub fn stream_channel() -> (
    StreamSink,
    tokio::sync::mpsc::UnboundedReceiver<StreamEvent>,
) {
    crate::stream::channel()
}
use crate::trace::TraceContext;

/// What a client asks of a remote service when it connects a gateway: this endpoint, serving
/// this gateway, built from these signatures.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Binding {
    /// The endpoint's name.
    pub endpoint: String,
    /// The gateway's name.
    pub gateway: String,
    /// The client's compile-time fingerprint of the gateway.
    pub fingerprint: u64,
    /// The incarnation the proxy is bound to: `None` when it connects first (any running
    /// incarnation will do), then the one it reached, so that binding again on a new
    /// connection reaches that incarnation or fails with `EndpointStopped`.
    pub incarnation: Option<Incarnation>,
    /// For a bind that reaches a player's endpoint through a Gate (the player sent a
    /// reference to it in a call the Gate relayed): the player's session on that Gate, which
    /// forwards the bind, and the calls on it, down that player's connection. `None` for
    /// every other bind.
    pub session: Option<u64>,
}

impl Binding {
    /// What a proxy bound by this binding to the endpoint at `address` (shown as `endpoint`)
    /// is sent as: a reference naming the incarnation it reached, or why there is none yet.
    pub fn reference_at(
        &self,
        address: SocketAddr,
        endpoint: &EndpointAddress,
    ) -> Result<Reference, RpcError> {
        let incarnation = self.incarnation.ok_or_else(|| RpcError::Serialization {
            context: format!("sending a reference to {endpoint}"),
            reason: "the proxy has not reached an endpoint incarnation yet".to_owned(),
        })?;
        Ok(Reference {
            endpoint: self.endpoint.clone(),
            incarnation,
            location: Location::Address(address),
        })
    }
}

/// The network a listener faces (the game-server split): the *inner* one, where servers
/// reach each other and every gateway is served, or the *outer* one, where players (any
/// client) connect and gateways marked `#[rpc_gateway(inner)]` are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Network {
    /// Servers only: every gateway.
    Inner,
    /// Players: every gateway but the inner ones.
    Outer,
}

/// A network transport an [`RpcService`](crate::RpcService) uses to reach other processes.
pub trait Transport: Send + Sync + 'static {
    /// The address this service listens on, if it listens.
    fn local_address(&self) -> Option<SocketAddr>;

    /// The address of this service's outer listener, if it has one.
    fn outer_address(&self) -> Option<SocketAddr> {
        None
    }

    /// Resolves a user-given address (`"10.0.0.7:7000"`, `"host:7000"`).
    fn resolve(&self, address: &str) -> BoxFuture<'static, Result<SocketAddr, RpcError>>;

    /// Opens (or reuses) the connection to `address` and checks that the service there runs
    /// `binding`: the handshake of `connect`.
    fn connect(
        &self,
        address: SocketAddr,
        binding: Binding,
    ) -> BoxFuture<'static, Result<Arc<dyn RemoteChannel>, RpcError>>;

    /// Stops listening and closes every connection, after flushing what is queued.
    fn shutdown(&self) -> BoxFuture<'static, ()>;

    /// A route to `binding` at `address` that binds on its first call, without waiting: how
    /// a gateway reference that arrived in a message reaches its endpoint. `binding` names
    /// the incarnation the reference is bound to.
    fn channel(
        &self,
        address: SocketAddr,
        binding: Binding,
    ) -> Result<Arc<dyn RemoteChannel>, RpcError> {
        let _ = binding;
        Err(RpcError::ConnectFailed {
            address: address.to_string(),
            reason: "this transport cannot open routes for gateway references".to_owned(),
        })
    }

    /// How `connect` retries a peer it cannot reach, unless a call says otherwise.
    fn connect_retry(&self) -> ConnectRetry {
        ConnectRetry::none()
    }
}

/// Appends one encoded invocation to a transport's buffer (and leaves it as it was on
/// failure): lets the transport place the invocation straight where it will be sent from.
pub type EncodeInvocation<'a> = &'a mut dyn FnMut(&mut BytesMut) -> Result<(), RpcError>;

/// A checked route to one gateway of one remote endpoint.
pub trait RemoteChannel: Send + Sync + 'static {
    /// The remote endpoint.
    fn endpoint(&self) -> &Arc<EndpointAddress>;

    /// Sends an ask whose invocation `encode` writes; `reply` receives the encoded reply or an
    /// error, exactly once (unless this returns an error, in which case the caller answers
    /// itself). `encode` may be called more than once (only the last output is sent). The
    /// transport sends the remaining time of `control`'s deadline with the request and
    /// registers itself as its [`CancelRoute`], so that a cancel reaches the other side.
    fn ask(
        &self,
        encode: EncodeInvocation<'_>,
        reply: ReplyTo,
        control: &Arc<CallControl>,
    ) -> Result<(), RpcError>;

    /// Sends a tell whose invocation `encode` writes.
    fn tell(&self, encode: EncodeInvocation<'_>) -> Result<(), RpcError>;

    /// What a proxy over this channel is sent as, inside a message.
    fn reference(&self) -> Result<Reference, RpcError>;
}

/// A connection as gateway references see it (client mode): a service that does not listen
/// sends references to its endpoints as "at the far end of this connection", and the peer
/// calls them back over it.
pub trait Carrier: Send + Sync + 'static {
    /// Endpoint `endpoint`, incarnation `incarnation`, of this service is named in a
    /// reference being sent over this connection: the peer may bind it over it.
    fn export(&self, endpoint: &str, incarnation: Incarnation);

    /// A route over this connection to the peer's endpoint `binding`, named by a reference
    /// that arrived over it.
    fn channel(self: Arc<Self>, binding: Binding) -> Result<Arc<dyn RemoteChannel>, RpcError>;
}

/// Runs `encode` (a transport encoding an invocation or reply for `carrier`'s connection) so
/// that references in it to endpoints of this service, if it does not listen, name that
/// connection.
pub fn sending_over<R>(carrier: Arc<dyn Carrier>, encode: impl FnOnce() -> R) -> R {
    crate::reference::sending_over(carrier, encode)
}

/// Where a transport's replies go, keyed by the request they answer: one shared object per
/// connection instead of one callback per request.
pub trait ReplyRoute: Send + Sync + 'static {
    /// Delivers the outcome of request `request_id`.
    fn reply(&self, request_id: u64, result: ReplyResult);

    /// Request `request_id` ends without a reply: its caller cancelled it.
    fn abandon(&self, request_id: u64);
}

/// Where a transport delivers the encoded invocations of one bound gateway.
pub trait InboundSink: Send + Sync + 'static {
    /// Queues a copy of one encoded invocation in the endpoint's mailbox (so that it holds
    /// only its own bytes, not the read buffer they arrived in), charged to `backlog` (its
    /// connection's) until it leaves the mailbox. `ask` (the reply slot and the control
    /// holding the caller's deadline) is `None` for a tell. The invocation is decoded on the
    /// endpoint's main thread when its turn comes; one that does not decode is answered with
    /// [`RpcError::Serialization`] and affects no one else. One whose control is cancelled or
    /// past its deadline by then is not run (see [`CallControl`]). If the mailbox is full (by
    /// count or by bytes), nothing is queued and `payload` and the reply slot come back in
    /// [`Busy`]: the transport answers an ask with the error, and holds a tell until
    /// [`InboundSink::room`] signals room.
    fn invoke(
        &self,
        payload: Bytes,
        ask: Option<(ReplyTo, Arc<CallControl>)>,
        backlog: &Arc<Backlog>,
    ) -> Result<(), Busy>;

    /// Signalled (to every waiter) when the endpoint's mailbox, having been full, has room.
    /// Register interest (`Notified::enable`) before the attempt that found it full.
    fn room(&self) -> Arc<Notify>;

    /// [`RpcError::MailboxFull`] for this endpoint, to answer an ask that met a full mailbox.
    fn mailbox_full(&self) -> RpcError;

    /// The incarnation of the endpoint behind this sink, for the client to bind to.
    fn incarnation(&self) -> Incarnation;
}

/// The endpoint's mailbox is full: the invocation was not queued.
pub struct Busy {
    /// The invocation, handed back.
    pub payload: Bytes,
    /// The reply slot, handed back.
    pub reply: Option<ReplyTo>,
}

/// The bytes of one connection's invocations waiting in mailboxes, whichever endpoints they
/// went to: a transport stops reading the connection while [`Backlog::is_full`], so one peer
/// cannot fill a process's memory through many endpoints.
///
/// It also says who is at the other end, for the handlers of the calls that arrive on it
/// ([`CallContext::caller`](crate::CallContext::caller)).
pub struct Backlog {
    bytes: AtomicUsize,
    max: usize,
    room: Notify,
    peer: Arc<Peer>,
    /// The connection, for references to the peer's endpoints arriving over it.
    carrier: Option<Arc<dyn Carrier>>,
}

impl Backlog {
    /// The backlog of the connection from `peer`, full from `max` bytes on.
    pub fn new(max: usize, peer: Peer) -> Backlog {
        Backlog {
            bytes: AtomicUsize::new(0),
            max,
            room: Notify::new(),
            peer: Arc::new(peer),
            carrier: None,
        }
    }

    /// The same, for a connection over which the peer's endpoints can be called back: a
    /// reference to one arriving over it becomes a proxy over `carrier`.
    pub fn with_carrier(mut self, carrier: Arc<dyn Carrier>) -> Backlog {
        self.carrier = Some(carrier);
        self
    }

    /// The connection as references arriving over it see it (and a relay, to send a player's
    /// messages down it).
    pub(crate) fn carrier(&self) -> Option<&Arc<dyn Carrier>> {
        self.carrier.as_ref()
    }

    /// Who is at the other end of the connection.
    pub fn peer(&self) -> &Arc<Peer> {
        &self.peer
    }

    /// Bytes queued now.
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Acquire)
    }

    /// Whether `max` or more bytes are queued.
    pub fn is_full(&self) -> bool {
        self.bytes() >= self.max
    }

    /// Signalled (one permit, for the connection's reader) when the backlog stops being full.
    pub fn room(&self) -> &Notify {
        &self.room
    }

    pub(crate) fn charge(self: &Arc<Self>, bytes: usize) -> Charge {
        self.bytes.fetch_add(bytes, Ordering::AcqRel);
        Charge {
            backlog: Arc::clone(self),
            bytes,
        }
    }
}

/// One queued invocation's bytes in its connection's [`Backlog`], given back when dropped.
pub(crate) struct Charge {
    backlog: Arc<Backlog>,
    bytes: usize,
}

impl Charge {
    /// Who sent the charged invocation.
    pub(crate) fn caller(&self) -> Caller {
        Caller::Remote(Arc::clone(&self.backlog.peer))
    }

    /// The address of the peer that sent it.
    pub(crate) fn peer_address(&self) -> SocketAddr {
        self.backlog.peer.address
    }

    /// Who sent it, for an invocation whose header carries a relayed `session`: the player,
    /// relayed by this connection's peer. A session is believed from the inner network only
    /// (servers); from the outer one (players) it is refused.
    pub(crate) fn relayed_caller(&self, session: Session) -> Result<Caller, RpcError> {
        if self.backlog.peer.network == Network::Outer {
            return Err(RpcError::Serialization {
                context: "decoding an invocation's header".to_owned(),
                reason: format!(
                    "{} came in on the outer network and named a relayed session ({session}): \
                     only a relay on the inner network may",
                    self.backlog.peer
                ),
            });
        }
        Ok(Caller::Relayed {
            via: Arc::clone(&self.backlog.peer),
            session: Arc::new(session),
        })
    }

    /// The connection it arrived over, for the references in it.
    pub(crate) fn carrier(&self) -> Option<&Arc<dyn Carrier>> {
        self.backlog.carrier()
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        let before = self.backlog.bytes.fetch_sub(self.bytes, Ordering::AcqRel);
        if before >= self.backlog.max && before - self.bytes < self.backlog.max {
            self.backlog.room.notify_one();
        }
    }
}

/// Something that happened to a connection, delivered to every endpoint's connection hooks.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ConnectionEvent {
    /// A connection was established (its handshake succeeded).
    Connected(Connection),
    /// An established connection was closed or lost.
    Disconnected(Connection),
    /// A connection to this peer could not be established.
    NetworkError(SocketAddr, RpcError),
}

/// The transport's handle to its service: resolve inbound bindings, report connection events.
/// Weak: it does not keep the service alive.
#[derive(Clone)]
pub struct ServiceHandle {
    pub(crate) inner: Weak<ServiceInner>,
}

impl ServiceHandle {
    /// Finds the sink for `binding`, arriving on a listener of `network`, or the error to
    /// send back: the endpoint does not exist, does not serve the gateway, serves a different
    /// version of it, or serves it on the inner network only and the bind came from the outer.
    pub fn resolve(
        &self,
        binding: &Binding,
        network: Network,
    ) -> Result<Arc<dyn InboundSink>, RpcError> {
        match self.inner.upgrade() {
            Some(inner) => inner.resolve(binding, network),
            None => Err(RpcError::ServiceShutDown),
        }
    }

    /// Finds the sink for a bind that reaches a player's endpoint through this (Gate)
    /// service: `binding` names the endpoint the player exported, `session` the player's
    /// session here. Calls on it are forwarded, undecoded, down the player's connection.
    pub fn resolve_session(
        &self,
        binding: &Binding,
        session: u64,
    ) -> Result<Arc<dyn InboundSink>, RpcError> {
        match self.inner.upgrade() {
            Some(inner) => inner.resolve_session(binding, session),
            None => Err(RpcError::ServiceShutDown),
        }
    }

    /// Delivers a connection event to every running endpoint's hooks, on its main thread.
    pub fn connection_event(&self, event: ConnectionEvent) {
        if let Some(inner) = self.inner.upgrade() {
            inner.connection_event(event);
        }
    }
}

/// The call target of a proxy to a remote endpoint: encodes, then hands to the transport.
pub(crate) struct RemoteTarget<G> {
    channel: Arc<dyn RemoteChannel>,
    /// The channel's endpoint, as the calling service's proxies call it.
    endpoint: Arc<EndpointAddress>,
    max_decode_depth: usize,
    _gateway: PhantomData<fn() -> G>,
}

impl<G> RemoteTarget<G> {
    pub(crate) fn new(
        channel: Arc<dyn RemoteChannel>,
        max_decode_depth: usize,
        service: Weak<ServiceInner>,
    ) -> Self {
        RemoteTarget {
            endpoint: Arc::new(channel.endpoint().called_by(service)),
            channel,
            max_decode_depth,
            _gateway: PhantomData,
        }
    }
}

/// Appends an invocation as the wire carries it: the call header (the trace context,
/// `Option<TraceContext>` in postcard, and the relayed session, `Option<Session>`, which only
/// a relay sets) first, then for a fenced gateway the fencing token (`Option<Token>`).
pub(crate) fn encode<G: Gateway>(
    invocation: &G::Invocation,
    token: Option<&G::Token>,
    trace: Option<TraceContext>,
    method: &MethodInfo,
    out: &mut BytesMut,
) -> Result<(), RpcError> {
    let what = || {
        format!(
            "encoding the arguments of `{}::{}`",
            method.gateway, method.name
        )
    };
    let session: Option<Session> = None;
    if G::FENCED {
        codec::encode_into(&(trace, session, token, invocation), out, what)
    } else {
        codec::encode_into(&(trace, session, invocation), out, what)
    }
}

impl<G: Gateway> CallTarget<G> for RemoteTarget<G> {
    fn endpoint(&self) -> &Arc<EndpointAddress> {
        &self.endpoint
    }

    fn reference(&self) -> Result<Reference, RpcError> {
        self.channel.reference()
    }

    fn max_decode_depth(&self) -> usize {
        self.max_decode_depth
    }

    fn ask(
        &self,
        method: &'static MethodInfo,
        invocation: G::Invocation,
        token: Option<&G::Token>,
        trace: Option<TraceContext>,
        reply: ReplyTo,
        control: &Arc<CallControl>,
    ) -> Result<(), RpcError> {
        let mut encode = |out: &mut BytesMut| encode::<G>(&invocation, token, trace, method, out);
        self.channel.ask(&mut encode, reply, control)
    }

    fn tell(
        &self,
        method: &'static MethodInfo,
        invocation: G::Invocation,
        token: Option<&G::Token>,
        trace: Option<TraceContext>,
    ) -> Result<(), RpcError> {
        let mut encode = |out: &mut BytesMut| encode::<G>(&invocation, token, trace, method, out);
        self.channel.tell(&mut encode)
    }
}

/// The inbound sink of gateway `G` on endpoint `E`.
pub(crate) struct RemoteSink<E, G> {
    cell: Arc<EndpointCell<E>>,
    _gateway: PhantomData<fn() -> G>,
}

impl<E, G> RemoteSink<E, G> {
    pub(crate) fn new(cell: Arc<EndpointCell<E>>) -> Self {
        RemoteSink {
            cell,
            _gateway: PhantomData,
        }
    }
}

impl<E: RpcEndpoint, G: Dispatch<E>> InboundSink for RemoteSink<E, G> {
    fn invoke(
        &self,
        payload: Bytes,
        ask: Option<(ReplyTo, Arc<CallControl>)>,
        backlog: &Arc<Backlog>,
    ) -> Result<(), Busy> {
        if !self.cell.reserve(payload.len()) {
            return Err(Busy {
                payload,
                reply: ask.map(|(reply, _)| reply),
            });
        }
        let charge = backlog.charge(payload.len());
        let invocation = EncodedInvocation::<G>::new(&payload, ask, charge);
        // A stopped endpoint answers through the invocation's reply; nothing more to do here.
        let _ = self.cell.send_invoke(Box::new(invocation));
        Ok(())
    }

    fn room(&self) -> Arc<Notify> {
        Arc::clone(&self.cell.room)
    }

    fn mailbox_full(&self) -> RpcError {
        self.cell.full()
    }

    fn incarnation(&self) -> Incarnation {
        self.cell.incarnation
    }
}

impl std::fmt::Debug for Backlog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backlog")
            .field("bytes", &self.bytes())
            .field("max", &self.max)
            .field("peer", &self.peer)
            .field("carrier", &self.carrier.is_some())
            .finish()
    }
}

impl std::fmt::Debug for Busy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Busy")
            .field("payload_bytes", &self.payload.len())
            .field("reply", &self.reply)
            .finish()
    }
}

impl std::fmt::Debug for ServiceHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceHandle")
            .field("service_alive", &(self.inner.strong_count() > 0))
            .finish()
    }
}
