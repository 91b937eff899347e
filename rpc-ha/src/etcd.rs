//! [`EtcdCoordinator`]: leader election on etcd (3.4 or newer), through its election API.
//!
//! A contender holds a lease of `ttl` and keeps it alive (a keep-alive every third of the
//! TTL); it campaigns with its [`LeaderInfo`] as the value, attached to the lease. etcd makes
//! the oldest campaign of an election the leader. When the leader's process dies, or is cut
//! off from etcd, its lease expires within `ttl` and etcd deletes its key: the next contender
//! leads. The contender that was cut off learns it lost when it can no longer renew its lease
//! (`ttl` after its last successful renewal), so it steps down no later than the moment its
//! successor can be elected. Retrieval observes the election and yields each new leader.

use std::time::Duration;

use etcd_client::{Client, ConnectOptions, LeaderKey, ResignOptions};
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::location::{ActorLocation, LocationService};
use crate::{Coordinator, HaError, LeaderInfo, Leadership};

/// Elections on an etcd cluster.
///
/// Every contender and every follower of a deployment connects to the same cluster; the
/// TTL bounds how long a vanished leader keeps its leadership.
///
/// ```no_run
/// use std::sync::Arc;
/// use std::time::Duration;
/// use rpc_ha::etcd::EtcdCoordinator;
/// use rpc_ha::{Coordinator, LeaderElection, LeaderRetrieval};
///
/// # async fn demo() -> Result<(), rpc_ha::HaError> {
/// let etcd: Arc<dyn Coordinator> = Arc::new(
///     EtcdCoordinator::connect(&["10.0.0.2:2379", "10.0.0.3:2379"], Duration::from_secs(5)).await?,
/// );
/// // A contender, as the endpoint `rm` of the service at 10.0.0.5:6123 ...
/// let mut election = LeaderElection::start(etcd.clone(), "resource-manager", "10.0.0.5:6123", "rm");
/// // ... and, in a caller, who leads.
/// let mut leaders = LeaderRetrieval::start(etcd, "resource-manager");
/// println!("leader: {:?}", leaders.changed().await);
/// # election.stop().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct EtcdCoordinator {
    client: Client,
    ttl: Duration,
}

fn unavailable(error: etcd_client::Error) -> HaError {
    HaError::Unavailable(error.to_string())
}

impl EtcdCoordinator {
    /// Connects to the etcd cluster at `endpoints` (`"127.0.0.1:2379"`). Leaderships last
    /// `ttl` (whole seconds, at least one) after their holder's last contact with etcd.
    pub async fn connect(endpoints: &[&str], ttl: Duration) -> Result<Self, HaError> {
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            .with_timeout(ttl.max(Duration::from_secs(1)))
            .with_keep_alive(Duration::from_secs(1), Duration::from_secs(2));
        let client = Client::connect(endpoints, Some(options))
            .await
            .map_err(unavailable)?;
        Ok(EtcdCoordinator {
            client,
            ttl: Duration::from_secs(ttl.as_secs().max(1)),
        })
    }

    /// The lease TTL of leaderships.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }
}

impl Coordinator for EtcdCoordinator {
    fn campaign<'a>(
        &'a self,
        election: &'a str,
        info: &'a LeaderInfo,
    ) -> BoxFuture<'a, Result<Box<dyn Leadership>, HaError>> {
        async move {
            let mut client = self.client.clone();
            let ttl_secs = i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX);
            let lease = client
                .lease_grant(ttl_secs, None)
                .await
                .map_err(unavailable)?
                .id();
            // Keep the lease alive while campaigning and while leading.
            let lost = CancellationToken::new();
            // Stops renewing if the campaign is given up (this future dropped).
            let keeper = AbortOnDrop(tokio::spawn(keep_alive(
                self.client.clone(),
                lease,
                self.ttl,
                lost.clone(),
            )));
            let won = tokio::select! {
                won = client.campaign(election, info.to_bytes(), lease) => won,
                () = lost.cancelled() => {
                    return Err(HaError::Unavailable("the lease expired while campaigning".to_owned()));
                }
            };
            let key = match won {
                Ok(mut response) => response.take_leader(),
                Err(error) => {
                    drop(keeper);
                    let _ = client.lease_revoke(lease).await;
                    return Err(unavailable(error));
                }
            };
            let Some(key) = key else {
                return Err(HaError::Unavailable(
                    "etcd answered the campaign without a leader key".to_owned(),
                ));
            };
            Ok(Box::new(EtcdLeadership {
                client: self.client.clone(),
                key,
                lease,
                lost,
                keeper,
            }) as Box<dyn Leadership>)
        }
        .boxed()
    }

    fn observe<'a>(
        &'a self,
        election: &'a str,
    ) -> BoxFuture<'a, Result<BoxStream<'static, Result<LeaderInfo, HaError>>, HaError>> {
        async move {
            let mut client = self.client.clone();
            let stream = client.observe(election).await.map_err(unavailable)?;
            let leaders = stream
                .filter_map(|response| async move {
                    match response {
                        Ok(response) => response.kv().map(|kv| LeaderInfo::from_bytes(kv.value())),
                        Err(error) => Some(Err(unavailable(error))),
                    }
                })
                .boxed();
            Ok(leaders)
        }
        .boxed()
    }
}

/// Actor locations on an etcd cluster: one key per actor, `{prefix}{actor}`, whose value is
/// the [`ActorLocation`] record. Every host, caller and Gate of a deployment uses the same
/// cluster and prefix.
///
/// ```no_run
/// use std::sync::Arc;
/// use rpc_ha::Locations;
/// use rpc_ha::etcd::EtcdLocations;
///
/// # async fn demo() -> Result<(), rpc_ha::HaError> {
/// let etcd = EtcdLocations::connect(&["10.0.0.2:2379"], "/game/units/").await?;
/// let locations = Locations::new(Arc::new(etcd));
/// println!("unit 7: {:?}", locations.lookup(&7).await?);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct EtcdLocations {
    client: Client,
    prefix: String,
}

impl EtcdLocations {
    /// Connects to the etcd cluster at `endpoints`, keeping locations under `prefix`.
    pub async fn connect(endpoints: &[&str], prefix: impl Into<String>) -> Result<Self, HaError> {
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            .with_timeout(Duration::from_secs(5))
            .with_keep_alive(Duration::from_secs(1), Duration::from_secs(2));
        let client = Client::connect(endpoints, Some(options))
            .await
            .map_err(unavailable)?;
        Ok(EtcdLocations {
            client,
            prefix: prefix.into(),
        })
    }

    fn key(&self, actor: &str) -> String {
        format!("{}{actor}", self.prefix)
    }
}

impl LocationService for EtcdLocations {
    fn put<'a>(
        &'a self,
        actor: &'a str,
        location: &'a ActorLocation,
    ) -> BoxFuture<'a, Result<(), HaError>> {
        async move {
            let mut client = self.client.clone();
            client
                .put(self.key(actor), location.to_bytes(), None)
                .await
                .map_err(unavailable)?;
            Ok(())
        }
        .boxed()
    }

    fn get<'a>(&'a self, actor: &'a str) -> BoxFuture<'a, Result<Option<ActorLocation>, HaError>> {
        async move {
            let mut client = self.client.clone();
            let response = client
                .get(self.key(actor), None)
                .await
                .map_err(unavailable)?;
            response
                .kvs()
                .first()
                .map(|kv| ActorLocation::from_bytes(kv.value()))
                .transpose()
        }
        .boxed()
    }

    fn delete<'a>(&'a self, actor: &'a str) -> BoxFuture<'a, Result<(), HaError>> {
        async move {
            let mut client = self.client.clone();
            client
                .delete(self.key(actor), None)
                .await
                .map_err(unavailable)?;
            Ok(())
        }
        .boxed()
    }
}

impl std::fmt::Debug for EtcdLocations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdLocations")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// Renews `lease` every third of `ttl`, re-opening the keep-alive stream after an error, and
/// cancels `lost` once the lease cannot have survived: etcd reported it gone, or `ttl` passed
/// since the last renewal.
async fn keep_alive(client: Client, lease: i64, ttl: Duration, lost: CancellationToken) {
    let mut renewed = Instant::now();
    let period = ttl / 3;
    'reconnect: loop {
        if renewed.elapsed() >= ttl {
            break;
        }
        let mut client = client.clone();
        let opened = tokio::time::timeout(period, client.lease_keep_alive(lease)).await;
        let (mut keeper, mut responses) = match opened {
            Ok(Ok(pair)) => pair,
            _ => {
                tokio::time::sleep(period / 4).await;
                continue;
            }
        };
        loop {
            if keeper.keep_alive().await.is_err() {
                continue 'reconnect;
            }
            match tokio::time::timeout(period, responses.message()).await {
                Ok(Ok(Some(response))) if response.ttl() > 0 => renewed = Instant::now(),
                Ok(Ok(Some(_))) => {
                    tracing::warn!(lease, "etcd says the lease has expired");
                    lost.cancel();
                    return;
                }
                _ => continue 'reconnect,
            }
            if renewed.elapsed() >= ttl {
                break 'reconnect;
            }
            tokio::time::sleep_until(renewed + period).await;
        }
    }
    tracing::warn!(lease, "could not renew the lease within its TTL");
    lost.cancel();
}

/// Aborts the task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct EtcdLeadership {
    client: Client,
    key: LeaderKey,
    lease: i64,
    lost: CancellationToken,
    /// Renews the lease while the leadership lives.
    keeper: AbortOnDrop,
}

impl Leadership for EtcdLeadership {
    fn lost(&self) -> BoxFuture<'_, String> {
        async move {
            self.lost.cancelled().await;
            "its etcd lease expired (cut off from etcd, or too slow to renew it)".to_owned()
        }
        .boxed()
    }

    fn resign(self: Box<Self>) -> BoxFuture<'static, ()> {
        async move {
            let EtcdLeadership {
                mut client,
                key,
                lease,
                keeper,
                ..
            } = *self;
            drop(keeper);
            let _ = client
                .resign(Some(ResignOptions::new().with_leader(key)))
                .await;
            let _ = client.lease_revoke(lease).await;
        }
        .boxed()
    }
}

/// A local etcd server for tests and examples: the `etcd` binary (Debian package
/// `etcd-server`) as a child process on loopback ports of its own, with a temporary data
/// directory. Killed when dropped; [`LocalEtcd::restart`] brings it back with the same data.
///
/// ```no_run
/// use std::sync::Arc;
/// use std::time::Duration;
/// use rpc_ha::etcd::{EtcdCoordinator, LocalEtcd};
/// use rpc_ha::{LeaderElection, LeadershipEvent};
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// if !LocalEtcd::available() {
///     return Ok(()); // no `etcd` on the PATH: skip, as the tests do
/// }
/// let etcd = LocalEtcd::start().await?;
/// let coordinator = EtcdCoordinator::connect(&[etcd.client_address()], Duration::from_secs(2)).await?;
/// let mut election = LeaderElection::start(Arc::new(coordinator), "rm", "127.0.0.1:6123", "rm");
/// assert!(matches!(election.next().await, Some(LeadershipEvent::Granted(_))));
/// election.stop().await;
/// # Ok(()) }
/// ```
pub struct LocalEtcd {
    child: Option<tokio::process::Child>,
    client_address: String,
    peer_url: String,
    data: std::path::PathBuf,
}

impl LocalEtcd {
    /// Whether an `etcd` binary is on the `PATH`.
    pub fn available() -> bool {
        std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join("etcd").is_file()))
    }

    /// Starts a one-member etcd and waits (up to 20 s) until it accepts connections.
    pub async fn start() -> std::io::Result<LocalEtcd> {
        let data = std::env::temp_dir().join(format!(
            "rpc-ha-etcd-{}-{}",
            std::process::id(),
            free_port()?
        ));
        let _ = std::fs::remove_dir_all(&data);
        let mut etcd = LocalEtcd {
            child: None,
            client_address: format!("127.0.0.1:{}", free_port()?),
            peer_url: format!("http://127.0.0.1:{}", free_port()?),
            data,
        };
        etcd.launch().await?;
        Ok(etcd)
    }

    /// Where clients connect (`127.0.0.1:PORT`), for [`EtcdCoordinator::connect`].
    pub fn client_address(&self) -> &str {
        &self.client_address
    }

    async fn launch(&mut self) -> std::io::Result<()> {
        let client = format!("http://{}", self.client_address);
        let child = tokio::process::Command::new("etcd")
            .arg("--name=local")
            .arg(format!("--data-dir={}", self.data.display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={}", self.peer_url))
            .arg(format!("--initial-advertise-peer-urls={}", self.peer_url))
            .arg(format!("--initial-cluster=local={}", self.peer_url))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        self.child = Some(child);
        let ready = async {
            while tokio::net::TcpStream::connect(&self.client_address)
                .await
                .is_err()
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(20), ready)
            .await
            .map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "etcd did not accept connections within 20 s",
                )
            })
    }

    /// Kills etcd (SIGKILL) and waits until it has exited.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Starts it again on the same ports, with the same data.
    pub async fn restart(&mut self) -> std::io::Result<()> {
        self.kill().await;
        self.launch().await
    }
}

impl Drop for LocalEtcd {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl std::fmt::Debug for EtcdCoordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdCoordinator")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for LocalEtcd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalEtcd")
            .field("client_address", &self.client_address)
            .field("running", &self.child.is_some())
            .finish_non_exhaustive()
    }
}
