//! The network transport of the rpc framework: the same endpoints and generated gateways,
//! across processes and machines over TCP.
//!
//! ```no_run
//! # use rpc_core::{RpcEndpoint, rpc_gateway};
//! # #[rpc_gateway] pub trait HelloGateway { async fn say_hi(&mut self, name: String) -> String; }
//! # struct Hello;
//! # impl RpcEndpoint for Hello { rpc_core::serves!(HelloGateway); }
//! # impl HelloGateway for Hello { async fn say_hi(&mut self, n: String) -> String { n } }
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! // A server listening on a port (0: any free one).
//! let server = rpc_netty::bind("127.0.0.1:0").await?;
//! server.start_endpoint("hello-service", Hello).await?;
//! let address = server.local_address().unwrap().to_string();
//!
//! // A pure client: no listening port; replies come back on its own connection.
//! let client = rpc_netty::client();
//! let hello: HelloGatewayClient = client.connect(&address, "hello-service").await?;
//! println!("{}", hello.say_hi("neo".into()).await?);
//! # Ok(())
//! # }
//! ```
//!
//! Both are ordinary [`rpc_core::RpcService`]s: `start_endpoint`, `gateway`, `connect` and
//! `shutdown` work as in process, and a `connect` to the service's own address gives a local
//! proxy that skips the network.
//!
//! # Layout
//!
//! - [`frame`]: the frame codec (length prefix, kind, request id, body).
//! - [`protocol`]: each frame kind's body, the handshake's, and errors on the wire.
//! - [`handshake`]: the handshake as client and server state machines (no I/O).
//! - [`channel`]: the encrypted records a shared secret puts frames in (no I/O).
//! - [`session`]: an established connection's rules on each side: slots, calls awaiting
//!   replies, requests in flight, keep-alive (no I/O).
//! - `server`: the listener and one task per inbound connection, driving a session.
//! - `client`: one outbound connection per remote address, driving a session.
//! - `io`: the batching writer both sides share.
//! - `transport`: the [`rpc_core::transport::Transport`] tying them to a service.
//! - `auth`: shared-secret authentication; `config`: the settings.
//! - `tls` (cargo feature `tls`): TLS with rustls.
//! - `metrics` (cargo feature `metrics`): connection metrics, and rpc-core's call metrics.
//! - `net`: the sockets, the operating system's or (cargo feature `sim`,
//!   `NettyBuilder::simulated`) turmoil's simulated ones.
//!
//! `PROTOCOL.md` in this crate documents the wire format byte by byte.

#![warn(missing_docs, missing_debug_implementations)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod admission;
mod auth;
pub mod channel;
mod client;
mod config;
pub mod frame;
pub mod handshake;
mod ids;
mod io;
mod metrics;
mod net;
pub mod protocol;
mod server;
pub mod session;
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub mod tls;
mod transport;

use std::time::Duration;

pub use auth::Secret;
pub use rpc_core;
use rpc_core::{RpcError, RpcService, RpcServiceBuilder, ToAddress};

use crate::config::NettyConfig;
use crate::transport::NettyTransport;

/// A service listening on `address` with the default settings. Port 0 picks a free port;
/// [`RpcService::local_address`] tells which.
///
/// ```
/// use rpc_core::RpcError;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), RpcError> {
/// let server = rpc_netty::bind("127.0.0.1:0").await?;
/// let address = server.local_address()?;
/// assert!(address.ip().is_loopback() && address.port() != 0);
///
/// // The port is taken now: another service cannot listen on it.
/// let taken = rpc_netty::bind(address).await;
/// assert!(matches!(taken, Err(RpcError::Io { .. })));
/// server.shutdown().await?;
/// # Ok(()) }
/// ```
pub async fn bind(address: impl ToAddress) -> Result<RpcService, RpcError> {
    NettyBuilder::new().bind(address).await
}

/// A service that only connects out (no listening port), with the default settings.
///
/// Replies come back on the connections it opens, so it needs no address of its own.
///
/// ```
/// use rpc_core::{RpcEndpoint, RpcError, rpc_gateway};
///
/// #[rpc_gateway]
/// pub trait Clock {
///     async fn tick(&mut self) -> u64;
/// }
///
/// #[derive(Default)]
/// struct Ticker(u64);
/// impl RpcEndpoint for Ticker { rpc_core::serves!(Clock); }
/// impl Clock for Ticker {
///     async fn tick(&mut self) -> u64 { self.0 += 1; self.0 }
/// }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), RpcError> {
/// # let server = rpc_netty::bind("127.0.0.1:0").await?;
/// # server.start_endpoint("clock", Ticker::default()).await?;
/// # let address = server.local_address()?;
/// let client = rpc_netty::client();
/// assert!(matches!(client.local_address(), Err(RpcError::NotListening)));
/// let clock: ClockClient = client.connect(address, "clock").await?;
/// assert_eq!(clock.tick().await?, 1);
/// // An endpoint the server does not run is refused at connect.
/// let missing = client.connect::<ClockClient>(address, "calendar").await;
/// assert!(matches!(missing, Err(RpcError::EndpointNotFound { .. })));
/// # Ok(()) }
/// ```
///
/// # Panics
///
/// Outside a tokio runtime.
pub fn client() -> RpcService {
    NettyBuilder::new().client()
}

/// Configures a networked [`RpcService`].
///
/// The same builder (it is `Clone`) makes a server and its clients, so that they share the
/// secret and the limits:
///
/// ```
/// use std::time::Duration;
/// use rpc_core::{RpcEndpoint, RpcError, rpc_gateway};
/// use rpc_netty::NettyBuilder;
///
/// #[rpc_gateway]
/// pub trait Store {
///     async fn put(&mut self, blob: Vec<u8>) -> usize;
/// }
///
/// struct Disk;
/// impl RpcEndpoint for Disk { rpc_core::serves!(Store); }
/// impl Store for Disk {
///     async fn put(&mut self, blob: Vec<u8>) -> usize { blob.len() }
/// }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), RpcError> {
/// let builder = NettyBuilder::new()
///     .shared_secret("a long random secret")
///     .max_frame_size(64 * 1024)
///     .default_timeout(Duration::from_secs(2));
/// let server = builder.clone().bind("127.0.0.1:0").await?;
/// server.start_endpoint("store", Disk).await?;
///
/// let client = builder.client();
/// let store: StoreClient = client.connect(server.local_address()?, "store").await?;
/// assert_eq!(store.put(vec![7; 1024]).await?, 1024);
/// // Larger than a frame may be: refused before anything is written.
/// let refused = store.put(vec![7; 100 * 1024]).await;
/// assert!(matches!(refused, Err(RpcError::FrameTooLarge { max: 65536, .. })));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
pub struct NettyBuilder {
    service: RpcServiceBuilder,
    config: NettyConfig,
    /// The outer listener's address, if the service faces players too.
    outer: Option<String>,
    /// How the outer listener authenticates, where it differs.
    outer_auth: config::OuterAuth,
}

impl NettyBuilder {
    /// The defaults: 10 s ask timeout, 16 MiB frames, 5 s connect timeout.
    pub fn new() -> Self {
        Self::default()
    }

    /// The ask timeout proxies start with.
    pub fn default_timeout(mut self, timeout: Duration) -> Self {
        self.service = self.service.default_timeout(timeout);
        self
    }

    /// Records every call that arrives from another service, for a test to read back with
    /// [`rpc_core::testing::calls`] (for example a fake on a simulated host). For tests: the
    /// record only grows.
    pub fn record_calls(mut self, record: bool) -> Self {
        self.service = self.service.record_calls(record);
        self
    }

    /// Makes calls to endpoints in this same service encode as remote ones would.
    pub fn force_serialization(mut self, force: bool) -> Self {
        self.service = self.service.force_serialization(force);
        self
    }

    /// How deeply a value decoded from a peer may nest (default 128 levels; each sequence,
    /// map, enum, option or newtype is one): an invocation or reply nested deeper fails that
    /// one call with `RpcError::Serialization` naming the limit, before it can exhaust the
    /// stack, and the connection keeps serving.
    pub fn max_decode_depth(mut self, levels: usize) -> Self {
        self.service = self.service.max_decode_depth(levels);
        self
    }

    /// The largest frame sent or accepted, counting kind, request id and body (default
    /// 16 MiB). A call whose frame would be larger fails with `FrameTooLarge` before anything
    /// is written; a peer announcing a larger frame is disconnected before anything is
    /// allocated for it.
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.config.max_frame_size = bytes;
        self
    }

    /// How long opening a connection may take, from the TCP connect to an authenticated
    /// channel (TLS and the key exchange included), before `ConnectFailed` (default 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout = timeout;
        self
    }

    /// How `connect` tries again when the peer cannot be reached (`ConnectFailed`: refused,
    /// unreachable, or no handshake within `connect_timeout`), for example a client started
    /// before its server. Default: [`ConnectRetry::none`](rpc_core::ConnectRetry::none).
    /// `RpcService::connect_with_retry` overrides it for one call.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), rpc_core::RpcError> {
    /// use std::time::Duration;
    /// use rpc_core::ConnectRetry;
    /// let client = rpc_netty::NettyBuilder::new()
    ///     .connect_retry(ConnectRetry::backoff(20, Duration::from_millis(100), Duration::from_secs(2)))
    ///     .client();
    /// # Ok(()) }
    /// ```
    pub fn connect_retry(mut self, retry: rpc_core::ConnectRetry) -> Self {
        self.config.connect_retry = retry;
        self
    }

    /// How long an inbound connection may take from accept to authenticated, TLS included
    /// (default 3 s); a peer still in its handshake then is disconnected.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.config.handshake_timeout = timeout;
        self
    }

    /// Keep-alive: a connection quiet for `interval` is probed with a ping; one quiet for
    /// `timeout` (the peer vanished without closing it, or stopped answering) is closed, and
    /// the calls waiting on it fail with `Disconnected` (defaults: 10 s and 30 s).
    pub fn keepalive(mut self, interval: Duration, timeout: Duration) -> Self {
        self.config.keepalive_interval = interval;
        self.config.keepalive_timeout = timeout;
        self
    }

    /// Closes a connection that has had no call for `timeout` (default 5 minutes; `None`
    /// keeps connections open): a client closes its idle outbound connections (the next call
    /// reopens them), a server its idle inbound ones (pings do not count as calls). Checked
    /// once per keep-alive interval.
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.config.idle_timeout = timeout;
        self
    }

    /// Requests one connection may have unanswered (default 1024). A server stops reading a
    /// connection at this many, so TCP pushes back on the sender, and resumes as replies go
    /// out; a client refuses further asks on the connection with `RpcError::Overloaded`.
    pub fn max_in_flight(mut self, requests: usize) -> Self {
        self.config.max_in_flight = requests.max(1);
        self
    }

    /// Bytes that may wait to be sent on one connection (default 64 MiB). Beyond it, calls
    /// (tells too) are refused with `RpcError::Overloaded` instead of growing memory. A server
    /// stops reading a connection whose replies pile up this far, and if the replies to
    /// requests it already read would pass it (a peer that asks and never reads), it closes
    /// the connection and drops them: they are never queued. One frame larger than the limit
    /// is let in when nothing waits.
    pub fn max_outbox_bytes(mut self, bytes: usize) -> Self {
        self.config.max_outbox_bytes = bytes.max(1);
        self
    }

    /// Bytes of one inbound connection's invocations that may wait in endpoints' mailboxes
    /// (default 16 MiB), counted as they arrived on the wire. A server stops reading the
    /// connection while this many wait, and resumes as the endpoints take them; each endpoint
    /// also bounds its own mailbox (`EndpointOptions::mailbox_bytes`).
    pub fn max_backlog_bytes(mut self, bytes: usize) -> Self {
        self.config.max_backlog_bytes = bytes.max(1);
        self
    }

    /// Established inbound connections open at once (default 10,000). A connection beyond it
    /// is closed as soon as it is accepted, with a warning in the log. Connections still in
    /// their handshake do not count here (see [`NettyBuilder::max_handshakes`]). At `bind`,
    /// this and `max_handshakes` are lowered, with a warning, to fit the process's open-file
    /// limit, so that a full server refuses connections instead of leaving them in the accept
    /// queue.
    pub fn max_connections(mut self, connections: usize) -> Self {
        self.config.max_connections = connections;
        self
    }

    /// Inbound connections that may be in their handshake at once: overall (default 1,024)
    /// and from one IP address (default also 1,024: one host may legitimately open many at
    /// once; lower it where one host may attack). When either is full, a new connection evicts the
    /// *oldest* handshake in it, so peers that never authenticate cannot hold slots that a
    /// legitimate peer, which completes its handshake in a round trip or two, needs.
    pub fn max_handshakes(mut self, overall: usize, per_address: usize) -> Self {
        self.config.max_handshakes = overall.max(1);
        self.config.max_handshakes_per_address = per_address.max(1);
        self
    }

    /// How long closing a connection (at shutdown, or when it fails) waits for frames still
    /// queued on it to be written (default 5 s). A peer that stops reading cannot hold up a
    /// shutdown longer than this.
    pub fn linger(mut self, linger: Duration) -> Self {
        self.config.linger = linger;
        self
    }

    /// Turns on mutual authentication and encryption with a shared secret. Every connection,
    /// inbound and outbound, then runs a Noise `NNpsk0` key exchange keyed by the secret
    /// before any call is accepted or sent, and every later frame, both ways, travels in
    /// ChaCha20-Poly1305 records: an injected, altered, replayed or reordered record closes
    /// the connection. The secret itself never crosses the wire. A peer without the same
    /// secret gets `RpcError::Unauthenticated` and is disconnected; the server logs it once.
    /// See the README's "Security" section for what this does and does not protect.
    pub fn shared_secret(mut self, secret: impl Into<Vec<u8>>) -> Self {
        self.config.secret = Some(auth::Secret::new(secret));
        self
    }

    /// Uses TLS (cargo feature `tls`): with an identity, this service accepts only TLS
    /// connections; with trust roots, it opens only TLS connections. Fails if a certificate
    /// or key is unusable.
    ///
    /// ```no_run
    /// # fn demo(chain: Vec<rpc_netty::tls::rustls::pki_types::CertificateDer<'static>>,
    /// #         key: rpc_netty::tls::rustls::pki_types::PrivateKeyDer<'static>,
    /// #         ca: rpc_netty::tls::rustls::pki_types::CertificateDer<'static>) -> Result<(), rpc_core::RpcError> {
    /// use rpc_netty::tls::TlsOptions;
    /// let builder = rpc_netty::NettyBuilder::new()
    ///     .tls(TlsOptions::new().identity(chain, key).trust_roots(vec![ca]))?;
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "tls")]
    pub fn tls(mut self, options: tls::TlsOptions) -> Result<Self, RpcError> {
        let tls = tls::Tls::new(options)
            .map_err(|error| RpcError::io("invalid TLS configuration", error))?;
        self.config.tls = Some(tls);
        Ok(self)
    }

    /// Also listens on `address` for the *outer* network (the game-server split): players
    /// connect there, and a bind to a gateway marked `#[rpc_gateway(inner)]` is refused with
    /// [`RpcError::InnerGateway`] before anything reaches the endpoint. The address given to
    /// [`bind`](NettyBuilder::bind) is then the inner listener, for other servers; every
    /// gateway is served there. [`RpcService::outer_address`] gives the outer one's address.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), rpc_core::RpcError> {
    /// let gate = rpc_netty::NettyBuilder::new()
    ///     .outer("0.0.0.0:7000") // players
    ///     .bind("10.0.0.5:7100") // the other servers
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn outer(mut self, address: impl ToAddress) -> Self {
        self.outer = Some(address.to_address());
        self
    }

    /// Players on the outer listener prove `secret`, not the one the rest of the service uses
    /// ([`shared_secret`](NettyBuilder::shared_secret)): the servers' secret stays among them.
    pub fn outer_shared_secret(mut self, secret: impl Into<Vec<u8>>) -> Self {
        self.outer_auth.secret = Some(Some(auth::Secret::new(secret)));
        self
    }

    /// The outer listener asks players for no shared secret, while the inner listener and the
    /// connections this service opens keep [`shared_secret`](NettyBuilder::shared_secret):
    /// players prove who they are by logging in (and, with [`outer_tls`](NettyBuilder::outer_tls),
    /// talk to the service over TLS).
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), rpc_core::RpcError> {
    /// let gate = rpc_netty::NettyBuilder::new()
    ///     .shared_secret("the servers' secret") // inner network, and calls to the Maps
    ///     .outer("0.0.0.0:7000")
    ///     .outer_without_secret() // players
    ///     .bind("10.0.0.5:7100")
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn outer_without_secret(mut self) -> Self {
        self.outer_auth.secret = Some(None);
        self
    }

    /// The outer listener serves TLS with `options`' identity (cargo feature `tls`), whatever
    /// the rest of the service uses. Fails if a certificate or key is unusable.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn outer_tls(mut self, options: tls::TlsOptions) -> Result<Self, RpcError> {
        let tls = tls::Tls::new(options)
            .map_err(|error| RpcError::io("invalid TLS configuration (outer)", error))?;
        self.outer_auth.tls = Some(Some(tls));
        Ok(self)
    }

    /// Runs the transport over turmoil's simulated TCP instead of the operating system's
    /// (cargo feature `sim`): build the service inside a turmoil host, and its listeners and
    /// connections are the simulation's, so a test can partition, delay, hold and release
    /// links and crash hosts, deterministically under the simulation's seed. Addresses may
    /// name simulated hosts (`"server:7000"`). Everything else (handshake, secret, frames,
    /// keep-alive) is the real code.
    #[cfg(feature = "sim")]
    #[cfg_attr(docsrs, doc(cfg(feature = "sim")))]
    pub fn simulated(mut self) -> Self {
        self.config.simulated = true;
        self
    }

    /// A service listening on `address` (and on the [`outer`](NettyBuilder::outer) address,
    /// if one was given); [`RpcError::Io`] if it cannot listen there.
    pub async fn bind(self, address: impl ToAddress) -> Result<RpcService, RpcError> {
        let address = address.to_address();
        let simulated = self.config.simulated;
        let listener = net::bind(&address, simulated)
            .await
            .map_err(|error| RpcError::io(format!("cannot listen on {address}"), error))?;
        let outer = match &self.outer {
            Some(outer) => Some(net::bind(outer, simulated).await.map_err(|error| {
                RpcError::io(
                    format!("cannot listen on {outer} (the outer listener)"),
                    error,
                )
            })?),
            None => None,
        };
        Ok(self.serve_both(listener, outer))
    }

    /// A service accepting connections on an already bound `listener` (the inner network:
    /// every gateway is served there).
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn serve(self, listener: tokio::net::TcpListener) -> RpcService {
        self.serve_both(net::Listener::Tcp(listener), None)
    }

    fn serve_both(self, listener: net::Listener, outer: Option<net::Listener>) -> RpcService {
        let config = self.config;
        let outer = outer.map(|outer| (outer, self.outer_auth));
        self.service.build_with_transport(|handle| {
            NettyTransport::new(handle, config, Some(listener), outer)
        })
    }

    /// A service that only connects out.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn client(self) -> RpcService {
        let config = self.config;
        self.service
            .build_with_transport(|handle| NettyTransport::new(handle, config, None, None))
    }
}
