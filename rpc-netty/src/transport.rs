//! [`NettyTransport`]: the listener and the connection pool, behind rpc-core's `Transport`.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::net::Listener as TcpListener;
use futures::future::BoxFuture;
use rpc_core::RpcError;
use rpc_core::transport::{Binding, Network, RemoteChannel, ServiceHandle, Transport};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admission::{self, Limits};
use crate::client::{self, Pool};
use crate::config::NettyConfig;
use crate::server;

/// The TCP transport of one service.
pub(crate) struct NettyTransport {
    local: Option<SocketAddr>,
    /// The outer listener's address, if there is one.
    outer: Option<SocketAddr>,
    pool: Arc<Pool>,
    /// Cancelled on shutdown: stops the listener and closes every connection.
    closing: CancellationToken,
    /// Every connection task, so that shutdown can wait for them.
    tasks: TaskTracker,
    /// Whether its sockets are simulated (names resolve in the simulation).
    simulated: bool,
}

impl NettyTransport {
    pub(crate) fn new(
        service: ServiceHandle,
        config: NettyConfig,
        listener: Option<TcpListener>,
        outer: Option<(TcpListener, crate::config::OuterAuth)>,
    ) -> NettyTransport {
        let mut config = config;
        if listener.is_some() {
            let files = admission::open_file_limit();
            let wanted = Limits {
                max_connections: config.max_connections,
                max_handshakes: config.max_handshakes,
                max_handshakes_per_address: config.max_handshakes_per_address,
            };
            let (limits, clamped) = admission::clamp(wanted, files);
            if clamped {
                tracing::warn!(
                    open_files = files,
                    "lowered max_connections from {} to {} and max_handshakes from {} to {} to \
                     fit the process's open-file limit (raise it with `ulimit -n`)",
                    wanted.max_connections,
                    limits.max_connections,
                    wanted.max_handshakes,
                    limits.max_handshakes
                );
            }
            config.max_connections = limits.max_connections;
            config.max_handshakes = limits.max_handshakes;
            config.max_handshakes_per_address = limits.max_handshakes_per_address;
        }
        let simulated = config.simulated;
        let config = Arc::new(config);
        let closing = CancellationToken::new();
        let tasks = TaskTracker::new();
        let local = listener.as_ref().and_then(|l| l.local_addr().ok());
        if let Some(listener) = listener {
            if let Some(address) = local {
                tracing::info!(%address, "listening");
            }
            tasks.spawn(server::accept(
                listener,
                Network::Inner,
                service.clone(),
                Arc::clone(&config),
                closing.clone(),
                tasks.clone(),
            ));
        }
        let outer_address = outer.as_ref().and_then(|(l, _)| l.local_addr().ok());
        if let Some((outer, auth)) = outer {
            if let Some(address) = outer_address {
                tracing::info!(%address, "listening (outer network)");
            }
            tasks.spawn(server::accept(
                outer,
                Network::Outer,
                service.clone(),
                Arc::new(auth.apply(&config)),
                closing.clone(),
                tasks.clone(),
            ));
        }
        let pool = Arc::new(Pool::new(
            service,
            config,
            closing.clone(),
            tasks.clone(),
            local.is_some(),
        ));
        NettyTransport {
            local,
            outer: outer_address,
            pool,
            closing,
            tasks,
            simulated,
        }
    }
}

impl Transport for NettyTransport {
    fn local_address(&self) -> Option<SocketAddr> {
        self.local
    }

    fn outer_address(&self) -> Option<SocketAddr> {
        self.outer
    }

    fn resolve(&self, address: &str) -> BoxFuture<'static, Result<SocketAddr, RpcError>> {
        let address = address.to_owned();
        let simulated = self.simulated;
        Box::pin(async move {
            if let Ok(parsed) = address.parse() {
                return Ok(parsed);
            }
            let failed = |reason: String| RpcError::ConnectFailed {
                address: address.clone(),
                reason,
            };
            let found = crate::net::lookup(address.as_str(), simulated)
                .await
                .map_err(|e| failed(format!("cannot resolve the address: {e}")))?;
            found
                .into_iter()
                .next()
                .ok_or_else(|| failed("the address resolves to nothing".to_owned()))
        })
    }

    fn connect(
        &self,
        address: SocketAddr,
        binding: Binding,
    ) -> BoxFuture<'static, Result<Arc<dyn RemoteChannel>, RpcError>> {
        Box::pin(client::connect(Arc::clone(&self.pool), address, binding))
    }

    fn channel(
        &self,
        address: SocketAddr,
        binding: Binding,
    ) -> Result<Arc<dyn RemoteChannel>, RpcError> {
        Ok(client::channel(Arc::clone(&self.pool), address, binding))
    }

    fn connect_retry(&self) -> rpc_core::ConnectRetry {
        self.pool.config.connect_retry
    }

    fn shutdown(&self) -> BoxFuture<'static, ()> {
        self.closing.cancel();
        self.tasks.close();
        let tasks = self.tasks.clone();
        Box::pin(async move { tasks.wait().await })
    }
}
