//! [`RpcEndpoint`]: the lifecycle hooks, and [`Gateways`]: what an endpoint serves.

use std::any::{Any, TypeId};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::caller::Connection;
use crate::context::{EndpointCell, RpcContext};
use crate::error::RpcError;
use crate::gateway::{CallTarget, Dispatch, Gateway};
use crate::target::LocalTarget;
use crate::transport::{InboundSink, RemoteSink};

/// The error type `on_start` may fail with: anything that converts with `?`.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A server object: plain state whose methods run one at a time on its own main thread.
///
/// Every hook has a default, so `impl RpcEndpoint for MyEndpoint {}` is a complete
/// implementation; list the gateways it answers with [`serves!`](crate::serves). Hooks and
/// invocations never run concurrently, so the endpoint's state needs no lock.
///
/// ```
/// use rpc_core::{BoxError, RpcContext, RpcEndpoint, rpc_gateway};
///
/// #[rpc_gateway]
/// pub trait Counter {
///     async fn add(&mut self, n: u64) -> u64;
/// }
///
/// #[derive(Default)]
/// struct Count {
///     total: u64,
/// }
///
/// impl RpcEndpoint for Count {
///     rpc_core::serves!(Counter);
///
///     async fn on_start(&mut self, ctx: RpcContext<Self>) -> Result<(), BoxError> {
///         tracing::info!(endpoint = ctx.name(), "started");
///         Ok(())
///     }
/// }
///
/// impl Counter for Count {
///     async fn add(&mut self, n: u64) -> u64 {
///         // Any handler reaches the context of its endpoint; no need to keep it.
///         let _ctx = RpcContext::<Self>::current();
///         self.total += n;
///         self.total
///     }
/// }
/// ```
pub trait RpcEndpoint: Send + Sized + 'static {
    /// Declares the gateways this endpoint serves; write it with
    /// [`serves!`](crate::serves). The default serves none.
    fn gateways(gateways: &mut Gateways<Self>) {
        let _ = gateways;
    }

    /// Runs on the main thread before any invocation. `ctx` is the endpoint's handle to its
    /// main thread (handlers reach it later with [`RpcContext::current`]). If this
    /// fails (or panics), the endpoint never serves: `start_endpoint` returns
    /// [`RpcError::StartFailed`], invocations already queued get
    /// [`RpcError::EndpointStopped`], and `on_stop` does not run.
    fn on_start(
        &mut self,
        ctx: RpcContext<Self>,
    ) -> impl Future<Output = Result<(), BoxError>> + Send {
        let _ = ctx;
        async { Ok(()) }
    }

    /// Runs once on the main thread when the endpoint stops, after every invocation queued
    /// before the stop. Invocations arriving later are answered with
    /// [`RpcError::EndpointStopped`]. The main thread accepts nothing new while it runs:
    /// `run_async` and calls to this endpoint fail with `EndpointStopped`, so do the cleanup
    /// here, on `&mut self`. An error (or a panic) reaches whoever awaits the stop:
    /// `stop_endpoint` and `shutdown` return [`RpcError::StopFailed`].
    fn on_stop(&mut self) -> impl Future<Output = Result<(), BoxError>> + Send {
        async { Ok(()) }
    }

    /// A connection of this service was established: inbound (a peer connected to it) or
    /// outbound (it connected to a peer); every endpoint of the service hears of it.
    fn on_connected(&mut self, connection: &Connection) {
        let _ = connection;
    }

    /// A connection of this service was closed or lost.
    fn on_disconnected(&mut self, connection: &Connection) {
        let _ = connection;
    }

    /// A connection to `peer` could not be established, with `error`.
    fn on_network_error(&mut self, peer: SocketAddr, error: &RpcError) {
        let _ = (peer, error);
    }
}

/// How many invocations an endpoint's mailbox holds unless set otherwise.
pub const DEFAULT_MAILBOX_CAPACITY: usize = 65_536;

/// How many bytes of encoded remote invocations an endpoint's mailbox holds unless set
/// otherwise (64 MiB).
pub const DEFAULT_MAILBOX_BYTES: usize = 64 * 1024 * 1024;

/// How an endpoint is run: on the service's runtime or on an OS thread of its own, and how
/// much its mailbox may hold. Give them to
/// [`RpcService::start_endpoint_with`](crate::RpcService::start_endpoint_with).
///
/// Here an isolated endpoint blocks its own thread (which would stall the other endpoints on
/// the runtime's), and a mailbox of one invocation refuses the call that does not fit:
///
/// ```
/// use std::sync::mpsc;
/// use rpc_core::{EndpointOptions, RpcEndpoint, RpcError, RpcService, rpc_gateway};
///
/// #[rpc_gateway]
/// pub trait Crunch {
///     fn crunch(&mut self);
/// }
///
/// struct Cruncher { started: mpsc::Sender<()>, gate: mpsc::Receiver<()> }
/// impl RpcEndpoint for Cruncher { rpc_core::serves!(Crunch); }
/// impl Crunch for Cruncher {
///     fn crunch(&mut self) {
///         let _ = self.started.send(());
///         let _ = self.gate.recv(); // blocks until released: fine on a thread of its own
///     }
/// }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), RpcError> {
/// let service = RpcService::new();
/// let (release, gate) = mpsc::channel();
/// let (started, running) = mpsc::channel();
/// let options = EndpointOptions::new().isolated(true).mailbox_capacity(1);
/// service.start_endpoint_with("crunch", Cruncher { started, gate }, options).await?;
/// let cruncher: CrunchClient = service.gateway("crunch")?;
/// // The first call holds the main thread, the mailbox one more at most: the third is refused.
/// cruncher.crunch()?;
/// running.recv().unwrap();
/// assert!(cruncher.crunch().is_ok());
/// assert!(matches!(cruncher.crunch(), Err(RpcError::MailboxFull { capacity: 1, .. })));
/// (0..2).for_each(|_| release.send(()).unwrap());
/// service.shutdown().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct EndpointOptions {
    pub(crate) isolated: bool,
    pub(crate) mailbox_capacity: usize,
    pub(crate) mailbox_bytes: usize,
}

impl Default for EndpointOptions {
    fn default() -> Self {
        EndpointOptions {
            isolated: false,
            mailbox_capacity: DEFAULT_MAILBOX_CAPACITY,
            mailbox_bytes: DEFAULT_MAILBOX_BYTES,
        }
    }
}

impl EndpointOptions {
    /// The defaults: the endpoint's main thread is a task on the service's runtime, and its
    /// mailbox holds up to [`DEFAULT_MAILBOX_CAPACITY`] invocations and
    /// [`DEFAULT_MAILBOX_BYTES`] bytes of remote ones.
    pub fn new() -> Self {
        Self::default()
    }

    /// The most invocations that may wait in the endpoint's mailbox (at least 1). Beyond it,
    /// a local call, or a remote ask, is refused at once with [`RpcError::MailboxFull`]: the
    /// caller learns of the overload instead of the endpoint's memory growing without bound.
    /// A remote tell is not refused (it could not be told so): the connection it came on stops
    /// being read until there is room, so TCP slows its sender. Stop requests, `run_async`
    /// closures and connection events are not counted and always get in.
    pub fn mailbox_capacity(mut self, capacity: usize) -> Self {
        self.mailbox_capacity = capacity.max(1);
        self
    }

    /// The most bytes of remote invocations that may wait in the endpoint's mailbox (default
    /// [`DEFAULT_MAILBOX_BYTES`], 64 MiB), counted as they arrived on the wire. Remote
    /// invocations wait encoded and are decoded on the main thread when their turn comes, so
    /// this bounds the memory they hold however their types expand when decoded. Beyond it,
    /// a remote ask is refused with [`RpcError::MailboxFull`] and a remote tell holds its
    /// connection until there is room, as with [`mailbox_capacity`](Self::mailbox_capacity).
    /// One invocation larger than the limit is let in when none is queued. Local calls move
    /// their values and are counted only by `mailbox_capacity`.
    pub fn mailbox_bytes(mut self, bytes: usize) -> Self {
        self.mailbox_bytes = bytes;
        self
    }

    /// Runs the endpoint's main thread on a dedicated OS thread (Spark's
    /// `IsolatedRpcEndpoint`), so that a CPU-heavy or blocking endpoint cannot starve the
    /// others. Its `Deferred` replies and scheduled runs still use the service's runtime.
    pub fn isolated(mut self, isolated: bool) -> Self {
        self.isolated = isolated;
        self
    }
}

/// The gateways one endpoint serves, built when it starts. Filled by
/// [`serves!`](crate::serves); each gateway brings its supertrait gateways.
///
/// `serves!` writes [`RpcEndpoint::gateways`]; written by hand, it adds each gateway by its
/// client type:
///
/// ```
/// use rpc_core::{Gateways, RpcEndpoint, RpcService, rpc_gateway};
///
/// #[rpc_gateway]
/// pub trait Echo {
///     async fn echo(&mut self, text: String) -> String;
/// }
///
/// struct Parrot;
/// impl RpcEndpoint for Parrot {
///     fn gateways(gateways: &mut Gateways<Self>) {
///         gateways.add::<EchoClient>(); // as `rpc_core::serves!(Echo)` would
///     }
/// }
/// impl Echo for Parrot {
///     async fn echo(&mut self, text: String) -> String {
///         text
///     }
/// }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), rpc_core::RpcError> {
/// let service = RpcService::new();
/// service.start_endpoint("parrot", Parrot).await?;
/// let parrot: EchoClient = service.gateway("parrot")?;
/// assert_eq!(parrot.echo("hi".into()).await?, "hi");
/// # Ok(()) }
/// ```
pub struct Gateways<E: RpcEndpoint> {
    cell: Arc<EndpointCell<E>>,
    entries: Vec<GatewayEntry>,
    conflicts: Vec<String>,
}

/// One gateway an endpoint serves.
pub(crate) struct GatewayEntry {
    pub(crate) name: &'static str,
    pub(crate) fingerprint: u64,
    /// Whether it is served on inner listeners only.
    pub(crate) inner: bool,
    type_id: TypeId,
    /// An `Arc<dyn CallTarget<G>>` for local proxies.
    local: Box<dyn Any + Send + Sync>,
    /// Where a transport delivers encoded invocations of this gateway.
    pub(crate) inbound: Arc<dyn InboundSink>,
}

impl<E: RpcEndpoint> Gateways<E> {
    pub(crate) fn new(cell: Arc<EndpointCell<E>>) -> Self {
        Gateways {
            cell,
            entries: Vec::new(),
            conflicts: Vec::new(),
        }
    }

    /// Adds gateway `G` (its client type) and its supertrait gateways.
    pub fn add<G: Dispatch<E>>(&mut self) {
        if self.entries.iter().any(|e| e.type_id == TypeId::of::<G>()) {
            return;
        }
        if self.entries.iter().any(|e| e.name == G::NAME) {
            self.conflicts.push(G::NAME.to_owned());
            return;
        }
        let target: Arc<dyn CallTarget<G>> =
            Arc::new(LocalTarget::<E, G>::new(Arc::clone(&self.cell)));
        self.entries.push(GatewayEntry {
            name: G::NAME,
            fingerprint: G::FINGERPRINT,
            inner: G::INNER,
            type_id: TypeId::of::<G>(),
            local: Box::new(target),
            inbound: Arc::new(RemoteSink::<E, G>::new(Arc::clone(&self.cell))),
        });
        G::register_supers(self);
    }

    /// The entries, or an error naming gateways that two different traits both claim.
    pub(crate) fn finish(self) -> Result<Vec<GatewayEntry>, String> {
        if self.conflicts.is_empty() {
            Ok(self.entries)
        } else {
            Err(format!(
                "two different gateway traits are both named {}; give one another name with \
                 #[rpc_gateway(name = \"...\")]",
                self.conflicts.join(", ")
            ))
        }
    }
}

impl GatewayEntry {
    /// The local call target for `G`, if this entry is `G`.
    pub(crate) fn local<G: Gateway>(&self) -> Option<Arc<dyn CallTarget<G>>> {
        if self.type_id != TypeId::of::<G>() {
            return None;
        }
        self.local
            .downcast_ref::<Arc<dyn CallTarget<G>>>()
            .map(Arc::clone)
    }
}

impl<E: RpcEndpoint> std::fmt::Debug for Gateways<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.entries.iter().map(|e| e.name).collect();
        f.debug_struct("Gateways")
            .field("gateways", &names)
            .finish_non_exhaustive()
    }
}
