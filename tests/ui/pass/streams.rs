use rpc_core::{RpcStream, rpc_gateway};

#[rpc_gateway]
pub trait Feed {
    fn items(&mut self, n: u32) -> RpcStream<u32>;
    async fn later(&mut self) -> RpcStream<String>;
    fn bytes(&mut self) -> rpc_core::RpcStream<bytes::Bytes>;
    fn nothing(&mut self) -> RpcStream<()>;
    async fn blob(&mut self, data: bytes::Bytes) -> bytes::Bytes;
}

fn main() {}
