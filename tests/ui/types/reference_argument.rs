use rpc_core::rpc_gateway;

#[rpc_gateway]
pub trait Greeter {
    async fn greet(&mut self, name: &str) -> String;
}

fn main() {}
