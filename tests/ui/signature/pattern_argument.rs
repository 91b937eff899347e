use rpc_core::rpc_gateway;

#[rpc_gateway]
pub trait Geometry {
    async fn area(&mut self, (width, height): (u32, u32)) -> u32;
}

fn main() {}
