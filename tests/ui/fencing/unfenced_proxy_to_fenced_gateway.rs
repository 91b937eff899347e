use rpc_core::{RpcService, rpc_gateway};

#[rpc_gateway(fenced)]
pub trait JobMaster {
    async fn submit(&mut self, job: u64) -> u64;
}

async fn demo(service: RpcService) {
    let _local: JobMasterClient = service.gateway("master").unwrap();
    let _remote: JobMasterClient = service.connect("127.0.0.1:7000", "master").await.unwrap();
}

fn main() {
    let _ = demo;
}
