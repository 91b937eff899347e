//! A deprecated method: the client method is deprecated too, and the generated dispatcher
//! calling the handler does not warn, even under `deny(warnings)`.
#![deny(warnings)]

use rpc_core::{RpcEndpoint, rpc_gateway};

#[rpc_gateway]
pub trait Store {
    #[deprecated(note = "use `get`")]
    async fn fetch(&mut self, key: String) -> Option<String>;
    async fn get(&mut self, key: String) -> Option<String>;
}

struct Memory;

impl RpcEndpoint for Memory {
    rpc_core::serves!(Store);
}

#[allow(deprecated)]
impl Store for Memory {
    async fn fetch(&mut self, key: String) -> Option<String> {
        Some(key)
    }
    async fn get(&mut self, key: String) -> Option<String> {
        Some(key)
    }
}

fn main() {}
