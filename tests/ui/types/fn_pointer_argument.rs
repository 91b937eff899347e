//! A function pointer is code in this process.
use rpc_core::rpc_gateway;

#[rpc_gateway]
pub trait Runner {
    async fn apply(&mut self, f: fn(u32) -> u32) -> u32;
}

fn main() {}
