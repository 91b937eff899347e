//! [`LeaderGateway`]: a fenced proxy that follows the leader.

use std::sync::Mutex;

use rpc_core::{FencedGateway, FencingId, RpcError, RpcService};
use tokio::sync::watch;

use crate::LeaderInfo;

/// A fenced proxy to whoever leads: on every change of leader it connects to the new one
/// with the new token, so that calls go to the current leader and carry its token.
///
/// [`LeaderGateway::get`] returns the proxy to the current leader, waiting until one is known.
/// A call made through a proxy to a leader that was deposed meanwhile fails (with
/// `FencingTokenMismatch` if the old leader still runs, `Disconnected` or `ConnectFailed` if
/// it died); `get` again returns the proxy to its successor once retrieval has seen it.
///
/// ```
/// use std::sync::Arc;
/// use rpc_core::{FencedEndpoint, FencingId, RpcEndpoint, RpcError, rpc_gateway};
/// use rpc_ha::{LeaderElection, LeaderGateway, LeaderRetrieval, memory::MemoryCoordinator};
///
/// #[rpc_gateway(fenced)]
/// pub trait ResourceManager {
///     async fn register(&mut self, executor: String) -> String;
/// }
///
/// struct Rm;
/// impl RpcEndpoint for Rm { rpc_core::serves!(ResourceManager); }
/// impl FencedEndpoint for Rm { type Token = FencingId; }
/// impl ResourceManager for Rm {
///     async fn register(&mut self, executor: String) -> String { format!("{executor} registered") }
/// }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), RpcError> {
/// let coordinator = Arc::new(MemoryCoordinator::default());
/// // The contender: a server whose endpoint takes each leadership's token.
/// let server = rpc_netty::bind("127.0.0.1:0").await?;
/// let ctx = server.start_endpoint("rm", Rm).await?;
/// let address = server.local_address()?.to_string();
/// let mut election = LeaderElection::start(coordinator.clone(), "rm", address, "rm");
/// election.apply(&ctx).await; // its first leadership (a contender loops on this, in a task)
///
/// // A caller: follows the leader and calls it with its token.
/// let leaders = LeaderRetrieval::start(coordinator, "rm");
/// let rm: LeaderGateway<ResourceManagerClient> = LeaderGateway::new(rpc_netty::client(), leaders.subscribe());
/// assert_eq!(rm.get().await?.register("te-1".into()).await?, "te-1 registered");
/// assert_eq!(rm.get().await?.fencing_token(), ctx.fencing_token().as_ref());
/// # election.stop().await;
/// # Ok(()) }
/// ```
pub struct LeaderGateway<G> {
    service: RpcService,
    leaders: watch::Receiver<Option<LeaderInfo>>,
    current: Mutex<Option<(LeaderInfo, G)>>,
}

impl<G> LeaderGateway<G>
where
    G: FencedGateway,
    G::Token: From<FencingId>,
{
    /// Follows the leaders `leaders` yields (from [`LeaderRetrieval::subscribe`]), connecting
    /// from `service`.
    ///
    /// [`LeaderRetrieval::subscribe`]: crate::LeaderRetrieval::subscribe
    pub fn new(service: RpcService, leaders: watch::Receiver<Option<LeaderInfo>>) -> Self {
        LeaderGateway {
            service,
            leaders,
            current: Mutex::new(None),
        }
    }

    /// The leader calls go to now, if one is known.
    pub fn leader(&self) -> Option<LeaderInfo> {
        self.leaders.borrow().clone()
    }

    /// The proxy to the current leader, carrying its token: connected on the first call after
    /// each change of leader, and waiting while no leader is known.
    pub async fn get(&self) -> Result<G, RpcError> {
        let mut leaders = self.leaders.clone();
        let info = match leaders.wait_for(Option::is_some).await {
            Ok(info) => info.clone(),
            Err(_) => None,
        };
        let Some(info) = info else {
            return Err(RpcError::ConnectFailed {
                address: "the leader".to_owned(),
                reason: "leader retrieval has stopped".to_owned(),
            });
        };
        if let Some((known, proxy)) = &*self.lock() {
            if *known == info {
                return Ok(proxy.clone());
            }
        }
        let proxy: G = self
            .service
            .connect_fenced(&info.address, &info.endpoint, G::Token::from(info.token))
            .await?;
        *self.lock() = Some((info, proxy.clone()));
        Ok(proxy)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(LeaderInfo, G)>> {
        self.current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl<G> std::fmt::Debug for LeaderGateway<G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaderGateway")
            .field("leader", &*self.leaders.borrow())
            .finish_non_exhaustive()
    }
}
