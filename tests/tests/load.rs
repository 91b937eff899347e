//! 1,000 concurrent client connections, 100 asks each: every reply arrives, once, to the
//! call that asked for it.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rpc_core::{RpcEndpoint, rpc_gateway};

const CONNECTIONS: u64 = 1_000;
const ASKS: u64 = 100;

#[rpc_gateway]
pub trait Echo {
    async fn echo(&mut self, n: u64) -> u64;
}

struct Server {
    served: Arc<AtomicUsize>,
}

impl RpcEndpoint for Server {
    rpc_core::serves!(Echo);
}

impl Echo for Server {
    async fn echo(&mut self, n: u64) -> u64 {
        self.served.fetch_add(1, Ordering::Relaxed);
        n
    }
}

/// Both ends of every connection live in this process: make sure it may open them all.
fn allow_open_files(needed: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed to them.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < needed {
            limit.rlim_cur = needed.min(limit.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_connections_lose_and_misroute_nothing() {
    common::init_tracing();
    allow_open_files(4 * CONNECTIONS + 256);
    common::bounded(async {
        let served = Arc::new(AtomicUsize::new(0));
        let server = rpc_netty::bind("127.0.0.1:0").await.unwrap();
        server
            .start_endpoint(
                "echo",
                Server {
                    served: Arc::clone(&served),
                },
            )
            .await
            .unwrap();
        let address = server.local_address().unwrap().to_string();

        let callers: Vec<_> = (0..CONNECTIONS)
            .map(|connection| {
                let address = address.clone();
                tokio::spawn(async move {
                    // Each caller is its own service: its own connection.
                    let client = rpc_netty::client();
                    let echo: EchoClient = client.connect(&address, "echo").await.unwrap();
                    let mut answered = 0;
                    for ask in 0..ASKS {
                        let n = connection * 1_000_000 + ask;
                        let reply = echo
                            .echo(n)
                            .with_timeout(Duration::from_secs(50))
                            .await
                            .unwrap();
                        assert_eq!(reply, n, "connection {connection} got another call's reply");
                        answered += 1;
                    }
                    client.shutdown().await.unwrap();
                    answered
                })
            })
            .collect();
        let mut answered = 0;
        for caller in callers {
            answered += caller.await.unwrap();
        }
        assert_eq!(answered, CONNECTIONS * ASKS, "every ask was answered");
        assert_eq!(
            served.load(Ordering::Relaxed) as u64,
            CONNECTIONS * ASKS,
            "every ask ran exactly once"
        );
        server.shutdown().await.unwrap();
    })
    .await;
}
