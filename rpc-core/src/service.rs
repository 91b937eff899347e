//! [`RpcService`]: starts endpoints by name, hands out typed gateways to them, stops them.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::address::ToAddress;
use crate::codec::DEFAULT_MAX_DECODE_DEPTH;
use crate::context::{EndpointCell, RpcContext, Shared};
use crate::endpoint::{EndpointOptions, GatewayEntry, Gateways, RpcEndpoint};
use crate::error::RpcError;
use crate::fencing::{Fence, Stale};
use crate::gateway::{
    CallTarget, EndpointAddress, FencedGateway, Gateway, GatewayHandle, Incarnation,
    UnfencedGateway,
};
use crate::mailbox::{self, Envelope};
use crate::reference::{Location, Reference, Unreachable};
use crate::relay::{Downstream, Follower, Relay, Router};
use crate::retry::ConnectRetry;
use crate::transport::{
    Binding, Carrier, ConnectionEvent, InboundSink, Network, RemoteTarget, ServiceHandle, Transport,
};

/// The ask timeout of a service unless set otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs endpoints and hands out typed gateways to them.
///
/// Cheap to clone: clones share one service. When the last clone is dropped, every endpoint
/// is asked to stop; call [`RpcService::shutdown`] to also wait for their `on_stop`.
///
/// Must be created inside a tokio runtime, whose handle it keeps for its endpoints.
///
/// ```
/// use rpc_core::{RpcEndpoint, RpcService, rpc_gateway};
///
/// #[rpc_gateway]
/// pub trait Echo {
///     async fn echo(&mut self, text: String) -> String;
/// }
///
/// struct Parrot;
/// impl RpcEndpoint for Parrot {
///     rpc_core::serves!(Echo);
/// }
/// impl Echo for Parrot {
///     async fn echo(&mut self, text: String) -> String {
///         text
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), rpc_core::RpcError> {
/// let service = RpcService::new();
/// service.start_endpoint("parrot", Parrot).await?;
/// let parrot: EchoClient = service.gateway("parrot")?;
/// assert_eq!(parrot.echo("hi".into()).await?, "hi");
/// service.shutdown().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RpcService {
    inner: Arc<ServiceInner>,
}

impl fmt::Debug for RpcService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let endpoints: Vec<String> = self.endpoint_names();
        f.debug_struct("RpcService")
            .field("local_address", &self.local_address().ok())
            .field("endpoints", &endpoints)
            .finish_non_exhaustive()
    }
}

pub(crate) struct ServiceInner {
    shared: Arc<Shared>,
    registry: Mutex<Registry>,
    next_id: AtomicU64,
    /// The network transport, for a service built by one (set once, right after creation).
    transport: OnceLock<Arc<dyn Transport>>,
    /// The player sessions this service's relays carried calls for: each one's connection,
    /// down which the servers behind the relay reach the player's endpoints.
    sessions: Mutex<HashMap<u64, Weak<dyn Carrier>>>,
    /// The calls received from other services, when the service records them (tests).
    recorded: Option<Arc<crate::testing::Recorded>>,
}

#[derive(Default)]
struct Registry {
    endpoints: HashMap<String, Arc<dyn AnyEndpoint>>,
    relays: HashMap<String, Arc<Relay>>,
    shut_down: bool,
}

impl Registry {
    /// The running endpoint `name`, or `EndpointNotFound`.
    fn endpoint(&self, name: &str) -> Result<Arc<dyn AnyEndpoint>, RpcError> {
        self.endpoints
            .get(name)
            .cloned()
            .ok_or_else(|| RpcError::EndpointNotFound {
                endpoint: name.to_owned(),
                address: None,
            })
    }
}

/// The error for a gateway that endpoint `name` does not serve, listing what it does serve.
fn incompatible(name: &str, gateway: &str, served: &[GatewayEntry]) -> RpcError {
    RpcError::IncompatibleGateway {
        endpoint: name.to_owned(),
        gateway: gateway.to_owned(),
        served: served.iter().map(|g| g.name.to_owned()).collect(),
    }
}

/// A running endpoint with its type erased.
trait AnyEndpoint: Send + Sync {
    fn id(&self) -> u64;
    fn incarnation(&self) -> Incarnation;
    fn gateways(&self) -> &[GatewayEntry];
    fn stop(&self);
    fn outcome(&self) -> Result<(), RpcError>;
    fn terminated(&self) -> CancellationToken;
    fn connection_event(&self, event: ConnectionEvent);
}

struct Registered<E> {
    cell: Arc<EndpointCell<E>>,
    gateways: Vec<GatewayEntry>,
}

impl<E: RpcEndpoint> AnyEndpoint for Registered<E> {
    fn id(&self) -> u64 {
        self.cell.id
    }

    fn incarnation(&self) -> Incarnation {
        self.cell.incarnation
    }

    fn gateways(&self) -> &[GatewayEntry] {
        &self.gateways
    }

    fn stop(&self) {
        self.cell.request_stop();
    }

    fn outcome(&self) -> Result<(), RpcError> {
        self.cell.outcome()
    }

    fn terminated(&self) -> CancellationToken {
        self.cell.terminated.clone()
    }

    fn connection_event(&self, event: ConnectionEvent) {
        // Hooks run whatever the fencing token (no epoch).
        let hook = move |endpoint: Result<&mut E, Stale>| match (endpoint, &event) {
            (Ok(endpoint), ConnectionEvent::Connected(connection)) => {
                endpoint.on_connected(connection)
            }
            (Ok(endpoint), ConnectionEvent::Disconnected(connection)) => {
                endpoint.on_disconnected(connection)
            }
            (Ok(endpoint), ConnectionEvent::NetworkError(peer, error)) => {
                endpoint.on_network_error(*peer, error)
            }
            (Err(_), _) => {}
        };
        let _ = self.cell.send(Envelope::Run(Box::new(hook), None));
    }
}

/// Configures an [`RpcService`]: start with [`RpcService::builder`].
///
/// A test service that forces serialization finds out in process what a remote call would
/// do to a value, here a field serde skips:
///
/// ```
/// use std::time::Duration;
/// use rpc_core::{RpcEndpoint, RpcService, rpc_gateway};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// pub struct Job {
///     name: String,
///     #[serde(skip)] // not sent: a remote endpoint sees 0
///     attempts: u32,
/// }
///
/// #[rpc_gateway]
/// pub trait Runner {
///     async fn attempts(&mut self, job: Job) -> u32;
/// }
///
/// struct Worker;
/// impl RpcEndpoint for Worker { rpc_core::serves!(Runner); }
/// impl Runner for Worker {
///     async fn attempts(&mut self, job: Job) -> u32 { job.attempts }
/// }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), rpc_core::RpcError> {
/// let service = RpcService::builder()
///     .default_timeout(Duration::from_secs(2)) // every proxy's ask timeout, unless overridden
///     .force_serialization(true)
///     .build();
/// service.start_endpoint("worker", Worker).await?;
/// let worker: RunnerClient = service.gateway("worker")?;
/// assert_eq!(worker.timeout(), Duration::from_secs(2));
/// // The skipped field arrives as its default, here too.
/// assert_eq!(worker.attempts(Job { name: "a".into(), attempts: 3 }).await?, 0);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RpcServiceBuilder {
    default_timeout: Duration,
    force_serialization: bool,
    max_decode_depth: usize,
    record_calls: bool,
}

impl Default for RpcServiceBuilder {
    fn default() -> Self {
        RpcServiceBuilder {
            default_timeout: DEFAULT_TIMEOUT,
            force_serialization: false,
            max_decode_depth: DEFAULT_MAX_DECODE_DEPTH,
            record_calls: false,
        }
    }
}

impl RpcServiceBuilder {
    /// A builder with the default settings, the same as [`RpcService::builder`].
    pub fn new() -> Self {
        Self::default()
    }

    /// The ask timeout every proxy starts with (default 10 s). Proxies override it with
    /// `with_timeout`, calls with [`RpcCall::with_timeout`](crate::RpcCall::with_timeout).
    pub fn default_timeout(mut self, timeout: Duration) -> Self {
        self.default_timeout = timeout;
        self
    }

    /// Makes local calls encode and decode their arguments and replies exactly as the wire
    /// would, so that tests run in one process catch types that would fail remotely. Off by
    /// default: local calls move their values.
    pub fn force_serialization(mut self, force: bool) -> Self {
        self.force_serialization = force;
        self
    }

    /// Records every call that arrives from another service (over a transport, or a
    /// [`TestNetwork`](crate::testing::TestNetwork)), for a test to read back decoded with
    /// [`testing::calls`](crate::testing::calls). For tests: the record only grows.
    pub fn record_calls(mut self, record: bool) -> Self {
        self.record_calls = record;
        self
    }

    /// How deeply a value decoded from a peer may nest (default 128 levels: each sequence,
    /// map, enum, option or newtype is one). An invocation nested deeper is refused with
    /// [`RpcError::Serialization`] naming the limit, and so is such a reply; the connection
    /// and the endpoint carry on. This keeps a small hostile frame (a recursive type nested a
    /// million levels deep) from overflowing the stack.
    pub fn max_decode_depth(mut self, levels: usize) -> Self {
        self.max_decode_depth = levels;
        self
    }

    /// Builds an in-process service on the current tokio runtime.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn build(self) -> RpcService {
        let runtime = Handle::current();
        let inner = Arc::new(ServiceInner {
            shared: Arc::new(Shared {
                runtime: runtime.clone(),
                default_timeout: self.default_timeout,
                force_serialization: self.force_serialization,
                max_decode_depth: self.max_decode_depth,
            }),
            registry: Mutex::default(),
            next_id: AtomicU64::new(1),
            transport: OnceLock::new(),
            sessions: Mutex::default(),
            recorded: self.record_calls.then(Arc::default),
        });
        runtime.spawn(anchor_timer(Arc::downgrade(&inner)));
        RpcService { inner }
    }

    /// Builds a service that reaches other processes through the transport `make` returns.
    /// `make` receives the handle the transport uses to deliver inbound invocations. For
    /// transport crates; users call, for example, `rpc_netty::bind`.
    pub fn build_with_transport<T: Transport>(
        self,
        make: impl FnOnce(ServiceHandle) -> T,
    ) -> RpcService {
        let service = self.build();
        let transport = make(ServiceHandle {
            inner: Arc::downgrade(&service.inner),
        });
        let _ = service.inner.transport.set(Arc::new(transport));
        service
    }
}

impl Default for RpcService {
    fn default() -> Self {
        Self::new()
    }
}

impl RpcService {
    /// An in-process service with the default settings.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn new() -> Self {
        RpcServiceBuilder::default().build()
    }

    /// Configures a service.
    pub fn builder() -> RpcServiceBuilder {
        RpcServiceBuilder::default()
    }

    /// The service's shared state.
    pub(crate) fn inner(&self) -> &Arc<ServiceInner> {
        &self.inner
    }

    pub(crate) fn from_inner(inner: Arc<ServiceInner>) -> Self {
        RpcService { inner }
    }

    /// The ask timeout proxies from this service start with.
    pub fn default_timeout(&self) -> Duration {
        self.inner.shared.default_timeout
    }

    /// Starts `endpoint` under `name` and waits for its `on_start`.
    ///
    /// Invocations may be queued as soon as the name is registered; they run after `on_start`.
    /// Fails with [`RpcError::NameInUse`], [`RpcError::ServiceShutDown`], or
    /// [`RpcError::StartFailed`] carrying `on_start`'s error.
    pub async fn start_endpoint<E: RpcEndpoint>(
        &self,
        name: impl Into<String>,
        endpoint: E,
    ) -> Result<RpcContext<E>, RpcError> {
        self.start_endpoint_with(name, endpoint, EndpointOptions::default())
            .await
    }

    /// [`RpcService::start_endpoint`] with options, for example an isolated main thread.
    pub async fn start_endpoint_with<E: RpcEndpoint>(
        &self,
        name: impl Into<String>,
        endpoint: E,
        options: EndpointOptions,
    ) -> Result<RpcContext<E>, RpcError> {
        let name = name.into();
        let start_failed = |reason: String| RpcError::StartFailed {
            endpoint: name.clone(),
            source: Arc::from(BoxedReason(reason)),
        };
        let (sender, receiver) = crate::inbox::inbox();
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let address = Arc::new(
            EndpointAddress::new(name.as_str(), None).called_by(Arc::downgrade(&self.inner)),
        );
        let cell = Arc::new(EndpointCell {
            id,
            incarnation: Incarnation::random(),
            meters: crate::metrics::EndpointMeters::new(address.shared_name()),
            address,
            mailbox: sender,
            stopping: CancellationToken::new(),
            terminated: CancellationToken::new(),
            stop_requested: AtomicBool::new(false),
            outcome: OnceLock::new(),
            shared: Arc::clone(&self.inner.shared),
            service: Arc::downgrade(&self.inner),
            queued: std::sync::atomic::AtomicUsize::new(0),
            capacity: options.mailbox_capacity,
            queued_bytes: std::sync::atomic::AtomicUsize::new(0),
            max_bytes: options.mailbox_bytes,
            starved: std::sync::atomic::AtomicBool::new(false),
            room: Arc::default(),
            fence: Fence::default(),
        });
        let mut gateways = Gateways::new(Arc::clone(&cell));
        E::gateways(&mut gateways);
        let gateways = gateways.finish().map_err(start_failed)?;
        let runtime = if options.isolated {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| start_failed(format!("cannot build its isolated runtime: {e}")))?;
            Some(runtime)
        } else {
            None
        };

        {
            let mut registry = self.inner.registry();
            if registry.shut_down {
                return Err(RpcError::ServiceShutDown);
            }
            if registry.endpoints.contains_key(&name) || registry.relays.contains_key(&name) {
                return Err(RpcError::NameInUse { endpoint: name });
            }
            let registered = Registered {
                cell: Arc::clone(&cell),
                gateways,
            };
            registry
                .endpoints
                .insert(name.clone(), Arc::new(registered));
        }

        let (started, start_outcome) = oneshot::channel();
        let main_thread = mailbox::run(endpoint, Arc::clone(&cell), receiver, started);
        match runtime {
            None => {
                self.inner.shared.runtime.spawn(main_thread);
            }
            Some(runtime) => {
                let spawned = std::thread::Builder::new()
                    .name(format!("rpc-endpoint-{name}"))
                    .spawn(move || runtime.block_on(main_thread));
                if let Err(error) = spawned {
                    self.inner.unregister(&name, id);
                    return Err(start_failed(format!("cannot spawn its thread: {error}")));
                }
            }
        }
        match start_outcome.await {
            Ok(Ok(())) => Ok(RpcContext::from_cell(cell)),
            Ok(Err(error)) => Err(error),
            Err(_) => Err(start_failed(
                "its main thread ended before on_start finished (the runtime is shutting down)"
                    .to_owned(),
            )),
        }
    }

    /// Starts a relay under `name`: a name a player binds like an endpoint's, serving every
    /// gateway without this service knowing any. Each call a player makes on it is sent on,
    /// still encoded, to the server `router` picks for the player's [`Session`](crate::Session), over one
    /// inner connection per server, with the session written into the call's header (the
    /// handler there reads it from [`CallContext::session`](crate::CallContext::session)); the
    /// reply comes back the same way, undecoded. The player must have a session: a Gate's
    /// login handler opens one with [`Peer::open_session`](crate::Peer::open_session); calls
    /// on a connection without one fail with [`RpcError::Relay`].
    ///
    /// Per hop, as for any call: the player's deadline travels on (the time it has left), a
    /// cancel is passed on, and each connection's budgets apply. A call the hop refuses
    /// without running it ([`RpcError::EndpointNotFound`], [`RpcError::EndpointStopped`]: its
    /// target moved) is routed again and resent until the deadline; a hop that cannot be
    /// reached, or is lost with the call on it, fails the call at once with
    /// [`RpcError::Relay`] (a lost call may have run). Tells are forwarded once. Methods
    /// returning a stream cannot be relayed (the server behind refuses them with
    /// [`RpcError::Relay`]); the fingerprint is checked by the hop's bind.
    ///
    /// ```
    /// use rpc_core::{Hop, RouteRequest, RpcService};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// let gate = RpcService::new();
    /// // Every player's unit lives on one map server here; a game would look it up.
    /// gate.start_relay("unit", |request: RouteRequest<'_>| {
    ///     let unit = request.session.map(|s| s.identity().to_owned()).unwrap_or_default();
    ///     async move {
    ///         Ok(Hop { address: "10.0.0.21:7000".parse().unwrap(), endpoint: unit, incarnation: None })
    ///     }
    /// })?;
    /// # Ok(()) }
    /// ```
    pub fn start_relay(
        &self,
        name: impl Into<String>,
        router: impl Router,
    ) -> Result<(), RpcError> {
        let name = name.into();
        let relay = Arc::new(Relay::new(
            name.clone(),
            Arc::new(router),
            Arc::downgrade(&self.inner),
        ));
        let mut registry = self.inner.registry();
        if registry.shut_down {
            return Err(RpcError::ServiceShutDown);
        }
        if registry.endpoints.contains_key(&name) || registry.relays.contains_key(&name) {
            return Err(RpcError::NameInUse { endpoint: name });
        }
        registry.relays.insert(name, relay);
        Ok(())
    }

    /// Stops the relay `name`: binds to it fail from now on with `EndpointNotFound` (calls
    /// already forwarded still get their answers). Whether there was one.
    pub fn stop_relay(&self, name: &str) -> bool {
        self.inner.registry().relays.remove(name).is_some()
    }

    /// A typed proxy to a target that moves between servers (an actor that migrates): each
    /// call is sent to where `router` says the target is, and routed again when that place
    /// no longer has it. Calls are encoded once and forwarded as bytes, like a relay's, so the
    /// proxy always goes through the transport, even to a target in this process.
    ///
    /// A call the old place refused without running it ([`RpcError::EndpointNotFound`],
    /// [`RpcError::EndpointStopped`]) is sent again, after the router's next answer, until the
    /// call's deadline: a call in flight during a move is delivered once, at the new place.
    /// Any other failure (a connection lost with the call on it, which may have run) is the
    /// call's answer. `rpc_ha::Locations::follow` routes through a location service.
    pub fn follow<G: UnfencedGateway>(&self, name: impl Into<String>, router: impl Router) -> G {
        let target = Follower::new::<G>(
            &self.inner,
            name.into(),
            Arc::new(router),
            self.inner.shared.max_decode_depth,
        );
        G::from_handle(GatewayHandle::new(
            Arc::new(target),
            self.inner.shared.default_timeout,
        ))
    }

    /// A typed proxy to the endpoint `name` of this service.
    ///
    /// Fails with [`RpcError::EndpointNotFound`], or [`RpcError::IncompatibleGateway`] when
    /// the endpoint does not serve `G`. A fenced gateway needs a token:
    /// [`RpcService::gateway_fenced`].
    pub fn gateway<G: UnfencedGateway>(&self, name: &str) -> Result<G, RpcError> {
        self.local_handle::<G>(name).map(G::from_handle)
    }

    /// A typed proxy to the endpoint `name` of this service through fenced gateway `G`; its
    /// calls carry `token` (see [`fencing`](crate::fencing)).
    pub fn gateway_fenced<G: FencedGateway>(
        &self,
        name: &str,
        token: G::Token,
    ) -> Result<G, RpcError> {
        self.local_handle::<G>(name)
            .map(|handle| G::from_handle(handle.with_fencing_token(token)))
    }

    fn local_handle<G: Gateway>(&self, name: &str) -> Result<GatewayHandle<G>, RpcError> {
        let endpoint = self.inner.registry().endpoint(name)?;
        let target = endpoint
            .gateways()
            .iter()
            .find_map(GatewayEntry::local::<G>)
            .ok_or_else(|| incompatible(name, G::NAME, endpoint.gateways()))?;
        Ok(GatewayHandle::new(
            target,
            self.inner.shared.default_timeout,
        ))
    }

    /// The address this service listens on, or [`RpcError::NotListening`] for a service
    /// without a listening transport (in process only, or a client).
    pub fn local_address(&self) -> Result<SocketAddr, RpcError> {
        self.inner
            .transport
            .get()
            .and_then(|t| t.local_address())
            .ok_or(RpcError::NotListening)
    }

    /// The address of this service's outer listener (`rpc_netty::NettyBuilder::outer`), where
    /// players connect and inner gateways are refused; [`RpcError::NotListening`] without one.
    pub fn outer_address(&self) -> Result<SocketAddr, RpcError> {
        self.inner
            .transport
            .get()
            .and_then(|t| t.outer_address())
            .ok_or(RpcError::NotListening)
    }

    /// A typed proxy to the endpoint `endpoint` of the service at `address`, after checking
    /// that it exists and serves this very gateway (protocol version, gateway name,
    /// fingerprint). An address of this service itself gives a local proxy: no network.
    ///
    /// The connection to `address` is opened on first use and shared by every proxy to it.
    /// A fenced gateway needs a token: [`RpcService::connect_fenced`].
    ///
    /// A peer that cannot be reached is tried again as the transport's policy says
    /// ([`ConnectRetry`]; `rpc_netty::NettyBuilder::connect_retry`, none by default);
    /// [`RpcService::connect_with_retry`] overrides it for one call.
    pub async fn connect<G: UnfencedGateway>(
        &self,
        address: impl ToAddress,
        endpoint: &str,
    ) -> Result<G, RpcError> {
        self.connect_handle::<G>(&address.to_address(), endpoint, None)
            .await
            .map(G::from_handle)
    }

    /// [`RpcService::connect`], trying a peer it cannot reach again as `retry` says (for
    /// example a client started before its server).
    pub async fn connect_with_retry<G: UnfencedGateway>(
        &self,
        address: impl ToAddress,
        endpoint: &str,
        retry: ConnectRetry,
    ) -> Result<G, RpcError> {
        self.connect_handle::<G>(&address.to_address(), endpoint, Some(retry))
            .await
            .map(G::from_handle)
    }

    /// [`RpcService::connect`] through fenced gateway `G`: the proxy's calls carry `token`
    /// (see [`fencing`](crate::fencing)). The token is checked call by call, not here: an
    /// endpoint's token changes while proxies to it live.
    pub async fn connect_fenced<G: FencedGateway>(
        &self,
        address: impl ToAddress,
        endpoint: &str,
        token: G::Token,
    ) -> Result<G, RpcError> {
        self.connect_handle::<G>(&address.to_address(), endpoint, None)
            .await
            .map(|handle| G::from_handle(handle.with_fencing_token(token)))
    }

    async fn connect_handle<G: Gateway>(
        &self,
        address: &str,
        endpoint: &str,
        retry: Option<ConnectRetry>,
    ) -> Result<GatewayHandle<G>, RpcError> {
        // Without a transport nothing can be reached, whatever the policy.
        let retry = match (retry, self.inner.transport.get()) {
            (_, None) => ConnectRetry::none(),
            (Some(retry), Some(_)) => retry,
            (None, Some(transport)) => transport.connect_retry(),
        };
        let mut attempt = 1;
        loop {
            match self.connect_once::<G>(address, endpoint).await {
                Err(error @ RpcError::ConnectFailed { .. }) if attempt < retry.attempts() => {
                    let delay = retry.delay_before(attempt);
                    tracing::info!(
                        address,
                        endpoint,
                        attempt,
                        "cannot connect yet ({error}); trying again in {delay:?}"
                    );
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                outcome => return outcome,
            }
        }
    }

    async fn connect_once<G: Gateway>(
        &self,
        address: &str,
        endpoint: &str,
    ) -> Result<GatewayHandle<G>, RpcError> {
        let Some(transport) = self.inner.transport.get().cloned() else {
            return Err(RpcError::ConnectFailed {
                address: address.to_owned(),
                reason: "this RpcService runs in process only (it has no transport); build it \
                         with rpc_netty to reach other processes, or use `gateway` for local \
                         endpoints"
                    .to_owned(),
            });
        };
        let address = transport.resolve(address).await?;
        if is_local(transport.local_address(), address) {
            return self.local_handle(endpoint);
        }
        let binding = Binding {
            endpoint: endpoint.to_owned(),
            gateway: G::NAME.to_owned(),
            fingerprint: G::FINGERPRINT,
            incarnation: None,
            session: None,
        };
        let channel = transport.connect(address, binding).await?;
        Ok(GatewayHandle::new(
            Arc::new(RemoteTarget::<G>::new(
                channel,
                self.inner.shared.max_decode_depth,
                Arc::downgrade(&self.inner),
            )),
            self.inner.shared.default_timeout,
        ))
    }

    /// The names of the running endpoints, sorted.
    pub fn endpoint_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.inner.registry().endpoints.keys().cloned().collect();
        names.sort();
        names
    }

    /// Stops the endpoint `name` (after the invocations already queued; nothing new is
    /// queued from now on) and waits until its `on_stop` has finished.
    ///
    /// Stopping is idempotent: when no endpoint of that name runs (it has stopped already,
    /// or never ran) this returns `Ok` at once, and a stop that is already under way is
    /// waited for. It fails only with [`RpcError::StopFailed`], when `on_stop` failed or
    /// panicked; the endpoint has stopped all the same.
    pub async fn stop_endpoint(&self, name: &str) -> Result<(), RpcError> {
        let endpoint = match self.inner.registry().endpoint(name) {
            Ok(endpoint) => endpoint,
            Err(RpcError::EndpointNotFound { .. }) => return Ok(()),
            Err(error) => return Err(error),
        };
        endpoint.stop();
        endpoint.terminated().cancelled_owned().await;
        endpoint.outcome()
    }

    /// Stops every endpoint, waits until each `on_stop` has finished, then closes the
    /// transport. Afterwards the service starts no endpoint
    /// ([`RpcError::ServiceShutDown`]). Every endpoint stops whatever the others do; the first
    /// [`RpcError::StopFailed`] among them is returned. A second shutdown has nothing left to
    /// stop and returns `Ok`.
    pub async fn shutdown(&self) -> Result<(), RpcError> {
        let endpoints: Vec<Arc<dyn AnyEndpoint>> = {
            let mut registry = self.inner.registry();
            registry.shut_down = true;
            registry.endpoints.values().cloned().collect()
        };
        for endpoint in &endpoints {
            endpoint.stop();
        }
        let mut outcome = Ok(());
        for endpoint in endpoints {
            endpoint.terminated().cancelled_owned().await;
            if let (Ok(()), Err(error)) = (&outcome, endpoint.outcome()) {
                outcome = Err(error);
            }
        }
        if let Some(transport) = self.inner.transport.get() {
            transport.shutdown().await;
        }
        outcome
    }
}

/// How often the anchor timer fires; see [`anchor_timer`].
const ANCHOR_PERIOD: Duration = Duration::from_millis(100);

/// Keeps one timer pending while the service exists.
///
/// Every ask arms a timer for its timeout. Tokio's time driver unparks a sleeping worker
/// whenever a timer is armed that expires before every other one; with no other timer
/// pending, that is every ask, and the unpark (a system call and a context switch) cost about
/// three times the rest of a local ask on the machine the benchmarks run on. A timer that
/// always expires within `ANCHOR_PERIOD` keeps asks with longer timeouts off that path.
async fn anchor_timer(service: Weak<ServiceInner>) {
    while service.strong_count() > 0 {
        tokio::time::sleep(ANCHOR_PERIOD).await;
    }
}

/// Whether `target` is this service's own listening address (also when it listens on all
/// interfaces and `target` is a loopback address).
fn is_local(local: Option<SocketAddr>, target: SocketAddr) -> bool {
    local.is_some_and(|local| {
        local.port() == target.port()
            && (local.ip() == target.ip()
                || (local.ip().is_unspecified() && target.ip().is_loopback()))
    })
}

impl ServiceInner {
    /// Whether this service has a network transport.
    pub(crate) fn has_transport(&self) -> bool {
        self.transport.get().is_some()
    }

    /// The record of received calls, if the service keeps one.
    pub(crate) fn recorded(&self) -> Option<&Arc<crate::testing::Recorded>> {
        self.recorded.as_ref()
    }

    /// The network transport, if the service has one.
    pub(crate) fn transport(&self) -> Option<&Arc<dyn Transport>> {
        self.transport.get()
    }

    /// The runtime the service's tasks run on.
    pub(crate) fn runtime(&self) -> &Handle {
        &self.shared.runtime
    }

    /// The address this service listens on, if it does.
    pub(crate) fn local_address(&self) -> Option<SocketAddr> {
        self.transport.get().and_then(|t| t.local_address())
    }

    /// A proxy of this service for a gateway reference that arrived in a message: local if
    /// the endpoint is one of this service's, else over the transport, bound on first use to
    /// the reference's incarnation. One that cannot be reached fails each call with why.
    pub(crate) fn resolve_reference<G: Gateway>(
        self: &Arc<Self>,
        reference: Reference,
        carrier: Option<Arc<dyn Carrier>>,
        session: Option<u64>,
    ) -> GatewayHandle<G> {
        let timeout = self.shared.default_timeout;
        let unreachable = |address: Option<SocketAddr>, error: RpcError| {
            let endpoint = EndpointAddress::new(reference.endpoint.as_str(), address)
                .called_by(Arc::downgrade(self));
            let target: Arc<dyn CallTarget<G>> = Arc::new(Unreachable {
                endpoint: Arc::new(endpoint),
                reference: reference.clone(),
                error,
            });
            GatewayHandle::new(target, timeout)
        };
        let address = match reference.location {
            Location::Address(address) => Some(address),
            Location::InProcess if !self.has_transport() => None,
            Location::InProcess => {
                return unreachable(
                    None,
                    RpcError::EndpointNotFound {
                        endpoint: reference.endpoint.clone(),
                        address: None,
                    },
                );
            }
            Location::Carrier => {
                let binding = Binding {
                    endpoint: reference.endpoint.clone(),
                    gateway: G::NAME.to_owned(),
                    fingerprint: G::FINGERPRINT,
                    incarnation: Some(reference.incarnation),
                    session,
                };
                return match carrier.map(|carrier| carrier.channel(binding)) {
                    Some(Ok(channel)) => GatewayHandle::new(
                        Arc::new(RemoteTarget::<G>::new(
                            channel,
                            self.shared.max_decode_depth,
                            Arc::downgrade(self),
                        )),
                        timeout,
                    ),
                    Some(Err(error)) => unreachable(None, error),
                    None => unreachable(
                        None,
                        RpcError::ConnectFailed {
                            address: format!(
                                "the sender of the reference to `{}`",
                                reference.endpoint
                            ),
                            reason: "the reference is to an endpoint of a service that does not \
                                     listen, and it did not arrive over a connection of that \
                                     service"
                                .to_owned(),
                        },
                    ),
                };
            }
        };
        if address.is_none_or(|address| is_local(self.local_address(), address)) {
            let endpoint = match self.registry().endpoint(&reference.endpoint) {
                Ok(endpoint) if endpoint.incarnation() == reference.incarnation => endpoint,
                _ => {
                    let stopped = RpcError::EndpointStopped {
                        endpoint: reference.endpoint.clone(),
                    };
                    return unreachable(None, stopped);
                }
            };
            return match endpoint
                .gateways()
                .iter()
                .find_map(GatewayEntry::local::<G>)
            {
                Some(target) => GatewayHandle::new(target, timeout),
                None => unreachable(
                    None,
                    incompatible(&reference.endpoint, G::NAME, endpoint.gateways()),
                ),
            };
        }
        let Some(address) = address else {
            unreachable!("a reference without an address is local: handled above");
        };
        let Some(transport) = self.transport.get() else {
            return unreachable(
                Some(address),
                RpcError::ConnectFailed {
                    address: address.to_string(),
                    reason: "this RpcService runs in process only (it has no transport)".to_owned(),
                },
            );
        };
        let binding = Binding {
            endpoint: reference.endpoint.clone(),
            gateway: G::NAME.to_owned(),
            fingerprint: G::FINGERPRINT,
            incarnation: Some(reference.incarnation),
            session: None,
        };
        match transport.channel(address, binding) {
            Ok(channel) => GatewayHandle::new(
                Arc::new(RemoteTarget::<G>::new(
                    channel,
                    self.shared.max_decode_depth,
                    Arc::downgrade(self),
                )),
                timeout,
            ),
            Err(error) => unreachable(Some(address), error),
        }
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        // The registry stays consistent across a panic (every update is one insert or
        // remove), so a poisoned lock is still safe to use.
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The inbound sink for a remote client's binding, or why there is none. A binding to an
    /// incarnation that is not the running one finds that its endpoint has stopped.
    pub(crate) fn resolve(
        &self,
        binding: &Binding,
        network: Network,
    ) -> Result<Arc<dyn InboundSink>, RpcError> {
        let endpoint = {
            let registry = self.registry();
            if let Some(relay) = registry.relays.get(&binding.endpoint) {
                return relay.sink(binding);
            }
            registry.endpoint(&binding.endpoint)
        };
        let endpoint = match (endpoint, binding.incarnation) {
            (Ok(endpoint), Some(bound)) if endpoint.incarnation() != bound => {
                return Err(RpcError::EndpointStopped {
                    endpoint: binding.endpoint.clone(),
                });
            }
            (Err(RpcError::EndpointNotFound { .. }), Some(_)) => {
                return Err(RpcError::EndpointStopped {
                    endpoint: binding.endpoint.clone(),
                });
            }
            (endpoint, _) => endpoint?,
        };
        let entry = endpoint
            .gateways()
            .iter()
            .find(|g| g.name == binding.gateway)
            .ok_or_else(|| {
                incompatible(&binding.endpoint, &binding.gateway, endpoint.gateways())
            })?;
        if entry.inner && network == Network::Outer {
            return Err(RpcError::InnerGateway {
                endpoint: binding.endpoint.clone(),
                gateway: binding.gateway.clone(),
            });
        }
        if entry.fingerprint != binding.fingerprint {
            return Err(RpcError::FingerprintMismatch {
                gateway: binding.gateway.clone(),
                endpoint: binding.endpoint.clone(),
                client: binding.fingerprint,
                server: entry.fingerprint,
            });
        }
        match &self.recorded {
            Some(recorded) => Ok(crate::testing::recording(
                Arc::clone(&entry.inbound),
                Arc::clone(recorded),
                binding,
            )),
            None => Ok(Arc::clone(&entry.inbound)),
        }
    }

    /// Remembers that session `session` is the player on `carrier`'s connection.
    pub(crate) fn remember_session(&self, session: u64, carrier: &Arc<dyn Carrier>) {
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        // Forget closed connections' sessions now and then (whenever the table doubles).
        if sessions.len() >= 64 && sessions.len().is_power_of_two() {
            sessions.retain(|_, carrier| carrier.strong_count() > 0);
        }
        sessions.insert(session, Arc::downgrade(carrier));
    }

    /// The sink forwarding a server's bind of a player's endpoint (and the calls on it) down
    /// the connection of the player's session.
    pub(crate) fn resolve_session(
        &self,
        binding: &Binding,
        session: u64,
    ) -> Result<Arc<dyn InboundSink>, RpcError> {
        let carrier = self
            .sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&session)
            .and_then(Weak::upgrade);
        let Some(carrier) = carrier else {
            // The player has gone (or never came through here).
            return Err(RpcError::EndpointStopped {
                endpoint: binding.endpoint.clone(),
            });
        };
        let down = Binding {
            session: None,
            ..binding.clone()
        };
        let incarnation = binding.incarnation.unwrap_or_else(Incarnation::random);
        let channel = carrier.channel(down)?;
        Ok(Arc::new(Downstream::new(channel, incarnation)))
    }

    /// Delivers a connection event to every running endpoint.
    pub(crate) fn connection_event(&self, event: ConnectionEvent) {
        for endpoint in self.registry().endpoints.values() {
            endpoint.connection_event(event.clone());
        }
    }

    /// Removes `name` if it still belongs to endpoint `id`.
    pub(crate) fn unregister(&self, name: &str, id: u64) {
        let mut registry = self.registry();
        if registry.endpoints.get(name).is_some_and(|e| e.id() == id) {
            registry.endpoints.remove(name);
        }
    }
}

impl Drop for ServiceInner {
    fn drop(&mut self) {
        for endpoint in self.registry().endpoints.values() {
            endpoint.stop();
        }
    }
}

/// A start failure the framework itself detected.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct BoxedReason(String);
