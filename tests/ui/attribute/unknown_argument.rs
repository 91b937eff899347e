use rpc_core::rpc_gateway;

#[rpc_gateway(timeout = 5)]
pub trait Hello {
    async fn hi(&mut self) -> String;
}

fn main() {}
