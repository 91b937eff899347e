//! A client that is a separate OS process: the `hello` example binary, run as
//! `hello client ADDR` against a server in this test process.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use rpc_core::{RpcEndpoint, RpcService};
use rpc_examples::hello::{ByeError, HelloGateway};
use tokio::sync::mpsc;

/// The test's Hello endpoint: the example's gateway, recording what it is told.
struct Recorder {
    seen: mpsc::UnboundedSender<String>,
}

impl RpcEndpoint for Recorder {
    rpc_core::serves!(HelloGateway);
}

impl HelloGateway for Recorder {
    async fn say_hi(&mut self, name: String) -> String {
        let _ = self.seen.send(format!("hi {name}"));
        format!("hi, {name}")
    }

    async fn say_bye(&mut self, name: String) -> Result<String, ByeError> {
        let _ = self.seen.send(format!("bye {name}"));
        Err(ByeError::Stranger(name))
    }

    fn heartbeat(&mut self, executor_id: String) {
        let _ = self.seen.send(format!("heartbeat {executor_id}"));
    }
}

/// Builds the `hello` example (a no-op when it is up to date) and returns its path.
fn hello_binary() -> PathBuf {
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "--quiet",
            "-p",
            "rpc-examples",
            "--example",
            "hello",
        ])
        .status()
        .expect("run cargo");
    assert!(status.success(), "building the hello example failed");
    // target/debug/deps/processes-HASH -> target/debug/examples/hello
    let mut path = std::env::current_exe().expect("the test's own path");
    path.pop();
    path.pop();
    path.push("examples");
    path.push(format!("hello{}", std::env::consts::EXE_SUFFIX));
    assert!(path.exists(), "no example binary at {}", path.display());
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_binary_is_a_client_in_another_process() {
    common::init_tracing();
    let binary = tokio::task::spawn_blocking(hello_binary).await.unwrap();

    let server: RpcService = rpc_netty::bind("127.0.0.1:0").await.unwrap();
    let (seen, mut events) = mpsc::unbounded_channel();
    server
        .start_endpoint("hello-service", Recorder { seen })
        .await
        .unwrap();
    let address = server.local_address().unwrap().to_string();

    let child = tokio::process::Command::new(&binary)
        .args(["client", &address])
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), child)
        .await
        .expect("the client process finished")
        .expect("the client process ran");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "client failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("hi, neo"), "{stdout}");
    assert!(
        stdout.contains("refused: never said hi to smith"),
        "{stdout}"
    );

    let mut received = Vec::new();
    while let Ok(event) = events.try_recv() {
        received.push(event);
    }
    assert_eq!(
        received,
        ["hi neo", "heartbeat exec-1", "bye neo", "bye smith"],
        "the server saw the other process's calls, in order"
    );
    server.shutdown().await.unwrap();
}
