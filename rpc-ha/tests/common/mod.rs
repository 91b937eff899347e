//! What the etcd tests share: whether they can run, and logging.

#![allow(dead_code)]

/// Whether the `etcd` binary is on the PATH. Outside CI a test without it says so and stops;
/// under CI (`CI` set) its absence is a failure: CI installs it.
#[cfg(feature = "etcd")]
pub fn etcd_available(test: &str) -> bool {
    let found = rpc_ha::etcd::LocalEtcd::available();
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: no `etcd` binary on the PATH, and CI must run this test (install the Debian \
             package etcd-server)"
        );
        eprintln!(
            "{test}: skipped, no `etcd` binary on the PATH (Debian: apt install etcd-server)"
        );
    }
    found
}

/// Logs to the test's output (`RUST_LOG=debug` for more).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}
