//! Arguments behind `#[cfg]`: the client, the invocation and the handler agree on which exist.
use rpc_core::{RpcEndpoint, RpcService, rpc_gateway};

pub struct NotOnTheWire;

#[rpc_gateway]
pub trait Store {
    async fn put(
        &mut self,
        #[cfg(any())] absent: NotOnTheWire,
        key: String,
        #[cfg(not(any()))] present: u32,
    ) -> String;
}

struct Memory;

impl RpcEndpoint for Memory {
    rpc_core::serves!(Store);
}

impl Store for Memory {
    async fn put(&mut self, key: String, present: u32) -> String {
        format!("{key}={present}")
    }
}

#[tokio::main]
async fn main() {
    let service = RpcService::builder().force_serialization(true).build();
    service.start_endpoint("store", Memory).await.expect("start");
    let store: StoreClient = service.gateway("store").expect("gateway");
    assert_eq!(store.put("a".into(), 1).await.expect("put"), "a=1");
}
