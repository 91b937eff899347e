//! The seed's concurrency sweep: `say_bye("neo")` from 1 to 2,000 concurrent callers, each
//! making one call after another, over one connection and over one connection per 100
//! callers.

use std::sync::Arc;
use std::time::Duration;

use rpc_core::{RpcEndpoint, RpcService, rpc_gateway};

use crate::stats::concurrent;

/// The caller counts of the seed's published benchmark.
pub const CALLERS: [usize; 12] = [1, 10, 20, 40, 50, 100, 200, 500, 800, 1_000, 1_500, 2_000];

/// The seed's benchmark service.
#[rpc_gateway]
pub trait Hello {
    async fn say_bye(&mut self, name: String) -> String;
}

struct HelloEndpoint;

impl RpcEndpoint for HelloEndpoint {
    rpc_core::serves!(Hello);
}

impl Hello for HelloEndpoint {
    async fn say_bye(&mut self, name: String) -> String {
        format!("bye, {name}")
    }
}

/// How the callers reach the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Every caller shares one connection.
    OneConnection,
    /// Callers 0-99 share one connection, 100-199 the next, and so on.
    PerHundred,
}

impl Shape {
    pub fn label(self) -> &'static str {
        match self {
            Shape::OneConnection => "one connection",
            Shape::PerHundred => "a connection per 100 callers",
        }
    }
}

/// One point of the sweep in one run.
#[derive(Debug, Clone)]
pub struct Point {
    pub shape: Shape,
    pub callers: usize,
    pub rate: f64,
    pub p50: Duration,
    pub p99: Duration,
}

/// Calls each point makes in all (at least 20 per caller), after a tenth as many untimed.
pub struct Budget {
    pub calls: usize,
}

/// Both ends allow all 2,000 callers in flight on one connection (the default is 1,024: a
/// client refuses the ask beyond it with `Overloaded`).
fn builder() -> rpc_netty::NettyBuilder {
    rpc_netty::NettyBuilder::new().max_in_flight(2_048)
}

/// The whole sweep, both shapes, against one server in this process.
pub async fn run(budget: &Budget) -> Vec<Point> {
    let server = builder().bind("127.0.0.1:0").await.expect("bind");
    server
        .start_endpoint("hello", HelloEndpoint)
        .await
        .expect("start");
    let address = server.local_address().expect("address").to_string();
    let mut points = Vec::new();
    for shape in [Shape::OneConnection, Shape::PerHundred] {
        for callers in CALLERS {
            points.push(point(&address, shape, callers, budget).await);
        }
    }
    server.shutdown().await.expect("shutdown");
    points
}

async fn point(address: &str, shape: Shape, callers: usize, budget: &Budget) -> Point {
    let connections = match shape {
        Shape::OneConnection => 1,
        Shape::PerHundred => callers.div_ceil(100),
    };
    let mut clients: Vec<(RpcService, HelloClient)> = Vec::with_capacity(connections);
    for _ in 0..connections {
        let client = builder().client();
        let proxy: HelloClient = client.connect(address, "hello").await.expect("connect");
        clients.push((client, proxy));
    }
    let per_caller = (budget.calls / callers).max(20);
    let proxies: Arc<Vec<HelloClient>> = Arc::new(clients.iter().map(|(_, p)| p.clone()).collect());
    let sample = concurrent(
        "sweep",
        callers,
        (per_caller / 10).max(2),
        per_caller,
        move |caller| {
            let call = proxies[caller / 100 % connections].say_bye("neo".to_owned());
            async move {
                assert_eq!(call.await.expect("say_bye"), "bye, neo");
            }
        },
    )
    .await;
    for (client, _) in clients {
        client.shutdown().await.expect("shutdown");
    }
    let (p50, p99) = sample.latency.unwrap_or_default();
    Point {
        shape,
        callers,
        rate: sample.rate,
        p50,
        p99,
    }
}
