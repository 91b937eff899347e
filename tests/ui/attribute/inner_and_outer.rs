use rpc_core::rpc_gateway;

#[rpc_gateway(inner, outer)]
pub trait Both {
    async fn ping(&mut self) -> u32;
}

#[rpc_gateway(inner, inner)]
pub trait Twice {
    async fn ping(&mut self) -> u32;
}

fn main() {}
