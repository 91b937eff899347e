//! A real etcd server for the tests: the `etcd` binary (Debian package `etcd-server`) on
//! loopback ports of its own, with a temporary data directory, stopped when dropped.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

/// A running etcd, restartable on the same ports and data.
pub struct Etcd {
    child: Option<Child>,
    pub client_url: String,
    peer_url: String,
    data: PathBuf,
}

/// Whether the `etcd` binary is on the PATH. Outside CI a test without it says so and stops;
/// under CI (`CI` set) its absence is a failure: CI installs it.
pub fn etcd_available(test: &str) -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join("etcd").is_file()));
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

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl Etcd {
    /// Starts a one-member etcd and waits until it answers.
    pub async fn start() -> Etcd {
        let data = std::env::temp_dir().join(format!(
            "rpc-ha-etcd-{}-{}",
            std::process::id(),
            free_port()
        ));
        let _ = std::fs::remove_dir_all(&data);
        let mut etcd = Etcd {
            child: None,
            client_url: format!("127.0.0.1:{}", free_port()),
            peer_url: format!("http://127.0.0.1:{}", free_port()),
            data,
        };
        etcd.launch().await;
        etcd
    }

    async fn launch(&mut self) {
        let client = format!("http://{}", self.client_url);
        let child = Command::new("etcd")
            .arg("--name=test")
            .arg(format!("--data-dir={}", self.data.display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={}", self.peer_url))
            .arg(format!("--initial-advertise-peer-urls={}", self.peer_url))
            .arg(format!("--initial-cluster=test={}", self.peer_url))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start etcd");
        self.child = Some(child);
        self.wait_ready().await;
    }

    /// Waits until etcd accepts a connection on its client port.
    async fn wait_ready(&self) {
        let ready = async {
            loop {
                if tokio::net::TcpStream::connect(&self.client_url)
                    .await
                    .is_ok()
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(20), ready)
            .await
            .expect("etcd starts within 20 s");
    }

    /// Kills etcd (SIGKILL) and waits until it has exited.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Starts it again on the same ports and data.
    pub async fn restart(&mut self) {
        self.kill().await;
        self.launch().await;
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.data);
    }
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
