use rpc_core::{RpcStream, rpc_gateway};

pub struct Opaque(u32);

#[rpc_gateway]
pub trait Feed {
    fn items(&mut self) -> RpcStream<Opaque>;
}

fn main() {}
