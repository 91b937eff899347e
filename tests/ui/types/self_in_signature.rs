use rpc_core::rpc_gateway;

#[rpc_gateway]
pub trait Cloner {
    async fn twin(&mut self) -> Box<Self>;
}

fn main() {}
