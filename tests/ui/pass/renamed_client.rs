//! `client = "..."` renames the generated client, so a type of the user's may keep the name
//! `{Trait}Client`.

use rpc_core::{RpcEndpoint, RpcService, rpc_gateway};

/// The user's own type, named like the client the macro would generate.
pub struct StoreClient {
    pub cache: Vec<String>,
}

#[rpc_gateway(client = "StoreProxy")]
pub trait Store {
    async fn get(&mut self, key: String) -> Option<String>;
}

struct Memory;

impl RpcEndpoint for Memory {
    rpc_core::serves!(Store);
}

impl Store for Memory {
    async fn get(&mut self, key: String) -> Option<String> {
        Some(key)
    }
}

async fn demo(service: RpcService) -> Option<String> {
    let store: StoreProxy = service.gateway("store").ok()?;
    let mine = StoreClient { cache: Vec::new() };
    let _ = mine.cache;
    store.get("k".into()).await.ok()?
}

fn main() {
    let _ = demo;
}
