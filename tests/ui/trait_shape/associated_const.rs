use rpc_core::rpc_gateway;

#[rpc_gateway]
pub trait Store {
    const CAPACITY: usize;
    async fn len(&mut self) -> u64;
}

fn main() {}
