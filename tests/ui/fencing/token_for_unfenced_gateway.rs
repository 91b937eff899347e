use rpc_core::{FencingId, RpcService, rpc_gateway};

#[rpc_gateway]
pub trait Status {
    async fn status(&mut self) -> String;
}

fn demo(service: RpcService) {
    let _status: StatusClient = service
        .gateway_fenced("status", FencingId::random())
        .unwrap();
}

fn main() {
    let _ = demo;
}
