//! A raw pointer points into this process.
use rpc_core::rpc_gateway;

#[rpc_gateway]
pub trait Memory {
    fn poke(&mut self, at: *const u8);
}

fn main() {}
