//! The endpoints behind the runnable examples (`cargo run --example NAME`). The example
//! binaries are thin shells over these modules, and tests use the same definitions.
//!
//! # Layout
//!
//! - [`hello`]: Spark's classic Hello service.
//! - [`heartbeat`]: Spark's HeartbeatReceiver pattern: a driver expiring silent executors.
//! - `cluster` (feature `etcd`): Flink's leader failover with fencing, on etcd.
//! - [`tls`]: a server and a client over TLS, with a self-signed certificate made at run time.
//! - [`secret`]: shared-secret authentication; wrong and missing secrets are refused.
//! - [`isolated`]: Spark's IsolatedRpcEndpoint: a CPU-heavy endpoint on its own thread.
//! - [`deferred`]: replies finished later with `Deferred`, without holding the main thread.
//! - [`supertrait`]: gateways extending a base gateway, served by one endpoint.
//! - [`executors`]: Spark's executor registration: executors that do not listen send their
//!   own reference, the driver calls them back and they stream results.
//! - `game` (feature `etcd`): the game-server split: Realm, Gate, Maps; a relay that forwards
//!   players' calls undecoded, units that migrate between Maps while played.

#![warn(missing_docs)]

#[cfg(feature = "etcd")]
pub mod cluster;
pub mod deferred;
pub mod executors;
#[cfg(feature = "etcd")]
pub mod game;
pub mod heartbeat;
pub mod hello;
pub mod isolated;
pub mod secret;
pub mod supertrait;
pub mod tls;

/// Installs a `tracing` subscriber printing `info` and above (override with `RUST_LOG`), so
/// the transport's connection events show up.
pub fn init_tracing() {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .try_init();
}
