use rpc_core::rpc_gateway;

#[rpc_gateway]
pub struct Hello {
    greeted: u64,
}

fn main() {}
