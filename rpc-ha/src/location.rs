//! Actor-id addressing: endpoints registered under an actor id in a location service, and
//! proxies that follow an actor when it migrates.
//!
//! A server that hosts an actor (a game unit, a shard) starts it as an endpoint and records
//! where it lives with [`Locations::register`]; a caller gets a proxy for the actor id with
//! [`Locations::follow`], and a Gate relays players' calls to their actors with
//! [`Locations::router`]. A move is: the old host stops the actor's endpoint, the new host
//! starts it and registers it. A call that reaches the old place meanwhile is refused there
//! without running ([`RpcError::EndpointNotFound`] or [`RpcError::EndpointStopped`]) and is
//! sent again once the location service names the new place, until the call's deadline: a
//! call in flight during a move runs once, at the new place, or times out.
//!
//! [`EtcdLocations`](crate::etcd::EtcdLocations) keeps the locations on etcd (feature `etcd`);
//! [`MemoryLocations`] is the in-process implementation for unit tests.

use std::collections::HashMap;
use std::fmt::Display;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use futures::future::BoxFuture;
use rpc_core::{Hop, Incarnation, RouteRequest, RpcError, RpcService, Session, UnfencedGateway};
use serde::{Deserialize, Serialize};

use crate::HaError;

/// Where an actor lives: the endpoint `endpoint`, incarnation `incarnation`, of the service
/// at `address`.
///
/// ```
/// use rpc_ha::ActorLocation;
///
/// let at = ActorLocation::new("10.0.0.21:7000".parse().unwrap(), "unit-7", None);
/// assert_eq!(ActorLocation::from_bytes(&at.to_bytes()).unwrap(), at);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActorLocation {
    /// The hosting service's (inner) address.
    pub address: SocketAddr,
    /// The actor's endpoint there.
    pub endpoint: String,
    /// The endpoint's incarnation, so that a proxy never reaches a later one by mistake.
    incarnation: Option<[u8; 16]>,
}

impl ActorLocation {
    /// The location of endpoint `endpoint` (incarnation `incarnation`, if given) of the
    /// service at `address`.
    pub fn new(
        address: SocketAddr,
        endpoint: impl Into<String>,
        incarnation: Option<Incarnation>,
    ) -> ActorLocation {
        ActorLocation {
            address,
            endpoint: endpoint.into(),
            incarnation: incarnation.map(Incarnation::to_bytes),
        }
    }

    /// The endpoint's incarnation, if the location names one.
    pub fn incarnation(&self) -> Option<Incarnation> {
        self.incarnation.map(Incarnation::from_bytes)
    }

    /// The record a location service stores.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Addresses, strings and bytes always encode.
        postcard::to_allocvec(self).unwrap_or_default()
    }

    /// The location a stored record names.
    pub fn from_bytes(bytes: &[u8]) -> Result<ActorLocation, HaError> {
        postcard::from_bytes(bytes).map_err(|e| HaError::Malformed(e.to_string()))
    }

    fn hop(&self) -> Hop {
        Hop {
            address: self.address,
            endpoint: self.endpoint.clone(),
            incarnation: self.incarnation(),
        }
    }
}

/// A store of actor locations: written by the servers that host actors, read by callers
/// and Gates. Implemented on etcd and in memory; [`Locations`] is how code uses one.
pub trait LocationService: Send + Sync + 'static {
    /// Records that `actor` lives at `location` now (registering it, or moving it).
    fn put<'a>(
        &'a self,
        actor: &'a str,
        location: &'a ActorLocation,
    ) -> BoxFuture<'a, Result<(), HaError>>;

    /// Where `actor` lives, if it is registered.
    fn get<'a>(&'a self, actor: &'a str) -> BoxFuture<'a, Result<Option<ActorLocation>, HaError>>;

    /// Forgets `actor`.
    fn delete<'a>(&'a self, actor: &'a str) -> BoxFuture<'a, Result<(), HaError>>;
}

/// Actor-id addressing over a [`LocationService`]: register actors, follow them, route
/// relayed players to them.
///
/// ```
/// use std::sync::Arc;
/// use rpc_core::{RpcEndpoint, RpcService, rpc_gateway};
/// use rpc_ha::{Locations, MemoryLocations};
///
/// #[rpc_gateway]
/// pub trait Unit {
///     async fn hp(&mut self) -> u32;
/// }
/// struct Knight;
/// impl RpcEndpoint for Knight { rpc_core::serves!(Unit); }
/// impl Unit for Knight {
///     async fn hp(&mut self) -> u32 { 100 }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let locations = Locations::new(Arc::new(MemoryLocations::default()));
/// let map = rpc_netty::bind("127.0.0.1:0").await?;
/// let knight = map.start_endpoint("unit-7", Knight).await?;
/// locations.register(&7u64, map.local_address()?, "unit-7", Some(knight.incarnation())).await?;
///
/// let caller = rpc_netty::client();
/// let unit: UnitClient = locations.follow(&caller, &7u64);
/// assert_eq!(unit.hp().await?, 100);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Locations {
    store: Arc<dyn LocationService>,
}

impl Locations {
    /// Actor-id addressing over `store`.
    pub fn new(store: Arc<dyn LocationService>) -> Locations {
        Locations { store }
    }

    /// Records that actor `actor` is endpoint `endpoint` (incarnation `incarnation`) of the
    /// service at `address`: its first registration, or the end of a move.
    pub async fn register(
        &self,
        actor: &impl Display,
        address: SocketAddr,
        endpoint: &str,
        incarnation: Option<Incarnation>,
    ) -> Result<(), HaError> {
        let location = ActorLocation::new(address, endpoint, incarnation);
        self.store.put(&actor.to_string(), &location).await
    }

    /// Where actor `actor` lives now, if it is registered.
    pub async fn lookup(&self, actor: &impl Display) -> Result<Option<ActorLocation>, HaError> {
        self.store.get(&actor.to_string()).await
    }

    /// Forgets actor `actor` (it ended): calls to it fail with `EndpointNotFound`.
    pub async fn unregister(&self, actor: &impl Display) -> Result<(), HaError> {
        self.store.delete(&actor.to_string()).await
    }

    /// A proxy of `service` to actor `actor`, wherever it lives: each call goes where the
    /// location service says, and is re-sent after a move (see [`RpcService::follow`]).
    pub fn follow<G: UnfencedGateway>(&self, service: &RpcService, actor: &impl Display) -> G {
        let actor = actor.to_string();
        let store = Arc::clone(&self.store);
        service.follow(actor.clone(), move |_: RouteRequest<'_>| {
            locate(Arc::clone(&store), actor.clone())
        })
    }

    /// A router for a Gate's relay ([`RpcService::start_relay`]): a player's calls go to the
    /// actor `actor_of` names for the player's session (its unit, say), and follow it when it
    /// moves.
    pub fn router(
        &self,
        actor_of: impl Fn(&Session) -> String + Send + Sync + 'static,
    ) -> impl rpc_core::Router {
        let store = Arc::clone(&self.store);
        move |request: RouteRequest<'_>| {
            let actor = request.session.map(&actor_of);
            let store = Arc::clone(&store);
            async move {
                match actor {
                    Some(actor) => locate(store, actor).await,
                    None => Err(RpcError::EndpointNotFound {
                        endpoint: "(a call without a session names no actor)".to_owned(),
                        address: None,
                    }),
                }
            }
        }
    }
}

/// Where actor `actor` is, as a hop; `EndpointNotFound` if it is not registered.
async fn locate(store: Arc<dyn LocationService>, actor: String) -> Result<Hop, RpcError> {
    match store.get(&actor).await {
        Ok(Some(location)) => Ok(location.hop()),
        Ok(None) => Err(RpcError::EndpointNotFound {
            endpoint: actor,
            address: None,
        }),
        Err(error) => Err(RpcError::Relay {
            endpoint: actor,
            reason: error.to_string(),
        }),
    }
}

impl std::fmt::Debug for Locations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Locations").finish_non_exhaustive()
    }
}

/// Actor locations in process memory, for unit tests. Clones share the locations.
#[derive(Clone, Default, Debug)]
pub struct MemoryLocations {
    actors: Arc<Mutex<HashMap<String, ActorLocation>>>,
}

impl MemoryLocations {
    fn actors(&self) -> std::sync::MutexGuard<'_, HashMap<String, ActorLocation>> {
        self.actors.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl LocationService for MemoryLocations {
    fn put<'a>(
        &'a self,
        actor: &'a str,
        location: &'a ActorLocation,
    ) -> BoxFuture<'a, Result<(), HaError>> {
        self.actors().insert(actor.to_owned(), location.clone());
        Box::pin(async { Ok(()) })
    }

    fn get<'a>(&'a self, actor: &'a str) -> BoxFuture<'a, Result<Option<ActorLocation>, HaError>> {
        let location = self.actors().get(actor).cloned();
        Box::pin(async move { Ok(location) })
    }

    fn delete<'a>(&'a self, actor: &'a str) -> BoxFuture<'a, Result<(), HaError>> {
        self.actors().remove(actor);
        Box::pin(async { Ok(()) })
    }
}
