//! A closure cannot cross the wire: the error says to send an enum of operations.
use rpc_core::rpc_gateway;

#[rpc_gateway]
pub trait Runner {
    fn run(&mut self, job: Box<dyn FnOnce() -> u32 + Send>);
}

fn main() {}
