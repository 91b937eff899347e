use rpc_core::rpc_gateway;

pub struct Opaque(u32);

#[rpc_gateway]
pub trait Store {
    async fn put(&mut self, value: Opaque) -> u32;
}

fn main() {}
