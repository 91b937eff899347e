use rpc_core::{RpcEndpoint, rpc_gateway};

#[rpc_gateway]
pub trait Hello {
    async fn hi(&mut self) -> String;
}

struct Silent;

impl RpcEndpoint for Silent {
    rpc_core::serves!(Hello);
}

fn main() {}
