use rpc_core::rpc_gateway;

#[rpc_gateway(client = "Store Proxy")]
pub trait Store {
    async fn get(&mut self, key: String) -> Option<String>;
}

#[rpc_gateway(client = StoreProxy)]
pub trait Cache {
    async fn get(&mut self, key: String) -> Option<String>;
}

fn main() {}
