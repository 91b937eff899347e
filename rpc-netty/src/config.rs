//! Transport settings.

use std::time::Duration;

use crate::auth::Secret;
use crate::frame::DEFAULT_MAX_FRAME;
use crate::session::Keepalive;

/// Settings of one service's transport.
#[derive(Debug, Clone)]
pub(crate) struct NettyConfig {
    /// The largest frame length accepted or sent (the length field's value).
    pub(crate) max_frame_size: usize,
    /// How long opening a TCP connection may take.
    pub(crate) connect_timeout: Duration,
    /// How `connect` retries a peer it cannot reach.
    pub(crate) connect_retry: rpc_core::ConnectRetry,
    /// How long an inbound connection may take from accept to authenticated, TLS included.
    pub(crate) handshake_timeout: Duration,
    /// A connection quiet for this long is probed with a `Ping`.
    pub(crate) keepalive_interval: Duration,
    /// A connection quiet for this long (pings unanswered) is closed as dead.
    pub(crate) keepalive_timeout: Duration,
    /// A connection with no call for this long is closed, by either side (a client's next call
    /// reopens it).
    pub(crate) idle_timeout: Option<Duration>,
    /// Requests one connection may have unanswered: a server stops reading beyond it, a
    /// client refuses further asks.
    pub(crate) max_in_flight: usize,
    /// Bytes that may wait in one connection's outbox before calls are refused (a server
    /// also stops reading while its outbox is this full).
    pub(crate) max_outbox_bytes: usize,
    /// Bytes of one inbound connection's invocations that may wait in mailboxes before the
    /// server stops reading it.
    pub(crate) max_backlog_bytes: usize,
    /// Established inbound connections a server keeps open at once; more are closed on
    /// accept.
    pub(crate) max_connections: usize,
    /// Inbound connections in their handshake at once; a new one evicts the oldest.
    pub(crate) max_handshakes: usize,
    /// Inbound connections in their handshake at once from one IP address; a new one evicts
    /// that address's oldest.
    pub(crate) max_handshakes_per_address: usize,
    /// How long closing a connection waits for its queued frames to be written.
    pub(crate) linger: Duration,
    /// The shared secret both sides must prove they know, if authentication is on.
    pub(crate) secret: Option<Secret>,
    /// Whether the sockets are turmoil's simulated ones (feature `sim`).
    pub(crate) simulated: bool,
    /// TLS, if configured.
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<crate::tls::Tls>,
}

impl Default for NettyConfig {
    fn default() -> Self {
        NettyConfig {
            max_frame_size: DEFAULT_MAX_FRAME,
            connect_timeout: Duration::from_secs(5),
            connect_retry: rpc_core::ConnectRetry::none(),
            handshake_timeout: Duration::from_secs(3),
            keepalive_interval: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(30),
            idle_timeout: Some(Duration::from_secs(300)),
            max_in_flight: 1024,
            max_outbox_bytes: 4 * DEFAULT_MAX_FRAME,
            max_backlog_bytes: DEFAULT_MAX_FRAME,
            max_connections: 10_000,
            max_handshakes: 1024,
            max_handshakes_per_address: 1024,
            linger: Duration::from_secs(5),
            secret: None,
            simulated: false,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }
}

impl NettyConfig {
    /// Whether every connection runs over TLS.
    pub(crate) fn uses_tls(&self) -> bool {
        #[cfg(feature = "tls")]
        return self.tls.is_some();
        #[cfg(not(feature = "tls"))]
        false
    }

    /// Keep-alive state for a connection established now.
    pub(crate) fn keepalive(&self) -> Keepalive {
        Keepalive::new(
            tokio::time::Instant::now(),
            self.keepalive_interval,
            self.keepalive_timeout,
            self.idle_timeout,
        )
    }
}

/// How the outer listener authenticates players, where it differs from the rest of the
/// service (which the inner listener and outbound connections use).
#[derive(Debug, Clone, Default)]
pub(crate) struct OuterAuth {
    /// `Some(None)`: no secret on the outer listener; `Some(Some(s))`: players prove `s`.
    pub(crate) secret: Option<Option<Secret>>,
    /// `Some(None)`: no TLS on the outer listener; `Some(Some(t))`: TLS with `t`'s identity.
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<Option<crate::tls::Tls>>,
}

impl OuterAuth {
    /// The outer listener's settings: the service's, with these differences.
    pub(crate) fn apply(&self, config: &NettyConfig) -> NettyConfig {
        let mut outer = config.clone();
        if let Some(secret) = &self.secret {
            outer.secret = secret.clone();
        }
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            outer.tls = tls.clone();
        }
        outer
    }
}
