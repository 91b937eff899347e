use rpc_core::rpc_gateway;

#[rpc_gateway]
pub trait Store: std::fmt::Debug {
    async fn len(&mut self) -> u64;
}

fn main() {}
