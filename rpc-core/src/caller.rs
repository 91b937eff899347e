//! [`Caller`]: who made the call a handler is running.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

/// Who made the call a handler is running, from [`CallContext::caller`](crate::CallContext::caller).
///
/// A handler that must call its caller back (a resource manager reaching a task executor that
/// registered) reads the peer's address here instead of asking for it as an argument.
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
}

impl Caller {
    /// The remote peer, for a call that came over a connection.
    pub fn peer(&self) -> Option<&Peer> {
        match self {
            Caller::Remote(peer) => Some(peer),
            Caller::Direct | Caller::Local => None,
        }
    }
}

impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Caller::Direct => f.write_str("a direct call"),
            Caller::Local => f.write_str("a proxy in this process"),
            Caller::Remote(peer) => write!(f, "{peer}"),
        }
    }
}

/// The other end of an inbound connection, as its handshake established it.
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
}

impl Peer {
    /// A peer at `address` that proved nothing about itself.
    pub fn new(address: SocketAddr) -> Peer {
        Peer {
            address,
            shared_secret: false,
            certificate: None,
        }
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

    /// Whether the peer proved anything: the shared secret or a client certificate.
    pub fn is_authenticated(&self) -> bool {
        self.shared_secret || self.certificate.is_some()
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "peer {}", self.address)?;
        match (self.shared_secret, &self.certificate) {
            (true, Some(_)) => f.write_str(" (shared secret, client certificate)"),
            (true, None) => f.write_str(" (shared secret)"),
            (false, Some(_)) => f.write_str(" (client certificate)"),
            (false, None) => Ok(()),
        }
    }
}

/// A connection of this service's transport, as the endpoints' connection hooks see it.
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

/// Who opened a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// A peer connected to this service.
    Inbound,
    /// This service connected to a peer (to call it).
    Outbound,
}
