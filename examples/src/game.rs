//! The game-server split (ET's shape): players log in at the Realm, play through the Gate,
//! and their units live on Map servers that only other servers reach.
//!
//! - The **Realm** (outer network) checks a player's password and asks the Gate, over the
//!   inner network, for a one-time key.
//! - The **Gate** listens on both networks. Players enter with the key (that opens their
//!   session) and then call their unit through the Gate's relay `unit`, which forwards each
//!   call undecoded to the Map hosting the unit, found in the location service on etcd.
//! - A **Map** (inner network only) hosts units as endpoints registered under their actor id.
//!   A unit moves to another Map while its player plays: the old Map stops it (its state is
//!   final once its queued calls have run), hands the state to the new Map, which starts it
//!   and records the new location. Calls in flight during the move are re-sent there.
//! - A unit tells its player it is leaving through a reference to the player's own endpoint,
//!   which reaches the player (who listens nowhere) back through the Gate.
//!
//! The example binary (`examples/examples/game.rs`) runs each role as its own process.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rpc_core::{CallContext, RpcContext, RpcEndpoint, RpcError, RpcService, rpc_gateway};
use rpc_ha::Locations;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

/// The error type of the example's roles.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// What the Realm gives a player who logged in: where the Gate is, and the key it expects.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    /// The Gate's outer address.
    pub gate: SocketAddr,
    /// The one-time key the Gate admits the player with.
    pub key: u64,
}

/// The Realm, for players.
#[rpc_gateway(outer)]
pub trait Realm {
    /// Checks the player's password; a ticket to the Gate, or why not.
    async fn login(&mut self, player: String, password: String) -> Result<Ticket, String>;
}

/// The Gate, for other servers.
#[rpc_gateway(inner)]
pub trait GateAdmin {
    /// A one-time key for `player` to enter with.
    async fn admit(&mut self, player: String) -> u64;
}

/// The Gate, for players.
#[rpc_gateway(outer)]
pub trait GateEntry {
    /// Enters with the Realm's key: opens the player's session and spawns its unit on a Map.
    /// The unit's actor id.
    async fn enter(&mut self, player: String, key: u64) -> Result<String, String>;
}

/// A unit's state: what moves with it from Map to Map.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitState {
    /// The unit's actor id.
    pub id: String,
    /// The player it belongs to.
    pub owner: String,
    /// Where it stands.
    pub position: (i64, i64),
    /// How many steps it has taken, wherever it was.
    pub steps: u64,
}

/// A Map, for other servers.
#[rpc_gateway(inner)]
pub trait MapAdmin {
    /// Starts a new unit for `owner` here.
    async fn spawn(&mut self, unit: String, owner: String) -> Result<(), String>;
    /// Moves unit `unit` to the Map whose inner address is `to`.
    async fn transfer(&mut self, unit: String, to: SocketAddr) -> Result<(), String>;
    /// Takes over a unit another Map handed over.
    async fn adopt(&mut self, unit: UnitState) -> Result<(), String>;
}

/// What a step answers: where the unit is, on which Map, after how many steps.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// The Map's name.
    pub map: String,
    /// The unit's position.
    pub position: (i64, i64),
    /// Its steps so far.
    pub steps: u64,
}

/// A unit, for its player: reached through the Gate's relay.
#[rpc_gateway]
pub trait Unit {
    /// Takes one step.
    async fn step(&mut self, dx: i64, dy: i64) -> Result<Report, String>;
    /// Where to tell the player things: an endpoint of the player's own.
    async fn watch(&mut self, events: PlayerEventsClient);
}

/// What a Map tells a player: served by the player.
#[rpc_gateway]
pub trait PlayerEvents {
    /// The unit is leaving for another Map.
    fn leaving(&mut self, unit: String, from: String);
}

/// The actor id of `player`'s unit.
pub fn unit_of(player: &str) -> String {
    format!("unit-{player}")
}

/// The password the Realm expects of `player` (a real one would check a store).
pub fn password_of(player: &str) -> String {
    format!("pw-{player}")
}

/// The Realm's endpoint.
pub struct RealmServer {
    gate: GateAdminClient,
    gate_outer: SocketAddr,
}

impl RpcEndpoint for RealmServer {
    rpc_core::serves!(Realm);
}

impl Realm for RealmServer {
    async fn login(&mut self, player: String, password: String) -> Result<Ticket, String> {
        if password != password_of(&player) {
            return Err(format!("wrong password for {player}"));
        }
        let key = self.gate.admit(player).await.map_err(|e| e.to_string())?;
        Ok(Ticket {
            gate: self.gate_outer,
            key,
        })
    }
}

/// Runs the Realm: serves on loopback, its gateway on an outer listener; returns once
/// serving, with the outer address.
pub async fn realm(
    gate_inner: SocketAddr,
    gate_outer: SocketAddr,
) -> Result<(RpcService, SocketAddr), Error> {
    let service = rpc_netty::NettyBuilder::new()
        .outer("127.0.0.1:0")
        .bind("127.0.0.1:0")
        .await?;
    let gate = service.connect(gate_inner, "gate").await?;
    service
        .start_endpoint("realm", RealmServer { gate, gate_outer })
        .await?;
    let outer = service.outer_address()?;
    Ok((service, outer))
}

/// The Gate's endpoint: keys handed out, and the Maps where new units start.
pub struct GateServer {
    service: RpcService,
    keys: HashMap<String, u64>,
    maps: Vec<SocketAddr>,
    next_map: Arc<AtomicUsize>,
}

impl RpcEndpoint for GateServer {
    rpc_core::serves!(GateAdmin, GateEntry);
}

impl GateAdmin for GateServer {
    async fn admit(&mut self, player: String) -> u64 {
        // A fresh random key (a real Gate would use a cryptographic generator).
        let key = std::hash::BuildHasher::hash_one(&std::hash::RandomState::new(), &player);
        self.keys.insert(player, key);
        key
    }
}

impl GateEntry for GateServer {
    async fn enter(&mut self, player: String, key: u64) -> Result<String, String> {
        if self.keys.get(&player) != Some(&key) {
            return Err(format!(
                "{player} has no such key: log in at the Realm first"
            ));
        }
        self.keys.remove(&player);
        let context = CallContext::current();
        let peer = context.caller().peer().ok_or("enter over the network")?;
        peer.open_session(player.clone())
            .map_err(|open| format!("this connection is already {open}"))?;
        let unit = unit_of(&player);
        let map = self.maps[self.next_map.fetch_add(1, Ordering::Relaxed) % self.maps.len()];
        let admin: MapAdminClient = self
            .service
            .connect(map, "map")
            .await
            .map_err(|e| e.to_string())?;
        admin
            .spawn(unit.clone(), player)
            .await
            .map_err(|e| e.to_string())??;
        Ok(unit)
    }
}

/// Runs the Gate: an inner and an outer listener on loopback, the endpoint `gate`, and the
/// relay `unit` that routes each player to its unit through `locations`.
pub async fn gate(maps: Vec<SocketAddr>, locations: Locations) -> Result<RpcService, Error> {
    let service = rpc_netty::NettyBuilder::new()
        .outer("127.0.0.1:0")
        .bind("127.0.0.1:0")
        .await?;
    let gate = GateServer {
        service: service.clone(),
        keys: HashMap::new(),
        maps,
        next_map: Arc::default(),
    };
    service.start_endpoint("gate", gate).await?;
    service.start_relay(
        "unit",
        locations.router(|session| unit_of(session.identity())),
    )?;
    Ok(service)
}

/// A unit, as an endpoint of the Map hosting it.
pub struct UnitActor {
    map: String,
    state: UnitState,
    watcher: Option<PlayerEventsClient>,
    /// Where the state goes when the unit stops (to the Map it moves to).
    hand_over: Option<oneshot::Sender<(UnitState, Option<PlayerEventsClient>)>>,
}

impl UnitActor {
    /// Only the unit's own player may move it: the Gate vouches for who calls.
    fn check_owner(&self) -> Result<(), String> {
        let context = CallContext::current();
        match context.session() {
            Some(session) if session.identity() == self.state.owner => Ok(()),
            Some(session) => Err(format!("{} is not {}'s", self.state.id, session.identity())),
            None => Err("only a player, through the Gate, moves a unit".to_owned()),
        }
    }
}

impl RpcEndpoint for UnitActor {
    rpc_core::serves!(Unit);

    async fn on_stop(&mut self) -> Result<(), rpc_core::BoxError> {
        // Every call queued before the stop has run: the state is final.
        if let Some(hand_over) = self.hand_over.take() {
            let _ = hand_over.send((self.state.clone(), self.watcher.take()));
        }
        Ok(())
    }
}

impl Unit for UnitActor {
    async fn step(&mut self, dx: i64, dy: i64) -> Result<Report, String> {
        self.check_owner()?;
        self.state.position.0 += dx;
        self.state.position.1 += dy;
        self.state.steps += 1;
        Ok(Report {
            map: self.map.clone(),
            position: self.state.position,
            steps: self.state.steps,
        })
    }

    async fn watch(&mut self, events: PlayerEventsClient) {
        if self.check_owner().is_ok() {
            self.watcher = Some(events);
        }
    }
}

/// A hosted unit: its context and the receiver of its final state.
type Hosted = (
    RpcContext<UnitActor>,
    oneshot::Receiver<(UnitState, Option<PlayerEventsClient>)>,
);

/// A Map's endpoint: the units it hosts.
pub struct MapServer {
    name: String,
    service: RpcService,
    locations: Locations,
    units: HashMap<String, Hosted>,
}

impl MapServer {
    async fn host(&mut self, state: UnitState) -> Result<(), String> {
        let (hand_over, handed) = oneshot::channel();
        let id = state.id.clone();
        let actor = UnitActor {
            map: self.name.clone(),
            state,
            watcher: None,
            hand_over: Some(hand_over),
        };
        let context = self
            .service
            .start_endpoint(id.clone(), actor)
            .await
            .map_err(|e| e.to_string())?;
        let address = self.service.local_address().map_err(|e| e.to_string())?;
        self.locations
            .register(&id, address, &id, Some(context.incarnation()))
            .await
            .map_err(|e| e.to_string())?;
        self.units.insert(id, (context, handed));
        Ok(())
    }
}

impl RpcEndpoint for MapServer {
    rpc_core::serves!(MapAdmin);
}

impl MapAdmin for MapServer {
    async fn spawn(&mut self, unit: String, owner: String) -> Result<(), String> {
        let state = UnitState {
            id: unit,
            owner,
            position: (0, 0),
            steps: 0,
        };
        self.host(state).await
    }

    async fn transfer(&mut self, unit: String, to: SocketAddr) -> Result<(), String> {
        let (context, handed) = self
            .units
            .remove(&unit)
            .ok_or_else(|| format!("{unit} is not on {}", self.name))?;
        context.stop();
        let (state, watcher) = handed.await.map_err(|_| format!("{unit} lost its state"))?;
        context.terminated().await;
        if let Some(watcher) = watcher {
            // Down the player's session, through the Gate.
            let _ = watcher.leaving(unit.clone(), self.name.clone());
        }
        let next: MapAdminClient = self
            .service
            .connect(to, "map")
            .await
            .map_err(|e| e.to_string())?;
        next.adopt(state).await.map_err(|e| e.to_string())?
    }

    async fn adopt(&mut self, unit: UnitState) -> Result<(), String> {
        self.host(unit).await
    }
}

/// Runs a Map named `name`: the inner network only, on loopback.
pub async fn map(name: &str, locations: Locations) -> Result<RpcService, Error> {
    let service = rpc_netty::bind("127.0.0.1:0").await?;
    let map = MapServer {
        name: name.to_owned(),
        service: service.clone(),
        locations,
        units: HashMap::new(),
    };
    service.start_endpoint("map", map).await?;
    Ok(service)
}

/// What a scripted player saw.
#[derive(Debug, Default)]
pub struct Played {
    /// The steps it took, each answered.
    pub steps: u64,
    /// The Maps its unit reported, in order of first appearance.
    pub maps: Vec<String>,
    /// What its unit told it through the Gate.
    pub told: Vec<String>,
    /// The error the Gate's outer listener gave for an inner gateway.
    pub refused: String,
}

/// A player's own endpoint: what its unit tells it.
struct Listener(tokio::sync::mpsc::UnboundedSender<String>);

impl RpcEndpoint for Listener {
    rpc_core::serves!(PlayerEvents);
}

impl PlayerEvents for Listener {
    fn leaving(&mut self, unit: String, from: String) {
        let _ = self.0.send(format!("{unit} leaves {from}"));
    }
}

/// Plays as `player`: logs in at the Realm at `realm`, enters the Gate, and steps until it
/// has taken `steps` steps and its unit has been on `maps` Maps. `on_playing` is called once
/// the unit answered its first step, with the Map it is on. Every step must be answered in
/// order: a step lost or applied twice shows in the step counts.
pub async fn play(
    player: &str,
    realm: SocketAddr,
    steps: u64,
    maps: usize,
    mut on_playing: impl FnMut(&str),
) -> Result<Played, Error> {
    let service = rpc_netty::client();
    let realm: RealmClient = service.connect(realm, "realm").await?;
    let ticket = realm
        .login(player.to_owned(), password_of(player))
        .await??;
    let entry: GateEntryClient = service.connect(ticket.gate, "gate").await?;
    let unit_id = entry.enter(player.to_owned(), ticket.key).await??;
    let mut played = Played::default();
    // A player is on the outer network: the Gate's inner gateway is refused to it.
    match service
        .connect::<GateAdminClient>(ticket.gate, "gate")
        .await
    {
        Err(error @ RpcError::InnerGateway { .. }) => played.refused = error.to_string(),
        Err(other) => return Err(format!("expected InnerGateway, got {other}").into()),
        Ok(_) => return Err("the Gate served an inner gateway to a player".into()),
    }

    let (told, mut tells) = tokio::sync::mpsc::unbounded_channel();
    service.start_endpoint("events", Listener(told)).await?;
    let me: PlayerEventsClient = service.gateway("events")?;
    let unit: UnitClient = service.connect(ticket.gate, "unit").await?;
    unit.watch(me.clone()).await?;
    while played.steps < steps || played.maps.len() < maps {
        let report = unit.step(1, 0).await??;
        played.steps += 1;
        if report.steps != played.steps || report.position != (played.steps as i64, 0) {
            return Err(format!("{unit_id}: step {} answered {report:?}", played.steps).into());
        }
        if played.maps.last() != Some(&report.map) {
            if played.maps.is_empty() {
                on_playing(&report.map);
            } else {
                // A new Map: tell this unit where to reach us again.
                unit.watch(me.clone()).await?;
            }
            played.maps.push(report.map);
        }
        while let Ok(told) = tells.try_recv() {
            played.told.push(told);
        }
        if played.steps > 100_000 {
            return Err(format!("{unit_id} never moved to {maps} Maps").into());
        }
    }
    // Each move was announced before it happened; the last announcement may still be on
    // its way.
    while played.told.len() + 1 < maps {
        let told = tokio::time::timeout(std::time::Duration::from_secs(10), tells.recv())
            .await
            .map_err(|_| format!("{unit_id}: no word of its move within 10 s"))?;
        played.told.extend(told);
    }
    Ok(played)
}
