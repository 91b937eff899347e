//! Methods behind `#[cfg]` / `#[cfg_attr(.., cfg(..))]`: present when the condition holds,
//! absent everywhere (trait, client, dispatcher, method table) when it does not, so a type
//! that cannot cross the wire is fine in a method that is compiled out.
use rpc_core::{Gateway, RpcEndpoint, RpcService, rpc_gateway};

pub struct NotOnTheWire;

#[rpc_gateway]
pub trait Store {
    #[cfg(any())]
    async fn absent(&mut self, value: NotOnTheWire) -> NotOnTheWire;
    #[cfg(not(any()))]
    async fn present(&mut self) -> u32;
    #[cfg_attr(all(), cfg(any()))]
    fn also_absent(&mut self, value: NotOnTheWire);
    async fn last(&mut self) -> u32;
}

struct Memory;

impl RpcEndpoint for Memory {
    rpc_core::serves!(Store);
}

impl Store for Memory {
    async fn present(&mut self) -> u32 {
        1
    }
    async fn last(&mut self) -> u32 {
        2
    }
}

#[tokio::main]
async fn main() {
    let names: Vec<_> = <StoreClient as Gateway>::METHODS.iter().map(|m| m.name).collect();
    assert_eq!(names, ["present", "last"]);
    let service = RpcService::new();
    service.start_endpoint("store", Memory).await.expect("start");
    let store: StoreClient = service.gateway("store").expect("gateway");
    assert_eq!(store.present().await.expect("present"), 1);
    assert_eq!(store.last().await.expect("last"), 2);
}
