use rpc_core::rpc_gateway;

#[rpc_gateway]
pub trait Greeter {
    async fn greet(&mut self, name: impl Into<String>) -> String;
}

fn main() {}
