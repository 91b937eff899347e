use rpc_core::rpc_gateway;

pub struct Opaque(u32);

#[rpc_gateway]
pub trait Store {
    async fn get(&mut self, key: String) -> Opaque;
}

fn main() {}
