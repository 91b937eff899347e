//! The endpoints behind the runnable examples (`cargo run --example NAME`). The example
//! binaries are thin shells over these modules, and tests use the same definitions.
//!
//! # Layout
//!
//! - [`hello`]: Spark's classic Hello service.
//! - [`heartbeat`]: Spark's HeartbeatReceiver pattern: a driver expiring silent executors.
//! - `cluster` (feature `etcd`): Flink's leader failover with fencing, on etcd.

#![warn(missing_docs)]

#[cfg(feature = "etcd")]
pub mod cluster;
pub mod heartbeat;
pub mod hello;

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
