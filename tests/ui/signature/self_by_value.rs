use rpc_core::rpc_gateway;

#[rpc_gateway]
pub trait Worker {
    async fn finish(self) -> u32;
}

fn main() {}
