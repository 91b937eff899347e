//! Failover across processes, against a real etcd: the `cluster` example (two resource
//! manager processes, two task executor processes) has its leader killed with SIGKILL; the
//! standby must win with a new token, the executors must follow it, a call with the deposed
//! leader's token must be rejected, and the failover (leader killed -> first successful call
//! to the new leader) must take less than two lease TTLs (the TTL is 2 s).

#![cfg(feature = "etcd")]

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// Builds the `cluster` example (a no-op when up to date) and returns its path.
fn cluster_binary() -> PathBuf {
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "--quiet",
            "-p",
            "rpc-examples",
            "--features",
            "etcd",
            "--example",
            "cluster",
        ])
        .status()
        .expect("run cargo");
    assert!(status.success(), "building the cluster example failed");
    // target/debug/deps/cluster-HASH -> target/debug/examples/cluster
    let mut path = std::env::current_exe().expect("the test's own path");
    path.pop();
    path.pop();
    path.push("examples");
    path.push(format!("cluster{}", std::env::consts::EXE_SUFFIX));
    assert!(path.exists(), "no example binary at {}", path.display());
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_process_is_replaced_and_fenced_off() {
    if !common::etcd_available("a_killed_leader_process_is_replaced_and_fenced_off") {
        return;
    }
    let binary = tokio::task::spawn_blocking(cluster_binary).await.unwrap();
    let run = tokio::process::Command::new(binary)
        .env("CLUSTER_TTL_SECS", "2")
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the cluster example finishes within 120 s")
        .expect("run the cluster example");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the example failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!("{stdout}");
    let result = stdout
        .lines()
        .find_map(|line| line.strip_prefix("RESULT "))
        .unwrap_or_else(|| panic!("no RESULT line in:\n{stdout}"));
    let field = |name: &str| {
        result
            .split_whitespace()
            .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("no {name} in {result}"))
            .to_owned()
    };
    let failover: u64 = field("failover_ms").parse().unwrap();
    let ttl: u64 = field("ttl_ms").parse().unwrap();
    assert_eq!(ttl, 2000);
    assert!(
        failover < 2 * ttl,
        "failover took {failover} ms, more than two lease TTLs of {ttl} ms"
    );
    assert_eq!(field("stale_rejected"), "true", "{stdout}");
    // A new leader with a new token, and the executors registered with it.
    let leaders: Vec<&str> = stdout.lines().filter(|l| l.contains("] LEADER ")).collect();
    assert_eq!(leaders.len(), 2, "{stdout}");
    assert_ne!(
        leaders[0].split_whitespace().last(),
        leaders[1].split_whitespace().last(),
        "the new leadership has a new token"
    );
}
