//! `Box<dyn Error>` has no wire form: the error says to use `String` or an enum.
use rpc_core::rpc_gateway;

#[rpc_gateway]
pub trait Store {
    async fn get(&mut self) -> Result<u32, Box<dyn std::error::Error + Send + Sync>>;
}

fn main() {}
