//! High availability for rpc services (Flink's leader election and leader retrieval): one of
//! several contenders leads at a time, its leadership carries a fresh [`FencingId`], and
//! callers follow whoever leads with a fenced proxy, so that a deposed leader that still runs
//! is not obeyed.
//!
//! The framework never elects leaders itself: a [`Coordinator`] does, on a coordination
//! service. `etcd::EtcdCoordinator` (cargo feature `etcd`) uses etcd's election API with a
//! lease; [`memory::MemoryCoordinator`] is the in-process implementation for unit tests.
//!
//! - A contender runs a [`LeaderElection`]: it campaigns, and reports
//!   [`LeadershipEvent::Granted`] with its new token when it wins and
//!   [`LeadershipEvent::Revoked`] when it loses the leadership (its lease expired: it was cut
//!   off from the coordination service). The endpoint sets the token as its fencing token.
//! - A caller runs a [`LeaderRetrieval`]: every change of leader, as [`LeaderInfo`] (address,
//!   endpoint name, token).
//! - [`LeaderGateway`] keeps a fenced proxy pointed at the current leader, reconnecting with the
//!   new token on every change, so user code just calls it.
//!
//! ```
//! use std::sync::Arc;
//! use rpc_ha::{LeaderElection, LeaderRetrieval, LeadershipEvent, memory::MemoryCoordinator};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let coordinator = Arc::new(MemoryCoordinator::default());
//! let mut election = LeaderElection::start(coordinator.clone(), "resource-manager", "10.0.0.5:6123", "rm");
//! let mut leaders = LeaderRetrieval::start(coordinator, "resource-manager");
//! let Some(LeadershipEvent::Granted(info)) = election.next().await else { unreachable!() };
//! assert_eq!(leaders.changed().await.as_ref(), Some(&info));
//! # election.stop().await;
//! # }
//! ```

#![warn(missing_docs, missing_debug_implementations)]
#![cfg_attr(docsrs, feature(doc_cfg))]

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use rpc_core::{FencedEndpoint, FencingId, RpcContext};
use serde::{Deserialize, Serialize};

#[cfg(feature = "etcd")]
#[cfg_attr(docsrs, doc(cfg(feature = "etcd")))]
pub mod etcd;
mod follow;
mod location;
pub mod memory;

pub use follow::LeaderGateway;
pub use location::{ActorLocation, LocationService, Locations, MemoryLocations};

/// What a leadership publishes: where the leader is reached and the token its calls carry.
///
/// ```
/// use rpc_core::FencingId;
/// use rpc_ha::{HaError, LeaderInfo};
///
/// let info = LeaderInfo {
///     address: "10.0.0.5:6123".to_owned(),
///     endpoint: "resource-manager".to_owned(),
///     token: FencingId::random(),
/// };
/// // What a coordination service stores, and reads back.
/// assert_eq!(LeaderInfo::from_bytes(&info.to_bytes()).unwrap(), info);
/// assert!(matches!(LeaderInfo::from_bytes(&[0xff]), Err(HaError::Malformed(_))));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderInfo {
    /// The leader's service address (`host:port`), for `connect_fenced`.
    pub address: String,
    /// The leading endpoint's name.
    pub endpoint: String,
    /// The fencing token of this leadership: new each time a contender wins.
    pub token: FencingId,
}

impl LeaderInfo {
    /// The record a coordination service stores.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Strings and bytes always encode.
        postcard::to_allocvec(self).unwrap_or_default()
    }

    /// The leader a stored record names.
    pub fn from_bytes(bytes: &[u8]) -> Result<LeaderInfo, HaError> {
        postcard::from_bytes(bytes).map_err(|e| HaError::Malformed(e.to_string()))
    }
}

/// Why the coordination service could not do what was asked.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum HaError {
    /// It could not be reached, or failed the request.
    #[error("the coordination service is unavailable: {0}")]
    Unavailable(String),
    /// A leader record that is not one this crate wrote.
    #[error("a malformed leader record: {0}")]
    Malformed(String),
}

/// A coordination service that elects one leader per election name.
///
/// [`LeaderElection`] and [`LeaderRetrieval`] are written against it, so that code which
/// takes an `Arc<dyn Coordinator>` runs on etcd in production and on a
/// [`MemoryCoordinator`](memory::MemoryCoordinator) in its tests. Used directly:
///
/// ```
/// use futures::StreamExt;
/// use rpc_core::FencingId;
/// use rpc_ha::{Coordinator, HaError, LeaderInfo, memory::MemoryCoordinator};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), HaError> {
/// let coordinator = MemoryCoordinator::default();
/// let me = LeaderInfo {
///     address: "10.0.0.5:6123".to_owned(),
///     endpoint: "rm".to_owned(),
///     token: FencingId::random(),
/// };
/// let leadership = coordinator.campaign("rm", &me).await?; // completes once elected
/// let mut leaders = coordinator.observe("rm").await?;
/// assert_eq!(leaders.next().await.transpose()?, Some(me));
/// leadership.resign().await; // the next contender, if any, leads at once
/// # Ok(()) }
/// ```
pub trait Coordinator: Send + Sync + 'static {
    /// Campaigns for `election`, publishing `info`; completes once elected (which may take as
    /// long as another contender leads).
    fn campaign<'a>(
        &'a self,
        election: &'a str,
        info: &'a LeaderInfo,
    ) -> BoxFuture<'a, Result<Box<dyn Leadership>, HaError>>;

    /// The leaders of `election` from now on, starting with the current one if there is one.
    /// The stream ends or fails when the service is lost; [`LeaderRetrieval`] observes again.
    fn observe<'a>(
        &'a self,
        election: &'a str,
    ) -> BoxFuture<'a, Result<BoxStream<'static, Result<LeaderInfo, HaError>>, HaError>>;
}

/// A leadership won by a [`Coordinator::campaign`].
pub trait Leadership: Send + Sync {
    /// Completes, with the reason, when the leadership is lost (its session expired).
    fn lost(&self) -> BoxFuture<'_, String>;

    /// Gives the leadership up, so that another contender wins at once.
    fn resign(self: Box<Self>) -> BoxFuture<'static, ()>;
}

/// A change of a contender's leadership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeadershipEvent {
    /// It leads, under this record (with the new token).
    Granted(LeaderInfo),
    /// It no longer leads, for this reason: stop acting as leader (set no token).
    Revoked(String),
}

/// How long a contender waits before campaigning again after the service failed.
const RETRY: Duration = Duration::from_millis(200);

/// A contender for one leadership: campaigns until it wins, reports the win, and campaigns
/// again once it has lost, until stopped. Each win comes with a fresh token.
///
/// A contending endpoint applies each change to its fencing token with
/// [`LeaderElection::apply`], so that it serves its fenced gateways only while it leads:
///
/// ```
/// use std::sync::Arc;
/// use rpc_core::{FencedEndpoint, FencingId, RpcEndpoint, RpcService, rpc_gateway};
/// use rpc_ha::{LeaderElection, LeadershipEvent, memory::MemoryCoordinator};
///
/// #[rpc_gateway(fenced)]
/// pub trait ResourceManager {
///     async fn register(&mut self, executor: String) -> bool;
/// }
///
/// struct Rm;
/// impl RpcEndpoint for Rm { rpc_core::serves!(ResourceManager); }
/// impl FencedEndpoint for Rm { type Token = FencingId; }
/// impl ResourceManager for Rm {
///     async fn register(&mut self, _executor: String) -> bool { true }
/// }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), rpc_core::RpcError> {
/// let coordinator = Arc::new(MemoryCoordinator::default());
/// let service = RpcService::new(); // rpc_netty::bind(..) in a real deployment
/// let ctx = service.start_endpoint("rm", Rm).await?;
/// let mut election = LeaderElection::start(coordinator.clone(), "rm", "10.0.0.5:6123", "rm");
///
/// let Some(LeadershipEvent::Granted(info)) = election.apply(&ctx).await else { unreachable!() };
/// assert_eq!(ctx.fencing_token(), Some(info.token));
/// coordinator.expire("rm"); // its session ends, as when cut off from the coordination service
/// assert!(matches!(election.apply(&ctx).await, Some(LeadershipEvent::Revoked(_))));
/// assert_eq!(ctx.fencing_token(), None);
/// election.stop().await;
/// # Ok(()) }
/// ```
pub struct LeaderElection {
    events: tokio::sync::mpsc::UnboundedReceiver<LeadershipEvent>,
    stop: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl LeaderElection {
    /// Starts campaigning for `election` as the endpoint `endpoint` of the service at
    /// `address`.
    pub fn start(
        coordinator: Arc<dyn Coordinator>,
        election: impl Into<String>,
        address: impl Into<String>,
        endpoint: impl Into<String>,
    ) -> LeaderElection {
        let (sender, events) = tokio::sync::mpsc::unbounded_channel();
        let stop = tokio_util::sync::CancellationToken::new();
        let (election, address, endpoint) = (election.into(), address.into(), endpoint.into());
        let task = tokio::spawn(contend(
            coordinator,
            election,
            address,
            endpoint,
            sender,
            stop.clone(),
        ));
        LeaderElection { events, stop, task }
    }

    /// The next change of leadership; `None` once stopped.
    pub async fn next(&mut self) -> Option<LeadershipEvent> {
        self.events.recv().await
    }

    /// The next change of leadership, applied to endpoint `ctx` first: its fencing token
    /// becomes the granted one, or none when revoked (set on its main thread, whatever the
    /// token was: `call_async_unfenced`). Returns the event, for the endpoint to act on as
    /// well; `None` once stopped.
    pub async fn apply<E>(&mut self, ctx: &RpcContext<E>) -> Option<LeadershipEvent>
    where
        E: FencedEndpoint,
        E::Token: From<FencingId>,
    {
        let event = self.next().await?;
        let token = match &event {
            LeadershipEvent::Granted(info) => Some(E::Token::from(info.token)),
            LeadershipEvent::Revoked(_) => None,
        };
        let endpoint = ctx.clone();
        let set = ctx.call_async_unfenced(move |_| endpoint.set_fencing_token(token));
        match set.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) | Err(error) => {
                tracing::warn!(
                    endpoint = ctx.name(),
                    "cannot apply the leadership: {error}"
                );
            }
        }
        Some(event)
    }

    /// Stops campaigning; a leadership held is resigned, so that another contender takes
    /// over at once.
    pub async fn stop(mut self) {
        self.stop.cancel();
        let _ = (&mut self.task).await;
    }
}

/// Dropped without [`LeaderElection::stop`], a contender walks away as a crashed process
/// would: it stops renewing, and a leadership it held ends when its session expires.
impl Drop for LeaderElection {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn contend(
    coordinator: Arc<dyn Coordinator>,
    election: String,
    address: String,
    endpoint: String,
    events: tokio::sync::mpsc::UnboundedSender<LeadershipEvent>,
    stop: tokio_util::sync::CancellationToken,
) {
    loop {
        let info = LeaderInfo {
            address: address.clone(),
            endpoint: endpoint.clone(),
            token: FencingId::random(),
        };
        let won = tokio::select! {
            won = coordinator.campaign(&election, &info) => won,
            () = stop.cancelled() => return,
        };
        let leadership = match won {
            Ok(leadership) => leadership,
            Err(error) => {
                tracing::warn!(%election, "campaigning failed, trying again: {error}");
                tokio::select! {
                    () = tokio::time::sleep(RETRY) => continue,
                    () = stop.cancelled() => return,
                }
            }
        };
        tracing::info!(%election, token = %info.token, "leadership granted");
        let _ = events.send(LeadershipEvent::Granted(info));
        let reason = tokio::select! {
            reason = leadership.lost() => reason,
            () = stop.cancelled() => {
                leadership.resign().await;
                return;
            }
        };
        tracing::warn!(%election, "leadership lost: {reason}");
        let _ = events.send(LeadershipEvent::Revoked(reason));
    }
}

/// Follows who leads one election: every change, from a coordination service observed again
/// whenever it fails.
///
/// ```
/// use std::sync::Arc;
/// use rpc_ha::{LeaderElection, LeaderRetrieval, memory::MemoryCoordinator};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let coordinator = Arc::new(MemoryCoordinator::default());
/// let mut first = LeaderElection::start(coordinator.clone(), "rm", "10.0.0.5:6123", "rm");
/// first.next().await; // it leads
/// let second = LeaderElection::start(coordinator.clone(), "rm", "10.0.0.6:6123", "rm");
///
/// let mut leaders = LeaderRetrieval::start(coordinator.clone(), "rm");
/// let leader = leaders.changed().await.map(|info| info.address);
/// assert_eq!(leader.as_deref(), Some("10.0.0.5:6123"));
/// coordinator.expire("rm"); // the standby takes over
/// let leader = leaders.changed().await.map(|info| info.address);
/// assert_eq!(leader.as_deref(), Some("10.0.0.6:6123"));
/// assert_eq!(leaders.current().map(|info| info.address), leader);
/// # second.stop().await;
/// # first.stop().await;
/// # }
/// ```
pub struct LeaderRetrieval {
    leader: tokio::sync::watch::Receiver<Option<LeaderInfo>>,
    task: tokio::task::JoinHandle<()>,
}

impl LeaderRetrieval {
    /// Starts following `election`.
    pub fn start(coordinator: Arc<dyn Coordinator>, election: impl Into<String>) -> Self {
        let (sender, leader) = tokio::sync::watch::channel(None);
        let task = tokio::spawn(retrieve(coordinator, election.into(), sender));
        LeaderRetrieval { leader, task }
    }

    /// The leader known now, if any.
    pub fn current(&self) -> Option<LeaderInfo> {
        self.leader.borrow().clone()
    }

    /// Waits for the next change of leader and returns it.
    pub async fn changed(&mut self) -> Option<LeaderInfo> {
        let _ = self.leader.changed().await;
        self.leader.borrow_and_update().clone()
    }

    /// A receiver of every change (`tokio::sync::watch`), for example for a
    /// [`LeaderGateway`].
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<Option<LeaderInfo>> {
        self.leader.clone()
    }
}

impl Drop for LeaderRetrieval {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn retrieve(
    coordinator: Arc<dyn Coordinator>,
    election: String,
    leader: tokio::sync::watch::Sender<Option<LeaderInfo>>,
) {
    use futures::StreamExt;
    loop {
        match coordinator.observe(&election).await {
            Ok(mut leaders) => {
                while let Some(next) = leaders.next().await {
                    match next {
                        Ok(info) => {
                            leader.send_if_modified(|known| {
                                let changed = known.as_ref() != Some(&info);
                                *known = Some(info);
                                changed
                            });
                        }
                        Err(error) => {
                            tracing::warn!(%election, "observing the leader failed: {error}");
                            break;
                        }
                    }
                }
            }
            Err(error) => tracing::warn!(%election, "cannot observe the leader: {error}"),
        }
        if leader.is_closed() {
            return;
        }
        tokio::time::sleep(RETRY).await;
    }
}

impl std::fmt::Debug for LeaderElection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaderElection")
            .field("stopped", &self.stop.is_cancelled())
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for LeaderRetrieval {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaderRetrieval")
            .field("leader", &*self.leader.borrow())
            .finish_non_exhaustive()
    }
}
