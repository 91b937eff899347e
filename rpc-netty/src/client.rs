//! The connecting side: one connection per remote address, shared by every proxy to it.
//!
//! A connection is opened lazily by the first call (or `connect`) to its address. Calls are
//! queued at once: frames wait in the connection's outbox while it connects and handshakes.
//! Each call registers its reply slot under a request id; when the connection ends, every
//! call still waiting fails at once with `Disconnected`, the connection leaves the pool, and
//! the next call opens a new one.
//!
//! A proxy is bound to `(endpoint, gateway, fingerprint)`. On each connection that binding gets
//! a client-chosen *slot*: the first call on a new connection sends a `Bind` frame for it and
//! its own `Request` right behind, without waiting (the server handles frames in order, and
//! answers calls on a slot whose bind failed with the bind's error).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use crate::net::Stream as TcpStream;
use futures::StreamExt;
use rpc_core::transport::{
    Binding, CallControl, CancelRoute, Carrier, ConnectionEvent, EncodeInvocation, Network,
    Reference, RemoteChannel, ReplyTo, ReplyValue, ServiceHandle,
};
use rpc_core::{EndpointAddress, Incarnation, RpcError};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::channel::{Sealer, WireCodec};
use crate::config::NettyConfig;
use crate::frame::FrameError;
use crate::handshake::{ClientHandshake, ClientStep, describe_foreign};
use crate::io::{
    Lane, Outbox, Reader, Refused, Writer, keepalive_tick, plain, shrink_read_buffer, write_frame,
    write_loop,
};
use crate::metrics;
use crate::protocol::{self, HANDSHAKE_MAX_FRAME};
use crate::server::{Held, Serving};
use crate::session::{ClientSession, Received};
use rpc_core::transport::Backlog;

/// The outbound connections of one service, by remote address.
pub(crate) struct Pool {
    connections: Mutex<HashMap<SocketAddr, Arc<Connection>>>,
    service: ServiceHandle,
    pub(crate) config: Arc<NettyConfig>,
    closing: CancellationToken,
    tasks: TaskTracker,
    /// Whether this service listens; if not, its endpoints can be called back over the
    /// connections it opens (client mode).
    listening: bool,
}

impl Pool {
    pub(crate) fn new(
        service: ServiceHandle,
        config: Arc<NettyConfig>,
        closing: CancellationToken,
        tasks: TaskTracker,
        listening: bool,
    ) -> Pool {
        Pool {
            connections: Mutex::default(),
            service,
            config,
            closing,
            tasks,
            listening,
        }
    }

    fn connections(&self) -> MutexGuard<'_, HashMap<SocketAddr, Arc<Connection>>> {
        self.connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The live connection to `peer`, opening one if there is none.
    fn connection(self: &Arc<Self>, peer: SocketAddr) -> Result<Arc<Connection>, RpcError> {
        if self.closing.is_cancelled() {
            return Err(RpcError::ServiceShutDown);
        }
        let mut connections = self.connections();
        if let Some(connection) = connections.get(&peer) {
            if !connection.is_dead() {
                return Ok(Arc::clone(connection));
            }
        }
        let outbox = Arc::new(Outbox::new(
            self.config.max_frame_size,
            self.config.max_outbox_bytes,
        ));
        let connection = Arc::new(Connection::new(
            peer,
            Lane::new(outbox, false),
            self.config.max_in_flight,
            (!self.listening).then(Exports::default),
        ));
        connections.insert(peer, Arc::clone(&connection));
        let span = tracing::info_span!(
            parent: None,
            "rpc.connection",
            %peer,
            direction = "outbound",
            authenticated = tracing::field::Empty,
        );
        self.tasks
            .spawn(drive(Arc::clone(self), Arc::clone(&connection)).instrument(span));
        Ok(connection)
    }

    /// Removes `connection` from the pool if it is still the one for its address.
    fn forget(&self, connection: &Arc<Connection>) {
        let mut connections = self.connections();
        if connections
            .get(&connection.peer)
            .is_some_and(|c| Arc::ptr_eq(c, connection))
        {
            connections.remove(&connection.peer);
        }
    }
}

/// The calling side of a connection: its session (the rules, `session::ClientSession`) and
/// its lane of the outbox, both shared by the callers and the connection's task. An outbound
/// connection's calls, or the reverse calls a server makes over an inbound one (client mode).
pub(crate) struct Connection {
    peer: SocketAddr,
    /// Frames for the writer; it starts draining once the handshake succeeded.
    outbox: Lane,
    session: Mutex<ClientSession>,
    /// For the outbound connection of a service that does not listen: its endpoints named
    /// in references sent over this connection, which the server may call back.
    exports: Option<Exports>,
}

/// The endpoint incarnations of a service that does not listen named in references sent
/// over one connection: the only ones the peer may bind over it.
#[derive(Default)]
pub(crate) struct Exports(Mutex<std::collections::HashSet<(String, Incarnation)>>);

impl Exports {
    fn add(&self, endpoint: &str, incarnation: Incarnation) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((endpoint.to_owned(), incarnation));
    }

    /// Whether anything was exported.
    fn any(&self) -> bool {
        !self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty()
    }

    /// Whether the peer may bind `binding`.
    pub(crate) fn allow(&self, binding: &Binding) -> bool {
        let exported = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        binding
            .incarnation
            .is_some_and(|incarnation| exported.contains(&(binding.endpoint.clone(), incarnation)))
    }
}

impl Connection {
    pub(crate) fn new(
        peer: SocketAddr,
        outbox: Lane,
        max_in_flight: usize,
        exports: Option<Exports>,
    ) -> Connection {
        Connection {
            peer,
            outbox,
            session: Mutex::new(ClientSession::new(peer, max_in_flight)),
            exports,
        }
    }

    /// Whether the peer may bind `binding` over this connection's reverse calls: an endpoint
    /// exported over it.
    pub(crate) fn allows(&self, binding: &Binding) -> bool {
        self.exports
            .as_ref()
            .is_some_and(|exports| exports.allow(binding))
    }

    /// Whether a frame was queued or a call or stream waits, or (client mode) the peer may
    /// call back endpoints exported over it: for the idle close, which would break those
    /// references.
    pub(crate) fn take_active(&self) -> bool {
        self.session().take_active() || self.exports.as_ref().is_some_and(Exports::any)
    }

    /// Carries out what a frame from the other side's serving half means; an error is a
    /// protocol violation.
    pub(crate) fn received(&self, frame: crate::frame::Frame) -> Result<(), String> {
        let received = {
            let mut session = self.session();
            let received = session.receive(frame);
            self.unbind(&mut session);
            received
        };
        match received? {
            Received::Reply(reply, result) => reply.send(result),
            Received::Late(request_id) => tracing::debug!(
                peer = %self.peer,
                request_id,
                "dropped a late reply: its call was cancelled"
            ),
            Received::Answer(frame) => {
                let _ = self.outbox.push(frame);
            }
            Received::Nothing => {}
        }
        Ok(())
    }

    /// Tells the server to forget the slots the session retired.
    fn unbind(&self, session: &mut ClientSession) {
        for slot in session.take_unbinds() {
            let _ = self.outbox.push(protocol::unbind(slot));
        }
    }

    fn session(&self) -> MutexGuard<'_, ClientSession> {
        self.session.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn is_dead(&self) -> bool {
        self.session().is_dead()
    }

    /// Queues what `push` writes under a fresh request id (0 for a tell), registering `reply`
    /// under that id and this connection as the cancel route of the ask's `control`. Under
    /// the session lock, so that a call either is failed by [`Connection::fail`] or is
    /// refused.
    fn send_locked(
        self: &Arc<Self>,
        session: &mut ClientSession,
        slot: u32,
        reply: Option<ReplyTo>,
        control: Option<&Arc<CallControl>>,
        push: impl FnOnce(&Lane, u64) -> Result<(), Refused>,
    ) -> Result<(), RpcError> {
        let request_id = session.request_id(reply.is_some())?;
        match push(&self.outbox, request_id) {
            Ok(()) => {}
            Err(Refused::Call(error)) => return Err(error),
            Err(Refused::Full(bytes)) => {
                return Err(RpcError::Overloaded {
                    address: self.peer,
                    reason: format!("{bytes} bytes already wait to be sent (max_outbox_bytes)"),
                });
            }
            Err(Refused::Closed) => {
                return Err(RpcError::Disconnected {
                    address: self.peer,
                    reason: "the connection is closed".to_owned(),
                });
            }
        }
        session.sent_on(request_id, reply, slot);
        if let Some(control) = control {
            let route: Weak<dyn CancelRoute> = Arc::downgrade(self) as Weak<Connection>;
            control.set_route(route, request_id);
        }
        Ok(())
    }

    /// Queues a `Bind` of `binding` to `slot`, whose answer goes to `on_bound`.
    fn send_bind(
        self: &Arc<Self>,
        session: &mut ClientSession,
        binding: &Binding,
        slot: u32,
        on_bound: ReplyTo,
    ) -> Result<(), RpcError> {
        self.send_locked(session, slot, Some(on_bound), None, |outbox, id| {
            outbox
                .push(protocol::bind(id, slot, binding))
                .map_err(|_| Refused::Closed)
        })
    }

    /// Queues a call on `binding`'s slot, binding it first (pipelined, in the same critical
    /// section, so no call can overtake its bind) if this connection has not yet.
    fn call(
        self: &Arc<Self>,
        binding: &Binding,
        encode: EncodeInvocation<'_>,
        ask: Ask<'_>,
    ) -> Result<u32, RpcError> {
        let mut session = self.session();
        let slot = match session.slot(binding) {
            Some(slot) => slot,
            None => {
                let slot = session.new_slot();
                // If the bind fails, the calls behind it report why; the session retires the
                // slot so that a later call binds again.
                let connection = Arc::downgrade(self);
                let key = binding.clone();
                let on_bound = ReplyTo::Callback(Box::new(move |result| {
                    if let (Err(error), Some(connection)) = (result, Weak::upgrade(&connection)) {
                        if matches!(error, RpcError::EndpointStopped { .. }) {
                            // A proxy bound to a run that ended: expected where endpoints move.
                            tracing::debug!(peer = %connection.peer, "bind refused: {error}");
                        } else {
                            tracing::warn!(peer = %connection.peer, "bind refused: {error}");
                        }
                        let mut session = connection.session();
                        session.refused(&key, slot);
                        connection.unbind(&mut session);
                    }
                }));
                self.send_bind(&mut session, binding, slot, on_bound)?;
                session.bound(binding.clone(), slot);
                slot
            }
        };
        self.send_call(&mut session, slot, encode, ask)?;
        Ok(slot)
    }

    /// Queues a `Request` (for an ask, with the time left until its deadline) or a `Tell`
    /// on `slot`.
    fn send_call(
        self: &Arc<Self>,
        session: &mut ClientSession,
        slot: u32,
        encode: EncodeInvocation<'_>,
        ask: Ask<'_>,
    ) -> Result<(), RpcError> {
        match ask {
            Some((reply, control)) => {
                let budget = protocol::budget(control.remaining());
                let alone = session.in_flight() == 0;
                self.send_locked(session, slot, Some(reply), Some(control), |outbox, id| {
                    self.exporting(|| outbox.push_call(id, slot, Some(budget), encode, alone))
                })
            }
            None => self.send_locked(session, slot, None, None, |outbox, id| {
                self.exporting(|| outbox.push_call(id, slot, None, encode, false))
            }),
        }
    }

    /// Queues a call on a slot an earlier call bound, or gives `reply` back if the connection
    /// has ended or the server refused that bind, for the caller to find a new route.
    fn call_on<'a>(
        self: &Arc<Self>,
        slot: u32,
        encode: EncodeInvocation<'_>,
        ask: Ask<'a>,
    ) -> Result<(), Rebind<'a>> {
        let mut session = self.session();
        if !session.usable(slot) {
            return Err(Rebind::Reroute(ask));
        }
        self.send_call(&mut session, slot, encode, ask)
            .map_err(Rebind::Failed)
    }

    /// Binds `binding` on a fresh slot and reports the server's verdict through `reply`:
    /// the incarnation reached, or why the bind failed.
    fn bind_checked(
        self: &Arc<Self>,
        binding: &Binding,
        reply: oneshot::Sender<Result<Incarnation, RpcError>>,
    ) -> Result<(), RpcError> {
        let mut session = self.session();
        let slot = session.new_slot();
        let connection = Arc::downgrade(self);
        let mut key = binding.clone();
        let peer = self.peer;
        let on_bound = ReplyTo::Callback(Box::new(move |result| {
            let verdict = result.and_then(|value| match value {
                ReplyValue::Encoded(body) => {
                    protocol::parse_bound(&body).map_err(|reason| RpcError::Remote {
                        address: peer,
                        message: reason,
                    })
                }
                ReplyValue::Local(_) | ReplyValue::Stream(_) => Err(RpcError::Remote {
                    address: peer,
                    message: "a bind answered in process".to_owned(),
                }),
            });
            if let (Ok(incarnation), Some(connection)) = (&verdict, Weak::upgrade(&connection)) {
                // Later calls through the proxy name the incarnation, so look the slot up
                // under that binding.
                key.incarnation = Some(*incarnation);
                connection.session().bound(key, slot);
            }
            let _ = reply.send(verdict);
        }));
        self.send_bind(&mut session, binding, slot, on_bound)
    }

    /// Runs `encode` so that references to this (non-listening) service's endpoints in what
    /// it encodes are exported over this connection.
    fn exporting<R>(self: &Arc<Self>, encode: impl FnOnce() -> R) -> R {
        match &self.exports {
            Some(_) => {
                let carrier: Arc<dyn Carrier> = Arc::clone(self) as Arc<Connection>;
                rpc_core::transport::sending_over(carrier, encode)
            }
            None => encode(),
        }
    }

    /// Ends the connection: every call still waiting fails with `error`, at once.
    pub(crate) fn fail(&self, error: RpcError) {
        let orphans = self.session().fail(&error);
        orphans.answer(&error);
    }
}

/// The connection as references see it: a non-listening service's endpoints named in
/// references sent over it are exported (the server may call them back); a reference that
/// arrives over it naming the other side's endpoint is called over it.
impl Carrier for Connection {
    fn export(&self, endpoint: &str, incarnation: Incarnation) {
        if let Some(exports) = &self.exports {
            exports.add(endpoint, incarnation);
        }
    }

    fn channel(self: Arc<Self>, binding: Binding) -> Result<Arc<dyn RemoteChannel>, RpcError> {
        let endpoint = Arc::new(
            EndpointAddress::new(binding.endpoint.as_str(), Some(self.peer))
                .with_carrier(Arc::clone(&self) as Arc<dyn Carrier>),
        );
        Ok(Arc::new(Carried {
            connection: Arc::downgrade(&self),
            binding,
            endpoint,
        }))
    }
}

/// A route to an endpoint of a service that does not listen, over the connection it opened
/// (the reverse calls): for a reference that arrived over that connection. It lives as long
/// as the connection; after that, calls fail with `Disconnected`.
struct Carried {
    connection: Weak<Connection>,
    binding: Binding,
    endpoint: Arc<EndpointAddress>,
}

impl Carried {
    fn call(&self, encode: EncodeInvocation<'_>, ask: Ask<'_>) -> Result<(), RpcError> {
        let Some(connection) = self.connection.upgrade() else {
            return Err(RpcError::Disconnected {
                address: self
                    .endpoint
                    .address()
                    .unwrap_or_else(|| ([0, 0, 0, 0], 0).into()),
                reason: "the connection the reference arrived over has closed".to_owned(),
            });
        };
        connection.call(&self.binding, encode, ask).map(|_| ())
    }
}

impl RemoteChannel for Carried {
    fn endpoint(&self) -> &Arc<EndpointAddress> {
        &self.endpoint
    }

    fn ask(
        &self,
        encode: EncodeInvocation<'_>,
        reply: ReplyTo,
        control: &Arc<CallControl>,
    ) -> Result<(), RpcError> {
        self.call(encode, Some((reply, control)))
    }

    fn tell(&self, encode: EncodeInvocation<'_>) -> Result<(), RpcError> {
        self.call(encode, None)
    }

    fn reference(&self) -> Result<Reference, RpcError> {
        Err(RpcError::Serialization {
            context: format!("sending a reference to {}", self.endpoint),
            reason: "that endpoint's service does not listen: it is reached only over the \
                     connection it opened to this one, so a reference to it cannot be passed on"
                .to_owned(),
        })
    }
}

/// The caller of request `request_id` gave up, or waits longer: forget its reply slot and
/// tell the server (`Cancel`), or tell it the new deadline (`Deadline`).
impl CancelRoute for Connection {
    fn cancel(&self, request_id: u64) {
        let mut session = self.session();
        let Some(reply) = session.cancel(request_id) else {
            return; // answered already
        };
        let _ = self.outbox.push(protocol::cancel(request_id));
        drop(session);
        drop(reply);
    }

    fn credit(&self, request_id: u64, bytes: u32) {
        let mut session = self.session();
        if session.grant(request_id, bytes) {
            let _ = self.outbox.push(protocol::stream_credit(request_id, bytes));
        }
    }

    fn extend(&self, request_id: u64, deadline: Instant) {
        let session = self.session();
        if session.awaits(request_id) {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let budget = protocol::budget(Some(remaining));
            let _ = self.outbox.push(protocol::deadline(request_id, budget));
        }
    }
}

/// The reply slot and control of an ask; `None` for a tell.
type Ask<'a> = Option<(ReplyTo, &'a Arc<CallControl>)>;

/// Opens, runs and finally tears down one connection.
async fn drive(pool: Arc<Pool>, connection: Arc<Connection>) {
    let peer = connection.peer;
    let mut connected = false;
    let error = run(&pool, &connection, &mut connected).await;
    connection.outbox.close();
    connection.fail(error.clone());
    pool.forget(&connection);
    if connected {
        tracing::info!(%peer, "{error}");
        pool.service
            .connection_event(ConnectionEvent::Disconnected(outbound(peer, &pool.config)));
    } else {
        tracing::warn!(%peer, "{error}");
        pool.service
            .connection_event(ConnectionEvent::NetworkError(peer, error));
    }
}

/// Connects, handshakes and relays frames; returns why the connection ended.
async fn run(pool: &Pool, connection: &Arc<Connection>, connected: &mut bool) -> RpcError {
    let peer = connection.peer;
    let config = &pool.config;
    let disconnected = |reason: String| RpcError::Disconnected {
        address: peer,
        reason,
    };
    // One deadline from the first SYN to an authenticated channel, TLS included.
    let mut phase = "connecting";
    let opened = tokio::select! {
        opened = tokio::time::timeout(config.connect_timeout, Box::pin(open(peer, config, &mut phase))) => opened,
        () = pool.closing.cancelled() => return RpcError::ServiceShutDown,
    };
    let (mut frames, write, sealer) = match opened {
        Ok(Ok(opened)) => opened,
        Ok(Err(error)) => return error,
        Err(_) => {
            return RpcError::ConnectFailed {
                address: peer.to_string(),
                reason: format!(
                    "no connection within {:?} (connect_timeout): still {phase}",
                    config.connect_timeout
                ),
            };
        }
    };
    *connected = true;
    let _open = metrics::established("outbound");
    // Recorded once the handshake proved it: the server held the shared secret, or showed a
    // certificate the trust roots vouch for.
    tracing::Span::current().record("authenticated", server_authenticated(config));
    tracing::info!(%peer, sealed = sealer.is_some(), "connected");
    pool.service
        .connection_event(ConnectionEvent::Connected(outbound(peer, &pool.config)));

    let closing = pool.closing.child_token();
    let linger = config.linger;
    // Plain TCP (sealed or not): an ask alone on the connection is written by its caller
    // (see `Outbox`).
    connection.outbox.outbox().establish(write.direct(), sealer);
    let writer = tokio::spawn({
        let (outbox, closing) = (Arc::clone(connection.outbox.outbox()), closing.clone());
        async move {
            if let Err(error) = write_loop(&outbox, write, &closing, linger).await {
                tracing::debug!(%peer, "writing to the connection failed: {error}");
                outbox.close();
                closing.cancel();
            }
        }
    });
    // The reverse calls the server makes to this service's endpoints exported over this
    // connection (client mode), on the same connection.
    let mut serving = Serving::new(
        peer,
        pool.service.clone(),
        Lane::new(Arc::clone(connection.outbox.outbox()), true),
        config,
        Backlog::new(
            config.max_backlog_bytes,
            (*outbound(peer, config).peer)
                .clone()
                .with_carrier(Arc::clone(connection) as Arc<dyn Carrier>),
        ),
        closing.clone(),
        Some(Arc::clone(connection)),
        // The server calling back what this client exported: any gateway of it.
        Network::Inner,
    );
    let mut keepalive = config.keepalive();
    let timer = tokio::time::sleep_until(keepalive.deadline());
    tokio::pin!(timer);
    let error = loop {
        // A reverse tell held for a full mailbox holds reading with it.
        match serving
            .deliver_held(&mut keepalive, timer.as_mut(), &closing)
            .await
        {
            Held::Nothing => {}
            Held::Waited => continue,
            Held::Closing => break disconnected("the connection is closing".to_owned()),
        }
        // The server's calls back may pause reading, never this side's own full outbox.
        let has_room = serving.has_room_for_calls();
        if !has_room {
            keepalive.heard();
        }
        let frame = tokio::select! {
            frame = frames.next(), if has_room => frame,
            () = connection.outbox.room.notified(), if !has_room => continue,
            () = serving.backlog_room().notified(), if !has_room => continue,
            () = &mut timer => {
                let active = connection.take_active() | serving.take_active();
                if !active {
                    shrink_read_buffer(&mut frames);
                }
                let tick = keepalive.on_deadline(Instant::now(), active);
                timer.as_mut().reset(keepalive.deadline());
                match keepalive_tick(tick, connection.outbox.outbox(), peer) {
                    Some(reason) => break disconnected(reason),
                    None => continue,
                }
            },
            () = closing.cancelled() => break if pool.closing.is_cancelled() {
                disconnected("this service is shutting down".to_owned())
            } else {
                disconnected("writing to the connection failed".to_owned())
            },
        };
        let frame = match frame {
            Some(Ok(frame)) => {
                keepalive.heard();
                frame
            }
            Some(Err(error)) => {
                tracing::warn!(%peer, "closing the connection: {error}");
                break disconnected(error.to_string());
            }
            None => break disconnected("the server closed the connection".to_owned()),
        };
        // A reverse frame is the server calling this service's endpoints back.
        let handled = if frame.reverse {
            serving.handle(frame)
        } else {
            connection.received(frame)
        };
        if let Err(reason) = handled {
            tracing::warn!(%peer, "closing the connection: {reason}");
            break disconnected(reason);
        }
    };
    serving.end();
    closing.cancel();
    let _ = writer.await;
    error
}

/// The connection's halves: through a TLS handshake if this service connects with TLS.
async fn secure(
    stream: TcpStream,
    peer: SocketAddr,
    config: &NettyConfig,
) -> Result<(Reader, Writer), RpcError> {
    #[cfg(feature = "tls")]
    if let Some(tls) = &config.tls {
        return tls.connect(stream, peer).await;
    }
    let _ = (config, peer);
    Ok(plain(stream))
}

/// TCP, TLS (if configured), then the client's side of the handshake (`handshake.rs`): its
/// `Hello` at once, the server's `Hello`, and with a shared secret the key exchange. Calls
/// queued meanwhile wait in the outbox. `phase` says how far it got, for a timeout's error.
async fn open(
    peer: SocketAddr,
    config: &NettyConfig,
    phase: &mut &'static str,
) -> Result<(FramedRead<Reader, WireCodec>, Writer, Option<Sealer>), RpcError> {
    let connect_failed = |reason: String| RpcError::ConnectFailed {
        address: peer.to_string(),
        reason,
    };
    let stream = crate::net::connect(peer, config.simulated)
        .await
        .map_err(|e| connect_failed(e.to_string()))?;
    stream.set_nodelay();
    *phase = "in the TLS handshake";
    let (read, mut write) = secure(stream, peer, config).await?;
    *phase = "waiting for the server's hello (is it an rpc service?)";
    let mut frames = FramedRead::with_capacity(
        read,
        WireCodec::new(HANDSHAKE_MAX_FRAME),
        crate::io::READ_START,
    );
    let (mut machine, hello) = ClientHandshake::new(peer, config.secret.clone());
    write_frame(&mut write, &hello)
        .await
        .map_err(|e| connect_failed(format!("sending the hello failed: {e}")))?;
    loop {
        let frame = match frames.next().await {
            Some(Ok(frame)) => frame,
            Some(Err(FrameError::Io(error))) => {
                return Err(connect_failed(format!("during the handshake: {error}")));
            }
            // Not frames of this protocol: say what the peer seems to be.
            Some(Err(_)) => return Err(connect_failed(describe_foreign(frames.read_buffer()))),
            None if frames.read_buffer().is_empty() => {
                return Err(connect_failed(
                    "the peer closed the connection during the handshake (a TLS server does \
                     that to a client without TLS)"
                        .to_owned(),
                ));
            }
            None => return Err(connect_failed(describe_foreign(frames.read_buffer()))),
        };
        *phase = "in the key exchange";
        match machine.receive(frame)? {
            ClientStep::Send(frame) => write_frame(&mut write, &frame)
                .await
                .map_err(|e| connect_failed(format!("sending the key exchange failed: {e}")))?,
            ClientStep::Done(channel) => {
                let sealer = frames
                    .decoder_mut()
                    .establish(config.max_frame_size, channel);
                return Ok((frames, write, sealer));
            }
        }
    }
}

/// The checked `connect`: binds on the (possibly new) connection and waits for the verdict.
pub(crate) async fn connect(
    pool: Arc<Pool>,
    peer: SocketAddr,
    binding: Binding,
) -> Result<Arc<dyn RemoteChannel>, RpcError> {
    let connection = pool.connection(peer)?;
    let (reply, verdict) = oneshot::channel();
    connection.bind_checked(&binding, reply)?;
    let mut binding = binding;
    match verdict.await {
        Ok(Ok(incarnation)) => binding.incarnation = Some(incarnation),
        Ok(Err(error)) => return Err(error),
        Err(_) => {
            return Err(RpcError::Disconnected {
                address: peer,
                reason: "the connection ended during the bind".to_owned(),
            });
        }
    }
    let endpoint = Arc::new(EndpointAddress::new(binding.endpoint.as_str(), Some(peer)));
    Ok(Arc::new(Remote {
        pool,
        peer,
        binding,
        endpoint,
        route: Mutex::new(None),
    }))
}

/// A route to `binding` at `peer` that binds on its first call (the incarnation named in
/// `binding`): a gateway reference's, which the receiving service must make without waiting.
pub(crate) fn channel(
    pool: Arc<Pool>,
    peer: SocketAddr,
    binding: Binding,
) -> Arc<dyn RemoteChannel> {
    let endpoint = Arc::new(EndpointAddress::new(binding.endpoint.as_str(), Some(peer)));
    Arc::new(Remote {
        pool,
        peer,
        binding,
        endpoint,
        route: Mutex::new(None),
    })
}

/// A proxy's route to one remote endpoint's gateway.
struct Remote {
    pool: Arc<Pool>,
    peer: SocketAddr,
    binding: Binding,
    endpoint: Arc<EndpointAddress>,
    /// The connection and slot the last call used: later calls skip the pool and the slot
    /// table while the connection lives and the slot stays bound.
    route: Mutex<Option<(Arc<Connection>, u32)>>,
}

/// Why a call could not use its cached route.
enum Rebind<'a> {
    /// The connection has ended, or the slot's bind was refused: open or bind again (the
    /// reply slot is handed back).
    Reroute(Ask<'a>),
    /// The connection failed.
    Failed(RpcError),
}

impl Remote {
    fn call(&self, encode: EncodeInvocation<'_>, ask: Ask<'_>) -> Result<(), RpcError> {
        let cached = self
            .route
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut ask = ask;
        if let Some((connection, slot)) = cached {
            match connection.call_on(slot, &mut *encode, ask) {
                Ok(()) => return Ok(()),
                Err(Rebind::Failed(error)) => return Err(error),
                Err(Rebind::Reroute(back)) => ask = back,
            }
        }
        let connection = self.pool.connection(self.peer)?;
        let slot = connection.call(&self.binding, encode, ask)?;
        *self.route.lock().unwrap_or_else(PoisonError::into_inner) = Some((connection, slot));
        Ok(())
    }
}

impl RemoteChannel for Remote {
    fn endpoint(&self) -> &Arc<EndpointAddress> {
        &self.endpoint
    }

    fn ask(
        &self,
        encode: EncodeInvocation<'_>,
        reply: ReplyTo,
        control: &Arc<CallControl>,
    ) -> Result<(), RpcError> {
        self.call(encode, Some((reply, control)))
    }

    fn tell(&self, encode: EncodeInvocation<'_>) -> Result<(), RpcError> {
        self.call(encode, None)
    }

    fn reference(&self) -> Result<Reference, RpcError> {
        self.binding.reference_at(self.peer, &self.endpoint)
    }
}

/// The hooks' view of an outbound connection to `peer`.
/// Whether an established connection's handshake authenticated the server: with TLS its
/// certificate was verified, with a secret it proved to hold it.
fn server_authenticated(config: &NettyConfig) -> bool {
    config.uses_tls() || config.secret.is_some()
}

fn outbound(peer: SocketAddr, config: &NettyConfig) -> rpc_core::Connection {
    rpc_core::Connection::new(
        rpc_core::Peer::new(peer)
            .with_shared_secret(config.secret.is_some())
            .with_tls(config.uses_tls()),
        rpc_core::Direction::Outbound,
    )
}
