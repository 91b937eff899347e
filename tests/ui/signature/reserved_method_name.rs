use rpc_core::rpc_gateway;

#[rpc_gateway]
pub trait Tuner {
    async fn with_timeout(&mut self, millis: u64) -> bool;
    fn clone(&mut self);
}

fn main() {}
