//! A type of the user's already has the generated client's name.
use rpc_core::rpc_gateway;

pub struct StoreClient;

#[rpc_gateway]
pub trait Store {
    async fn get(&mut self, key: String) -> Option<String>;
}

fn main() {}
