//! `serves!` belongs inside `impl RpcEndpoint for ..`.
use rpc_core::rpc_gateway;

#[rpc_gateway]
pub trait Hello {
    async fn hi(&mut self) -> String;
}

rpc_core::serves!(Hello);

fn main() {}
