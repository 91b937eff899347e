//! The accepting side: the listener loop and one task per inbound connection.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use crate::net::{Listener as TcpListener, Stream as TcpStream};
use bytes::Bytes;
use futures::StreamExt;
use rpc_core::Peer;
use rpc_core::RpcError;
use rpc_core::transport::{
    Backlog, CallControl, Carrier, ConnectionEvent, EncodedStream, InboundSink, Network,
    ReplyResult, ReplyRoute, ReplyTo, ReplyValue, ServiceHandle,
};
use tokio::io::AsyncWriteExt;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::admission::{Admission, Limits, Refused, Ticket};
use crate::channel::{Sealer, WireCodec};
use crate::client::Connection;
use crate::config::NettyConfig;
use crate::frame::{Frame, FrameKind, HEADER_LEN};
use crate::handshake::{ServerHandshake, ServerStep};
use crate::ids::IdMap;
use crate::io::{
    Lane, Outbox, Overflow, Reader, Writer, keepalive_tick, plain, shrink_read_buffer, write_frame,
    write_loop,
};
use crate::metrics;
use crate::protocol::{self, HANDSHAKE_MAX_FRAME, WireError};
use crate::session::{Event, Keepalive, Requests, ServerSession};

/// Accepts connections until `closing` fires; each is served by its own task.
pub(crate) async fn accept(
    listener: TcpListener,
    network: Network,
    service: ServiceHandle,
    config: Arc<NettyConfig>,
    closing: CancellationToken,
    tasks: TaskTracker,
) {
    let admission = Admission::new(Limits {
        max_connections: config.max_connections,
        max_handshakes: config.max_handshakes,
        max_handshakes_per_address: config.max_handshakes_per_address,
    });
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = closing.cancelled() => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                let ticket = match admission.admit(peer.ip()) {
                    Ok(ticket) => ticket,
                    Err(Refused::Full(max)) => {
                        tracing::warn!(
                            %peer,
                            "refused a connection: {max} are open, the maximum (max_connections)"
                        );
                        metrics::refused("max_connections");
                        drop(stream);
                        continue;
                    }
                };
                let span = tracing::info_span!(
                    "rpc.connection",
                    %peer,
                    direction = "inbound",
                    authenticated = tracing::field::Empty,
                );
                tasks.spawn(
                    serve(
                        stream,
                        peer,
                        network,
                        ticket,
                        service.clone(),
                        Arc::clone(&config),
                        closing.child_token(),
                    )
                    .instrument(span),
                );
            }
            Err(error) => {
                // Out of file descriptors, for example: back off instead of spinning.
                tracing::warn!("accepting a connection failed: {error}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

/// Why a connection was closed, for the log.
type CloseReason = String;

/// Serves one inbound connection: handshake, then binds and calls until either side closes.
async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    network: Network,
    mut ticket: Ticket,
    service: ServiceHandle,
    config: Arc<NettyConfig>,
    closing: CancellationToken,
) {
    stream.set_nodelay();
    // One deadline from accept to authenticated, TLS included.
    let opened = tokio::select! {
        opened = tokio::time::timeout(config.handshake_timeout, Box::pin(open(stream, &config))) => opened,
        () = ticket.evicted().cancelled() => {
            tracing::debug!(%peer, "closing the connection: evicted from the handshake by newer ones (max_handshakes)");
            metrics::refused("evicted");
            return;
        }
        () = closing.cancelled() => return,
    };
    let Opened {
        mut frames,
        write,
        sealer,
        certificate,
    } = match opened {
        Ok(Ok(opened)) => opened,
        Ok(Err(reason)) => {
            // Logged once per refused peer.
            tracing::warn!(%peer, "handshake failed, closing the connection: {reason}");
            metrics::refused("handshake_failed");
            return;
        }
        Err(_) => {
            tracing::warn!(
                %peer,
                "closing the connection: no handshake within {:?} (handshake_timeout)",
                config.handshake_timeout
            );
            metrics::refused("handshake_timeout");
            return;
        }
    };
    if let Err(Refused::Full(max)) = ticket.establish() {
        tracing::warn!(
            %peer,
            "closing the connection: {max} are established, the maximum (max_connections)"
        );
        metrics::refused("max_connections");
        return;
    }
    let _open = metrics::established("inbound");
    let outbox = Arc::new(Outbox::new(config.max_frame_size, config.max_outbox_bytes));
    // Plain TCP (sealed or not): the reply to a request alone on the connection is written
    // by the endpoint's main thread itself (see `Outbox`).
    outbox.establish(write.direct(), sealer);
    let linger = config.linger;
    let writer = tokio::spawn({
        let (outbox, closing) = (Arc::clone(&outbox), closing.clone());
        async move {
            if let Err(error) = write_loop(&outbox, write, &closing, linger).await {
                tracing::debug!(%peer, "writing to the connection failed: {error}");
                outbox.close();
                closing.cancel();
            }
        }
    });
    tracing::info!(%peer, "connection accepted");
    // A handshake that succeeded with a secret configured proved the peer holds it.
    let who = Peer::new(peer)
        .with_shared_secret(config.secret.is_some())
        .with_certificate(certificate)
        .with_tls(config.uses_tls())
        .with_network(network);
    tracing::Span::current().record("authenticated", who.is_authenticated());
    let hooks_view = rpc_core::Connection::new(who.clone(), rpc_core::Direction::Inbound);
    service.connection_event(ConnectionEvent::Connected(hooks_view.clone()));

    // The calls this service makes back to the client's endpoints (client mode), over the
    // same connection, marked as the reverse lane.
    let reverse = Arc::new(Connection::new(
        peer,
        Lane::new(Arc::clone(&outbox), true),
        config.max_in_flight,
        None,
    ));
    let mut connection = Serving::new(
        peer,
        service.clone(),
        Lane::new(Arc::clone(&outbox), false),
        &config,
        Backlog::new(config.max_backlog_bytes, who)
            .with_carrier(Arc::clone(&reverse) as Arc<dyn Carrier>),
        closing.clone(),
        None,
        network,
    );
    let mut keepalive = config.keepalive();
    let timer = tokio::time::sleep_until(keepalive.deadline());
    tokio::pin!(timer);
    let reason: CloseReason = loop {
        match connection
            .deliver_held(&mut keepalive, timer.as_mut(), &closing)
            .await
        {
            Held::Nothing => {}
            Held::Waited => continue,
            Held::Closing => break "the connection is closing".to_owned(),
        }
        // Backpressure: with too many requests unanswered, too many reply bytes waiting, or
        // too many invocation bytes queued in mailboxes, stop reading until there is room;
        // TCP then slows the peer down.
        let has_room = connection.has_room();
        if !has_room {
            // Waiting for room is not the peer's silence.
            keepalive.heard();
        }
        let frame = tokio::select! {
            frame = frames.next(), if has_room => frame,
            () = outbox.room.notified(), if !has_room => continue,
            () = connection.backlog_room().notified(), if !has_room => continue,
            () = &mut timer => {
                // Active: a bind or call since the last look, or one unanswered.
                // Proxies to the client's endpoints (references it sent) keep it open too.
                let active = connection.take_active()
                    | reverse.take_active()
                    | (Arc::weak_count(&reverse) > 0);
                if !active {
                    shrink_read_buffer(&mut frames);
                }
                let tick = keepalive.on_deadline(Instant::now(), active);
                timer.as_mut().reset(keepalive.deadline());
                match keepalive_tick(tick, &outbox, peer) {
                    Some(reason) => break reason,
                    None => continue,
                }
            },
            () = closing.cancelled() => break "the connection is closing".to_owned(),
        };
        match frame {
            None => break "the peer closed the connection".to_owned(),
            Some(Err(error)) => {
                tracing::warn!(%peer, "closing the connection: {error}");
                break error.to_string();
            }
            Some(Ok(frame)) => {
                keepalive.heard();
                // A reverse frame answers a call this side made to the client's endpoints.
                let handled = if frame.reverse {
                    reverse.received(frame)
                } else {
                    connection.handle(frame)
                };
                if let Err(violation) = handled {
                    tracing::warn!(%peer, "closing the connection: {violation}");
                    break violation;
                }
            }
        }
    };
    tracing::info!(%peer, "connection closed: {reason}");
    connection.end();
    reverse.fail(RpcError::Disconnected {
        address: peer,
        reason: format!("the client's connection closed: {reason}"),
    });
    outbox.close();
    closing.cancel(); // bounds the final write by the linger time
    let _ = writer.await;
    service.connection_event(ConnectionEvent::Disconnected(hooks_view));
}

/// The connection's halves: through a TLS handshake if this service serves TLS.
/// TLS, if configured; the client's certificate (DER) comes with the streams when it
/// presented one.
async fn secure(
    stream: TcpStream,
    config: &NettyConfig,
) -> Result<(Reader, Writer, Option<Arc<[u8]>>), String> {
    #[cfg(feature = "tls")]
    if let Some(tls) = &config.tls {
        return tls.accept(stream).await;
    }
    let _ = config;
    let (read, write) = plain(stream);
    Ok((read, write, None))
}

/// TLS (if configured), then the server's side of the handshake (`handshake.rs`): its
/// `Hello` at once, then the client's, and with a shared secret the key exchange. Until it
/// succeeds frames are limited to [`HANDSHAKE_MAX_FRAME`] bytes and nothing reaches an
/// endpoint. On failure the peer is told why (when it speaks this protocol) and the reason is
/// returned for the log.
async fn open(stream: TcpStream, config: &NettyConfig) -> Result<Opened, String> {
    let (read, mut write, certificate) = secure(stream, config).await?;
    let mut frames = FramedRead::with_capacity(
        read,
        WireCodec::new(HANDSHAKE_MAX_FRAME),
        crate::io::READ_START,
    );
    let (mut machine, hello) = ServerHandshake::new(config.secret.clone());
    write_frame(&mut write, &hello)
        .await
        .map_err(|e| format!("sending the hello failed: {e}"))?;
    loop {
        let frame = match frames.next().await {
            Some(Ok(frame)) => frame,
            Some(Err(error)) => return Err(format!("during the handshake: {error}")),
            None => return Err("closed during the handshake".to_owned()),
        };
        match machine.receive(frame) {
            Ok(ServerStep::Continue) => {}
            Ok(ServerStep::Done(reply, channel)) => {
                if let Some(reply) = reply {
                    write_frame(&mut write, &reply)
                        .await
                        .map_err(|e| format!("sending the key exchange failed: {e}"))?;
                }
                let sealer = frames
                    .decoder_mut()
                    .establish(config.max_frame_size, channel);
                return Ok(Opened {
                    frames,
                    write,
                    sealer,
                    certificate,
                });
            }
            Err(refusal) => {
                if let Some(reply) = refusal.reply {
                    let _ = write_frame(&mut write, &reply).await;
                    let _ = write.shutdown().await;
                }
                return Err(refusal.reason);
            }
        }
    }
}

/// A connection whose handshake succeeded.
struct Opened {
    frames: FramedRead<Reader, WireCodec>,
    write: Writer,
    sealer: Option<Sealer>,
    /// The client's TLS certificate (DER), if it presented one.
    certificate: Option<Arc<[u8]>>,
}

/// What [`Serving::deliver_held`] did.
pub(crate) enum Held {
    /// No tell was held.
    Nothing,
    /// It delivered the tell, or waited for room (and holds it again if there is none yet).
    Waited,
    /// The connection is closing.
    Closing,
}

/// The serving half of a connection after its handshake: the binds and calls the other side
/// makes to this service's endpoints, their replies and streams, and the backpressure they
/// need. An inbound connection's, or (client mode) the reverse calls a server makes over a
/// connection this service opened.
pub(crate) struct Serving {
    peer: SocketAddr,
    service: ServiceHandle,
    outbox: Lane,
    replies: Arc<Replies>,
    /// The bytes of this connection's invocations waiting in mailboxes.
    backlog: Arc<Backlog>,
    /// The rules: the bind table, what a client may send.
    session: ServerSession<Arc<dyn InboundSink>>,
    /// A tell that found its endpoint's mailbox full: nothing more is read from this
    /// connection until it is delivered (backpressure instead of loss).
    held: Option<(Arc<dyn InboundSink>, Bytes)>,
    /// For the reverse calls: only the endpoints exported over the connection may be bound.
    exported: Option<Arc<Connection>>,
    /// The network the connection came in on: an outer one is refused inner gateways.
    network: Network,
    max_in_flight: usize,
}

impl Serving {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        peer: SocketAddr,
        service: ServiceHandle,
        outbox: Lane,
        config: &NettyConfig,
        backlog: Backlog,
        closing: CancellationToken,
        exported: Option<Arc<Connection>>,
        network: Network,
    ) -> Serving {
        Serving {
            peer,
            service,
            replies: Arc::new_cyclic(|me| Replies {
                me: me.clone(),
                outbox: outbox.clone(),
                max_frame: config.max_frame_size,
                in_flight: AtomicUsize::new(0),
                requests: Mutex::default(),
                streams: Mutex::default(),
                runtime: tokio::runtime::Handle::current(),
                peer,
                closing,
            }),
            outbox,
            backlog: Arc::new(backlog),
            session: ServerSession::default(),
            held: None,
            exported,
            network,
            max_in_flight: config.max_in_flight,
        }
    }

    /// Whether more frames may be read: not too many requests unanswered, nor reply bytes
    /// waiting, nor invocation bytes queued in mailboxes.
    pub(crate) fn has_room(&self) -> bool {
        self.has_room_for_calls() && self.outbox.has_room()
    }

    /// [`Serving::has_room`] but for the outbox: what the connecting side's reader minds, so
    /// that its own calls filling the outbox never stop it reading their replies (both sides
    /// would then wait for each other to read).
    pub(crate) fn has_room_for_calls(&self) -> bool {
        self.replies.in_flight.load(Ordering::Acquire) < self.max_in_flight
            && !self.backlog.is_full()
    }

    /// Whether a bind or call arrived since the last look, or one is unanswered.
    pub(crate) fn take_active(&mut self) -> bool {
        self.session.take_used() || self.replies.in_flight.load(Ordering::Acquire) > 0
    }

    /// The connection has ended: every request still in flight is cancelled.
    pub(crate) fn end(&self) {
        self.replies.cancel_all();
    }

    /// Delivers the tell held for a full mailbox, if there is one: at once if its mailbox has
    /// room now, else after waiting for room (`Waited`, the tell held again if there still is
    /// none), pinging the peer meanwhile so it knows this side is alive. Nothing is read from
    /// the connection until it is delivered: backpressure instead of loss.
    pub(crate) async fn deliver_held(
        &mut self,
        keepalive: &mut Keepalive,
        mut timer: std::pin::Pin<&mut tokio::time::Sleep>,
        closing: &CancellationToken,
    ) -> Held {
        let Some((sink, payload)) = self.held.take() else {
            return Held::Nothing;
        };
        // Registered before trying, so that no wake-up is missed.
        let room = sink.room();
        let mut notified = std::pin::pin!(room.notified());
        notified.as_mut().enable();
        let payload = match sink.invoke(payload, None, &self.backlog) {
            Ok(()) => return Held::Waited,
            Err(busy) => busy.payload,
        };
        tokio::select! {
            () = notified => {}
            () = &mut timer => {
                // Not reading is not the peer's silence, and a held tell is a call.
                keepalive.heard();
                keepalive.on_deadline(Instant::now(), true);
                timer.as_mut().reset(keepalive.deadline());
                let _ = self.outbox.outbox().push(Frame::new(FrameKind::Ping, 0, Vec::new()));
            }
            () = closing.cancelled() => return Held::Closing,
        }
        self.held = Some((sink, payload));
        Held::Waited
    }

    /// Signalled when the connection's backlog stops being full.
    pub(crate) fn backlog_room(&self) -> &Notify {
        self.backlog.room()
    }
}

impl Serving {
    /// Carries out what one frame means; an error is a protocol violation that closes the
    /// connection.
    pub(crate) fn handle(&mut self, frame: Frame) -> Result<(), String> {
        match self.session.receive(frame)? {
            Event::Bind {
                request_id,
                slot,
                binding,
            } => {
                let not_found = || RpcError::EndpointNotFound {
                    endpoint: binding.endpoint.clone(),
                    address: None,
                };
                let resolved = match (&self.exported, binding.session) {
                    // A server this (Gate) service relays players to, reaching a player's
                    // endpoint: forwarded down that player's connection.
                    (Some(_), Some(session)) => self.service.resolve_session(&binding, session),
                    // Only a server called back over a connection this service opened may.
                    (None, Some(_)) => Err(not_found()),
                    // Client mode: the server may reach only what was exported to it.
                    (Some(connection), None) if !connection.allows(&binding) => Err(not_found()),
                    (_, None) => self.service.resolve(&binding, self.network),
                };
                let bound = match resolved {
                    Ok(sink) => {
                        let incarnation = sink.incarnation();
                        Ok((sink, incarnation))
                    }
                    Err(error) => {
                        if matches!(error, RpcError::EndpointStopped { .. }) {
                            // A proxy bound to a run that ended: expected where endpoints move.
                            tracing::debug!(peer = %self.peer, "bind refused: {error}");
                        } else {
                            tracing::warn!(peer = %self.peer, "bind refused: {error}");
                        }
                        Err(WireError::from_rpc(&error))
                    }
                };
                let answer = self.session.bind(request_id, slot, bound);
                let _ = self.outbox.push(answer);
            }
            Event::Ask {
                request_id,
                sink,
                budget,
                payload,
            } => {
                let control = self.replies.begin(request_id, budget)?;
                let reply =
                    ReplyTo::Route(Arc::clone(&self.replies) as Arc<dyn ReplyRoute>, request_id);
                if let Err(busy) = sink.invoke(payload, Some((reply, control)), &self.backlog) {
                    // A full mailbox: an ask learns it at once.
                    if let Some(reply) = busy.reply {
                        reply.send(Err(sink.mailbox_full()));
                    }
                }
            }
            Event::Tell { sink, payload } => {
                // A full mailbox: the tell waits, and with it the connection.
                if let Err(busy) = sink.invoke(payload, None, &self.backlog) {
                    self.held = Some((Arc::clone(sink), busy.payload));
                }
            }
            Event::Unroutable { slot } => {
                tracing::warn!(peer = %self.peer, slot, "dropped a tell to an unbound slot");
            }
            Event::Cancel(request_id) => self.replies.requests().cancel(request_id),
            Event::Deadline { request_id, budget } => {
                self.replies
                    .requests()
                    .extend(request_id, budget, Instant::now());
            }
            Event::Credit { request_id, bytes } => self.replies.credit(request_id, bytes),
            Event::Answer(frame) => {
                let _ = self.outbox.push(frame);
            }
            Event::Nothing => {}
        }
        Ok(())
    }
}

/// The requests of one connection that endpoints have not answered yet, and where their
/// answers go: each outcome becomes a `Response` or `Failure` frame on the connection. A
/// reply too large for a frame becomes a `FrameTooLarge` failure. A reply that would take
/// the outbox past its limit (a peer that asks and does not read) closes the connection. A
/// request the client cancelled gets no frame at all.
struct Replies {
    outbox: Lane,
    max_frame: usize,
    /// How many requests are in flight (`requests.len()`, readable without the lock).
    in_flight: AtomicUsize,
    /// The requests in flight and their controls.
    requests: Mutex<Requests>,
    /// The credit of each open stream (a request in flight whose reply is a stream).
    streams: Mutex<IdMap<u64, Arc<Credit>>>,
    /// Where stream producers run: the connection's runtime.
    runtime: tokio::runtime::Handle,
    /// Itself, for the stream producers' tasks.
    me: Weak<Replies>,
    peer: SocketAddr,
    closing: CancellationToken,
}

/// Stream producers add items to a connection's outbox only while less than this is waiting
/// to be written: replies to ordinary calls, queued without waiting, are not held up behind
/// many streams' windows.
const STREAM_QUEUE: usize = 256 * 1024;

/// How many more bytes of items a stream's producer may send: it sends while this is above
/// zero (so it ends at most one item below), and the consumer's `StreamCredit` frames raise it.
#[derive(Debug)]
struct Credit {
    bytes: AtomicI64,
    raised: Notify,
}

impl Credit {
    /// Waits until there is credit to send an item.
    async fn available(&self) {
        loop {
            let raised = self.raised.notified();
            let mut raised = std::pin::pin!(raised);
            raised.as_mut().enable();
            if self.bytes.load(Ordering::Acquire) > 0 {
                return;
            }
            raised.await;
        }
    }
}

impl Replies {
    fn requests(&self) -> MutexGuard<'_, Requests> {
        self.requests.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers request `request_id`, whose caller waits `budget` from now, as in flight.
    fn begin(&self, request_id: u64, budget: Option<Duration>) -> Result<Arc<CallControl>, String> {
        let mut requests = self.requests();
        let control = requests.begin(request_id, budget, Instant::now())?;
        self.in_flight.store(requests.len(), Ordering::Release);
        Ok(control)
    }

    /// The connection has ended: nobody will read a reply, so every request still in flight
    /// is cancelled.
    fn cancel_all(&self) {
        let controls = {
            let mut requests = self.requests();
            self.in_flight.store(0, Ordering::Release);
            requests.drain()
        };
        for control in controls {
            control.cancel();
        }
    }

    /// Request `request_id` leaves the table; whether its caller still wants an answer.
    fn finish(&self, request_id: u64) -> bool {
        let wanted = {
            let mut requests = self.requests();
            let wanted = requests.finish(request_id);
            self.in_flight.store(requests.len(), Ordering::Release);
            wanted
        };
        self.outbox.room.notify_one();
        wanted
    }
}

impl Replies {
    /// The consumer of stream `request_id` grants `bytes` more; an unknown id (a stream that
    /// has ended) is ignored.
    fn credit(&self, request_id: u64, bytes: u32) {
        let credit = self
            .streams
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&request_id)
            .cloned();
        if let Some(credit) = credit {
            credit.bytes.fetch_add(i64::from(bytes), Ordering::AcqRel);
            credit.raised.notify_one();
        }
    }

    /// Request `request_id` was answered with a stream: a `Response` opens it, then a task
    /// beside the endpoint sends its items as credit allows, and `StreamEnd` or a `Failure`
    /// ends it. A `Cancel` (or the connection's end) drops the producer and sends nothing
    /// more.
    fn open_stream(self: &Arc<Self>, request_id: u64, items: EncodedStream) {
        let control = self.requests().control(request_id).cloned();
        let Some(control) = control.filter(|control| !control.is_cancelled()) else {
            self.finish(request_id);
            return;
        };
        let credit = Arc::new(Credit {
            bytes: AtomicI64::new(i64::from(rpc_core::STREAM_WINDOW)),
            raised: Notify::new(),
        });
        self.streams
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(request_id, Arc::clone(&credit));
        if let Err(Overflow(held)) = self.outbox.push_reply(
            Frame::new(FrameKind::Response, request_id, Bytes::new()),
            false,
        ) {
            self.overflow(held);
        }
        let replies = Arc::clone(self);
        self.runtime.spawn(async move {
            tokio::select! {
                () = replies.pump(request_id, items, &credit) => {}
                () = control.cancelled() => {
                    replies.finish(request_id);
                }
            }
            replies
                .streams
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&request_id);
        });
    }

    /// Sends stream `request_id`'s items, each when there is credit for it and room in the
    /// outbox, then its end.
    async fn pump(&self, request_id: u64, mut items: EncodedStream, credit: &Credit) {
        loop {
            credit.available().await;
            // Stream items queue behind at most this much, so that the replies of ordinary
            // calls, which are queued at once, wait little behind them.
            self.outbox.wait_below(STREAM_QUEUE).await;
            if self.outbox.is_closed() {
                return;
            }
            let end = match items.next().await {
                Some(Ok(item)) if HEADER_LEN + item.len() <= self.max_frame => {
                    let len = i64::try_from(item.len()).unwrap_or(i64::MAX);
                    credit.bytes.fetch_sub(len, Ordering::AcqRel);
                    if self
                        .outbox
                        .push(protocol::stream_item(request_id, item))
                        .is_err()
                    {
                        return;
                    }
                    continue;
                }
                Some(Ok(item)) => {
                    let error = WireError::FrameTooLarge {
                        size: (HEADER_LEN + item.len()) as u64,
                        max: self.max_frame as u64,
                    };
                    tracing::warn!("a stream item exceeds the maximum frame size: {error:?}");
                    protocol::failure(request_id, &error)
                }
                Some(Err(error)) => protocol::failure(request_id, &WireError::from_rpc(&error)),
                None => protocol::stream_end(request_id),
            };
            if self.finish(request_id) {
                let _ = self.outbox.push(end);
            }
            return;
        }
    }

    /// A reply would take the outbox past its limit: the peer asks and does not read.
    fn overflow(&self, held: usize) {
        tracing::warn!(
            peer = %self.peer,
            "closing the connection: {held} bytes of replies wait for the peer to read them, \
             the maximum (max_outbox_bytes); the replies are dropped"
        );
        self.outbox.abort();
        self.closing.cancel();
    }
}

impl ReplyRoute for Replies {
    fn abandon(&self, request_id: u64) {
        self.finish(request_id);
    }

    fn reply(&self, request_id: u64, result: ReplyResult) {
        let result = match result {
            Ok(ReplyValue::Stream(items)) => {
                match self.me.upgrade() {
                    Some(this) => this.open_stream(request_id, items),
                    None => {
                        self.finish(request_id);
                    }
                }
                return;
            }
            result => result,
        };
        if !self.finish(request_id) {
            return;
        }
        let frame = match result {
            Ok(ReplyValue::Encoded(bytes)) if HEADER_LEN + bytes.len() <= self.max_frame => {
                Frame::new(FrameKind::Response, request_id, bytes)
            }
            Ok(ReplyValue::Encoded(bytes)) => {
                let error = WireError::FrameTooLarge {
                    size: (HEADER_LEN + bytes.len()) as u64,
                    max: self.max_frame as u64,
                };
                tracing::warn!("a reply exceeds the maximum frame size: {error:?}");
                protocol::failure(request_id, &error)
            }
            Ok(ReplyValue::Local(_)) => protocol::failure(
                request_id,
                &WireError::Other {
                    message: "the reply was not encoded".to_owned(),
                },
            ),
            Ok(ReplyValue::Stream(_)) => unreachable!("streams are opened above"),
            Err(error) => protocol::failure(request_id, &WireError::from_rpc(&error)),
        };
        let alone = self.in_flight.load(Ordering::Acquire) == 0;
        if let Err(Overflow(held)) = self.outbox.push_reply(frame, alone) {
            self.overflow(held);
        }
    }
}
