use rpc_core::{RpcStream, rpc_gateway};

#[rpc_gateway]
pub trait Upload {
    async fn upload(&mut self, chunks: RpcStream<Vec<u8>>) -> u64;
}

fn main() {}
