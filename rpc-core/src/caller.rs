//! [`Caller`]: who made the call a handler is running.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::session::{Session, SessionCell};
use crate::transport::{Carrier, Network};

/// Who made the call a handler is running, from [`CallContext::caller`](crate::CallContext::caller).
///
/// A handler learns here whether the call came from another process, which address it came
/// from, and what that peer proved (the shared secret, a TLS client certificate). The address
/// is the peer's outbound socket: a handler that must call its caller back (a resource
/// manager reaching a task executor that registered) takes the host from it, but still needs
/// the port the caller listens on, which the caller has to send.
///
/// ```
/// use rpc_core::{CallContext, Caller, RpcEndpoint, RpcService, rpc_gateway};
///
/// #[rpc_gateway]
/// pub trait Admin {
///     async fn who(&mut self) -> String;
/// }
///
/// struct Console;
/// impl RpcEndpoint for Console { rpc_core::serves!(Admin); }
/// impl Admin for Console {
///     async fn who(&mut self) -> String {
///         match CallContext::current().caller() {
///             Caller::Remote(peer) if !peer.is_authenticated() => format!("{peer}, unproven"),
///             Caller::Remote(peer) => format!("{peer}"),
///             Caller::Local => "this process".to_owned(),
///             _ => "a direct call".to_owned(), // `Caller::Direct`, and any later variant
///         }
///     }
/// }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), rpc_core::RpcError> {
/// let service = RpcService::new();
/// service.start_endpoint("console", Console).await?;
/// let console: AdminClient = service.gateway("console")?;
/// assert_eq!(console.who().await?, "this process");
/// assert_eq!(Console.who().await, "a direct call"); // as a unit test calls it
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Caller {
    /// The method was called directly, not through the framework: a unit test, or code that
    /// holds the endpoint value.
    Direct,
    /// A proxy in this process.
    Local,
    /// A proxy in another process, over a connection from this peer.
    Remote(Arc<Peer>),
    /// A player, whose call a Gate's relay forwarded: `via` is the Gate's connection,
    /// `session` the player's session there (see [`RpcService::start_relay`](crate::RpcService::start_relay)).
    Relayed {
        /// The connection from the relaying Gate.
        via: Arc<Peer>,
        /// The player's session on that Gate.
        session: Arc<Session>,
    },
}

impl Caller {
    /// The remote peer, for a call that came over a connection.
    pub fn peer(&self) -> Option<&Peer> {
        match self {
            Caller::Remote(peer) | Caller::Relayed { via: peer, .. } => Some(peer),
            Caller::Direct | Caller::Local => None,
        }
    }

    /// The player's session, for a call a Gate relayed.
    pub fn session(&self) -> Option<&Session> {
        match self {
            Caller::Relayed { session, .. } => Some(session),
            _ => None,
        }
    }
}

impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Caller::Direct => f.write_str("a direct call"),
            Caller::Local => f.write_str("a proxy in this process"),
            Caller::Remote(peer) => write!(f, "{peer}"),
            Caller::Relayed { via, session } => write!(f, "{session}, relayed by {via}"),
        }
    }
}

/// The other end of a connection, as its handshake established it.
///
/// A handler reads it from [`Caller::peer`]; a transport makes it, and a unit test may make
/// one to call a handler or hook that takes it:
///
/// ```
/// use rpc_core::Peer;
///
/// let peer = Peer::new("10.0.0.7:41000".parse().unwrap()).with_shared_secret(true);
/// assert!(peer.is_authenticated());
/// assert_eq!(peer.address.port(), 41000);
/// assert_eq!(peer.to_string(), "peer 10.0.0.7:41000 (shared secret)");
///
/// // Over TLS, without a client certificate: encrypted, but the client proved nothing.
/// let peer = Peer::new("10.0.0.8:41000".parse().unwrap()).with_tls(true);
/// assert!(peer.is_encrypted() && !peer.is_authenticated());
/// assert_eq!(peer.to_string(), "peer 10.0.0.8:41000 (TLS)");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Peer {
    /// The peer's address (its outbound socket: to call it back, it must also listen and tell
    /// you where, or be reached through the connection it opened).
    pub address: SocketAddr,
    /// Whether the peer proved it holds the service's shared secret.
    pub shared_secret: bool,
    /// The peer's TLS client certificate (DER), when the service requires client certificates.
    pub certificate: Option<Arc<[u8]>>,
    /// Whether the connection runs over TLS.
    pub tls: bool,
    /// For calls a server makes back to this (non-listening) service over the connection
    /// it opened: that connection, so that references to this service's endpoints in the
    /// replies name it.
    pub(crate) replies_over: RepliesOver,
    /// The player session a Gate's login opened on this connection.
    pub(crate) session: SessionCell,
    /// The network of the listener the connection came in on (`Inner` for outbound ones).
    pub(crate) network: Network,
}

/// The connection a non-listening service's replies travel over (see [`Peer::with_carrier`]);
/// it takes no part in comparing or showing a peer.
#[derive(Clone, Default)]
pub(crate) struct RepliesOver(pub(crate) Option<Arc<dyn Carrier>>);

impl PartialEq for RepliesOver {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for RepliesOver {}

impl fmt::Debug for RepliesOver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() { "Some(..)" } else { "None" })
    }
}

impl Peer {
    /// A peer at `address` that proved nothing about itself.
    pub fn new(address: SocketAddr) -> Peer {
        Peer {
            address,
            shared_secret: false,
            certificate: None,
            tls: false,
            replies_over: RepliesOver::default(),
            session: SessionCell::default(),
            network: Network::Inner,
        }
    }

    /// This peer, connected to a listener of `network` (for a transport).
    pub fn with_network(mut self, network: Network) -> Peer {
        self.network = network;
        self
    }

    /// The network of the listener the connection came in on.
    pub fn network(&self) -> Network {
        self.network
    }

    /// Opens the player session of this connection (a Gate's login handler, once it has
    /// checked who the player is): every call a relay forwards for this connection from now
    /// on carries it. A connection has at most one session: opening a second one fails with
    /// the session it has.
    ///
    /// ```
    /// use rpc_core::Peer;
    ///
    /// let peer = Peer::new("10.0.0.9:50000".parse().unwrap());
    /// let session = peer.open_session("player-7").unwrap();
    /// assert_eq!(peer.session().map(|s| s.identity()), Some("player-7"));
    /// assert_eq!(peer.session(), Some(&session));
    /// assert!(peer.open_session("player-8").is_err());
    /// ```
    pub fn open_session(&self, identity: impl Into<String>) -> Result<Session, Session> {
        let session = Arc::new(Session::new(identity));
        match self.session.0.set(Arc::clone(&session)) {
            Ok(()) => Ok(Session::clone(&session)),
            Err(_) => Err(self
                .session()
                .cloned()
                .unwrap_or_else(|| Session::clone(&session))),
        }
    }

    /// The player session opened on this connection, if one was.
    pub fn session(&self) -> Option<&Session> {
        self.session.0.get().map(|session| &**session)
    }

    pub(crate) fn session_arc(&self) -> Option<Arc<Session>> {
        self.session.0.get().cloned()
    }

    /// This peer, calling this service (which does not listen) back over the connection
    /// `carrier` (for a transport): references to this service's endpoints in the replies
    /// and stream items it gets name that connection, so it can call them too.
    pub fn with_carrier(mut self, carrier: Arc<dyn Carrier>) -> Peer {
        self.replies_over = RepliesOver(Some(carrier));
        self
    }

    /// This peer, having proved it holds the shared secret.
    pub fn with_shared_secret(mut self, proved: bool) -> Peer {
        self.shared_secret = proved;
        self
    }

    /// This peer, with the TLS client certificate it presented.
    pub fn with_certificate(mut self, certificate: Option<Arc<[u8]>>) -> Peer {
        self.certificate = certificate;
        self
    }

    /// This peer, on a connection that runs over TLS or not.
    pub fn with_tls(mut self, tls: bool) -> Peer {
        self.tls = tls;
        self
    }

    /// Whether the peer proved anything: the shared secret or a client certificate.
    pub fn is_authenticated(&self) -> bool {
        self.shared_secret || self.certificate.is_some()
    }

    /// Whether the connection's traffic is encrypted: it runs over TLS, or in the channel the
    /// shared secret keys.
    pub fn is_encrypted(&self) -> bool {
        self.tls || self.shared_secret
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "peer {}", self.address)?;
        let facts = [
            (self.tls, "TLS"),
            (self.shared_secret, "shared secret"),
            (self.certificate.is_some(), "client certificate"),
        ];
        let mut facts = facts
            .iter()
            .filter(|(holds, _)| *holds)
            .map(|(_, fact)| fact);
        if let Some(first) = facts.next() {
            write!(f, " ({first}")?;
            facts.try_for_each(|fact| write!(f, ", {fact}"))?;
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// A connection of this service's transport, as the endpoints' connection hooks see it.
///
/// ```
/// use std::net::SocketAddr;
/// use rpc_core::{Connection, Direction, Peer, RpcEndpoint};
///
/// /// Keeps the peers connected to this service (not those it connected to).
/// #[derive(Default)]
/// struct Clients(Vec<SocketAddr>);
///
/// impl RpcEndpoint for Clients {
///     fn on_connected(&mut self, connection: &Connection) {
///         if connection.direction == Direction::Inbound {
///             self.0.push(connection.peer.address);
///         }
///     }
///     fn on_disconnected(&mut self, connection: &Connection) {
///         self.0.retain(|address| *address != connection.peer.address);
///     }
/// }
///
/// // Hooks are ordinary methods: a unit test calls them with connections it makes.
/// let address: SocketAddr = "10.0.0.7:41000".parse().unwrap();
/// let inbound = Connection::new(Peer::new(address), Direction::Inbound);
/// let mut clients = Clients::default();
/// clients.on_connected(&inbound);
/// clients.on_connected(&Connection::new(Peer::new(address), Direction::Outbound));
/// assert_eq!(clients.0, [address]);
/// assert_eq!(inbound.to_string(), "inbound connection from peer 10.0.0.7:41000");
/// clients.on_disconnected(&inbound);
/// assert!(clients.0.is_empty());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Connection {
    /// The other end. For an outbound connection this is the server connected to (its
    /// `shared_secret` says whether the handshake used the service's secret; no
    /// `certificate` is recorded).
    pub peer: Arc<Peer>,
    /// Who opened it.
    pub direction: Direction,
}

impl Connection {
    /// A connection to or from `peer`.
    pub fn new(peer: Peer, direction: Direction) -> Connection {
        Connection {
            peer: Arc::new(peer),
            direction,
        }
    }
}

impl fmt::Display for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.direction {
            Direction::Inbound => write!(f, "inbound connection from {}", self.peer),
            Direction::Outbound => write!(f, "outbound connection to {}", self.peer),
        }
    }
}

/// Who opened a connection: [`Connection::direction`] (see [`Connection`] for a hook that
/// tells them apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// A peer connected to this service.
    Inbound,
    /// This service connected to a peer (to call it).
    Outbound,
}
