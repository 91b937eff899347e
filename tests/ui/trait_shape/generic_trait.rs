use rpc_core::rpc_gateway;

#[rpc_gateway]
pub trait Store<'a, T> {
    async fn put(&mut self, value: u32) -> u32;
}

fn main() {}
