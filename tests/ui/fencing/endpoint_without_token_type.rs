use rpc_core::{RpcEndpoint, rpc_gateway};

#[rpc_gateway(fenced)]
pub trait JobMaster {
    async fn submit(&mut self, job: u64) -> u64;
}

struct Master;

impl RpcEndpoint for Master {
    rpc_core::serves!(JobMaster);
}

impl JobMaster for Master {
    async fn submit(&mut self, job: u64) -> u64 {
        job
    }
}

fn main() {}
