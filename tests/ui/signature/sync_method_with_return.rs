use rpc_core::rpc_gateway;

#[rpc_gateway]
pub trait Counter {
    fn current(&mut self) -> u64;
}

fn main() {}
