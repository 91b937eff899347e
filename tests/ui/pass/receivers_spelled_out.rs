//! `self: &mut Self` and `self: &Self` are `&mut self` and `&self`.
use rpc_core::{RpcEndpoint, RpcService, rpc_gateway};

#[rpc_gateway]
pub trait Counter {
    async fn bump(self: &mut Self, by: u32) -> u32;
    async fn read(self: &Self) -> u32;
}

#[derive(Default)]
struct Count(u32);

impl RpcEndpoint for Count {
    rpc_core::serves!(Counter);
}

impl Counter for Count {
    async fn bump(&mut self, by: u32) -> u32 {
        self.0 += by;
        self.0
    }
    async fn read(&self) -> u32 {
        self.0
    }
}

#[tokio::main]
async fn main() {
    let service = RpcService::new();
    service.start_endpoint("count", Count::default()).await.expect("start");
    let counter: CounterClient = service.gateway("count").expect("gateway");
    assert_eq!(counter.bump(2).await.expect("bump"), 2);
    assert_eq!(counter.read().await.expect("read"), 2);
}
