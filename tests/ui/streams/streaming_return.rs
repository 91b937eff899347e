use rpc_core::{Streaming, rpc_gateway};

#[rpc_gateway]
pub trait Download {
    fn download(&mut self, name: String) -> Streaming<Vec<u8>>;
}

fn main() {}
