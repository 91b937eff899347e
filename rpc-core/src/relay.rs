//! Relays and followers: calls forwarded as the bytes they arrived in.
//!
//! A *relay* ([`RpcService::start_relay`](crate::RpcService::start_relay)) is a name on a
//! Gate that serves every gateway without knowing any: a player binds it like an endpoint,
//! and each call the player makes on it is sent on, still encoded, to the server its
//! [`Router`] picks for the player's [`Session`], with the session written into the call's
//! header. The reply (or failure) comes back the same way, undecoded.
//!
//! A *follower* ([`RpcService::follow`](crate::RpcService::follow)) is the same forwarding
//! inside a caller: a typed proxy whose target moves (an actor that migrates between
//! servers), found again through a [`Router`] whenever the old place no longer has it.
//!
//! Both re-route a call the old place refused without running it (the endpoint is not there,
//! or that incarnation stopped: [`RpcError::EndpointNotFound`], [`RpcError::EndpointStopped`])
//! and send it again, until the call's deadline; any other outcome is the call's.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures::future::BoxFuture;
use tokio::sync::Notify;

use crate::call::{ReplyResult, ReplyTo};
use crate::control::CallControl;
use crate::error::RpcError;
use crate::gateway::{CallTarget, EndpointAddress, Gateway, Incarnation, MethodInfo};
use crate::reference::Reference;
use crate::service::ServiceInner;
use crate::session::Session;
use crate::trace::TraceContext;
use crate::transport::{Backlog, Binding, Busy, InboundSink, RemoteChannel};

/// Where a forwarded call goes: endpoint `endpoint` of the service at `address`, and, when
/// the router knows it, the incarnation that hosts the target now (a proxy bound to it never
/// reaches a later one by mistake: it is re-routed instead).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Hop {
    /// The hosting service's (inner) address.
    pub address: SocketAddr,
    /// The endpoint there.
    pub endpoint: String,
    /// The endpoint's incarnation, if known.
    pub incarnation: Option<Incarnation>,
}

/// What a router is asked to place: a call on `gateway`, for `session` (a relay's) or for
/// nobody in particular (a follower's).
#[derive(Clone, Copy, Debug)]
pub struct RouteRequest<'a> {
    /// The relay's or follower's name.
    pub name: &'a str,
    /// The gateway called.
    pub gateway: &'a str,
    /// The player, for a relayed call.
    pub session: Option<&'a Session>,
}

/// Chooses where forwarded calls go; asked again whenever the last answer led to a place
/// that no longer hosts the target. Any `Fn(RouteRequest) -> impl Future<Output =
/// Result<Hop, RpcError>>` is one.
pub trait Router: Send + Sync + 'static {
    /// The hop for `request`, or why there is none (the caller gets that error).
    fn route(&self, request: RouteRequest<'_>) -> BoxFuture<'static, Result<Hop, RpcError>>;
}

impl<F, Fut> Router for F
where
    F: Fn(RouteRequest<'_>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Hop, RpcError>> + Send + 'static,
{
    fn route(&self, request: RouteRequest<'_>) -> BoxFuture<'static, Result<Hop, RpcError>> {
        Box::pin(self(request))
    }
}

/// How many calls may wait for a route's router at once; more are refused (a player
/// flooding a relay whose router is slow cannot fill the Gate's memory).
const MAX_WAITING: usize = 1024;

/// How many times one call is re-routed before its last refusal is its answer.
const MAX_REROUTES: u32 = 200;
/// The longest pause between two attempts (the first is 1 ms, doubling).
const MAX_PAUSE: Duration = Duration::from_millis(20);

/// The channels of one relay (or follower), by where they lead: every player routed to the
/// same endpoint shares one channel, so one bound slot on the connection to its server.
#[derive(Default)]
struct Channels(Mutex<HashMap<Binding, Channel>>);

/// A channel, and the address it leads to.
type Channel = (SocketAddr, Arc<dyn RemoteChannel>);

/// Past this many, the channel table starts afresh (its channels live on in the routes
/// that hold them).
const MAX_CHANNELS: usize = 1024;

impl Channels {
    fn get(
        &self,
        transport: &Arc<dyn crate::transport::Transport>,
        address: SocketAddr,
        binding: Binding,
    ) -> Result<Arc<dyn RemoteChannel>, RpcError> {
        let mut channels = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((at, channel)) = channels.get(&binding) {
            if *at == address {
                return Ok(Arc::clone(channel));
            }
        }
        if channels.len() >= MAX_CHANNELS {
            channels.clear();
        }
        let channel = transport.channel(address, binding.clone())?;
        channels.insert(binding, (address, Arc::clone(&channel)));
        Ok(channel)
    }
}

/// One forwarding route: its router's current answer and the channel to it.
struct Route {
    service: Weak<ServiceInner>,
    router: Arc<dyn Router>,
    name: String,
    /// Set for a relay: failures on the hop are reported as [`RpcError::Relay`].
    relay: bool,
    session: Option<Session>,
    gateway: String,
    fingerprint: u64,
    channels: Arc<Channels>,
    state: Mutex<State>,
}

/// Where a route's calls go now.
enum State {
    /// Nowhere yet, or the last place no longer hosts the target.
    Unknown,
    /// The router is being asked; the calls made meanwhile wait here, in order.
    Locating(Vec<Queued>),
    /// Here.
    At(Hop, Arc<dyn RemoteChannel>),
}

/// A call waiting for its route's router.
enum Queued {
    Ask(Bytes, ReplyTo, Arc<CallControl>, u32),
    Tell(Bytes),
}

/// Where one attempt's answer goes: shared by the reply callback and the send that may
/// fail before it is registered.
type Pending = Arc<Mutex<Option<ReplyTo>>>;

impl Route {
    fn new(
        service: Weak<ServiceInner>,
        router: Arc<dyn Router>,
        name: String,
        session: Option<Session>,
        gateway: String,
        fingerprint: u64,
        channels: Arc<Channels>,
    ) -> Route {
        Route {
            service,
            router,
            name,
            relay: session.is_some(),
            session,
            gateway,
            fingerprint,
            channels,
            state: Mutex::new(State::Unknown),
        }
    }

    /// Runs `task` on the service's runtime (a call may be sent from outside any runtime).
    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        match self.service.upgrade() {
            Some(service) => {
                service.runtime().spawn(task);
            }
            None => drop(task),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Where the route leads now, if it is known.
    fn current(&self) -> Option<(Hop, Arc<dyn RemoteChannel>)> {
        match &*self.state() {
            State::At(hop, channel) => Some((hop.clone(), Arc::clone(channel))),
            State::Unknown | State::Locating(_) => None,
        }
    }

    /// Forgets `hop` (it no longer hosts the target), unless the route already moved on.
    fn forget(&self, hop: &Hop) {
        let mut state = self.state();
        if matches!(&*state, State::At(known, _) if known == hop) {
            *state = State::Unknown;
        }
    }

    /// Sends `call` where the route leads, asking the router first if that is not known (the
    /// calls made meanwhile follow it, in order).
    fn send(self: Arc<Self>, call: Queued) {
        let mut state = self.state();
        match &mut *state {
            State::At(hop, channel) => {
                let (hop, channel) = (hop.clone(), Arc::clone(channel));
                drop(state);
                self.send_on(hop, channel, call);
            }
            State::Locating(waiting) if waiting.len() >= MAX_WAITING => {
                drop(state);
                let error = RpcError::Relay {
                    endpoint: self.name.clone(),
                    reason: format!(
                        "{MAX_WAITING} calls already wait for the relay's router to place them"
                    ),
                };
                self.refuse(call, error);
            }
            State::Locating(waiting) => waiting.push(call),
            State::Unknown => {
                *state = State::Locating(vec![call]);
                drop(state);
                let route = Arc::clone(&self);
                route.spawn(async move {
                    let located = self.locate().await;
                    let waiting = {
                        let mut state = self.state();
                        let next = match &located {
                            Ok((hop, channel)) => State::At(hop.clone(), Arc::clone(channel)),
                            Err(_) => State::Unknown,
                        };
                        match std::mem::replace(&mut *state, next) {
                            State::Locating(waiting) => waiting,
                            State::Unknown | State::At(..) => Vec::new(),
                        }
                    };
                    for call in waiting {
                        match &located {
                            Ok((hop, channel)) => {
                                Arc::clone(&self).send_on(hop.clone(), Arc::clone(channel), call);
                            }
                            Err(error) => self.refuse(call, self.failed(None, error.clone())),
                        }
                    }
                });
            }
        }
    }

    /// Asks the router and opens a channel to its answer.
    async fn locate(&self) -> Result<(Hop, Arc<dyn RemoteChannel>), RpcError> {
        let request = RouteRequest {
            name: &self.name,
            gateway: &self.gateway,
            session: self.session.as_ref(),
        };
        let hop = self.router.route(request).await?;
        let service = self.service.upgrade().ok_or(RpcError::ServiceShutDown)?;
        let transport = service.transport().ok_or_else(|| RpcError::ConnectFailed {
            address: hop.address.to_string(),
            reason: "this RpcService runs in process only (it has no transport)".to_owned(),
        })?;
        let binding = Binding {
            endpoint: hop.endpoint.clone(),
            gateway: self.gateway.clone(),
            fingerprint: self.fingerprint,
            incarnation: hop.incarnation,
            session: None,
        };
        let channel = self.channels.get(transport, hop.address, binding)?;
        Ok((hop, channel))
    }

    /// The error a caller sees for `error` on `hop`: a relay names itself and the hop when
    /// the hop itself failed; the call's own failures pass unchanged.
    fn failed(&self, hop: Option<&Hop>, error: RpcError) -> RpcError {
        if !self.relay {
            return error;
        }
        match error {
            RpcError::Disconnected { .. }
            | RpcError::ConnectFailed { .. }
            | RpcError::Overloaded { .. }
            | RpcError::Unauthenticated { .. }
            | RpcError::VersionMismatch { .. }
            | RpcError::ServiceShutDown
            | RpcError::Io { .. } => RpcError::Relay {
                endpoint: self.name.clone(),
                reason: match hop {
                    Some(hop) => format!("endpoint `{}` at {}: {error}", hop.endpoint, hop.address),
                    None => error.to_string(),
                },
            },
            error => error,
        }
    }

    fn refuse(&self, call: Queued, error: RpcError) {
        match call {
            Queued::Ask(_, reply, ..) => reply.send(Err(error)),
            Queued::Tell(_) => {
                tracing::warn!(route = %self.name, "dropped a forwarded tell: {error}");
            }
        }
    }

    fn send_on(self: Arc<Self>, hop: Hop, channel: Arc<dyn RemoteChannel>, call: Queued) {
        let (body, reply, control, attempt) = match call {
            Queued::Ask(body, reply, control, attempt) => (body, reply, control, attempt),
            Queued::Tell(body) => {
                let mut encode = |out: &mut BytesMut| {
                    out.put_slice(&body);
                    Ok(())
                };
                if let Err(error) = channel.tell(&mut encode) {
                    tracing::warn!(route = %self.name, "dropped a forwarded tell: {error}");
                }
                return;
            }
        };
        // The first attempt's hop became the caller's cancel route; a resent call gets a
        // control of its own, with the caller's deadline, cancelled when the caller's is, so
        // that a cancel reaches the hop that has the call now.
        let (sent, done) = if attempt == 0 {
            (Arc::clone(&control), None)
        } else {
            let child = CallControl::new(control.deadline());
            let done = Arc::new(Notify::new());
            let (parent, watched, finished) =
                (Arc::clone(&control), Arc::clone(&child), Arc::clone(&done));
            self.spawn(async move {
                tokio::select! {
                    () = parent.cancelled() => watched.cancel(),
                    () = finished.notified() => {}
                }
            });
            (child, Some(done))
        };
        let pending: Pending = Arc::new(Mutex::new(Some(reply)));
        let answer = {
            let pending = Arc::clone(&pending);
            let route = Arc::clone(&self);
            let control = Arc::clone(&control);
            let hop = hop.clone();
            let body = body.clone();
            let done = done.clone();
            ReplyTo::Callback(Box::new(move |result: ReplyResult| {
                if let Some(done) = &done {
                    done.notify_one();
                }
                let Some(reply) = take(&pending) else { return };
                route.answered(hop, body, reply, control, attempt, result);
            }))
        };
        let mut encode = |out: &mut BytesMut| {
            out.put_slice(&body);
            Ok(())
        };
        if let Err(error) = channel.ask(&mut encode, answer, &sent) {
            if let Some(done) = &done {
                done.notify_one();
            }
            if let Some(reply) = take(&pending) {
                self.answered(hop, body, reply, control, attempt, Err(error));
            }
        }
    }

    /// One attempt's outcome: the caller's answer, or (the place refused the call without
    /// running it) another attempt, once the router has answered again.
    fn answered(
        self: Arc<Self>,
        hop: Hop,
        body: Bytes,
        reply: ReplyTo,
        control: Arc<CallControl>,
        attempt: u32,
        result: ReplyResult,
    ) {
        let moved = matches!(
            result,
            Err(RpcError::EndpointNotFound { .. } | RpcError::EndpointStopped { .. })
        );
        if !moved || attempt >= MAX_REROUTES || control.is_cancelled() || control.is_expired() {
            return reply.send(result.map_err(|error| self.failed(Some(&hop), error)));
        }
        self.forget(&hop);
        // The first retry goes at once (the router may already know the new place); later
        // ones wait for the move to finish, 1 ms doubling to 20 ms.
        let pause = match attempt {
            0 => Duration::ZERO,
            n => Duration::from_millis(1 << (n - 1).min(5)).min(MAX_PAUSE),
        };
        let route = Arc::clone(&self);
        route.spawn(async move {
            tokio::select! {
                () = tokio::time::sleep(pause) => {
                    self.send(Queued::Ask(body, reply, control, attempt + 1));
                }
                () = control.finished() => reply.abandon(),
            }
        });
    }
}

fn take(pending: &Pending) -> Option<ReplyTo> {
    pending
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take()
}

/// A relay registered on a service under `name`.
pub(crate) struct Relay {
    name: String,
    incarnation: Incarnation,
    router: Arc<dyn Router>,
    service: Weak<ServiceInner>,
    channels: Arc<Channels>,
    /// Never signalled: a relay queues nothing, so it is never full.
    room: Arc<Notify>,
}

impl Relay {
    pub(crate) fn new(name: String, router: Arc<dyn Router>, service: Weak<ServiceInner>) -> Self {
        Relay {
            name,
            incarnation: Incarnation::random(),
            router,
            service,
            channels: Arc::default(),
            room: Arc::default(),
        }
    }

    /// The sink of one connection's bind of `binding` to this relay. Its fingerprint is not
    /// checked here (the relay knows no gateway): the hop's bind checks it.
    pub(crate) fn sink(
        self: &Arc<Self>,
        binding: &Binding,
    ) -> Result<Arc<dyn InboundSink>, RpcError> {
        if binding
            .incarnation
            .is_some_and(|bound| bound != self.incarnation)
        {
            return Err(RpcError::EndpointStopped {
                endpoint: binding.endpoint.clone(),
            });
        }
        Ok(Arc::new(RelaySink {
            relay: Arc::clone(self),
            gateway: binding.gateway.clone(),
            fingerprint: binding.fingerprint,
            session: Mutex::new(None),
        }))
    }
}

/// One bound slot of a relay on one connection.
struct RelaySink {
    relay: Arc<Relay>,
    gateway: String,
    fingerprint: u64,
    /// The connection's session, its header bytes and its route, once a call carried it.
    session: Mutex<Option<Routed>>,
}

/// A session, the call header that names it, and the route of its calls.
type Routed = (Arc<Session>, Bytes, Arc<Route>);

impl RelaySink {
    /// The route and header of `session`'s calls, arriving on `backlog`'s connection.
    fn route(&self, session: &Arc<Session>, backlog: &Backlog) -> (Bytes, Arc<Route>) {
        let mut known = self.session.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((current, header, route)) = &*known {
            if Arc::ptr_eq(current, session) {
                return (header.clone(), Arc::clone(route));
            }
        }
        // The servers behind the relay reach the player's endpoints down its connection.
        if let (Some(service), Some(carrier)) = (self.relay.service.upgrade(), backlog.carrier()) {
            service.remember_session(session.id, carrier);
        }
        // `Some(session)` in postcard: strings and integers always encode.
        let header = Bytes::from(postcard::to_allocvec(&Some(&**session)).unwrap_or_default());
        let route = Arc::new(Route::new(
            self.relay.service.clone(),
            Arc::clone(&self.relay.router),
            self.relay.name.clone(),
            Some(Session::clone(session)),
            self.gateway.clone(),
            self.fingerprint,
            Arc::clone(&self.relay.channels),
        ));
        *known = Some((Arc::clone(session), header.clone(), Arc::clone(&route)));
        (header, route)
    }

    /// The player's invocation with `header` (its session) in place of its empty session
    /// field: everything else is copied as it arrived.
    fn rewrite(&self, payload: &[u8], header: &[u8]) -> Result<Bytes, RpcError> {
        let malformed = |reason: &str| RpcError::Serialization {
            context: format!("relaying a call through `{}`", self.relay.name),
            reason: reason.to_owned(),
        };
        // The trace context: `00`, or `01` and 24 bytes of ids.
        let trace = match payload.first() {
            Some(0) => 1,
            Some(1) => 1 + 24,
            _ => {
                return Err(malformed(
                    "the invocation does not start with a call header",
                ));
            }
        };
        match payload.get(trace) {
            Some(0) => {}
            Some(_) => {
                return Err(malformed(
                    "the invocation names a relayed session itself: only the relay sets it",
                ));
            }
            None => return Err(malformed("the invocation ends inside its call header")),
        }
        let mut body = BytesMut::with_capacity(payload.len() - 1 + header.len());
        body.put_slice(&payload[..trace]);
        body.put_slice(header);
        body.put_slice(&payload[trace + 1..]);
        Ok(body.freeze())
    }

    fn refuse(&self, ask: Option<(ReplyTo, Arc<CallControl>)>, error: RpcError) {
        match ask {
            Some((reply, _)) => reply.send(Err(error)),
            None => tracing::warn!(relay = %self.relay.name, "dropped a tell: {error}"),
        }
    }
}

impl InboundSink for RelaySink {
    fn invoke(
        &self,
        payload: Bytes,
        ask: Option<(ReplyTo, Arc<CallControl>)>,
        backlog: &Arc<Backlog>,
    ) -> Result<(), Busy> {
        let Some(session) = backlog.peer().session_arc() else {
            let error = RpcError::Relay {
                endpoint: self.relay.name.clone(),
                reason: format!(
                    "{} has no session: log in first (the Gate's login handler opens one with \
                     `Peer::open_session`)",
                    backlog.peer()
                ),
            };
            self.refuse(ask, error);
            return Ok(());
        };
        let (header, route) = self.route(&session, backlog);
        let body = match self.rewrite(&payload, &header) {
            Ok(body) => body,
            Err(error) => {
                self.refuse(ask, error);
                return Ok(());
            }
        };
        route.send(match ask {
            Some((reply, control)) => Queued::Ask(body, reply, control, 0),
            None => Queued::Tell(body),
        });
        Ok(())
    }

    fn room(&self) -> Arc<Notify> {
        Arc::clone(&self.relay.room)
    }

    fn mailbox_full(&self) -> RpcError {
        RpcError::Relay {
            endpoint: self.relay.name.clone(),
            reason: "a relay has no mailbox".to_owned(),
        }
    }

    fn incarnation(&self) -> Incarnation {
        self.relay.incarnation
    }
}

/// The sink of a server's bind of a player's endpoint on a Gate: forwards each call,
/// undecoded, down the player's connection (as a call back to the player, which it allows
/// only for what it exported), and its answer back.
pub(crate) struct Downstream {
    channel: Arc<dyn RemoteChannel>,
    incarnation: Incarnation,
    room: Arc<Notify>,
}

impl Downstream {
    pub(crate) fn new(channel: Arc<dyn RemoteChannel>, incarnation: Incarnation) -> Self {
        Downstream {
            channel,
            incarnation,
            room: Arc::default(),
        }
    }
}

impl InboundSink for Downstream {
    fn invoke(
        &self,
        payload: Bytes,
        ask: Option<(ReplyTo, Arc<CallControl>)>,
        _: &Arc<Backlog>,
    ) -> Result<(), Busy> {
        let mut encode = |out: &mut BytesMut| {
            out.put_slice(&payload);
            Ok(())
        };
        match ask {
            Some((reply, control)) => {
                let pending: Pending = Arc::new(Mutex::new(Some(reply)));
                let answer = {
                    let pending = Arc::clone(&pending);
                    ReplyTo::Callback(Box::new(move |result: ReplyResult| {
                        if let Some(reply) = take(&pending) {
                            reply.send(result);
                        }
                    }))
                };
                if let Err(error) = self.channel.ask(&mut encode, answer, &control) {
                    if let Some(reply) = take(&pending) {
                        reply.send(Err(error));
                    }
                }
            }
            None => {
                if let Err(error) = self.channel.tell(&mut encode) {
                    tracing::warn!(
                        endpoint = %self.channel.endpoint(),
                        "dropped a tell to a player: {error}"
                    );
                }
            }
        }
        Ok(())
    }

    fn room(&self) -> Arc<Notify> {
        Arc::clone(&self.room)
    }

    fn mailbox_full(&self) -> RpcError {
        RpcError::Relay {
            endpoint: self.channel.endpoint().name().to_owned(),
            reason: "a player's endpoint is reached through its connection, without a mailbox here"
                .to_owned(),
        }
    }

    fn incarnation(&self) -> Incarnation {
        self.incarnation
    }
}

/// The call target of a follower: encodes each call once, then forwards the bytes along
/// its route, re-routing as a relay does.
pub(crate) struct Follower {
    route: Arc<Route>,
    endpoint: Arc<EndpointAddress>,
    max_decode_depth: usize,
}

impl Follower {
    pub(crate) fn new<G: Gateway>(
        service: &Arc<ServiceInner>,
        name: String,
        router: Arc<dyn Router>,
        max_decode_depth: usize,
    ) -> Self {
        let endpoint =
            Arc::new(EndpointAddress::new(name.as_str(), None).called_by(Arc::downgrade(service)));
        Follower {
            route: Arc::new(Route::new(
                Arc::downgrade(service),
                router,
                name,
                None,
                G::NAME.to_owned(),
                G::FINGERPRINT,
                Arc::default(),
            )),
            endpoint,
            max_decode_depth,
        }
    }
}

impl<G: Gateway> CallTarget<G> for Follower {
    fn endpoint(&self) -> &Arc<EndpointAddress> {
        &self.endpoint
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
        let mut body = BytesMut::new();
        crate::transport::encode::<G>(&invocation, token, trace, method, &mut body)?;
        Arc::clone(&self.route).send(Queued::Ask(body.freeze(), reply, Arc::clone(control), 0));
        Ok(())
    }

    fn tell(
        &self,
        method: &'static MethodInfo,
        invocation: G::Invocation,
        token: Option<&G::Token>,
        trace: Option<TraceContext>,
    ) -> Result<(), RpcError> {
        let mut body = BytesMut::new();
        crate::transport::encode::<G>(&invocation, token, trace, method, &mut body)?;
        Arc::clone(&self.route).send(Queued::Tell(body.freeze()));
        Ok(())
    }

    fn reference(&self) -> Result<Reference, RpcError> {
        match self.route.current() {
            Some((_, channel)) => channel.reference(),
            None => Err(RpcError::Serialization {
                context: format!("sending a reference to {}", self.endpoint),
                reason: "the proxy follows a moving target and has not reached it yet".to_owned(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink() -> RelaySink {
        let router = |_: RouteRequest<'_>| async { Err::<Hop, _>(RpcError::ServiceShutDown) };
        RelaySink {
            relay: Arc::new(Relay::new("unit".into(), Arc::new(router), Weak::new())),
            gateway: "G".into(),
            fingerprint: 1,
            session: Mutex::new(None),
        }
    }

    /// The layout PROTOCOL.md gives: the relay replaces the empty session byte after the
    /// trace context with `01`, the identity and the id, and copies the rest.
    #[test]
    fn a_relayed_header_golden() {
        let session = Session {
            identity: "p".into(),
            id: 0x0102,
        };
        let header = postcard::to_allocvec(&Some(&session)).unwrap();
        assert_eq!(header, [1, 1, b'p', 0x82, 0x02]);
        let sink = sink();
        // No trace context, no session, invocation `aa bb`.
        assert_eq!(
            &sink.rewrite(&[0, 0, 0xaa, 0xbb], &header).unwrap()[..],
            [0, 1, 1, b'p', 0x82, 0x02, 0xaa, 0xbb]
        );
        // A trace context is kept as it was.
        let mut traced = vec![1];
        traced.extend_from_slice(&[0x4b; 24]);
        traced.extend_from_slice(&[0, 0xaa]);
        let mut expected = traced[..25].to_vec();
        expected.extend_from_slice(&header);
        expected.push(0xaa);
        assert_eq!(&sink.rewrite(&traced, &header).unwrap()[..], expected);
    }

    /// Calls wait for a route's router only up to a bound: beyond it they are refused.
    #[test]
    fn at_most_max_waiting_calls_wait_for_the_router() {
        let never = |_: RouteRequest<'_>| std::future::pending::<Result<Hop, RpcError>>();
        let route = Arc::new(Route::new(
            Weak::new(),
            Arc::new(never),
            "unit".into(),
            Some(Session::new("p")),
            "G".into(),
            1,
            Arc::default(),
        ));
        let mut answers = Vec::new();
        for _ in 0..=MAX_WAITING {
            let (reply, answer) = tokio::sync::oneshot::channel();
            let control = CallControl::new(None);
            Arc::clone(&route).send(Queued::Ask(
                Bytes::from_static(&[0, 0]),
                ReplyTo::Caller(reply),
                control,
                0,
            ));
            answers.push(answer);
        }
        let mut last = answers.pop().expect("one more than the bound");
        assert!(matches!(
            last.try_recv(),
            Ok(Err(RpcError::Relay { reason, .. })) if reason.contains("wait for the relay's router")
        ));
        for mut waiting in answers {
            assert!(waiting.try_recv().is_err(), "still waiting");
        }
    }

    /// A player cannot name a session itself, nor send a header that is not one.
    #[test]
    fn a_forged_or_broken_header_is_refused() {
        let sink = sink();
        let header = [1, 1, b'p', 1];
        for body in [&[0, 1, 1, b'q', 2, 0xaa][..], &[2, 0], &[], &[0]] {
            assert!(
                matches!(
                    sink.rewrite(body, &header),
                    Err(RpcError::Serialization { .. })
                ),
                "{body:?}"
            );
        }
    }
}
