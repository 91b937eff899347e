use rpc_core::rpc_gateway;

#[rpc_gateway]
pub trait Names {
    async fn first(&mut self) -> std::borrow::Cow<'_, str>;
}

fn main() {}
