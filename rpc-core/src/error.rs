//! [`RpcError`]: every way a call can fail, one variant per failure point.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::gateway::EndpointAddress;

/// Why a call, a connect or an endpoint start failed.
///
/// Every variant carries what a user needs to act on it; the `Display` messages are written to
/// be logged as they are. Domain errors of a gateway method (`-> Result<T, MyError>`) are *not*
/// `RpcError`s: they arrive as the `Ok` value of the call, exactly as the endpoint returned
/// them.
///
/// Match on a variant to act on one failure, and let the others pass with `?`:
///
/// ```
/// use std::time::Duration;
/// use rpc_core::{RpcEndpoint, RpcError, RpcService, TimeoutSource, rpc_gateway};
///
/// #[rpc_gateway]
/// pub trait Sleeper {
///     async fn nap(&mut self, millis: u64) -> u64;
/// }
///
/// struct Bed;
/// impl RpcEndpoint for Bed { rpc_core::serves!(Sleeper); }
/// impl Sleeper for Bed {
///     async fn nap(&mut self, millis: u64) -> u64 {
///         tokio::time::sleep(Duration::from_millis(millis)).await;
///         millis
///     }
/// }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), RpcError> {
/// let service = RpcService::new();
/// let Err(error) = service.gateway::<SleeperClient>("bed") else { unreachable!() };
/// assert!(matches!(&error, RpcError::EndpointNotFound { endpoint, address: None } if endpoint == "bed"));
/// assert_eq!(error.to_string(), "no endpoint named `bed` is running in this service");
///
/// service.start_endpoint("bed", Bed).await?;
/// let bed: SleeperClient = service.gateway("bed")?;
/// match bed.nap(500).with_timeout(Duration::from_millis(20)).await {
///     Err(RpcError::Timeout { method, origin, .. }) => {
///         assert_eq!((method, origin), ("nap", TimeoutSource::Call)); // the call's own timeout
///     }
///     other => panic!("expected a timeout, got {other:?}"),
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum RpcError {
    /// An ask got no reply within its timeout. The call is cancelled: if the invocation has
    /// not started it never runs, and a reply that arrives later is discarded. (A handler
    /// already running finishes unless it checks its `CallContext`.)
    #[error("call to `{gateway}::{method}` on {endpoint} timed out after {timeout:?} ({origin})")]
    Timeout {
        /// The gateway the method belongs to.
        gateway: &'static str,
        /// The method called.
        method: &'static str,
        /// The endpoint called (its name and, if remote, its address).
        endpoint: EndpointAddress,
        /// The timeout that elapsed.
        timeout: Duration,
        /// Which setting the timeout came from, and so how to change it.
        origin: TimeoutSource,
    },

    /// The call was aborted by its caller (through an `AbortHandle`, or a scheduled call
    /// cancelled); the endpoint skips it if it has not started.
    #[error("call to `{gateway}::{method}` on {endpoint} was aborted by its caller")]
    Cancelled {
        /// The gateway the method belongs to.
        gateway: &'static str,
        /// The method called.
        method: &'static str,
        /// The endpoint called.
        endpoint: EndpointAddress,
    },

    /// The connection carrying the call was lost before the reply arrived. The next call
    /// through the same proxy opens a new connection.
    #[error("connection to {address} lost: {reason}")]
    Disconnected {
        /// The remote address.
        address: SocketAddr,
        /// What ended the connection.
        reason: String,
    },

    /// No connection could be opened to the remote service.
    #[error("cannot connect to {address}: {reason}")]
    ConnectFailed {
        /// The address as given to `connect`.
        address: String,
        /// Why the connection failed.
        reason: String,
    },

    /// No endpoint with this name is running in the target service.
    #[error("no endpoint named `{endpoint}` is running {}", where_(address))]
    EndpointNotFound {
        /// The name asked for.
        endpoint: String,
        /// The remote service's address, or `None` for this process.
        address: Option<SocketAddr>,
    },

    /// The endpoint exists but does not serve the gateway asked for.
    #[error(
        "endpoint `{endpoint}` does not serve gateway `{gateway}` (it serves: {}); implement the \
         gateway trait for the endpoint and list it in `rpc_core::serves!(..)` in its \
         `impl RpcEndpoint`",
        list(served)
    )]
    IncompatibleGateway {
        /// The endpoint's name.
        endpoint: String,
        /// The gateway asked for.
        gateway: String,
        /// The gateways the endpoint does serve.
        served: Vec<String>,
    },

    /// Client and server were built from different definitions of the same gateway.
    #[error(
        "gateway `{gateway}` of endpoint `{endpoint}` differs between client and server: client \
         fingerprint {client:#018x}, server fingerprint {server:#018x}; build both from the same \
         gateway definition"
    )]
    FingerprintMismatch {
        /// The gateway's name.
        gateway: String,
        /// The endpoint's name.
        endpoint: String,
        /// The fingerprint the client was compiled with.
        client: u64,
        /// The fingerprint the server was compiled with.
        server: u64,
    },

    /// The peer speaks another version of the wire protocol.
    #[error("peer {address} speaks protocol version {theirs}, this side speaks version {ours}")]
    VersionMismatch {
        /// The peer's address.
        address: SocketAddr,
        /// Our protocol version.
        ours: u16,
        /// The peer's protocol version.
        theirs: u16,
    },

    /// A value could not be encoded or decoded.
    #[error("serialization failed while {context}: {reason}")]
    Serialization {
        /// What was being encoded or decoded, naming the gateway method.
        context: String,
        /// The codec's explanation.
        reason: String,
    },

    /// A frame exceeds the configured maximum frame size; it was not sent.
    #[error("frame of {size} bytes exceeds the maximum frame size of {max} bytes")]
    FrameTooLarge {
        /// The frame's size in bytes.
        size: usize,
        /// The configured maximum.
        max: usize,
    },

    /// The endpoint has stopped (or stopped while the invocation was queued behind its stop).
    #[error("endpoint `{endpoint}` is stopped")]
    EndpointStopped {
        /// The endpoint's name.
        endpoint: String,
    },

    /// The handler panicked; the endpoint keeps serving.
    #[error("handler `{gateway}::{method}` of endpoint `{endpoint}` panicked: {message}")]
    HandlerPanicked {
        /// The endpoint's name.
        endpoint: String,
        /// The gateway the method belongs to.
        gateway: String,
        /// The method that panicked.
        method: String,
        /// The panic message.
        message: String,
    },

    /// The peer could not prove it knows the shared secret, or we could not.
    #[error("authentication with {address} failed: {reason}")]
    Unauthenticated {
        /// The peer's address.
        address: SocketAddr,
        /// What failed.
        reason: String,
    },

    /// An endpoint issued an ask to itself from its own main thread. The reply could never
    /// come, since the main thread is busy running the caller, so the call fails instead of
    /// hanging.
    #[error(
        "endpoint `{endpoint}` called `{gateway}::{method}` on itself from its own main thread, \
         which can never be answered while the caller occupies the main thread; use \
         `RpcContext::run_async` or a tell instead, or return `Deferred` and issue the call off \
         the main thread"
    )]
    WouldDeadlock {
        /// The endpoint's name.
        endpoint: String,
        /// The gateway the method belongs to.
        gateway: &'static str,
        /// The method called.
        method: &'static str,
    },

    /// The call's fencing token is not the endpoint's current one: the caller holds the token
    /// of another leadership (an earlier one, or one the endpoint has not taken yet), or the
    /// endpoint has no token now. The handler did not run. Closures queued with `run_async` or
    /// `call_async` before the endpoint's token changed fail the same way (`received` is then
    /// `None`: the token they were queued under).
    #[error(
        "endpoint `{endpoint}` refused `{gateway}::{method}`: its fencing token is {}, the call \
         carried {}; reconnect with the current leader's token",
        expected.as_deref().unwrap_or("not set"),
        received.as_deref().unwrap_or("the token from before its last change")
    )]
    FencingTokenMismatch {
        /// The endpoint's name.
        endpoint: String,
        /// The gateway (`RpcContext` for a queued closure).
        gateway: String,
        /// The method (or `run_async`, `call_async`, ...).
        method: String,
        /// The endpoint's current token (`Debug`), if it has one.
        expected: Option<String>,
        /// The token the call carried (`Debug`).
        received: Option<String>,
    },

    /// A call to a fenced gateway carried no fencing token (a peer that does not stamp one, or
    /// the endpoint's own `self_gateway` while it has no token). The handler did not run.
    #[error(
        "endpoint `{endpoint}` refused `{gateway}::{method}`: the gateway is fenced and the call \
         carried no fencing token; make the proxy with `gateway_fenced` or `connect_fenced`"
    )]
    FencingTokenMissing {
        /// The endpoint's name.
        endpoint: String,
        /// The gateway.
        gateway: String,
        /// The method.
        method: String,
    },

    /// An operation that must run on the endpoint's main thread (in a handler, a hook or a
    /// `run_async` closure) was called from elsewhere.
    #[error(
        "`RpcContext::{method}` of endpoint `{endpoint}` must be called on its main thread (in a \
         handler, a hook or a `run_async` closure)"
    )]
    NotOnMainThread {
        /// The endpoint's name.
        endpoint: String,
        /// The operation.
        method: &'static str,
    },

    /// The endpoint's `on_start` failed (or panicked); it never served.
    #[error("endpoint `{endpoint}` failed to start: {source}")]
    StartFailed {
        /// The endpoint's name.
        endpoint: String,
        /// The error `on_start` returned.
        #[source]
        source: Arc<dyn std::error::Error + Send + Sync>,
    },

    /// The endpoint's `on_stop` failed (or panicked). The endpoint has stopped all the same;
    /// this is how `stop_endpoint` and `shutdown` report it.
    #[error("endpoint `{endpoint}` failed while stopping: {source}")]
    StopFailed {
        /// The endpoint's name.
        endpoint: String,
        /// The error `on_stop` returned.
        #[source]
        source: Arc<dyn std::error::Error + Send + Sync>,
    },

    /// An endpoint with this name is already running in the service.
    #[error(
        "an endpoint named `{endpoint}` is already running in this service; stop it first or pick another name"
    )]
    NameInUse {
        /// The name asked for.
        endpoint: String,
    },

    /// The endpoint's mailbox holds as many invocations, or as many bytes of remote ones, as
    /// it may; the call was refused, and nothing of it ran.
    #[error(
        "the mailbox of endpoint `{endpoint}` is full (at most {capacity} invocations, and \
         `mailbox_bytes` of remote ones, may wait); the call was refused (retry later, or raise \
         `EndpointOptions::mailbox_capacity` or `mailbox_bytes`)"
    )]
    MailboxFull {
        /// The endpoint's name.
        endpoint: String,
        /// Its mailbox capacity.
        capacity: usize,
    },

    /// The connection to the remote service has as much in flight as it may (calls awaiting
    /// replies, or bytes waiting to be sent); the call was refused, and nothing was sent.
    #[error("the connection to {address} is overloaded: {reason}; the call was refused")]
    Overloaded {
        /// The remote service's address.
        address: SocketAddr,
        /// Which limit was reached.
        reason: String,
    },

    /// The remote service failed the call for a reason this side does not know (a newer peer,
    /// or a protocol violation it reported).
    #[error("the service at {address} failed the call: {message}")]
    Remote {
        /// The remote service's address.
        address: SocketAddr,
        /// What the remote service reported.
        message: String,
    },

    /// The gateway is for the inner network (`#[rpc_gateway(inner)]`): the service does not
    /// serve it on the outer listener the bind came over. Nothing reached the endpoint.
    #[error(
        "endpoint `{endpoint}` serves gateway `{gateway}` on the inner network only, and this \
         connection came in on the outer one: connect to the service's inner listener (from a \
         server), or call a gateway meant for the outer network"
    )]
    InnerGateway {
        /// The endpoint.
        endpoint: String,
        /// The gateway.
        gateway: String,
    },

    /// A relay could not forward the call to the server hosting its target, or lost that
    /// server while the call was there (see
    /// [`RpcService::start_relay`](crate::RpcService::start_relay)). A call refused before it
    /// was forwarded did not run; one lost on the way may have.
    #[error("relay `{endpoint}` could not carry the call: {reason}")]
    Relay {
        /// The relay's endpoint name.
        endpoint: String,
        /// What went wrong, naming the hop.
        reason: String,
    },

    /// A stream's producer ended it with an error ([`RpcStream::try_new`](crate::RpcStream::try_new)):
    /// the last item the consumer receives.
    #[error("the stream's producer failed: {message}")]
    StreamFailed {
        /// The producer's error, as text.
        message: String,
    },

    /// The service has been shut down; it starts no endpoints and makes no calls.
    #[error("the rpc service is shut down")]
    ServiceShutDown,

    /// The service does not listen: it was built without a transport, or as a client only
    /// (`rpc_netty::client()`), so it has no address of its own.
    #[error(
        "this rpc service does not listen: bind it to an address (for example `rpc_netty::bind(\"127.0.0.1:0\")`) to give it one"
    )]
    NotListening,

    /// A local I/O operation failed: binding a listener, loading TLS material.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The operating system's error.
        #[source]
        source: Arc<std::io::Error>,
    },
}

impl RpcError {
    /// The variant's name in snake case (`"timeout"`, `"endpoint_stopped"`, ...): a stable,
    /// low-cardinality label for metrics and logs.
    ///
    /// ```
    /// let error = rpc_core::RpcError::EndpointStopped { endpoint: "hello".into() };
    /// assert_eq!(error.kind(), "endpoint_stopped");
    /// ```
    pub fn kind(&self) -> &'static str {
        match self {
            RpcError::Timeout { .. } => "timeout",
            RpcError::Cancelled { .. } => "cancelled",
            RpcError::Disconnected { .. } => "disconnected",
            RpcError::ConnectFailed { .. } => "connect_failed",
            RpcError::EndpointNotFound { .. } => "endpoint_not_found",
            RpcError::IncompatibleGateway { .. } => "incompatible_gateway",
            RpcError::FingerprintMismatch { .. } => "fingerprint_mismatch",
            RpcError::VersionMismatch { .. } => "version_mismatch",
            RpcError::Serialization { .. } => "serialization",
            RpcError::FrameTooLarge { .. } => "frame_too_large",
            RpcError::EndpointStopped { .. } => "endpoint_stopped",
            RpcError::HandlerPanicked { .. } => "handler_panicked",
            RpcError::Unauthenticated { .. } => "unauthenticated",
            RpcError::WouldDeadlock { .. } => "would_deadlock",
            RpcError::FencingTokenMismatch { .. } => "fencing_token_mismatch",
            RpcError::FencingTokenMissing { .. } => "fencing_token_missing",
            RpcError::NotOnMainThread { .. } => "not_on_main_thread",
            RpcError::StartFailed { .. } => "start_failed",
            RpcError::StopFailed { .. } => "stop_failed",
            RpcError::NameInUse { .. } => "name_in_use",
            RpcError::MailboxFull { .. } => "mailbox_full",
            RpcError::Overloaded { .. } => "overloaded",
            RpcError::Remote { .. } => "remote",
            RpcError::StreamFailed { .. } => "stream_failed",
            RpcError::InnerGateway { .. } => "inner_gateway",
            RpcError::Relay { .. } => "relay",
            RpcError::ServiceShutDown => "service_shut_down",
            RpcError::NotListening => "not_listening",
            RpcError::Io { .. } => "io",
        }
    }

    /// An [`RpcError::Io`] saying what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> RpcError {
        RpcError::Io {
            context: context.into(),
            source: Arc::new(source),
        }
    }
}

/// An I/O error from the transport's setup (binding, TLS), so that `?` works in a function
/// returning `RpcError`.
impl From<std::io::Error> for RpcError {
    fn from(source: std::io::Error) -> RpcError {
        RpcError::io("I/O error", source)
    }
}

/// Where the timeout of a call came from: each names the setting that changes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TimeoutSource {
    /// The service's default ask timeout (10 s unless configured).
    ServiceDefault,
    /// The proxy's own timeout, set with its `with_timeout`.
    Proxy,
    /// This call's timeout, set with `RpcCall::with_timeout`.
    Call,
    /// The timeout given to `RpcContext::call_async_timeout`.
    CallAsync,
}

impl std::fmt::Display for TimeoutSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TimeoutSource::ServiceDefault => {
                "the service's default ask timeout: change it with \
                 `RpcServiceBuilder::default_timeout` (`NettyBuilder::default_timeout` for a \
                 networked service), per proxy with `with_timeout`, or per call with \
                 `RpcCall::with_timeout`"
            }
            TimeoutSource::Proxy => {
                "the proxy's timeout, set with its `with_timeout`; override it per call with \
                 `RpcCall::with_timeout`"
            }
            TimeoutSource::Call => "this call's own timeout, set with `RpcCall::with_timeout`",
            TimeoutSource::CallAsync => "the timeout given to `RpcContext::call_async_timeout`",
        })
    }
}

fn where_(address: &Option<SocketAddr>) -> String {
    match address {
        Some(address) => format!("at {address}"),
        None => "in this service".to_owned(),
    }
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "no gateway".to_owned()
    } else {
        items.join(", ")
    }
}
