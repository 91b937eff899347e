use rpc_core::rpc_gateway;

// Every mistake is reported in one compile, each on its own tokens.
#[rpc_gateway]
pub trait Sloppy {
    fn count(&mut self) -> u64;
    async fn greet(&mut self, name: &str) -> String;
    async fn reset(self);
    async fn endpoint(&mut self) -> String;
}

fn main() {}
