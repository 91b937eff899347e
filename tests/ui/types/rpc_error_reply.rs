//! The proxy already returns `Result<T, RpcError>`: a reply carrying `RpcError` is refused with
//! that explanation.
use rpc_core::{RpcError, rpc_gateway};

#[rpc_gateway]
pub trait Store {
    async fn get(&mut self) -> Result<u32, RpcError>;
}

fn main() {}
