use rpc_core::rpc_gateway;

#[rpc_gateway]
pub trait Store {
    async fn put<T: serde::Serialize>(&mut self, value: T);
}

fn main() {}
