use rpc_core::rpc_gateway;

#[rpc_gateway]
pub trait Raw {
    unsafe fn poke(&mut self, address: u64);
}

fn main() {}
