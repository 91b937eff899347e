use rpc_core::rpc_gateway;

#[rpc_gateway]
pub trait Worker {
    async fn finish(self: Box<Self>) -> u32;
}

fn main() {}
