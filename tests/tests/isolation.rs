//! An isolated endpoint has a thread of its own: blocking it does not starve the others.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rpc_core::{EndpointOptions, RpcEndpoint, RpcService, rpc_gateway};

#[rpc_gateway]
pub trait Blocking {
    /// Blocks its thread until the test says so (at most 30 s).
    async fn block(&mut self) -> bool;
}

struct Blocker {
    release: Arc<Mutex<mpsc::Receiver<()>>>,
}

impl RpcEndpoint for Blocker {
    rpc_core::serves!(Blocking);
}

impl Blocking for Blocker {
    async fn block(&mut self) -> bool {
        let release = self.release.lock().unwrap();
        release.recv_timeout(Duration::from_secs(30)).is_ok()
    }
}

#[rpc_gateway]
pub trait Quick {
    async fn quick(&mut self) -> u32;
}

struct Fast;

impl RpcEndpoint for Fast {
    rpc_core::serves!(Quick);
}

impl Quick for Fast {
    async fn quick(&mut self) -> u32 {
        7
    }
}

// One worker thread: a blocked, non-isolated endpoint would stall everything else.
#[tokio::test(flavor = "current_thread")]
async fn blocked_isolated_endpoint_does_not_starve_others() {
    let service = RpcService::new();
    let (release, released) = mpsc::channel();
    service
        .start_endpoint_with(
            "blocker",
            Blocker {
                release: Arc::new(Mutex::new(released)),
            },
            EndpointOptions::new().isolated(true),
        )
        .await
        .unwrap();
    service.start_endpoint("fast", Fast).await.unwrap();
    let blocker: BlockingClient = service.gateway("blocker").unwrap();
    let fast: QuickClient = service.gateway("fast").unwrap();

    let blocked = blocker.block().with_timeout(Duration::from_secs(60));
    // The blocker's thread is stuck in `recv`; the fast endpoint still answers.
    for _ in 0..10 {
        assert_eq!(fast.quick().await.unwrap(), 7);
    }
    release.send(()).unwrap();
    assert!(blocked.await.unwrap());
    service.shutdown().await.unwrap();
}
